"""The `faces` stage: 68-point landmarks and the 416 x 320 face crops with their transforms, in one decode
pass per clip, packed in a Parquet frame shard.

`run_faces` is what the workflow runs; `run_landmarks` + `run_crops` do the same in two passes (kept as
tools, `g4g landmarks` / `g4g crops`; their output is byte-identical, which a test checks).
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from g4g.data import crops as cropgeo
from g4g.data.landmarks import LandmarkStream, track_landmarks
from g4g.data.shards import FrameShardWriter, column_array, encode_image, write_table
from g4g.io.video import Damage, iter_frames
from g4g.params import CropParams, VideoParams
from g4g.rejects import Rejects, guard

log = logging.getLogger(__name__)

LANDMARK_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("frame", pa.int32()), ("src_frame", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 136)), ("landmarks_raw", pa.list_(pa.float32(), 136)),
    ("detected", pa.bool_()), ("interpolated", pa.bool_()), ("n_faces", pa.int8()),
])


def landmark_clip(row: dict, lp) -> dict:
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
        cols = guard(rejects, row["clip_id"], row["path"], landmark_clip, row, lp)
        if cols is not None:
            tables.append(pa.Table.from_pydict(cols, schema=LANDMARK_SCHEMA))
    write_table(out, pa.concat_tables(tables) if tables else LANDMARK_SCHEMA.empty_table())
    rejects.write(rejects_out)


def landmark_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """One clip's landmarks-stage rows as numpy columns (Python lists of 15k x 136 floats cost 100s of MB)."""
    return {c: column_array(c, table.column(c))
            for c in ("landmarks", "landmarks_raw", "detected", "interpolated", "n_faces")}


def box_reach(geo: CropParams) -> int:
    """Frames on each side that the crop box of a frame depends on (window max, then smoothing), +1."""
    return geo.window // 2 + (int(4.0 * geo.smooth_sigma + 0.5) if geo.smooth_sigma > 0 else 0) + 1


def frame_columns(pts: np.ndarray, lo: int, a: int, b: int, lm: dict, index_map: np.ndarray,
                  geo: CropParams, width: int, height: int) -> tuple[dict, np.ndarray]:
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


def _cut_and_encode(frame, A: np.ndarray, cp: CropParams) -> bytes:
    crop = (cropgeo.warp_crop(frame, A, cp) if isinstance(frame, np.ndarray)
            else cropgeo.crop_yuv420(frame, A, cp))
    return encode_image(crop, cp.codec, cp.quality)


class _ClipRows:
    """Rows of one clip gathered into row groups: columns arrive by frame range, crops frame by frame
    (cut and encoded on `pool` threads when given; OpenCV releases the GIL, so they overlap tracking)."""

    def __init__(self, write, clip_id: str, cp: CropParams, pool=None):
        self.write, self.clip_id, self.cp, self.pool = write, clip_id, cp, pool
        self.cols: list[dict] = []
        self.images: list = []  # bytes or futures, in frame order
        self.damaged: list[bool] = []  # per image: a stand-in for a source frame that did not decode
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

    def image(self, k: int, frame: np.ndarray, damaged: bool = False) -> None:
        assert k == self.next_image < self.next_cols, "images must follow their columns, in frame order"
        self.damaged.append(damaged)
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
                    "damaged": self.damaged[:n], "image": self.images[:n]})
        rest = {k: v[n:] for k, v in cols.items()}
        self.cols = [rest] if len(rest["frame"]) else []
        self.images = self.images[n:]
        self.damaged = self.damaged[n:]
        self.resolved -= n
        self.affine = self.affine[n:]
        self.flushed += n

    def close(self) -> None:
        assert self.next_image == self.next_cols, f"{self.next_cols - self.next_image} frames have no crop"
        if self.images:
            self._flush(len(self.images))


def crop_clip(row: dict, lm: dict, cp: CropParams, writer: FrameShardWriter, pool=None,
              video: VideoParams = VideoParams()) -> int:
    """Crops of one clip from landmarks computed before (the two-pass path: `g4g crops`)."""
    pts = lm["landmarks"]  # (T, 68, 2)
    T = len(pts)
    index_map = np.asarray(row["index_map"], dtype=np.int32)
    with writer.clip() as write:
        rows = _ClipRows(write, row["clip_id"], cp, pool)
        rows.columns(*frame_columns(pts, 0, 0, T, lm, index_map, cp, row["width"], row["height"]))
        damage = Damage()
        for k, frame in iter_frames(row["path"], index_map, fmt="rgb24", raw_yuv420p=True, damage=damage,
                                    max_damaged=video.max_damaged):
            rows.image(k, frame, k in damage.lost)
        rows.close()
    return T


def face_clip(row: dict, lp, cp: CropParams, writer: FrameShardWriter, pool=None,
              video: VideoParams = VideoParams()) -> int:
    """Landmarks and crops of one clip in one decode pass (the `faces` stage).

    Decoded frames wait in a buffer until their crop box is final: tracked landmarks must be confirmed
    by the next detection, failed frames need the next detected one to be interpolated, and the box of
    frame k depends on the smoothed points of k +- `box_reach` frames. The output equals the
    two-pass `landmark_clip` + `crop_clip`. When the buffer would exceed `cp.buffer_mb` (a long run of
    frames with no face), it is dropped and the remaining crops are cut in a second decode pass.
    Frames whose source did not decode show the next one that did and are flagged `damaged`
    (g4g.io.video.iter_frames); beyond `video.max_damaged` of the clip it is rejected.
    """
    index_map = np.asarray(row["index_map"], dtype=np.int32)
    T, w, h, geo = len(index_map), row["width"], row["height"], cp
    stream = LandmarkStream(T, lp)
    R = box_reach(geo)
    need = R + stream.smooth_reach  # frames beyond the last final one before a crop box is final
    buf: dict[int, np.ndarray] = {}
    cap = None
    second_pass_from = None
    damage = Damage()  # filled by the first pass before each frame comes: complete for what was emitted

    def emit(rows: _ClipRows, upto: int) -> None:
        a = rows.next_cols
        if upto <= a:
            return
        lo, hi = max(0, a - R), min(T, upto + R)
        rows.columns(*frame_columns(stream.points(lo, hi), lo, a, upto, stream.landmark_columns(a, upto),
                                    index_map, geo, w, h))
        if second_pass_from is None:  # else the second pass brings the frames
            for k in range(a, upto):
                rows.image(k, buf.pop(k), k in damage.lost)

    with writer.clip() as write:
        rows = _ClipRows(write, row["clip_id"], cp, pool)
        for k, frame in iter_frames(row["path"], index_map, fmt="rgb24", raw_yuv420p=True, damage=damage,
                                    max_damaged=video.max_damaged):
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
            for k, frame in iter_frames(row["path"], index_map[second_pass_from:], fmt="rgb24", raw_yuv420p=True,
                                        max_damaged=1.0):  # the first pass judged the damage
                rows.image(second_pass_from + k, frame, second_pass_from + k in damage.lost)
        rows.close()
    return T


def run_crops(resampled: str, landmarks: str, out: str, rejects_out: str, cp: CropParams,
              video: VideoParams = VideoParams()) -> None:
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
            n += guard(rejects, row["clip_id"], row["path"], crop_clip, row, lm_by_clip, cp, writer, pool,
                       video) or 0
    log.info("crops: %d frames in %.1f s", n, time.time() - t0)
    rejects.write(rejects_out)


def run_faces(resampled: str, out: str, rejects_out: str, lp, cp: CropParams,
              video: VideoParams = VideoParams()) -> None:
    """The `faces` stage of one shard: landmarks + crops in one decode pass per clip (see face_clip)."""
    rows = pq.read_table(resampled, columns=["clip_id", "path", "index_map", "width", "height"]).to_pylist()
    rejects = Rejects("faces")
    t0, n = time.time(), 0
    with FrameShardWriter(out, _shard_meta(cp, lp), cp.row_group_frames) as writer, crop_pool(cp) as pool:
        for row in tqdm(rows, desc="faces", unit="clip"):
            n += guard(rejects, row["clip_id"], row["path"], face_clip, row, lp, cp, writer, pool, video) or 0
    dt = time.time() - t0
    log.info("faces: %d frames of %d clips in %.1f s (%.1f frames/s)", n, len(rows), dt, n / max(dt, 1e-9))
    rejects.write(rejects_out)


def _shard_meta(cp: CropParams, lp=None) -> dict:
    g = cp
    meta = {"crop": {"height": cropgeo.CROP_H, "width": cropgeo.CROP_W, "scale": g.scale, "window": g.window,
                     "smooth_sigma": g.smooth_sigma}, "codec": cp.codec, "quality": cp.quality}
    if lp is not None:
        meta["landmarks"] = asdict(lp)
    return meta


def crop_pool(cp: CropParams):
    return ThreadPoolExecutor(cp.workers, thread_name_prefix="crop") if cp.workers > 0 else contextlib.nullcontext()
