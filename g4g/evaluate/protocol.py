"""The frozen evaluation protocol (docs/design/method.md Sec. 9): one clip's video against its ground truth.

Any method's video (ours, a baseline, an external method's own output) is read at 25 fps and re-cropped
with the SAME stored crop transforms the ground-truth test crops were cut with, so every method is
scored on identical 416 x 320 face regions:
    PSNR, SSIM, MSE      per frame on the face crops ([0, 1] RGB; SSIM Gaussian window), and on the
                         full frames as extra columns
    LPIPS                AlexNet, per frame on the face crops
    FID                  Inception activations of the face crops, pooled over all frames of a method
    LSE-D / LSE-C        official SyncNet on the video framed as syncnet_python frames it: S3FD face
                         tracks, its square crop (g4g.metrics.lse_framing), per-track scores averaged
                         per clip; the published scale (Wav2Lip's scripts run this pipeline)
    LSE (landmark crop)  official SyncNet on the stored 416 x 320 crops padded to a square
    LSE (own SyncNet)    the project's sync expert on those crops, only where params allow the surrogate
A metric whose weights are missing is skipped and its reason noted; it is never replaced silently.
Frames are streamed in chunks; nothing holds a whole clip in memory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from g4g.evaluate.own_syncnet import OwnSyncNet
from g4g.infer.testset import TestClip, stored_track
from g4g.io.video import frame_times, probe, resample_index
from g4g.metrics.fid import FIDInception
from g4g.metrics.lpips_metric import LPIPSMetric
from g4g.metrics.lse import lse_from_embeddings
from g4g.metrics.lse_framing import (
    MIN_FACE_SIZE,
    MIN_TRACK,
    HogFaceBoxes,
    ShotCuts,
    crop,
    face_tracks,
    min_track_for,
)
from g4g.metrics.s3fd import S3FD
from g4g.metrics.syncnet import OfficialSyncNet
from g4g.params import EvalParams, MelParams
from g4g.rejects import ClipError
from g4g.utils import resolve_device
from g4g.weights import WeightsError

log = logging.getLogger(__name__)

# Table columns, in order; the own-SyncNet surrogate never shares a column with the official metric
IMAGE = ("PSNR", "SSIM", "MSE")
FULL = tuple(f"{m} (full frame)" for m in IMAGE)
LSE_TRACKS = ("LSE-D", "LSE-C")  # syncnet_python's framing: the columns published numbers are on
LSE_LANDMARK = ("LSE-D (landmark crop)", "LSE-C (landmark crop)")
LSE_OWN = ("LSE-D (own SyncNet)", "LSE-C (own SyncNet)")
COLUMNS = ("PSNR", "SSIM", "LPIPS", "MSE", "FID", *LSE_TRACKS, *LSE_LANDMARK, *LSE_OWN, *FULL)




@dataclass
class Metrics:
    """The metric networks available to this run, their weights labels and the reasons for gaps."""

    lpips: object = None
    fid: object = None
    sync: object = None      # OfficialSyncNet
    faces: object = None     # S3FD, or HogFaceBoxes (surrogate): boxes of syncnet_python's framing
    own_sync: object = None  # OwnSyncNet (surrogate)
    weights: dict = field(default_factory=dict)  # column group -> "file (sha256 ...)" / "surrogate: ..."
    notes: list = field(default_factory=list)


def build_metrics(p: EvalParams, syncnet: str | None = None, image: bool = True, mel=None) -> Metrics:
    """Load what the weights on disk allow; `image=False` (ground truth vs itself) loads LSE only."""
    device = resolve_device(p.device)
    m = Metrics()

    def attempt(key: str, column: str, build):
        try:
            obj = build()
        except WeightsError as e:
            m.notes.append(f"{column} empty: {str(e).splitlines()[0]}")
            return
        setattr(m, key, obj)
        m.weights[column] = str(obj.info)

    if image:

        attempt("lpips", "LPIPS", lambda: LPIPSMetric(pretrained=True, device=device))
        attempt("fid", "FID", lambda: FIDInception(pretrained=True, device=device))

    attempt("sync", "LSE", lambda: OfficialSyncNet(pretrained=True, device=device))
    if m.sync is not None:
        try:
            m.faces = S3FD(pretrained=True, device=device)
        except WeightsError as e:
            m.faces = HogFaceBoxes()
            m.notes.append(f"LSE-D, LSE-C framed with {m.faces.info.label}: {str(e).splitlines()[0]}")
        m.weights["LSE face boxes"] = str(m.faces.info)
    if p.allow_surrogates:
        if syncnet and os.path.exists(syncnet):


            m.own_sync = OwnSyncNet(syncnet, device, mel or MelParams())
            m.weights["LSE (own SyncNet)"] = str(m.own_sync.info)
        else:
            m.notes.append(f"LSE (own SyncNet) empty: sync expert {syncnet} not found")
    else:
        m.notes.append("LSE (own SyncNet) not computed: evaluate.allow_surrogates is false")
    return m


class ChunkedLSE:
    """LSE of one clip from frames fed chunk by chunk (the windows straddling chunks are kept whole)."""

    def __init__(self, model, n_frames: int, audio: np.ndarray, batch_size: int = 16):
        self.model, self.batch, self.audio = model, batch_size, audio
        self.n = model.num_windows(n_frames, len(audio))  # windows start at frames 0..n-1
        self.done = 0  # windows embedded so far
        self.buf = np.zeros((0,), np.uint8)  # the last frames, kept for windows straddling two chunks
        self.lip = []

    def feed(self, frames: np.ndarray, start: int) -> None:
        """frames: uint8 (c, 416, 320, 3), the clip's frames start..start+c-1, fed in order."""
        import torch

        with torch.no_grad():
            self._feed(frames, start)

    def _feed(self, frames: np.ndarray, start: int) -> None:
        w = self.model.window
        buf = np.concatenate([self.buf, frames]) if len(self.buf) else frames
        b0 = start - len(self.buf)  # clip frame of buf[0]
        last = min(self.n, b0 + len(buf) - w + 1)  # windows [done, last) are complete now
        if last > self.done:
            video = self.model.prepare_video(buf[self.done - b0:last - b0 + w - 1])
            for i in range(self.done, last, self.batch):
                starts = np.arange(i, min(last, i + self.batch)) - self.done
                self.lip.append(self.model.forward_lip(self.model.video_batch(video, starts)).float().cpu())
            self.done = last
        self.buf = buf[max(0, len(buf) - (w - 1)):]

    def result(self, vshift: int = 15):
        import torch


        if self.n < 1:
            raise ClipError(f"clip too short for LSE ({self.n} windows)")
        if self.done < self.n:
            raise ClipError(f"LSE: only {self.done} of {self.n} windows were fed")
        lip = torch.cat(self.lip)
        feats, aud = self.model.prepare_audio(self.audio), []
        with torch.no_grad():
            for i in range(0, self.n, self.batch):
                x = self.model.audio_batch(feats, list(range(i, min(self.n, i + self.batch))))
                aud.append(self.model.forward_aud(x).float().cpu())
        return lse_from_embeddings(lip, torch.cat(aud), vshift, weights=str(self.model.info))


class TrackedLSE:
    """LSE of one clip framed as syncnet_python frames it (g4g.metrics.lse_framing): face boxes of every
    frame as the frames stream past (`feed`), then shots and tracks, then a second pass over the frames
    (`frames()`, a new iterator) that crops each track and scores it alone (ChunkedLSE)."""

    def __init__(self, model, detector, n_frames: int, audio: np.ndarray, batch_size: int = 16):
        self.model, self.detector, self.n, self.audio, self.batch = model, detector, n_frames, audio, batch_size
        self.detections: list[np.ndarray] = []
        self.cuts = ShotCuts()

    def feed(self, frames: list[np.ndarray]) -> None:
        """The clip's RGB full frames, fed in order."""
        for f in frames:
            self.detections.append(self.detector.detect(f))
            self.cuts.feed(f)

    def result(self, frames, vshift: int = 15, chunk: int = 64) -> tuple[dict, np.ndarray, list[str]]:
        """({LSE-D, LSE-C, offset, n tracks}, per-frame window distances, notes); ClipError without a track.
        `frames`: a fresh iterator over the same n frames."""
        min_track = min_track_for(self.n)
        notes = [] if min_track == MIN_TRACK else [
            f"LSE-D: clip of {self.n} frames, shorter than syncnet_python's track minimum ({MIN_TRACK}): its tracks "
            f"need more than {min_track} detections (half the clip)"]
        tracks = face_tracks(self.detections, self.cuts.shots(min_track), min_track)
        if not tracks:
            found = sum(len(d) > 0 for d in self.detections)
            raise ClipError(f"no face track by syncnet_python's rules (faces found in {found} of {self.n} "
                            f"frames; a track needs more than {min_track} and boxes over {MIN_FACE_SIZE} px)")
        scorers = []
        for t in tracks:
            a, b = t.audio_span()
            scorers.append(ChunkedLSE(self.model, len(t.frames), self.audio[a:b], self.batch))
        params = [t.crop_params() for t in tracks]
        pending: list[list[np.ndarray]] = [[] for _ in tracks]
        fed = [0] * len(tracks)
        for k, frame in enumerate(frames):
            for i, t in enumerate(tracks):
                if t.frames[0] <= k <= t.frames[-1]:
                    pending[i].append(crop(frame, *params[i][k - t.frames[0]]))
                    if len(pending[i]) == chunk or k == t.frames[-1]:
                        scorers[i].feed(np.stack(pending[i]), fed[i])
                        fed[i] += len(pending[i])
                        pending[i] = []
        results = []
        for t, sc in zip(tracks, scorers):
            try:
                results.append(sc.result(vshift))
            except ClipError as e:  # a track whose audio is cut short: the others still count
                notes.append(f"LSE-D: track at frames {t.frames[0]}-{t.frames[-1]} not scored: {e}")
                results.append(None)
        tracks, results = [t for t, r in zip(tracks, results) if r], [r for r in results if r]
        if not results:
            raise ClipError("no face track could be scored: " + "; ".join(notes))
        dist = np.full(self.n, np.nan)
        for t, r in zip(tracks, results):
            seg = dist[t.frames[0]:t.frames[0] + r.n_windows]
            dist[t.frames[0]:t.frames[0] + r.n_windows] = np.where(np.isnan(seg), r.window_dists, seg)
        longest = max(range(len(tracks)), key=lambda i: len(tracks[i].frames))
        summary = {LSE_TRACKS[0]: float(np.mean([r.lse_d for r in results])),
                   LSE_TRACKS[1]: float(np.mean([r.lse_c for r in results])),
                   f"{LSE_TRACKS[0]} offset": results[longest].offset, "LSE tracks": len(tracks)}
        return summary, dist, notes


def open_video(path: str | os.PathLike, clip: TestClip) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(25 fps index map, per-frame affines for this video's size, notes) of a video to score."""

    info = probe(path)
    idx = resample_index(frame_times(path), 25.0, info.duration)
    A, notes = stored_track(clip).affine.copy(), []
    if abs(info.fps - 25) > 0.01 or info.variable_rate:
        notes.append(f"video at {info.fps:.3f} fps resampled to 25")
    if (info.width, info.height) != (clip.width, clip.height):
        sx, sy = info.width / clip.width, info.height / clip.height
        if abs(sx / sy - 1) > 0.01:
            raise ClipError(f"frame size {info.width}x{info.height} has another aspect than the source "
                            f"{clip.width}x{clip.height}: the stored crop transforms do not apply")
        A[:, 0, :2] /= sx  # crop = A (p / s): the same face region in the rescaled frame
        A[:, 1, :2] /= sy
        notes.append(f"frame size {info.width}x{info.height} != source {clip.width}x{clip.height}: transforms rescaled")
    return idx, A, notes
