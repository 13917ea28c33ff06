"""Shard-level drivers of the preparation stages: resample -> landmarks -> crops, and mels.

Each `run_*` function processes the clips of one shard, catches failures per clip (recorded in the
stage's rejects file, never aborting the shard), and writes its outputs atomically. The Snakemake
rules call them through the `g4g` command line (see g4g/cli.py and workflow/rules/).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from g4g.data import crops as cropgeo
from g4g.data.mels import MelParams, melspectrogram
from g4g.data.shards import FrameShardWriter, column_array, encode_image, mel_row, write_mels, write_table
from g4g.rejects import ClipError, Rejects, read_rejects, write_rejects

log = logging.getLogger(__name__)

RESAMPLED_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("path", pa.string()), ("split", pa.string()),
    ("src_fps", pa.float64()), ("variable_rate", pa.bool_()), ("rotation", pa.int16()),
    ("width", pa.int32()), ("height", pa.int32()), ("n_frames", pa.int32()),
    ("index_map", pa.list_(pa.int32())),  # source frame shown at each 25 fps frame
    ("audio_pcm16", pa.binary()),  # 16 kHz mono little-endian int16
    ("audio_seconds", pa.float64()), ("audio_dbfs", pa.float32()), ("audio_silent", pa.bool_()),
])

LANDMARK_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("frame", pa.int32()), ("src_frame", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 136)), ("landmarks_raw", pa.list_(pa.float32(), 136)),
    ("detected", pa.bool_()), ("interpolated", pa.bool_()), ("n_faces", pa.int8()),
])


@dataclass(frozen=True)
class StageParams:
    fps: float = 25.0
    min_frames: int = 5  # shorter clips cannot give one 5-frame window
    sample_rate: int = 16000
    silence_dbfs: float = -60.0
    reject_silent: bool = True


def _clips_of(table: pa.Table, shard: str | None = None) -> list[dict]:
    rows = table.to_pylist()
    return [r for r in rows if shard is None or r.get("shard") == shard]


def _guard(rejects: Rejects, cid: str, path: str, fn, *args, **kw):
    """Run fn for one clip; a failure becomes a rejects row (with the reason) instead of an abort."""
    try:
        return fn(*args, **kw)
    except ClipError as e:
        rejects.add(cid, str(e), path)
    except Exception as e:  # noqa: BLE001 - last resort: a bug on one clip must not sink the run
        log.exception("unexpected failure on clip %s", cid)
        rejects.add(cid, f"unexpected {type(e).__name__}: {e}", path)
    return None


# ----------------------------------------------------------------------------------------------
# resample: 25 fps frame map + 16 kHz mono audio (no re-encode of the video, see docs/decisions.md)
# ----------------------------------------------------------------------------------------------

def resample_clip(row: dict, p: StageParams) -> dict:
    from g4g.io.audio import level_dbfs, load_audio
    from g4g.io.video import frame_times, resample_index

    times = frame_times(row["path"])
    step = 1.0 / row["fps"] if row["fps"] else 1.0 / p.fps
    duration = float(times[-1] + step)
    index_map = resample_index(times, p.fps, duration)
    if len(index_map) < p.min_frames:
        raise ClipError(f"too short: {len(index_map)} frames at {p.fps:g} fps (< {p.min_frames})")
    if not row["has_audio"]:
        raise ClipError("no audio stream")
    audio = load_audio(row["path"], p.sample_rate)
    dbfs = level_dbfs(audio)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    return {"clip_id": row["clip_id"], "path": row["path"], "split": row["split"],
            "src_fps": row["fps"], "variable_rate": row["variable_rate"], "rotation": row["rotation"],
            "width": row["width"], "height": row["height"], "n_frames": len(index_map),
            "index_map": index_map.tolist(), "audio_pcm16": pcm.tobytes(),
            "audio_seconds": len(audio) / p.sample_rate, "audio_dbfs": dbfs,
            "audio_silent": dbfs < p.silence_dbfs}


def run_resample(manifest: str, shard: str, out: str, rejects_out: str, p: StageParams) -> None:
    rows = [r for r in _clips_of(pq.read_table(manifest), shard) if r["ok"]]  # scan rejects are recorded
    rejects = Rejects("resample")
    done = [r for row in tqdm(rows, desc=f"resample {shard}", unit="clip")
            if (r := _guard(rejects, row["clip_id"], row["path"], resample_clip, row, p)) is not None]
    write_table(out, pa.Table.from_pylist(done, schema=RESAMPLED_SCHEMA))
    rejects.write(rejects_out)


# ----------------------------------------------------------------------------------------------
# landmarks
# ----------------------------------------------------------------------------------------------

def landmark_clip(row: dict, lp) -> dict:
    from g4g.data.landmarks import track_landmarks

    index_map = np.asarray(row["index_map"], dtype=np.int32)
    tr = track_landmarks(row["path"], index_map, lp)
    T = len(index_map)
    return {"clip_id": [row["clip_id"]] * T, "frame": np.arange(T, dtype=np.int32), "src_frame": index_map,
            "landmarks": list(tr.points.reshape(T, 136).astype(np.float32)),
            "landmarks_raw": list(tr.raw.reshape(T, 136).astype(np.float32)),
            "detected": tr.detected, "interpolated": tr.interpolated, "n_faces": tr.n_faces}


def run_landmarks(resampled: str, out: str, rejects_out: str, lp) -> None:
    rows = pq.read_table(resampled, columns=["clip_id", "path", "index_map"]).to_pylist()
    rejects = Rejects("landmarks")
    tables = []
    for row in tqdm(rows, desc="landmarks", unit="clip"):
        cols = _guard(rejects, row["clip_id"], row["path"], landmark_clip, row, lp)
        if cols is not None:
            tables.append(pa.Table.from_pydict(cols, schema=LANDMARK_SCHEMA))
    write_table(out, pa.concat_tables(tables) if tables else LANDMARK_SCHEMA.empty_table())
    rejects.write(rejects_out)


# ----------------------------------------------------------------------------------------------
# crops
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropStageParams:
    geometry: cropgeo.CropParams = cropgeo.CropParams()
    codec: str = "jpeg"
    quality: int = 95
    row_group_frames: int = 250


def landmark_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """One clip's landmarks-stage rows as numpy columns (Python lists of 15k x 136 floats cost 100s of MB)."""
    return {c: column_array(c, table.column(c))
            for c in ("landmarks", "landmarks_raw", "detected", "interpolated", "n_faces")}


def crop_clip(row: dict, lm: dict, cp: CropStageParams, writer: FrameShardWriter) -> int:
    """Crops of one clip, streamed: frames are decoded once and written row group by row group."""
    from g4g.io.video import iter_frames

    pts = lm["landmarks"]  # (T, 68, 2)
    T = len(pts)
    boxes = cropgeo.crop_boxes(pts, cp.geometry)
    A = cropgeo.box_to_affine(boxes, cp.geometry)
    outside = cropgeo.box_outside(boxes, row["width"], row["height"])
    crop_pts = cropgeo.apply_affine(A, pts).astype(np.float32)
    index_map = np.asarray(row["index_map"], dtype=np.int32)
    w, h, G = row["width"], row["height"], cp.row_group_frames
    with writer.clip() as write:
        images = []
        for k, frame in iter_frames(row["path"], index_map, fmt="rgb24", raw_yuv420p=True):
            crop = (cropgeo.crop_yuv420(frame, w, h, A[k], cp.geometry) if frame.ndim == 2
                    else cropgeo.warp_crop(frame, A[k], cp.geometry))
            images.append(encode_image(crop, cp.codec, cp.quality))
            if len(images) == G or k == T - 1:
                s = slice(k + 1 - len(images), k + 1)
                write({"clip_id": [row["clip_id"]] * len(images), "frame": np.arange(T, dtype=np.int32)[s],
                       "src_frame": index_map[s], "landmarks": list(pts[s].reshape(-1, 136)),
                       "landmarks_raw": list(lm["landmarks_raw"][s].reshape(-1, 136)),
                       "crop_landmarks": list(crop_pts[s].reshape(-1, 136)), "detected": lm["detected"][s],
                       "interpolated": lm["interpolated"][s], "n_faces": lm["n_faces"][s],
                       "affine": list(A[s].reshape(-1, 6).astype(np.float32)), "box_outside": outside[s],
                       "image": images})
                images = []
    return T


def run_crops(resampled: str, landmarks: str, out: str, rejects_out: str, cp: CropStageParams) -> None:
    rows = pq.read_table(resampled, columns=["clip_id", "path", "index_map", "width", "height"]).to_pylist()
    lm_table = pq.read_table(landmarks)
    clip_col = lm_table.column("clip_id").to_numpy(zero_copy_only=False)
    rejects = Rejects("crops")
    meta = {"crop": {"height": cp.geometry.height, "width": cp.geometry.width, "scale": cp.geometry.scale,
                     "window": cp.geometry.window, "smooth_sigma": cp.geometry.smooth_sigma},
            "codec": cp.codec, "quality": cp.quality}
    t0, n = time.time(), 0
    with FrameShardWriter(out, meta, cp.row_group_frames) as writer:
        for row in tqdm(rows, desc="crops", unit="clip"):
            sel = np.flatnonzero(clip_col == row["clip_id"])
            if len(sel) == 0:
                continue  # rejected at the landmarks stage, already recorded there
            lm_by_clip = landmark_arrays(lm_table.take(sel))
            n += _guard(rejects, row["clip_id"], row["path"], crop_clip, row, lm_by_clip, cp, writer) or 0
    log.info("crops: %d frames in %.1f s", n, time.time() - t0)
    rejects.write(rejects_out)


# ----------------------------------------------------------------------------------------------
# mels
# ----------------------------------------------------------------------------------------------

def mel_clip(row: dict, mp: MelParams, p: StageParams) -> dict:
    if row["audio_silent"] and p.reject_silent:
        raise ClipError(f"audio is silent ({row['audio_dbfs']:.1f} dBFS < {p.silence_dbfs:g}): "
                        f"nothing to learn lip sync from")
    audio = np.frombuffer(row["audio_pcm16"], dtype="<i2").astype(np.float32) / 32768.0
    return mel_row(row["clip_id"], row["n_frames"], melspectrogram(audio, mp), row["audio_dbfs"])


def run_mels(resampled: str, out: str, rejects_out: str, mp: MelParams, p: StageParams) -> None:
    rows = pq.read_table(resampled, columns=["clip_id", "path", "n_frames", "audio_pcm16", "audio_dbfs",
                                             "audio_silent"]).to_pylist()
    rejects = Rejects("mels")
    done = [r for row in tqdm(rows, desc="mels", unit="clip")
            if (r := _guard(rejects, row["clip_id"], row["path"], mel_clip, row, mp, p)) is not None]
    write_mels(out, done)
    rejects.write(rejects_out)


# ----------------------------------------------------------------------------------------------
# summary: merged rejects + the index of clips that made it through every stage
# ----------------------------------------------------------------------------------------------

CLIPS_SCHEMA = pa.schema([("clip_id", pa.string()), ("split", pa.string()), ("shard", pa.string()),
                          ("n_frames", pa.int32()), ("frames_path", pa.string()), ("mels_path", pa.string())])


def run_summary(manifest: str, frames: list[str], mels: list[str], rejects_in: list[str],
                clips_out: str, rejects_out: str, summary_out: str) -> dict:
    from g4g.data.shards import FrameReader, MelReader
    from g4g.utils import write_json

    man = {r["clip_id"]: r for r in pq.read_table(manifest).to_pylist()}
    rej = read_rejects(rejects_in)
    write_rejects(rej.to_pylist(), rejects_out)
    rows = []
    for fpath, mpath in zip(sorted(frames), sorted(mels)):
        fr, mr = FrameReader(fpath), set(MelReader(mpath).clip_ids)
        for cid in fr.clip_ids:
            if cid in mr:
                rows.append({"clip_id": cid, "split": man[cid]["split"], "shard": man[cid]["shard"],
                             "n_frames": fr.n_frames(cid), "frames_path": fpath, "mels_path": mpath})
    write_table(clips_out, pa.Table.from_pylist(rows, schema=CLIPS_SCHEMA))
    by_stage: dict[str, int] = {}
    for r in rej.to_pylist():
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + 1
    summary = {"clips_listed": len(man), "clips_ready": len(rows),
               "frames_ready": int(sum(r["n_frames"] for r in rows)),
               "ready_by_split": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
               "rejected_by_stage": by_stage}
    write_json(summary_out, summary)
    return summary
