"""ChunkReader: frames of a video at 25 fps, fetched in chunks in any order, with bounded memory.

Inference plays the video forward and backward (ping-pong), so frames are wanted in descending order
too. Reading forward continues the open decoder; a request behind it (or far ahead of it) seeks to the
key frame before the first wanted frame and decodes from there. The frames decoded on the way that a
backward pass will want next are kept in a small cache, so a backward pass decodes each stretch once
per chunk instead of once per frame. Frames come out the way players show them (rotation applied).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import av
import numpy as np

from g4g.io.video import _open
from g4g.rejects import ClipError


class ChunkReader:
    """get(frames) -> list of (H, W, 3) uint8 RGB frames for 25 fps frame indices (any order).

    index_map: (T,) source frame (presentation order) shown at each 25 fps frame
    (g4g.io.video.resample_index). cache_frames bounds the decoded frames kept between calls.
    """

    def __init__(self, path: str | os.PathLike, index_map: np.ndarray, cache_frames: int = 64,
                 seek_ahead: int = 250):
        self.path, self.index_map = str(path), np.asarray(index_map, dtype=np.int64)
        self.cache_frames, self.seek_ahead = cache_frames, seek_ahead
        with _open(path) as c:  # presentation timestamps of every frame, from the packets alone
            pts = [p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None and p.size > 0]
        self._pts = np.sort(np.asarray(pts, dtype=np.int64))  # presentation order -> pts
        self._seekable = len(self._pts) > 0
        self._container = _open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()  # source frame -> image
        self._decoder = self._container.decode(self._stream)
        self._pos: int | None = -1  # source index of the last decoded frame (None: unknown, after a seek)
        self.decoded = 0  # frames decoded so far (tests, benchmarks)

    # ------------------------------------------------------------------------------------- decoding
    def _restart(self, src: int) -> None:
        """Position the decoder so that its next frame is at or before source frame `src`."""
        if src <= 0 or not self._seekable:
            self._container.seek(0, stream=self._stream)
            self._pos = -1
        else:
            self._container.seek(int(self._pts[src]), stream=self._stream, backward=True, any_frame=False)
            self._pos = None  # known again from the first frame's pts
        self._decoder = self._container.decode(self._stream)

    def _next(self) -> tuple[int, np.ndarray]:
        try:
            frame = next(self._decoder)
        except StopIteration:
            raise ClipError(f"{self.path}: stream ended after source frame {self._pos}") from None
        except av.error.FFmpegError as e:
            raise ClipError(f"{self.path}: decode failed near source frame {self._pos} ({e})") from e
        if frame.pts is not None and self._seekable:
            self._pos = int(np.searchsorted(self._pts, frame.pts))
        else:
            self._pos = (self._pos if self._pos is not None else -1) + 1
        self.decoded += 1
        img = frame.to_ndarray(format="rgb24")
        rot = int(round(getattr(frame, "rotation", 0) or 0)) % 360
        if rot:
            img = np.ascontiguousarray(np.rot90(img, rot // 90))
        return self._pos, img

    def _keep(self, src: int, img: np.ndarray) -> None:
        self._cache[src] = img
        self._cache.move_to_end(src)
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)

    # ------------------------------------------------------------------------------------- access
    def get(self, frames: Sequence[int]) -> list[np.ndarray]:
        """Images of 25 fps frames `frames` (any order, repeats allowed)."""
        src = self.index_map[np.asarray(frames, dtype=np.int64)]
        want = sorted(set(int(s) for s in src))
        found = {s: self._cache[s] for s in want if s in self._cache}
        missing = [s for s in want if s not in found]
        if missing:
            lo, hi = missing[0], missing[-1]
            behind = self._pos is None or lo <= self._pos
            if behind or lo - self._pos > self.seek_ahead:
                self._restart(lo)
            # decoded frames just before `lo` are what a backward pass asks for next: keep a few
            keep_from = lo - max(0, self.cache_frames - (hi - lo + 1))
            while self._pos is None or self._pos < hi:
                pos, img = self._next()
                if pos in missing:
                    found[pos] = img
                if pos >= keep_from:
                    self._keep(pos, img)
            lost = [s for s in missing if s not in found]
            if lost:  # a seek that landed after the wanted frame (broken index): decode from the start
                self._restart(0)
                while self._pos is None or self._pos < lost[-1]:
                    pos, img = self._next()
                    if pos in lost:
                        found[pos] = img
        return [found[int(s)] for s in src]

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
