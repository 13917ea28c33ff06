"""Score one method over a dataset's test clips (rule `evaluate`): per-frame Parquet + a summary JSON.

Per clip, frames are averaged into the clip's value; the method's value is the mean over clips (docs/design/method.md
Sec. 9), except FID, pooled over all frames of the method, and LSE, whose per-clip values are averaged.
A clip without a scorable video (not rendered, rejected, unreadable) is listed with its reason and left
out of the means; it never stops the others.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from g4g.data.crops import warp_crop
from g4g.data.prepare import test_split_note
from g4g.data.scan import VIDEO_EXTENSIONS
from g4g.data.shards import FrameReader, write_table
from g4g.evaluate.charts import frame_strip
from g4g.evaluate.protocol import (
    COLUMNS,
    FULL,
    IMAGE,
    LSE_LANDMARK,
    LSE_OWN,
    LSE_TRACKS,
    ChunkedLSE,
    Metrics,
    TrackedLSE,
    build_metrics,
    open_video,
)
from g4g.infer.testset import TestClip, stored_track, test_clips
from g4g.io.video import iter_frames
from g4g.metrics.fid import ActivationStats, fid_from_stats
from g4g.metrics.image import image_metrics
from g4g.params import EvalParams
from g4g.rejects import ClipError
from g4g.tracking import log_evaluation
from g4g.utils import resolve_device, write_json

log = logging.getLogger(__name__)

GROUND_TRUTH = "ground_truth"  # the "method" whose video is the source itself: LSE of real videos only


def _frames(path, idx, n: int):

    for _, f in iter_frames(path, idx[:n]):
        yield f


def score_clip(clip: TestClip, video: str | None, m: Metrics, p: EvalParams, fid_stats: dict | None,
               image: bool = True) -> tuple[dict, dict, list]:
    """(per-frame columns, clip summary, strip [(gt crop, video crop), ...]) of one clip's video.

    video None: the clip's own source video (ground truth). fid_stats: {'gen', 'gt'} ActivationStats to
    update in place.
    """
    import cv2

    device = resolve_device(p.device)  # once per clip, not per chunk
    dtype = _dtype(p, device)
    if video is None:
        idx, A, notes = clip.index_map, stored_track(clip).affine, []
    else:
        idx, A, notes = open_video(video, clip)
    n = min(len(idx), clip.n_frames)
    if abs(len(idx) - clip.n_frames) > 1:
        notes.append(f"{len(idx)} frames vs {clip.n_frames} in the ground truth: scored the first {n}")
    gen_it = _frames(video or clip.source, idx, n)
    gt_it = _frames(clip.source, clip.index_map, n) if image and p.full_frame else None
    reader = FrameReader(clip.frames_path)
    lse = {cols: ChunkedLSE(net, n, clip.audio, p.batch_size)
           for cols, net in ((LSE_LANDMARK, m.sync), (LSE_OWN, m.own_sync)) if net is not None}
    tracked = TrackedLSE(m.sync, m.faces, n, clip.audio, p.batch_size) if m.sync is not None else None
    strip_at = set(np.linspace(0, n - 1, p.strip_frames).round().astype(int).tolist()) if p.strip_frames else set()
    per, strip = defaultdict(list), []
    for c0 in range(0, n, p.chunk_frames):
        c1 = min(n, c0 + p.chunk_frames)
        full = [next(gen_it) for _ in range(c0, c1)]
        if tracked is not None:  # boxes on the video's own frames, before any resizing below
            tracked.feed(full)
        crops = np.stack([warp_crop(f, A[k]) for f, k in zip(full, range(c0, c1))])  # (c, 416, 320, 3)
        if image:
            gt = np.stack([reader.get(clip.clip_id, k, ["image"])["image"] for k in range(c0, c1)])
            for name, v in image_metrics(crops, gt, device=device, dtype=dtype).items():
                per[name].append(v)
            if m.lpips is not None:
                per["lpips"].append(m.lpips.frames(crops, gt, batch_size=p.batch_size))
            if m.fid is not None:
                fid_stats["gen"].update(m.fid.activations(crops, p.batch_size))
                fid_stats["gt"].update(m.fid.activations(gt, p.batch_size))
            if gt_it is not None:
                gt_full = [next(gt_it) for _ in range(c0, c1)]
                if full[0].shape != gt_full[0].shape:  # another output size: compare at the source size
                    full = [cv2.resize(f, gt_full[0].shape[1::-1], interpolation=cv2.INTER_AREA) for f in full]
                for i in range(0, len(full), 4):  # 4 full frames per call bounds memory at 1080p
                    for name, v in image_metrics(np.stack(full[i:i + 4]), np.stack(gt_full[i:i + 4]),
                                                 device=device, dtype=dtype).items():
                        per[f"{name}_full"].append(v)
        for ch in lse.values():
            ch.feed(crops, c0)
        for k in sorted(strip_at & set(range(c0, c1))):
            strip.append((reader.get(clip.clip_id, k, ["image"])["image"], crops[k - c0]))
    frames = {"frame": np.arange(n, dtype=np.int32), **{k: np.concatenate(v) for k, v in per.items()}}
    summary = {"clip_id": clip.clip_id, "n_frames": n, "video": str(video or clip.source), "notes": notes}
    keys = ("psnr", "ssim", "mse", "lpips", "psnr_full", "ssim_full", "mse_full")
    for col, key in zip(IMAGE + ("LPIPS",) + FULL, keys):
        if key in frames:
            summary[col] = float(np.mean(frames[key]))
    for cols, ch in lse.items():
        try:
            r = ch.result(p.lse_vshift)
        except ClipError as e:  # too short for a sync window: the image metrics still count
            notes.append(f"{cols[0]}: {e}")
            continue
        summary.update({cols[0]: r.lse_d, cols[1]: r.lse_c, f"{cols[0]} offset": r.offset})
        dist = np.full(n, np.nan)
        dist[:r.n_windows] = r.window_dists
        frames["sync_dist" + ("_own" if cols == LSE_OWN else "")] = dist  # at each window's first frame
    if tracked is not None:
        try:
            values, frames["sync_dist_tracks"], track_notes = tracked.result(_frames(video or clip.source, idx, n),
                                                                             p.lse_vshift)
            summary.update(values)
            notes += track_notes
        except ClipError as e:
            notes.append(f"{LSE_TRACKS[0]}, {LSE_TRACKS[1]}: {e}")
    return frames, summary, strip


def _dtype(p: EvalParams, device):
    """float64 on CUDA; on CPU float32 (torch's float64 depthwise convolutions are ~10x slower there;
    SSIM moves by < 1e-7, PSNR by < 1e-5 dB)."""
    import torch

    if p.image_dtype != "auto":
        return getattr(torch, p.image_dtype)
    return torch.float64 if device.type == "cuda" else torch.float32


def video_of(clip: TestClip, videos_dir: str | None, index: dict) -> tuple[str | None, str | None]:
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


def aggregate(clips: list[dict], fid_stats: dict | None) -> dict:
    """Method values: the mean over clips of each column (FID pooled)."""

    out = {}
    for col in COLUMNS:
        vals = [c[col] for c in clips if col in c]
        if vals:
            out[col] = float(np.mean(vals))
    if fid_stats is not None and min(fid_stats["gen"].n, fid_stats["gt"].n) >= 2:
        out["FID"] = fid_from_stats(fid_stats["gen"], fid_stats["gt"])
    return out


def evaluate_method(dataset: str, method: str, clips_parquet: str, resampled: list[str], videos_dir: str | None,
                    frames_out: str, summary_out: str, strip_out: str | None = None, p: EvalParams = EvalParams(),
                    syncnet: str | None = None, index: str | None = None, tracking: dict | None = None,
                    checkpoint: str | None = None, mel=None, progress: bool = True) -> dict:
    """Score every test clip of `dataset` for `method`; write per-frame Parquet files, the summary JSON,
    the report strip, and one MLflow run."""
    import pyarrow as pa
    import pyarrow.parquet as pq


    if method == "summary":
        raise ValueError("'summary' is reserved (results/metrics/{dataset}/summary.json); rename the method")
    image = method != GROUND_TRUTH
    m = build_metrics(p, syncnet, image=image, mel=mel)
    fid_stats = {"gen": ActivationStats(m.fid.dims), "gt": ActivationStats(m.fid.dims)} if m.fid is not None else None
    rows = {r["clip_id"]: r for r in pq.read_table(index).to_pylist()} if index and os.path.exists(index) else {}
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
            frames, summary, s = score_clip(clip, video, m, p, fid_stats, image)
        except ClipError as e:
            rejects.append({"clip_id": clip.clip_id, "reason": str(e)})
            continue
        table = pa.Table.from_pydict(frames).replace_schema_metadata({"g4g_clip": json.dumps(summary, default=str)})
        write_table(Path(frames_out) / f"{clip.clip_id}.parquet", table)
        done.append(summary)
        strip = strip if strip is not None else (clip.clip_id, s)
    notes = list(m.notes)
    if not image:
        notes.append("ground truth against itself: only LSE is meaningful")
    by_note: dict[str, list[str]] = defaultdict(list)
    for c in done:
        for n in c["notes"]:
            by_note[n].append(c["clip_id"])
    notes += [f"{n} ({', '.join(ids) if len(ids) <= 3 else f'{len(ids)} clips'})" for n, ids in by_note.items()]
    if (split_note := test_split_note(clips_parquet)) is not None:
        notes.append(split_note)
    if rejects:
        notes.append(f"{len(rejects)} of {len(clips)} clips not scored: " +
                     "; ".join(f"{r['clip_id']}: {r['reason']}" for r in rejects))
    out = {"dataset": dataset, "method": method, "source": "this run", "n_videos": len(done),
           "n_frames": int(sum(c["n_frames"] for c in done)), "metrics": aggregate(done, fid_stats),
           "weights": m.weights, "notes": notes, "clips": done, "rejects": rejects, "params": vars(p).copy()}
    if strip_out:

        frame_strip(strip, strip_out, f"{dataset} / {method}")

    write_json(summary_out, out)
    out.update(log_evaluation(out, tracking, checkpoint, [summary_out] + ([strip_out] if strip_out else []),
                              clips_parquet))
    write_json(summary_out, out)  # again, with the MLflow run ids
    log.info("%s / %s: %d videos, %d frames: %s", dataset, method, out["n_videos"], out["n_frames"],
             {k: round(v, 4) for k, v in out["metrics"].items()})
    return out
