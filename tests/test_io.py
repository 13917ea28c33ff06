"""Video/audio IO: resampling index maps, probing, and every kind of bad input the brief lists."""

import cv2
import numpy as np
import pytest
from conftest import ffmpeg, make_video

from g4g.io.audio import level_dbfs, load_audio
from g4g.io.video import decode_all, frame_times, iter_frames, probe, resample_index, write_video
from g4g.rejects import ClipError


# ----------------------------------------------------------------------------------- index maps
@pytest.mark.parametrize("fps_in,seconds", [(25, 2.0), (30, 4.2), (29.97, 3.0), (60, 1.0), (22, 2.5)])
def test_resample_index_constant_rate(fps_in, seconds):
    n_in = int(round(fps_in * seconds))
    times = np.arange(n_in) / fps_in
    idx = resample_index(times, 25)
    assert len(idx) == round(n_in / fps_in * 25)
    # each output frame shows the source frame on screen at k / 25
    for k in range(len(idx)):
        t = k / 25
        assert times[idx[k]] <= t + 1e-6 and (idx[k] == n_in - 1 or times[idx[k] + 1] > t + 1e-6)
    assert np.all(np.diff(idx) >= 0)


def test_resample_identity_at_25():
    assert resample_index(np.arange(50) / 25, 25).tolist() == list(range(50))


def test_resample_30_to_25_drops_every_sixth():
    idx = resample_index(np.arange(30) / 30, 25)
    assert idx.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26,
                            27, 28]


def test_resample_variable_rate():
    times = np.array([0, 0.01, 0.05, 0.2, 0.21, 0.3])  # a stall then a burst
    idx = resample_index(times, 25, duration=0.32)
    assert idx.tolist() == [0, 1, 2, 2, 2, 3, 4, 4]  # t = 0, .04, ... .28


# ----------------------------------------------------------------------------------- probe/decode
def test_probe_and_decode_basic(tmp_path):
    p = make_video(tmp_path / "a.mp4", n=30, size=(64, 48), fps=30)
    info = probe(p)
    assert (info.width, info.height, info.n_frames, info.rotation) == (64, 48, 30, 0)
    assert info.fps == pytest.approx(30, rel=1e-3) and info.has_audio and not info.variable_rate
    frames = decode_all(p, resample_index(frame_times(p), 25))
    assert frames.shape == (25, 48, 64, 3)


def test_odd_size(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (10, 251, 257, 3), dtype=np.uint8)
    p = tmp_path / "odd.mp4"
    write_video(p, frames, 25)  # odd sizes are encoded 4:4:4 (4:2:0 needs even sizes)
    info = probe(p)
    assert (info.width, info.height) == (257, 251)
    assert decode_all(p).shape == (10, 251, 257, 3)


def test_hevc(tmp_path):
    p = make_video(tmp_path / "hevc.mp4", n=10, size=(96, 64), vcodec="libx265")
    assert probe(p).codec == "hevc"
    assert decode_all(p, resample_index(frame_times(p), 25)).shape == (10, 64, 96, 3)


def test_rotation_metadata_is_applied(tmp_path):
    src = make_video(tmp_path / "land.mp4", n=5, size=(64, 48))
    rot = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation:v", "90", "-i", str(src), "-c", "copy", str(rot))
    info = probe(rot)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    a, b = decode_all(src)[0], decode_all(rot)[0]
    assert b.shape == (64, 48, 3)
    np.testing.assert_array_equal(b, np.rot90(a, 1))  # what ffmpeg's own autorotate displays


def test_variable_frame_rate(tmp_path):
    src = make_video(tmp_path / "c.mp4", n=50, size=(32, 32))
    vfr = tmp_path / "vfr.mkv"  # frames 0..24 at 25 fps, then 10 fps-like gaps: setpts makes VFR
    ffmpeg("-i", str(src), "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'", "-fps_mode", "vfr",
           "-an", str(vfr))
    info = probe(vfr)
    assert info.variable_rate
    idx = resample_index(frame_times(vfr), 25, info.duration)
    assert idx[:25].tolist() == list(range(25))
    assert len(idx) == pytest.approx(info.duration * 25, abs=1)
    assert np.all(np.diff(idx[25:]) <= 1) and (np.diff(idx[25:]) == 0).any()  # frames repeat


@pytest.mark.parametrize("rate", ["25", "30000/1001", "30"])
@pytest.mark.parametrize("container", ["mkv", "mp4", "mov", "webm"])
def test_constant_rates_are_exact_in_every_container(tmp_path, container, rate):
    """Issue 23 item 1: Matroska and WebM stamp frames in whole milliseconds (30 fps as 33, 33, 34 ms), and
    the median interval made a 30 fps source 30.30 fps (1000/33), so `g4g lipsync` rendered it at that rate.
    The declared rate, or a common one, that the timestamps fit within their precision is the rate."""
    from fractions import Fraction

    path = tmp_path / f"c.{container}"
    codec = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"] if container == "webm" else \
        ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}", "-frames:v", "46", *codec, str(path))
    info = probe(path)
    assert Fraction(info.fps).limit_denominator(1001) == Fraction(rate) and not info.variable_rate, info
    assert info.n_frames == 46 and info.duration == pytest.approx(46 / float(Fraction(rate)), abs=1e-9)


@pytest.mark.parametrize("rate", ["25", "30000/1001", "30", "60"])
def test_a_video_with_sound_keeps_every_frame(tmp_path, rate):
    """Issue 23 item 2: muxed with `-shortest`, a render whose audio ends inside its last frame (lip-sync cuts
    the audio to the frames' length, and AAC rounds it) lost that frame: 388 frames at 30 fps came out as
    387. Given the duration, every frame is kept and the audio lasts as long as the video, within a frame."""
    from fractions import Fraction

    from g4g.io.audio import write_wav
    from g4g.io.video import VideoWriter

    fps, n = Fraction(rate), 20
    wav = tmp_path / "a.wav"  # ends 0.3 frame before the last frame ends
    write_wav(wav, 0.1 * np.sin(np.arange(int((n - 0.3) / fps * 16000)) / 5).astype(np.float32), 16000)
    out = tmp_path / "o.mp4"
    with VideoWriter(out, fps, (64, 48), audio=wav, duration=n / fps) as vw:
        for i in range(n):
            vw.write(np.full((48, 64, 3), 10 * i, np.uint8))
    assert len(frame_times(out)) == n and len(decode_all(out)) == n
    assert load_audio(out, 16000).size / 16000 == pytest.approx(float(n / fps), abs=float(1 / fps))


@pytest.mark.parametrize("kind", ["zero", "garbage", "truncated", "missing"])
def test_broken_files_raise_clip_error(tmp_path, kind):
    p = tmp_path / f"{kind}.mp4"
    if kind == "zero":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        good = make_video(tmp_path / "good.mp4", n=50, size=(64, 48))
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ClipError):
        info = probe(p)
        list(iter_frames(p, resample_index(frame_times(p), 25, info.duration)))


def test_no_audio_stream(tmp_path):
    p = make_video(tmp_path / "na.mp4", audio=None)
    assert not probe(p).has_audio
    with pytest.raises(ClipError, match="no audio stream"):
        load_audio(p)


def test_ffmpeg_errors_are_said_in_words(tmp_path):
    """Issue 23 item 5: a damaged file's reason said only ffmpeg's raw text ("Error number -1145393733",
    "Error opening output files: Invalid argument"); now what it means, with the raw text kept."""
    from g4g.io.audio import ffmpeg_reason

    assert ffmpeg_reason("[aac @ 0x1] Error number -1145393733 occurred") == (
        "invalid data: corrupt or cut short (truncated?) (ffmpeg: Error number -1145393733 occurred)")
    assert "parameters cannot be read" in ffmpeg_reason("Error opening output files: Invalid argument")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ClipError, match=r"junk.bin: the audio does not decode.*not a media file, or corrupt or "
                                        r"cut short \(truncated\?\)"):
        load_audio(junk)


def test_silent_audio_level(tmp_path):
    p = make_video(tmp_path / "s.mp4", audio="silence", n=25)
    a = load_audio(p)
    assert a.size == pytest.approx(16000, abs=1200) and level_dbfs(a) < -90
    t = load_audio(make_video(tmp_path / "t.mp4", audio="tone", n=25))
    assert level_dbfs(t) > -30


def test_write_video_round_trip_with_audio(tmp_path, rng):
    from g4g.io.audio import write_wav

    wav = tmp_path / "a.wav"
    write_wav(wav, 0.1 * np.sin(np.arange(32000) / 10).astype(np.float32))
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(50)]
    out = tmp_path / "o.mp4"
    assert write_video(out, frames, 25, audio=wav) == 50
    info = probe(out)
    assert info.n_frames == 50 and info.has_audio
    assert load_audio(out).size == pytest.approx(32000, abs=1600)
    assert not list(tmp_path.glob(".tmp-*"))


def test_video_writer_failure_leaves_nothing(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(ZeroDivisionError):  # the producer fails half-way
        write_video(out, (np.zeros((48, 64, 3), np.uint8) if i < 3 else 1 / 0 for i in range(5)), 25)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_early_close_does_not_hang(tmp_path):
    """Stopping a decode half-way (index map shorter than the stream) many times must not deadlock
    (PyAV's Python log hook did, PyAV-Org/PyAV#751); frames are contiguous (dlib needs that)."""
    p = make_video(tmp_path / "e.mp4", n=40, size=(842, 64), audio=None)  # 842: PyAV pads rows
    for _ in range(60):
        for _k, f in iter_frames(p, np.arange(3), fmt="gray"):
            assert f.flags.c_contiguous


@pytest.mark.parametrize("size", [(64, 48), (842, 64)])
def test_fast_luma_matches_swscale_gray(tmp_path, size):
    import av

    p = make_video(tmp_path / "g.mp4", n=3, size=size, audio=None)
    ours = [f for _, f in iter_frames(p, fmt="gray")]
    with av.open(str(p)) as c:
        ref = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.flags.c_contiguous
        assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize("size", [(64, 48), (842, 64)])
def test_raw_yuv420_planes(tmp_path, size):
    """raw_yuv420p frames: uncopied plane views (842 px rows are padded by the decoder) whose grey equals
    the gray path and whose RGB is within a few levels of swscale's; other frames stay RGB arrays."""
    from g4g.io.video import LIMITED_TO_FULL, Yuv420

    p = make_video(tmp_path / "y.mp4", n=4, size=size, audio=None)
    raw = [f for _, f in iter_frames(p, raw_yuv420p=True)]
    gray = [f for _, f in iter_frames(p, fmt="gray")]
    rgb = [f for _, f in iter_frames(p, fmt="rgb24")]
    for r, g, c in zip(raw, gray, rgb):
        assert isinstance(r, Yuv420) and r.shape == size[::-1] and r.u.shape == (size[1] // 2, size[0] // 2)
        np.testing.assert_array_equal(cv2.LUT(r.y, LIMITED_TO_FULL), g)  # as the landmark stage reads grey
        assert np.abs(r.rgb().astype(int) - c).mean() < 3
    odd = tmp_path / "o.mp4"  # odd size: written as yuv444p, not eligible
    write_video(odd, [np.full((49, 65, 3), 128, np.uint8)] * 2, 25)
    assert all(isinstance(f, np.ndarray) and f.shape == (49, 65, 3) for _, f in iter_frames(odd, raw_yuv420p=True))
