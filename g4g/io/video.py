"""Video IO: probing, exact 25 fps resampling maps, streamed decoding, encoding.

Decoding uses PyAV (frames with timestamps, rotation side data, threaded decode); encoding and muxing
use the static ffmpeg binary shipped by imageio-ffmpeg, fed raw frames through a pipe, so no system
ffmpeg is needed. Frames are always streamed: nothing here holds a whole video in memory.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from g4g.params import ENCODE_THREADS, VideoParams
from g4g.rejects import ClipError
from g4g.utils import atomic_path

log = logging.getLogger(__name__)
# No Python log hook: with one (any set_level other than None), a decoder thread that logs needs the
# GIL while the main thread, closing a stream early, waits for that thread: a deadlock
# (PyAV-Org/PyAV#751). None drops ffmpeg's own messages; failures still surface as exceptions.
av.logging.set_level(None)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    path: str
    width: int  # displayed size, i.e. after applying the rotation metadata
    height: int
    rotation: int  # degrees counter-clockwise to apply to decoded frames (0, 90, 180, 270)
    fps: float  # average rate
    n_frames: int  # frames with a timestamp, counted by demuxing (exact, no decode)
    duration: float  # seconds, first frame start to last frame end
    codec: str
    variable_rate: bool
    has_audio: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _open(path: str | os.PathLike):
    p = Path(path)
    if not p.exists():
        raise ClipError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise ClipError(f"{p}: zero-length file, expected a video")
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise ClipError(f"{p}: cannot open container ({type(e).__name__}: {e})") from e


def _packet_pts(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(sorted pts of every video packet, the stream's time base), from the packets alone (no decode):
    position i is source frame i in presentation order, the numbering every frame map uses."""
    with _open(path) as c:
        if not c.streams.video:
            raise ClipError(f"{path}: no video stream")
        s = c.streams.video[0]
        pts = []
        try:
            for pkt in c.demux(s):
                if pkt.pts is not None and pkt.size > 0:
                    pts.append(pkt.pts)
        except av.error.FFmpegError as e:  # truncated file: keep what was readable
            log.warning("%s: demux stopped early (%s)", path, e)
        return np.sort(np.asarray(pts, dtype=np.int64)), float(s.time_base)


# Frame rates cameras and editors use; a measured rate within the timestamps' precision of one of them is it
COMMON_RATES = (Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                Fraction(50), Fraction(60000, 1001), Fraction(60))


def frame_rate(times: np.ndarray, tick: float, declared: Fraction | None = None) -> Fraction | None:
    """The constant rate the frame `times` (s) were stamped at, or None where they do not fit one (a variable
    rate). Timestamps are rounded to the container's `tick` (Matroska and WebM: 1 ms, so 30 fps comes as
    33, 33, 34 ms steps whose median says 30.30), so a rate fits when every frame's time is within one tick
    of k / rate. The stream's `declared` rate is tried first, then COMMON_RATES, then the mean interval."""
    if len(times) < 2:
        return declared
    k = np.arange(len(times))
    t = times - times[0]

    def fits(rate: Fraction) -> bool:
        return rate > 0 and float(np.abs(t - k / float(rate)).max()) <= tick + 1e-9

    mean = Fraction(len(times) - 1) / Fraction(float(t[-1])).limit_denominator(1_000_000) if t[-1] > 0 else None
    for rate in (declared, *COMMON_RATES, mean and mean.limit_denominator(1001)):
        if rate is not None and fits(rate):
            return rate
    return None


def frame_times(path: str | os.PathLike) -> np.ndarray:
    """Presentation times (s) of every video frame, sorted, from the packets alone (no decode)."""
    pts, tb = _packet_pts(path)
    if not len(pts):
        raise ClipError(f"{path}: video stream has no frames")
    t = pts.astype(np.float64) * tb
    return t - t[0]


def probe(path: str | os.PathLike) -> VideoInfo:
    times = frame_times(path)
    with _open(path) as c:
        s = c.streams.video[0]
        tick, declared = float(s.time_base), s.average_rate or s.guessed_rate
        rotation = 0
        try:
            first = next(c.decode(s))
            rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
        except (StopIteration, av.error.FFmpegError) as e:
            raise ClipError(f"{path}: first video frame does not decode ({e})") from e
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        a = c.streams.audio[0] if c.streams.audio else None
        codec = s.codec_context.name
    dt = np.diff(times)
    rate = frame_rate(times, tick, Fraction(declared) if declared else None)
    if rate is not None:  # constant rate: exact, whatever the rounding of the timestamps
        step = 1 / float(rate)
    else:  # variable rate: the typical interval
        step = float(np.median(dt)) if len(dt) else 1 / 25
    fps = 1.0 / step if step > 0 else 25.0
    vfr = bool(len(dt) > 2 and (dt.max() - dt.min()) > 0.25 * step + 2 * tick)
    duration = len(times) * step if rate is not None else float(times[-1] + step)
    return VideoInfo(path=str(path), width=w, height=h, rotation=rotation, fps=fps, n_frames=len(times),
                     duration=duration, codec=codec, variable_rate=vfr,
                     has_audio=a is not None)


def resample_index(times: np.ndarray, fps_out: float = 25.0, duration: float | None = None) -> np.ndarray:
    """Source frame index shown at each output frame k (time k / fps_out), for any input rate.

    The source frame on screen at time t is the last one whose timestamp is <= t (what a player
    shows, and what ffmpeg's fps filter picks up to its rounding). Works for constant and variable
    frame rates alike; output length is round(duration * fps_out).
    """
    times = np.asarray(times, dtype=np.float64)
    if duration is None:
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / fps_out
        duration = float(times[-1] + step)
    n_out = max(int(round(duration * fps_out)), 0)
    t_out = np.arange(n_out) / fps_out
    idx = np.searchsorted(times, t_out + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(times) - 1).astype(np.int32)


@dataclass(frozen=True)
class Yuv420:
    """A decoded limited-range yuv420p frame, unconverted: views of the decoder's own plane buffers
    (no copy; rows may be padded, so the views can be strided). Keeping it keeps the frame alive."""

    y: np.ndarray  # (H, W) uint8
    u: np.ndarray  # (H / 2, W / 2)
    v: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.shape

    @property
    def nbytes(self) -> int:
        return self.y.nbytes * 3 // 2

    @classmethod
    def of(cls, frame) -> Yuv420:
        w, h = frame.width, frame.height
        planes = [np.frombuffer(frame.planes[i], np.uint8).reshape(-1, frame.planes[i].line_size)
                  for i in range(3)]
        return cls(planes[0][:h, :w], planes[1][:h // 2, :w // 2], planes[2][:h // 2, :w // 2])

    def region(self, x0: int, y0: int, x1: int, y1: int) -> Yuv420:
        """Views of the planes over [x0, x1) x [y0, y1) (even coordinates: chroma is subsampled 2x2)."""
        return Yuv420(self.y[y0:y1, x0:x1], self.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                      self.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2])

    def rgb(self) -> np.ndarray:
        """The whole frame as RGB (OpenCV BT.601)."""
        import cv2

        i420 = np.concatenate([self.y.ravel(), self.u.ravel(), self.v.ravel()])
        return cv2.cvtColor(i420.reshape(-1, self.y.shape[1]), cv2.COLOR_YUV2RGB_I420)


@dataclass
class Damage:
    """What a decode lost: `lost`, the output indices whose own source frame did not decode (they show
    the next frame that did, or the last one at a cut tail), and the packets the decoder refused."""
    lost: set[int] = field(default_factory=set)
    bad_packets: int = 0


def _decoded(c, s, path, damage: Damage) -> Iterator:
    """Every frame the decoder gives, packet by packet, past packets it refuses (as the ffmpeg tool
    does), and up to where a truncated file stops demuxing."""
    try:
        for packet in c.demux(s):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                damage.bad_packets += 1
                log.debug("%s: packet at pts %s does not decode (%s)", path, packet.pts, e)
                continue
            yield from frames
    except av.error.FFmpegError as e:  # the container itself ends or breaks: what decoded stays
        log.warning("%s: demux stopped early (%s)", path, e)


def iter_frames(path: str | os.PathLike, index_map: np.ndarray | None = None, fmt: str = "rgb24",
                size: tuple[int, int] | None = None, rotation: int | None = None,
                raw_yuv420p: bool = False, damage: Damage | None = None,
                max_damaged: float = VideoParams().max_damaged) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (output_index, frame) in order, decoding the file once.

    `index_map[k]` is the source frame (presentation order) to show at output index k; a source
    frame that several outputs share is converted once and yielded for each. `size` (w, h) scales in
    the decoder's converter (cheap); `fmt` is any PyAV format ('rgb24', 'gray', 'bgr24').
    Rotation metadata is applied so frames come out the way players display them.
    `raw_yuv420p`: frames that are unrotated, limited-range yuv420p with even sizes come out as
    `Yuv420` plane views, unconverted and uncopied (others stay `fmt` arrays), for callers that convert
    only a region (g4g.data.crops.crop_yuv420).
    Damaged files: packets the decoder refuses are skipped; an output whose source frame is lost shows
    the next frame that decodes (the last one at a cut tail) and is added to `damage.lost`. When more
    than `max_damaged` of the outputs are lost, ClipError says so (after the last frame).
    """
    damage = damage if damage is not None else Damage()
    want = None if index_map is None else np.asarray(index_map)
    k = 0  # next output index to produce
    src = -1
    pts = None  # sorted packet pts, read once a refused packet has broken the running count
    rot = rotation
    img = None
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for frame in _decoded(c, s, path, damage):
            if damage.bad_packets and frame.pts is not None:
                if pts is None:
                    pts = _packet_pts(path)[0]
                i = int(np.searchsorted(pts, frame.pts))  # its first position, as frame_times numbers frames
                src = i if i < len(pts) and pts[i] == frame.pts else src + 1
            else:
                src += 1
            if rot is None:
                rot = int(round(getattr(frame, "rotation", 0) or 0)) % 360
            if want is not None:
                if k >= len(want):
                    break
                if want[k] > src:
                    continue
            if (raw_yuv420p and not rot and frame.format.name == "yuv420p" and size is None
                    and frame.width % 2 == 0 and frame.height % 2 == 0 and frame.color_range != 2):
                img = Yuv420.of(frame)
            else:
                if fmt == "gray" and size is None and frame.format.name in _PLANAR_YUV:
                    img = _luma(frame)
                else:
                    kw = {"format": fmt}
                    if size is not None:
                        w, h = size if rot in (0, 180) else size[::-1]
                        kw.update(width=w, height=h)
                    img = frame.to_ndarray(**kw)
                # PyAV pads rows (an 844 px line is stored as 848): C code such as dlib silently
                # misreads strided arrays, so always hand out contiguous frames
                img = np.ascontiguousarray(np.rot90(img, rot // 90) if rot else img)
            if want is None:
                yield src, img
                continue
            while k < len(want) and want[k] <= src:
                if want[k] != src:  # its own source frame never decoded: this later one stands in
                    damage.lost.add(k)
                yield k, img
                k += 1
    if want is None:
        return
    if img is None:
        raise ClipError(f"{path}: no video frame decodes (corrupt data)")
    while k < len(want):  # a cut tail: the last frame that decoded stands in
        damage.lost.add(k)
        yield k, img
        k += 1
    if len(damage.lost) > max_damaged * len(want):
        raise ClipError(f"{path}: {len(damage.lost)} of {len(want)} frames do not decode (corrupt or cut data), "
                        f"more than video.max_damaged = {max_damaged:g} of the clip")
    if damage.lost:
        log.warning("%s: %d of %d frames do not decode (%d bad packets): each shows the next frame that does, "
                    "flagged as damaged", path, len(damage.lost), len(want), damage.bad_packets)


_PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}
# limited-range luma (16..235) to full-range grey, as swscale's gray conversion does
LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def _luma(frame) -> np.ndarray:
    """Grey image of an 8-bit planar YUV frame straight from its Y plane (no swscale pass).

    Several times cheaper than `to_ndarray(format='gray')` at 1080p; identical up to rounding.
    """
    import cv2

    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
    if frame.format.name.startswith("yuvj") or frame.color_range == 2:  # already full range
        return np.ascontiguousarray(y)
    return cv2.LUT(y, LIMITED_TO_FULL)  # contiguous output


def decode_all(path, index_map=None, fmt="rgb24", size=None) -> np.ndarray:
    """Whole clip as one array (T, H, W, C); only for short clips (tests, demo, small inference)."""
    frames = [f for _, f in iter_frames(path, index_map, fmt=fmt, size=size)]
    if not frames:
        raise ClipError("no frames decoded")
    return np.stack(frames)


def remux_audio(video: str | os.PathLike, audio: str | os.PathLike, out: str | os.PathLike, duration: float) -> None:
    """`out`: the video stream of `video` copied (no re-encoding) with `audio` muxed as VideoWriter muxes it (AAC,
    cut at `duration` seconds); written atomically."""
    with atomic_path(out) as tmp:
        r = subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-i", str(video), "-i", str(audio), "-map", "0:v:0",
                            "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-t", f"{duration:.6f}",
                            "-movflags", "+faststart", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ClipError(f"ffmpeg failed remuxing {video} with {audio}: {r.stderr.strip()}")


class VideoWriter:
    """Encode RGB frames to H.264 mp4 through an ffmpeg pipe, optionally muxing an audio file.

    Written to a temporary name and renamed on a clean close (use as a context manager). The same frames
    and audio give the same bytes with the same ffmpeg build and thread count (g4g.params.ENCODE_THREADS).
    With audio, the output lasts `duration` s (the frames' count / fps: every frame is kept, the audio is
    cut there) or, without it, as long as the shorter stream: ffmpeg's `-shortest`, which can drop the last
    video frame when the audio ends within it (a 30 fps render of 388 frames came out with 387).
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, size: tuple[int, int],
                 audio: str | os.PathLike | None = None, crf: int = 18, preset: str = "veryfast",
                 codec: str = "libx264", threads: int = ENCODE_THREADS, extra_args: Iterable[str] = (),
                 duration: float | None = None):
        self.path = Path(path)
        self.size = size
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        w, h = size
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio)]
        pix = ["-pix_fmt", "yuv420p"] if w % 2 == 0 and h % 2 == 0 else ["-pix_fmt", "yuv444p"]
        cmd += ["-c:v", codec, "-preset", preset, "-crf", str(crf), "-threads", str(threads), *pix,
                *extra_args]
        if audio is not None:
            cmd += ["-c:a", "aac", "-b:a", "128k", "-map", "0:v:0", "-map", "1:a:0",
                    *(["-t", f"{float(duration):.6f}"] if duration is not None else ["-shortest"])]
        cmd += ["-movflags", "+faststart", str(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.n = 0

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if (w, h) != tuple(self.size):
            raise ValueError(f"frame size {w}x{h} != writer size {self.size}")
        self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.n += 1

    def close(self, ok: bool = True) -> None:
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace")
        rc = self._proc.wait()
        if ok and rc != 0:
            self._ctx.__exit__(RuntimeError, RuntimeError(err), None)
            raise RuntimeError(f"ffmpeg failed writing {self.path}: {err.strip()}")
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


def write_video(path, frames: Iterable[np.ndarray], fps: float, audio=None, **kw) -> int:
    it = iter(frames)
    first = next(it)
    with VideoWriter(path, fps, (first.shape[1], first.shape[0]), audio=audio, **kw) as vw:
        vw.write(first)
        for f in it:
            vw.write(f)
    return vw.n
