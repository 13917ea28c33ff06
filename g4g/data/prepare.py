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
        rejects.add(cid, str(e), path, stage=e.stage)
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
    buffer_mb: int = 512  # single pass: decoded frames waiting for their crop transform (see face_clip)
    workers: int = 1  # threads that cut and encode crops while the main thread tracks landmarks


def landmark_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """One clip's landmarks-stage rows as numpy columns (Python lists of 15k x 136 floats cost 100s of MB)."""
    return {c: column_array(c, table.column(c))
            for c in ("landmarks", "landmarks_raw", "detected", "interpolated", "n_faces")}


def box_reach(geo: cropgeo.CropParams) -> int:
    """Frames on each side that the crop box of a frame depends on (window max, then smoothing), +1."""
    return geo.window // 2 + (int(4.0 * geo.smooth_sigma + 0.5) if geo.smooth_sigma > 0 else 0) + 1


def frame_columns(pts: np.ndarray, lo: int, a: int, b: int, lm: dict, index_map: np.ndarray,
                  geo: cropgeo.CropParams, width: int, height: int) -> tuple[dict, np.ndarray]:
    """Shard columns (all but clip_id and image) of frames [a, b) and their (b - a, 2, 3) float64 crop
    affines, from the smoothed points `pts` of frames [lo, lo + len(pts)).

    The boxes are exact (equal to a whole-clip computation) when [lo, hi) extends `box_reach` frames
    beyond [a, b) on each side or reaches the clip's end there. `lm` holds the per-frame landmark
    columns of [a, b): landmarks_raw (NaN where not detected), detected, n_faces.
    """
    boxes = cropgeo.crop_boxes(pts, geo)[a - lo:b - lo]
    A = cropgeo.box_to_affine(boxes, geo)
    P = pts[a - lo:b - lo]
    return {"frame": np.arange(a, b, dtype=np.int32), "src_frame": index_map[a:b],
            "landmarks": P.reshape(-1, 136), "landmarks_raw": lm["landmarks_raw"].reshape(-1, 136),
            "crop_landmarks": cropgeo.apply_affine(A, P).astype(np.float32).reshape(-1, 136),
            "detected": lm["detected"], "interpolated": ~lm["detected"], "n_faces": lm["n_faces"],
            "affine": A.reshape(-1, 6).astype(np.float32),
            "box_outside": cropgeo.box_outside(boxes, width, height)}, A


def _cut_and_encode(frame, A: np.ndarray, cp: CropStageParams) -> bytes:
    crop = (cropgeo.warp_crop(frame, A, cp.geometry) if isinstance(frame, np.ndarray)
            else cropgeo.crop_yuv420(frame, A, cp.geometry))
    return encode_image(crop, cp.codec, cp.quality)


class _ClipRows:
    """Rows of one clip gathered into row groups: columns arrive by frame range, crops frame by frame
    (cut and encoded on `pool` threads when given; OpenCV releases the GIL, so they overlap tracking)."""

    def __init__(self, write, clip_id: str, cp: CropStageParams, pool=None):
        self.write, self.clip_id, self.cp, self.pool = write, clip_id, cp, pool
        self.cols: list[dict] = []
        self.images: list = []  # bytes or futures, in frame order
        self.next_cols = self.next_image = self.flushed = 0
        self.resolved = 0  # leading entries of `images` that are bytes
        self.in_flight = 4 * cp.workers + 4
        self.affine = np.zeros((0, 2, 3))

    def columns(self, cols: dict, A: np.ndarray) -> None:
        """Columns of the next frames (see frame_columns) and their float64 crop affines."""
        n = len(cols["frame"])
        if not n:
            return
        assert cols["frame"][0] == self.next_cols, "columns must arrive in frame order"
        self.cols.append(cols)
        self.affine = np.concatenate([self.affine, A])
        self.next_cols += n

    def image(self, k: int, frame: np.ndarray) -> None:
        assert k == self.next_image < self.next_cols, "images must follow their columns, in frame order"
        A = self.affine[k - self.flushed]
        if self.pool is None:
            self.images.append(_cut_and_encode(frame, A, self.cp))
            self.resolved += 1
        else:
            self.images.append(self.pool.submit(_cut_and_encode, frame, A, self.cp))
            self._resolve(len(self.images) - self.in_flight)  # bounds the decoded frames held by the pool
        self.next_image += 1
        if len(self.images) >= self.cp.row_group_frames:
            self._flush(self.cp.row_group_frames)

    def _resolve(self, n: int) -> None:
        for i in range(self.resolved, n):
            self.images[i] = self.images[i].result()
        self.resolved = max(self.resolved, n)

    def _flush(self, n: int) -> None:
        self._resolve(n)
        cols = {k: np.concatenate([c[k] for c in self.cols]) for k in self.cols[0]}
        head = {k: v[:n] for k, v in cols.items()}
        self.write({"clip_id": [self.clip_id] * n, **{k: (list(v) if v.ndim == 2 else v) for k, v in head.items()},
                    "image": self.images[:n]})
        rest = {k: v[n:] for k, v in cols.items()}
        self.cols = [rest] if len(rest["frame"]) else []
        self.images = self.images[n:]
        self.resolved -= n
        self.affine = self.affine[n:]
        self.flushed += n

    def close(self) -> None:
        assert self.next_image == self.next_cols, f"{self.next_cols - self.next_image} frames have no crop"
        if self.images:
            self._flush(len(self.images))


def crop_clip(row: dict, lm: dict, cp: CropStageParams, writer: FrameShardWriter, pool=None) -> int:
    """Crops of one clip from landmarks computed before (the two-pass path: `g4g crops`)."""
    from g4g.io.video import iter_frames

    pts = lm["landmarks"]  # (T, 68, 2)
    T = len(pts)
    index_map = np.asarray(row["index_map"], dtype=np.int32)
    with writer.clip() as write:
        rows = _ClipRows(write, row["clip_id"], cp, pool)
        rows.columns(*frame_columns(pts, 0, 0, T, lm, index_map, cp.geometry, row["width"], row["height"]))
        for k, frame in iter_frames(row["path"], index_map, fmt="rgb24", raw_yuv420p=True):
            rows.image(k, frame)
        rows.close()
    return T


def face_clip(row: dict, lp, cp: CropStageParams, writer: FrameShardWriter, pool=None) -> int:
    """Landmarks and crops of one clip in one decode pass (the `faces` stage).

    Decoded frames wait in a buffer until their crop box is final: tracked landmarks must be confirmed
    by the next detection, failed frames need the next detected one to be interpolated, and the box of
    frame k depends on the smoothed points of k +- `box_reach` frames. The output equals the
    two-pass `landmark_clip` + `crop_clip`. When the buffer would exceed `cp.buffer_mb` (a long run of
    frames with no face), it is dropped and the remaining crops are cut in a second decode pass.
    """
    from g4g.data.landmarks import LandmarkStream
    from g4g.io.video import iter_frames

    index_map = np.asarray(row["index_map"], dtype=np.int32)
    T, w, h, geo = len(index_map), row["width"], row["height"], cp.geometry
    stream = LandmarkStream(T, lp)
    R = box_reach(geo)
    need = R + stream.smooth_reach  # frames beyond the last final one before a crop box is final
    buf: dict[int, np.ndarray] = {}
    cap = None
    second_pass_from = None

    def emit(rows: _ClipRows, upto: int) -> None:
        a = rows.next_cols
        if upto <= a:
            return
        lo, hi = max(0, a - R), min(T, upto + R)
        rows.columns(*frame_columns(stream.points(lo, hi), lo, a, upto, stream.landmark_columns(a, upto),
                                    index_map, geo, w, h))
        if second_pass_from is None:  # else the second pass brings the frames
            for k in range(a, upto):
                rows.image(k, buf.pop(k))

    with writer.clip() as write:
        rows = _ClipRows(write, row["clip_id"], cp, pool)
        for k, frame in iter_frames(row["path"], index_map, fmt="rgb24", raw_yuv420p=True):
            stream.push(k, frame)  # a repeated source frame comes as the same object: reused
            if second_pass_from is not None:
                continue
            buf[k] = frame
            if cap is None:
                cap = max(need + 16, int(cp.buffer_mb * 2 ** 20 // max(frame.nbytes, 1)))
            if k % 4 == 3:
                emit(rows, min(stream.final_until() - need, k + 1))
            if len(buf) > cap:
                second_pass_from = rows.next_cols
                buf.clear()
                log.info("%s: no final crop box for %d buffered frames (no face for long?); frames from "
                         "%d are cropped in a second decode pass", row["clip_id"], cap, second_pass_from)
        stream.finish()  # raises ClipError when too few frames show a face: the clip leaves no rows
        emit(rows, T)
        if second_pass_from is not None:  # iter_frames skips the earlier source frames without converting them
            for k, frame in iter_frames(row["path"], index_map[second_pass_from:], fmt="rgb24", raw_yuv420p=True):
                rows.image(second_pass_from + k, frame)
        rows.close()
    return T


def run_crops(resampled: str, landmarks: str, out: str, rejects_out: str, cp: CropStageParams) -> None:
    rows = pq.read_table(resampled, columns=["clip_id", "path", "index_map", "width", "height"]).to_pylist()
    lm_table = pq.read_table(landmarks)
    clip_col = lm_table.column("clip_id").to_numpy(zero_copy_only=False)
    rejects = Rejects("crops")
    t0, n = time.time(), 0
    with FrameShardWriter(out, _shard_meta(cp), cp.row_group_frames) as writer, crop_pool(cp) as pool:
        for row in tqdm(rows, desc="crops", unit="clip"):
            sel = np.flatnonzero(clip_col == row["clip_id"])
            if len(sel) == 0:
                continue  # rejected at the landmarks stage, already recorded there
            lm_by_clip = landmark_arrays(lm_table.take(sel))
            n += _guard(rejects, row["clip_id"], row["path"], crop_clip, row, lm_by_clip, cp, writer, pool) or 0
    log.info("crops: %d frames in %.1f s", n, time.time() - t0)
    rejects.write(rejects_out)


def run_faces(resampled: str, out: str, rejects_out: str, lp, cp: CropStageParams) -> None:
    """The `faces` stage of one shard: landmarks + crops in one decode pass per clip (see face_clip)."""
    rows = pq.read_table(resampled, columns=["clip_id", "path", "index_map", "width", "height"]).to_pylist()
    rejects = Rejects("faces")
    t0, n = time.time(), 0
    with FrameShardWriter(out, _shard_meta(cp, lp), cp.row_group_frames) as writer, crop_pool(cp) as pool:
        for row in tqdm(rows, desc="faces", unit="clip"):
            n += _guard(rejects, row["clip_id"], row["path"], face_clip, row, lp, cp, writer, pool) or 0
    dt = time.time() - t0
    log.info("faces: %d frames of %d clips in %.1f s (%.1f frames/s)", n, len(rows), dt, n / max(dt, 1e-9))
    rejects.write(rejects_out)


def _shard_meta(cp: CropStageParams, lp=None) -> dict:
    g = cp.geometry
    meta = {"crop": {"height": g.height, "width": g.width, "scale": g.scale, "window": g.window,
                     "smooth_sigma": g.smooth_sigma}, "codec": cp.codec, "quality": cp.quality}
    if lp is not None:
        from dataclasses import asdict

        meta["landmarks"] = asdict(lp)
    return meta


def crop_pool(cp: CropStageParams):
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(cp.workers, thread_name_prefix="crop") if cp.workers > 0 else contextlib.nullcontext()


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
