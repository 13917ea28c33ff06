"""ChunkReader: frames of a video at 25 fps, fetched in chunks in any order, with bounded memory.

Inference plays the video forward and backward (ping-pong), so frames are wanted in descending order
too. Reading forward continues the open decoder; a request behind it (or far ahead of it) seeks to the
key frame before the first wanted frame and decodes from there. The frames decoded on the way that a
backward pass will want next are kept in a small cache, so a backward pass decodes each stretch once
per chunk instead of once per frame. Frames come out the way players show them (rotation applied).
Damaged files are read as preparation reads them (g4g.io.video.iter_frames): packets the decoder refuses
are skipped, and a wanted frame that does not decode shows the next one that does, or the last one at a
cut tail; `filled` counts them, and beyond `max_damaged` of the frames (a file that changed since it was
tracked, a cut that tracking did not see) reading stops with a ClipError.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import av
import numpy as np

from g4g.io.video import Damage, _decoded, _open
from g4g.params import VideoParams
from g4g.rejects import ClipError


class ChunkReader:
    """get(frames) -> list of (H, W, 3) uint8 RGB frames for 25 fps frame indices (any order).

    index_map: (T,) source frame (presentation order) shown at each 25 fps frame
    (g4g.io.video.resample_index). cache_frames bounds the decoded frames kept between calls.
    """

    def __init__(self, path: str | os.PathLike, index_map: np.ndarray, cache_frames: int = 64,
                 seek_ahead: int = 250, max_damaged: float = VideoParams().max_damaged):
        self.path, self.index_map = str(path), np.asarray(index_map, dtype=np.int64)
        self.max_damaged = max_damaged
        self.cache_frames, self.seek_ahead = cache_frames, seek_ahead
        with _open(path) as c:  # presentation timestamps of every frame, from the packets alone
            pts = [p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None and p.size > 0]
        self._pts = np.sort(np.asarray(pts, dtype=np.int64))  # presentation order -> pts
        self._seekable = len(self._pts) > 0
        self._container = _open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()  # source frame -> image
        self._damage = Damage()
        self._decoder = _decoded(self._container, self._stream, self.path, self._damage)
        self._pos: int | None = -1  # source index of the last decoded frame (None: unknown, after a seek)
        self._last: np.ndarray | None = None  # the last frame decoded: it stands in for a cut tail
        self.decoded = 0  # frames decoded so far (tests, benchmarks)
        self.filled: set[int] = set()  # source frames that did not decode, shown as the next (or last) one

    # ------------------------------------------------------------------------------------- decoding
    def _restart(self, src: int) -> None:
        """Position the decoder so that its next frame is at or before source frame `src`."""
        if src <= 0 or not self._seekable:
            self._container.seek(0, stream=self._stream)
            self._pos = -1
        else:
            self._container.seek(int(self._pts[src]), stream=self._stream, backward=True, any_frame=False)
            self._pos = None  # known again from the first frame's pts
        self._decoder = _decoded(self._container, self._stream, self.path, self._damage)

    def _next(self) -> tuple[int, np.ndarray] | None:
        """The next decoded frame (source index, image), or None at the end of what decodes."""
        try:
            frame = next(self._decoder)
        except StopIteration:
            return None
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
        self._last = img
        return self._pos, img

    def _decode_to(self, hi: int, want: list[int], found: dict, keep_from: int) -> bool:
        """Decode up to source frame `hi`, filling `found` with the frames of `want` (sorted) and keeping those
        from `keep_from` on. A wanted frame that the decoder passed over (its packet refused) gets the next
        frame that decodes. False when the stream ended first."""
        first = None
        while self._pos is None or self._pos < hi:
            got = self._next()
            if got is None:
                return False
            pos, img = got
            first = pos if first is None else first
            for s in want:
                if first <= s < pos and s not in found:  # passed over: damaged
                    found[s] = img
                    self.filled.add(s)
            if pos in want:
                found[pos] = img
            if pos >= keep_from:
                self._keep(pos, img)
        return True

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
            whole = self._decode_to(hi, missing, found, keep_from)
            lost = [s for s in missing if s not in found]
            if lost and whole:  # a seek that landed after the wanted frame (broken index): decode from the start
                self._restart(0)
                self._decode_to(lost[-1], lost, found, keep_from)
            for s in (s for s in missing if s not in found):  # past the end of what decodes: a cut tail
                if self._last is None:
                    raise ClipError(f"{self.path}: no video frame decodes (corrupt data)")
                found[s] = self._last
                self.filled.add(s)
            lost = int(np.isin(self.index_map, list(self.filled)).sum()) if self.filled else 0
            if lost > self.max_damaged * len(self.index_map):
                raise ClipError(f"{self.path}: {lost} of {len(self.index_map)} frames do not decode (corrupt or cut "
                                f"data, or the file changed since it was tracked), more than video.max_damaged = "
                                f"{self.max_damaged:g}")
        return [found[int(s)] for s in src]

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
