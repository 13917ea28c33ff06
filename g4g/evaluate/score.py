"""Score one method over a dataset's test clips (rule `evaluate`): per-frame Parquet + a summary JSON.

Per clip, frames are averaged into the clip's value; the method's value is the mean over clips (docs/design/method.md
Sec. 9), except FID, pooled over all frames of the method, and LSE, whose per-clip values are averaged.
A clip without a scorable video (not rendered, rejected, unreadable) is listed with its reason and left
out of the means; it never stops the others.

The renders of the cross-driven and silent settings (g4g.infer.testset) are scored too, with the metrics that
run there (MetricSet `setting`) and the driving audio as the clip's: the summary's `settings` holds
them, per-frame files go to {frames_out}/{setting}/. The ground truth's own video is scored under the same
driving audio: the level of a mouth that ignores it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from g4g.data.crops import warp_crop
from g4g.data.prepare import test_split_note
from g4g.data.scan import VIDEO_EXTENSIONS
from g4g.data.shards import FrameReader, write_table
from g4g.evaluate.charts import frame_strip
from g4g.evaluate.protocol import open_video
from g4g.evaluate.registry import Chunk, ClipInput, MetricSet
from g4g.infer.testset import TestClip, drivers, driving_audio, setting_dir, stored_track, test_clips
from g4g.params import SETTINGS, EvalParams
from g4g.rejects import ClipError
from g4g.tracking import log_evaluation
from g4g.utils import write_json

log = logging.getLogger(__name__)

GROUND_TRUTH = "ground_truth"  # the "method" whose video is the source itself: LSE of real videos only


def score_clip(clip: TestClip, video: str | None, metrics: MetricSet, p: EvalParams,
               setting: str = "reconstruction") -> tuple[dict, dict, list]:
    """(per-frame columns, clip summary, strip [(gt crop, video crop), ...]) of one clip's video; video None: the
    clip's own source video (ground truth)."""
    if video is None:
        idx, A, notes = clip.index_map, stored_track(clip).affine, []
    else:
        idx, A, notes = open_video(video, clip)
    n = min(len(idx), clip.n_frames)
    if abs(len(idx) - clip.n_frames) > 1:
        notes.append(f"{len(idx)} frames vs {clip.n_frames} in the ground truth: scored the first {n}")
    scored = ClipInput(clip, str(video or clip.source), idx, n, p, setting)
    accumulators, video_frames, reader = metrics.start(scored), scored.frames(), FrameReader(clip.frames_path)
    strip_at = set(np.linspace(0, n - 1, p.strip_frames).round().astype(int).tolist()) if p.strip_frames else set()
    strip = []
    for c0 in range(0, n, p.chunk_frames):
        ks = range(c0, min(n, c0 + p.chunk_frames))
        full = [next(video_frames) for _ in ks]
        crops = np.stack([warp_crop(f, A[k]) for f, k in zip(full, ks)])  # (c, 416, 320, 3)
        gt = None if video is None else np.stack([reader.get(clip.clip_id, k, ["image"])["image"] for k in ks])
        chunk = Chunk(c0, full, crops, gt)
        for a in accumulators:
            a.feed(chunk)
        strip += [(reader.get(clip.clip_id, k, ["image"])["image"], crops[k - c0]) for k in sorted(strip_at & set(ks))]
    frames = {"frame": np.arange(n, dtype=np.int32)}
    summary = {"clip_id": clip.clip_id, "n_frames": n, "video": scored.path, "notes": notes}
    for a in accumulators:
        s = a.summary()
        frames.update(s.frames)
        summary.update(s.values)
        notes += s.notes
    return frames, summary, strip


def video_of(clip: TestClip, videos_dir: str | os.PathLike, index: dict) -> tuple[str | None, str | None]:
    """(path, None) of a clip's video in videos_dir, `{clip_id}` with any video extension (an external
    method writes its own container), or (None, reason) when there is none, or several, to score."""
    row = index.get(clip.clip_id)
    if row is not None and row["status"] != "ok":
        return None, f"not rendered: {row['reason']}"
    found = sorted(p for p in Path(videos_dir).glob(f"{glob.escape(clip.clip_id)}.*")
                   if p.stem == clip.clip_id and p.suffix.lower() in VIDEO_EXTENSIONS)
    if len(found) > 1:
        return None, f"several videos for one clip in {videos_dir}: {', '.join(p.name for p in found)}"
    return (str(found[0]), None) if found else (None, f"no video {Path(videos_dir) / clip.clip_id}.*")


def note_clips(done: list[dict]) -> list[str]:
    """The clips' notes, each once, with the clips it concerns."""
    by_note: dict[str, list[str]] = defaultdict(list)
    for c in done:
        for n in c["notes"]:
            by_note[n].append(c["clip_id"])
    return [f"{n} ({', '.join(ids) if len(ids) <= 3 else f'{len(ids)} clips'})" for n, ids in by_note.items()]


def score_driven(setting: str, clips: list[TestClip], videos_dir: str | None, index_rows: list[dict],
                 frames_out: str, p: EvalParams, share: MetricSet, seed: int) -> dict:
    """One method's scores in the cross-driven or silent setting (videos_dir None: the ground truth's own video),
    with the networks of `share`: {n_videos, n_frames, metrics, notes, clips, rejects}, the keys of the
    reconstruction setting's."""
    import pyarrow as pa

    metrics = MetricSet(p, share.syncnet, share.mel, image=videos_dir is not None, setting=setting, share=share)
    pairing, by_id = drivers([c.clip_id for c in clips], seed), {c.clip_id: c for c in clips}
    rows = {r["clip_id"]: r for r in index_rows if r.get("setting") == setting}
    done, rejects = [], []
    for clip in clips:
        if setting == "cross" and not pairing:
            rejects.append({"clip_id": clip.clip_id, "reason": "the cross-driven setting needs two test clips"})
            continue
        driven = replace(clip, audio=driving_audio(clip, setting, by_id, pairing))
        video, reason = (None, None) if videos_dir is None else video_of(clip, setting_dir(videos_dir, setting), rows)
        if videos_dir is not None and video is None:
            rejects.append({"clip_id": clip.clip_id, "reason": reason})
            continue
        try:
            frames, summary, _ = score_clip(driven, video, metrics, p, setting)
        except ClipError as e:
            rejects.append({"clip_id": clip.clip_id, "reason": str(e)})
            continue
        summary["driver"] = pairing.get(clip.clip_id, "") if setting == "cross" else ""
        table = pa.Table.from_pydict(frames).replace_schema_metadata({"g4g_clip": json.dumps(summary, default=str)})
        write_table(Path(frames_out) / setting / f"{clip.clip_id}.parquet", table)
        done.append(summary)
    notes = list(metrics.notes) + note_clips(done)
    if rejects:
        notes.append(f"{len(rejects)} of {len(clips)} clips not scored: " +
                     "; ".join(f"{r['clip_id']}: {r['reason']}" for r in rejects))
    return {"n_videos": len(done), "n_frames": int(sum(c["n_frames"] for c in done)),
            "metrics": metrics.method_values(done), "notes": notes, "clips": done, "rejects": rejects}


def evaluate_method(dataset: str, method: str, clips_parquet: str, resampled: list[str], videos_dir: str | None,
                    frames_out: str, summary_out: str, strip_out: str | None = None, p: EvalParams = EvalParams(),
                    syncnet: str | None = None, index: str | None = None, tracking: dict | None = None,
                    checkpoint: str | None = None, mel=None, seed: int = 0, progress: bool = True) -> dict:
    """Score every test clip of `dataset` for `method` in every setting (seed: the cross-driven pairing, as
    rendered); write per-frame Parquet files, the summary JSON, the report strip, and one MLflow run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if method == "summary":
        raise ValueError("'summary' is reserved (results/metrics/{dataset}/summary.json); rename the method")
    image = method != GROUND_TRUTH
    metrics = MetricSet(p, syncnet, mel, image)
    index_rows = pq.read_table(index).to_pylist() if index and os.path.exists(index) else []
    rows = {r["clip_id"]: r for r in index_rows if r.get("setting", "reconstruction") == "reconstruction"}
    clips, done, rejects, strip = test_clips(clips_parquet, resampled), [], [], None
    Path(frames_out).mkdir(parents=True, exist_ok=True)
    it = clips
    if progress:
        from tqdm import tqdm

        it = tqdm(clips, desc=f"evaluate {method}", unit="clip")
    for clip in it:
        video, reason = (None, None) if not image else video_of(clip, videos_dir, rows)
        if image and video is None:
            rejects.append({"clip_id": clip.clip_id, "reason": reason})
            continue
        try:
            frames, summary, s = score_clip(clip, video, metrics, p)
        except ClipError as e:
            rejects.append({"clip_id": clip.clip_id, "reason": str(e)})
            continue
        table = pa.Table.from_pydict(frames).replace_schema_metadata({"g4g_clip": json.dumps(summary, default=str)})
        write_table(Path(frames_out) / f"{clip.clip_id}.parquet", table)
        done.append(summary)
        strip = strip if strip is not None else (clip.clip_id, s)
    notes = list(metrics.notes) + note_clips(done)
    # the driven settings where they were rendered (the full model, the baselines); the ground truth's own video
    # is scored under each driving audio
    driven = [s for s in SETTINGS[1:] if not image or setting_dir(videos_dir, s).is_dir()]
    if not image:
        notes.append("ground truth against itself: only the measures against the audio (LSE, mouth) are meaningful")
    if (split_note := test_split_note(clips_parquet)) is not None:
        notes.append(split_note)
    if rejects:
        notes.append(f"{len(rejects)} of {len(clips)} clips not scored: " +
                     "; ".join(f"{r['clip_id']}: {r['reason']}" for r in rejects))
    out = {"dataset": dataset, "method": method, "source": "this run", "n_videos": len(done),
           "n_frames": int(sum(c["n_frames"] for c in done)), "metrics": metrics.method_values(done),
           "weights": metrics.weights, "notes": notes, "clips": done, "rejects": rejects, "params": vars(p).copy(),
           "settings": {s: score_driven(s, clips, videos_dir if image else None, index_rows, frames_out, p, metrics,
                                        seed) for s in driven}}
    if strip_out:
        frame_strip(strip, strip_out, f"{dataset} / {method}")
    write_json(summary_out, out)
    out.update(log_evaluation(out, tracking, checkpoint, [summary_out] + ([strip_out] if strip_out else []),
                              clips_parquet))
    write_json(summary_out, out)  # again, with the MLflow run ids
    log.info("%s / %s: %d videos, %d frames: %s", dataset, method, out["n_videos"], out["n_frames"],
             {k: round(v, 4) for k, v in out["metrics"].items()})
    return out
