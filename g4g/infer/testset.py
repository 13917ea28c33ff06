"""The test set rendered in three settings, each test clip driven by
    reconstruction  its own audio (docs/design/method.md Sec. 9; the tables' rows)   {out_dir}/{clip}.mp4
    cross           another test clip's audio, a derangement fixed by the seed      {out_dir}/cross/{clip}.mp4
    silent          silence: a model that listens keeps the mouth still             {out_dir}/silent/{clip}.mp4
The reconstruction setting cannot tell a model that listens from one that copies the source's mouth; the
other two can (the cross-driven table, g4g.evaluate.tables). The driving audio is cut or zero-padded to the
clip's own length, so frame k of every render is source frame k.

Inference here reuses what preparation stored for each test clip (the 25 fps frame map, the audio, the
smoothed landmarks and crop transforms of the frame shard), so the generated faces sit exactly where the
ground-truth crops were cut. Each clip that fails becomes a row with its reason (index + rejects file);
the run goes on. The index Parquet has a row per clip and setting (clip_id, setting, driver, status, ...).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from g4g.data.shards import FrameReader, write_table
from g4g.infer.lipsync import Lipsync, Track
from g4g.params import SETTINGS, AudioParams, InferParams, MelParams
from g4g.rejects import ClipError, Rejects

log = logging.getLogger(__name__)

INDEX_SCHEMA = pa.schema([("clip_id", pa.string()), ("setting", pa.string()), ("driver", pa.string()),
                          ("status", pa.string()), ("reason", pa.string()), ("video", pa.string()),
                          ("n_frames", pa.int32())])  # no timings: DVC hashes it



@dataclass
class TestClip:
    clip_id: str
    n_frames: int        # 25 fps frames of the prepared clip
    frames_path: str     # its frame shard (ground-truth crops, transforms, landmarks)
    source: str          # the raw video
    index_map: np.ndarray  # (n_frames,) source frame per 25 fps frame
    audio: np.ndarray    # float32 16 kHz mono, the clip's own audio
    width: int           # displayed frame size of the source
    height: int


def test_clips(clips_parquet: str | os.PathLike, resampled: list[str], split: str = "test") -> list[TestClip]:
    """The prepared clips of `split`, sorted by id, with their source video and audio."""
    rows = [r for r in pq.read_table(clips_parquet).to_pylist() if r["split"] == split]
    wanted = {r["clip_id"] for r in rows}
    res = {}
    for path in resampled:
        t = pq.read_table(path, columns=["clip_id", "path", "index_map", "audio_pcm16", "width", "height"])
        for r in t.to_pylist():
            if r["clip_id"] in wanted:
                res[r["clip_id"]] = r
    out = []
    for r in sorted(rows, key=lambda r: r["clip_id"]):
        s = res.get(r["clip_id"])
        if s is None:
            raise KeyError(f"{r['clip_id']}: not in the resampled tables given ({len(resampled)} files)")
        out.append(TestClip(r["clip_id"], r["n_frames"], r["frames_path"], s["path"],
                            np.asarray(s["index_map"], np.int64),
                            np.frombuffer(s["audio_pcm16"], "<i2").astype(np.float32) / 32768.0,
                            int(s["width"]), int(s["height"])))
    return out


def stored_track(clip: TestClip):
    """The Track (frame map, crop transforms, crop landmarks) that preparation stored for the clip."""

    cols = FrameReader(clip.frames_path).clip_columns(clip.clip_id, ["src_frame", "affine", "crop_landmarks"])
    return Track(cols["src_frame"].astype(np.int64), cols["affine"].astype(np.float64), cols["crop_landmarks"])


def drivers(clip_ids: list[str], seed: int) -> dict[str, str]:
    """The cross-driven setting's pairing: clip id -> the test clip whose audio drives it, a derangement (no clip
    drives itself) drawn with the seed; {} for fewer than two clips."""
    ids = sorted(clip_ids)
    if len(ids) < 2:
        return {}
    rng = np.random.default_rng([seed, 29])
    perm = rng.permutation(len(ids))
    while (perm == np.arange(len(ids))).any():  # rejection: e = 2.7 draws on average
        perm = rng.permutation(len(ids))
    return {ids[i]: ids[j] for i, j in enumerate(perm)}


def driving_audio(clip: TestClip, setting: str, others: dict[str, TestClip], pairing: dict[str, str]) -> np.ndarray:
    """float32 16 kHz audio that drives `clip` in `setting`, as long as the clip's own (cut or zero-padded)."""
    n = len(clip.audio)
    if setting == "reconstruction":
        return clip.audio
    if setting == "silent":
        return np.zeros(n, np.float32)
    if setting != "cross":
        raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
    a = others[pairing[clip.clip_id]].audio[:n]
    return np.pad(a, (0, n - len(a)))


def setting_dir(out_dir: str | os.PathLike, setting: str) -> Path:
    """Where the renders of a setting go: the reconstruction setting's in out_dir itself (the tables' videos)."""
    return Path(out_dir) if setting == "reconstruction" else Path(out_dir) / setting


def run_clips(clips: list[TestClip], render, out_dir: str | os.PathLike, index_out: str | os.PathLike,
              rejects_out: str | os.PathLike, stage: str, seed: int,
              settings: tuple[str, ...] = SETTINGS) -> list[dict]:
    """Call render(clip, setting, audio, path) for every setting and clip (the reconstruction setting first);
    failures become rows, not aborts.

    The index holds what was rendered, not how long it took (the time goes to the log), so the same
    videos give the same index bytes. The cross setting needs two clips: with one, its row says so."""

    by_id = {c.clip_id: c for c in clips}
    pairing = drivers(list(by_id), seed)
    rejects, rows = Rejects(stage), []
    for setting in settings:
        folder = setting_dir(out_dir, setting)
        folder.mkdir(parents=True, exist_ok=True)
        for clip in clips:
            path, t = folder / f"{clip.clip_id}.mp4", time.perf_counter()
            driver = {"reconstruction": clip.clip_id, "silent": ""}.get(setting, pairing.get(clip.clip_id, ""))
            row = {"clip_id": clip.clip_id, "setting": setting, "driver": driver, "status": "ok", "reason": "",
                   "video": str(path), "n_frames": 0}
            try:
                if setting == "cross" and not pairing:
                    raise ClipError("the cross-driven setting needs at least two test clips")
                row["n_frames"] = int(render(clip, setting, driving_audio(clip, setting, by_id, pairing), path))
            except ClipError as e:
                row.update(status="rejected", reason=str(e), video="")
            except Exception as e:  # one bad clip must not sink the method's run
                log.exception("unexpected failure on clip %s (%s)", clip.clip_id, setting)
                row.update(status="rejected", reason=f"unexpected {type(e).__name__}: {e}", video="")
            if row["status"] != "ok" and setting == "reconstruction":
                rejects.add(clip.clip_id, row["reason"], clip.source)
            rows.append(row)
            log.info("%s %s (%s): %s, %d frames in %.1f s", stage, clip.clip_id, setting, row["status"],
                     row["n_frames"], time.perf_counter() - t)
    write_table(index_out, pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))
    rejects.write(rejects_out)
    return rows


def infer_test_set(clips_parquet: str, resampled: list[str], checkpoint: str, out_dir: str, index_out: str,
                   rejects_out: str, params: InferParams = InferParams(), mel: MelParams = MelParams(),
                   audio: AudioParams = AudioParams(), seed: int = 0, settings: tuple[str, ...] = SETTINGS,
                   progress: bool = True) -> list[dict]:
    """Rule `infer`: every test clip in each of `settings`, with one trained generator."""

    # the silent setting renders silence on purpose (preparation has already refused silent clips)
    engine = Lipsync.from_checkpoint(checkpoint, replace(params, allow_silent=True), mel, audio)

    def render(clip: TestClip, setting: str, wav: np.ndarray, path: Path) -> int:
        return engine.run(clip.source, wav, path, track=stored_track(clip), progress=progress)["n_frames"]

    t = time.perf_counter()
    rows = run_clips(test_clips(clips_parquet, resampled), render, out_dir, index_out, rejects_out, "infer", seed,
                     settings)
    ok = [r for r in rows if r["status"] == "ok"]
    n = sum(r["n_frames"] for r in ok)
    log.info("infer %s: %d/%d renders, %d frames in %.1f s; stage timings %s", Path(out_dir).name, len(ok),
             len(rows), n, time.perf_counter() - t, {k: round(v, 1) for k, v in engine.timings.items()})
    return rows
