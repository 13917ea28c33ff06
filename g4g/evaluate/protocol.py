"""The frozen evaluation protocol (docs/design/method.md Sec. 9): one clip's video against its ground truth.

Any method's video (ours, a baseline, an external method's own output) is read at 25 fps and re-cropped
with the SAME stored crop transforms the ground-truth test crops were cut with, so every method is
scored on identical 416 x 320 face regions. The metrics and their columns: g4g.evaluate.registry. Here:
re-cropping a video (`open_video`) and the two LSE computations that stream a clip's frames, so that
nothing holds a whole clip in memory:
    ChunkedLSE   LSE of face crops fed chunk by chunk (the landmark crop, the own-SyncNet surrogate)
    TrackedLSE   LSE framed as syncnet_python frames the video: S3FD face tracks, its square crop
                 (g4g.metrics.lse_framing), per-track scores averaged per clip
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from g4g.infer.testset import TestClip, stored_track
from g4g.io.video import frame_times, probe, resample_index
from g4g.metrics.lse import lse_from_embeddings
from g4g.metrics.lse_framing import (
    MIN_FACE_SIZE,
    MIN_TRACK,
    ShotCuts,
    crop,
    face_tracks,
    min_track_for,
)
from g4g.rejects import ClipError


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


class TrackedResult(NamedTuple):
    lse_d: float               # the mean over the clip's tracks
    lse_c: float
    offset: int                # the longest track's
    n_tracks: int
    window_dists: np.ndarray   # (n,) each window's distance at its track's best offset, at its first frame
    notes: list[str]


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

    def result(self, frames, vshift: int = 15, chunk: int = 64) -> TrackedResult:
        """The clip's LSE over its tracks; ClipError without a track. `frames`: a fresh iterator over the same n
        frames."""
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
        return TrackedResult(float(np.mean([r.lse_d for r in results])), float(np.mean([r.lse_c for r in results])),
                             results[longest].offset, len(tracks), dist, notes)


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
