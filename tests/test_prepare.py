"""The preparation stages end to end on a folder of good and bad clips (all made here).

Every bad input of the brief gets a clear rejects row naming the clip and stage, or a documented
fallback; no clip aborts its shard; inputs are never modified; the good clips come out as shards.
"""

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ffmpeg, make_video

from g4g.data import crops as cropgeo
from g4g.data.faces import run_crops, run_faces, run_landmarks
from g4g.data.mels import run_mels
from g4g.data.prepare import run_summary
from g4g.data.resample import run_resample
from g4g.data.scan import scan
from g4g.data.shards import FrameReader, MelReader, write_table
from g4g.io.audio import write_wav
from g4g.io.video import write_video
from g4g.params import AudioParams, CropParams, DatasetParams, LandmarkParams, MelParams, VideoParams, build


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from g4g.data.demo import render_clip, write_talking_clip

    root = tmp_path_factory.mktemp("raw")
    good = write_talking_clip(root / "good.mp4", 1.2, seed=1)
    # a phone-style file: frames stored turned clockwise, display matrix saying "rotate 90 ccw to show"
    sideways = root.parent / "sideways.mp4"
    ffmpeg("-i", str(good), "-vf", "transpose=1", "-c:a", "copy", str(sideways))
    ffmpeg("-display_rotation:v", "90", "-i", str(sideways), "-c", "copy", str(root / "rotated.mp4"))
    ffmpeg("-i", str(good), "-c:v", "libx265", "-x265-params", "log-level=error", "-c:a", "copy",
           str(root / "hevc.mkv"))
    ffmpeg("-i", str(good), "-r", "30", "-c:a", "copy", str(root / "rate30.mp4"))
    ffmpeg("-i", str(good), "-an", "-c:v", "copy", str(root / "noaudio.mp4"))
    ffmpeg("-i", str(good), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-shortest", str(root / "silent.mp4"))
    ffmpeg("-i", str(good), "-frames:v", "3", "-c:a", "copy", str(root / "short.mp4"))
    make_video(root / "noface.mp4", n=30, size=(128, 96))
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 4])
    (root / "zero.mp4").write_bytes(b"")

    audio, frames = render_clip(1.2, 2, (256, 256), 100)
    frames = list(frames)
    wav = root.parent / "speech.wav"
    write_wav(wav, audio)
    import cv2

    write_video(root / "odd.mp4", [cv2.resize(f, (257, 251)) for f in frames], 25, audio=wav)
    blank = np.full_like(frames[0], 90)
    write_video(root / "partial.mp4", [f if i < 20 else blank for i, f in enumerate(frames)], 25, audio=wav)
    small = [np.pad(cv2.resize(f, (128, 128)), ((64, 64), (0, 0), (0, 0)), mode="edge") for f in frames]
    two = [np.concatenate([f, s], axis=1) for f, s in zip(frames, small)]  # a large and a small face
    write_video(root / "twofaces.mp4", two, 25, audio=wav)
    return root


def _digest(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def prepare_folder(root, out, n_test: int) -> dict:
    """Every preparation stage on the videos under root, as the workflow runs them, into out."""
    table, rej = scan(build(DatasetParams, {"root": str(root), "split": {"n_test": n_test}, "shard_size": 100}), 0)
    write_table(out / "manifest.parquet", table)
    rej.write(out / "rej_scan.parquet")
    run_resample(str(out / "manifest.parquet"), "s0000", str(out / "res.parquet"), str(out / "rej_res.parquet"),
                 VideoParams(), AudioParams())
    run_faces(str(out / "res.parquet"), str(out / "frames.parquet"), str(out / "rej_faces.parquet"),
              LandmarkParams(detect_every=3), CropParams(), VideoParams())
    run_mels(str(out / "res.parquet"), str(out / "mels.parquet"), str(out / "rej_mels.parquet"), MelParams(),
             AudioParams())
    return run_summary(str(out / "manifest.parquet"), [str(out / "frames.parquet")], [str(out / "mels.parquet")],
                       [str(p) for p in out.glob("rej_*.parquet")], str(out / "clips.parquet"),
                       str(out / "rejects.parquet"), str(out / "summary.json"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    before = _digest(raw)
    out = tmp_path_factory.mktemp("out")
    summary = prepare_folder(raw, out, n_test=2)
    assert _digest(raw) == before, "inputs were modified"
    return out, summary


def test_rejects_name_clip_stage_reason(prepared):
    out, summary = prepared
    rej = {r["clip_id"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    expected = {"zero": ("scan", "zero-length"), "noaudio": ("resample", "no audio stream"),
                "short": ("resample", "too short"), "silent": ("mels", "silent"),
                "noface": ("landmarks", "no face")}
    for cid, (stage, reason) in expected.items():
        assert cid in rej, f"{cid} not rejected"
        assert rej[cid]["stage"] == stage and reason in rej[cid]["reason"], rej[cid]
    assert "truncated" in rej and rej["truncated"]["reason"]
    ready = {r["clip_id"] for r in pq.read_table(out / "clips.parquet").to_pylist()}
    assert ready == {"good", "rotated", "hevc", "rate30", "odd", "partial", "twofaces"}
    assert summary["clips_ready"] == 7


def test_good_clips_shard_content(prepared):
    out, _ = prepared
    fr, mr = FrameReader(out / "frames.parquet"), MelReader(out / "mels.parquet")
    assert fr.n_frames("good") == 30 and fr.n_frames("rate30") == 30 and fr.n_frames("hevc") == 30
    r0, r1, c0, c1 = cropgeo.MOUTH_BOX
    for cid in ["good", "rotated", "odd", "hevc", "twofaces"]:
        cols = fr.clip_columns(cid, ["crop_landmarks", "detected"])
        mouth = cols["crop_landmarks"][:, 48:68]
        assert cols["detected"].mean() > 0.9, cid
        # upright in the crop (rotation applied), mouth inside the mouth box
        assert (mouth[..., 1] > cols["crop_landmarks"][:, 33:34, 1]).all(), cid
        assert (mouth[..., 0] > c0).all() and (mouth[..., 0] < c1).all(), cid
        assert (mouth[..., 1] > r0).all() and (mouth[..., 1] < r1).all(), cid
        assert fr.get(cid, 5)["image"].shape == (416, 320, 3)
        mel = mr.mel(cid)
        assert mel.shape[0] == 80 and abs(mel.shape[1] - 1.2 * 80) <= 2


def test_partial_face_is_flagged_and_interpolated(prepared):
    out, _ = prepared
    cols = FrameReader(out / "frames.parquet").clip_columns("partial", ["detected", "interpolated", "landmarks"])
    assert cols["detected"][:18].all() and not cols["detected"][23:].any()
    assert cols["interpolated"][23:].all()
    assert np.isfinite(cols["landmarks"]).all()


def test_rotated_matches_upright_geometry(prepared):
    """The rotated file shows the same face turned: crops from both have the same size/landmark layout."""
    out, _ = prepared
    fr = FrameReader(out / "frames.parquet")
    a = fr.clip_columns("good", ["crop_landmarks"])["crop_landmarks"]
    b = fr.clip_columns("rotated", ["crop_landmarks"])["crop_landmarks"]
    assert np.abs(a - b).mean() < 6.0


def _same_tables(a, b) -> None:
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if name in ("landmarks", "landmarks_raw", "crop_landmarks", "affine"):
            np.testing.assert_array_equal(np.array(x, np.float64), np.array(y, np.float64), err_msg=name)
        else:
            assert x == y, name


def test_single_pass_equals_separate_passes(raw, tmp_path, caplog):
    """`faces` (one decode pass, crops cut while later frames are still tracked) writes exactly what
    `landmarks` + `crops` write: same points, flags, transforms and JPEG bytes, including repeated
    source frames (20 fps input), interpolated runs, and a run without a face longer than the frame
    buffer (which sends the rest of that clip through a second decode pass)."""
    from g4g.data.demo import render_clip

    root = tmp_path / "clips"
    root.mkdir()
    for name in ["good.mp4", "partial.mp4", "twofaces.mp4", "hevc.mkv"]:
        (root / name).symlink_to(raw / name)
    ffmpeg("-i", str(raw / "good.mp4"), "-r", "20", "-c:a", "copy", str(root / "rate20.mp4"))
    audio, frames = render_clip(6.0, 3, (256, 256), 100)
    wav = tmp_path / "speech.wav"
    write_wav(wav, audio)
    blank = np.full((256, 256, 3), 90, np.uint8)
    write_video(root / "gap.mp4", [blank if 45 <= i < 118 else f for i, f in enumerate(frames)], 25, audio=wav)
    table, _ = scan(build(DatasetParams, {"root": str(root), "split": {"n_test": 1}, "shard_size": 100}), 0)
    write_table(tmp_path / "manifest.parquet", table)
    res = str(tmp_path / "res.parquet")
    run_resample(str(tmp_path / "manifest.parquet"), "s0000", res, str(tmp_path / "rej_r.parquet"), VideoParams(),
                 AudioParams())
    lp = LandmarkParams(detect_every=3, min_detected_fraction=0.2)
    cp = CropParams(buffer_mb=1)  # a few 256 x 256 frames: the 73-frame gap overflows the buffer
    run_landmarks(res, str(tmp_path / "lm.parquet"), str(tmp_path / "rej_l.parquet"), lp)
    run_crops(res, str(tmp_path / "lm.parquet"), str(tmp_path / "two.parquet"), str(tmp_path / "rej_c.parquet"), cp)
    with caplog.at_level("INFO", logger="g4g.data.faces"):
        run_faces(res, str(tmp_path / "one.parquet"), str(tmp_path / "rej_f.parquet"), lp, cp)
    assert "gap: no final crop box" in caplog.text
    one, two = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "two.parquet")
    assert set(one.column("clip_id").to_pylist()) == {"good", "partial", "twofaces", "hevc", "rate20", "gap"}
    _same_tables(one, two)
    assert pq.read_table(tmp_path / "rej_f.parquet").num_rows == 0
    gap = FrameReader(tmp_path / "one.parquet").clip_columns("gap", ["detected", "interpolated"])
    assert not gap["detected"][53:113].any() and gap["detected"][:43].all() and gap["detected"][123:].all()


def test_faces_killed_midway_then_rerun_leaves_no_litter(prepared, tmp_path):
    """kill -9 during the faces stage leaves hidden temporary files; the same command run again finishes,
    removes them and writes what an uninterrupted run writes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out, _ = prepared
    cmd = [sys.executable, "-m", "g4g", "faces", "--resampled", str(out / "res.parquet"),
           "--out", str(tmp_path / "frames.parquet"), "--rejects", str(tmp_path / "rej.parquet"),
           "--landmarks.detect_every", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".spool-*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    litter = sorted(p.name for p in tmp_path.glob(".*"))
    assert any(n.startswith(".spool-") for n in litter) and any(n.startswith(".tmp-") for n in litter), litter
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.parquet", "rej.parquet"]
    _same_tables(pq.read_table(tmp_path / "frames.parquet"), pq.read_table(out / "frames.parquet"))


def test_rejected_test_clips_are_reported_and_can_be_replaced(prepared, tmp_path, caplog):
    """Two test clips rejected by a stage: prepare warns, clips.parquet records it (the tables' note), and
    with split.replace_rejected two ready training clips take their places, the same ones every time."""
    import pyarrow as pa

    from g4g.data.prepare import test_split_note
    from g4g.params import SplitParams

    out, _ = prepared
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    for r in man:  # the protocol's test clips: one good, two that preparation rejects
        r["split"] = "test" if r["clip_id"] in ("good", "noface", "zero") else "train"
    schema = pq.read_schema(out / "manifest.parquet")
    write_table(tmp_path / "manifest.parquet", pa.Table.from_pylist(man, schema=schema))
    args = ([str(out / "frames.parquet")], [str(out / "mels.parquet")], [str(p) for p in out.glob("rej_*.parquet")])

    def prepare(name: str, replace: bool) -> dict:
        return run_summary(str(tmp_path / "manifest.parquet"), *args, str(tmp_path / f"{name}.parquet"),
                           str(tmp_path / f"rej_{name}.parquet"), str(tmp_path / f"{name}.json"),
                           SplitParams(n_test=3, replace_rejected=replace), seed=0)

    with caplog.at_level("WARNING", logger="g4g.data.prepare"):
        s = prepare("plain", replace=False)
    assert s["test_split"] == {"protocol": 3, "ready": 1, "rejected": ["noface", "zero"], "replaced": {}}
    assert "2 of the protocol's 3 test clips were rejected" in caplog.text and "replace_rejected" in caplog.text
    assert "1 of the protocol's 3 clips" in test_split_note(str(tmp_path / "plain.parquet"))

    s = prepare("filled", replace=True)
    t = s["test_split"]
    assert t["ready"] == 3 and sorted(t["replaced"]) == ["noface", "zero"]
    clips = {r["clip_id"]: r["split"] for r in pq.read_table(tmp_path / "filled.parquet").to_pylist()}
    assert sorted(c for c, sp in clips.items() if sp == "test") == sorted(["good", *t["replaced"].values()])
    assert "replaced by training clips" in test_split_note(str(tmp_path / "filled.parquet"))
    assert prepare("again", replace=True)["test_split"] == t  # seeded: the same replacements
    # the fixture's own draw of 2 test clips hit two broken files: its tables would say so
    assert "0 of the protocol's 2 clips" in test_split_note(str(out / "clips.parquet"))


def damaged_copies(good, root) -> dict[str, str]:
    """Damaged copies of one good clip, of the kinds real downloads have: name -> what was done."""
    import av

    data = bytearray(good.read_bytes())
    with av.open(str(good)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    kinds = {}

    def save(name: str, b: bytes, what: str) -> None:
        (root / f"{name}.mp4").write_bytes(bytes(b))
        kinds[name] = what

    rng = np.random.default_rng(0)
    b = bytearray(data)
    for pos in rng.integers(len(data) // 3, len(data) - 16, 6):
        b[pos:pos + 8] = bytes(x ^ 0xFF for x in b[pos:pos + 8])
    save("payload_flips", b, "bytes flipped in the payload")
    b = bytearray(data)
    b[40:80] = bytes(x ^ 0x5A for x in b[40:80])
    save("header_flips", b, "bytes flipped in the header")
    b = bytearray(data)
    for pos, _ in packets[12:14]:  # two frames whose NAL length prefix is impossible: the decoder refuses them
        b[pos:pos + 4] = b"\xff\xff\xff\xff"
    save("two_bad_packets", b, "two corrupt packets")
    half = len(data) // 2
    save("chunk_cut", data[:half] + data[half + 2000:], "2000 bytes cut out of the middle")
    save("truncated", data[:int(len(data) * 0.9)], "the last 10 % cut off")
    return kinds


def test_damaged_files_never_crash_a_job_and_every_reason_is_actionable(tmp_path):
    """Damaged copies of a good clip prepared as a dataset: no job fails, every clip is either ready or
    rejected with a reason about that file (no leaked internal error); a clip with two corrupt packets
    is kept, its two lost frames flagged `damaged`."""
    from g4g.data.demo import write_talking_clip

    root = tmp_path / "raw"
    root.mkdir()
    good = write_talking_clip(tmp_path / "good.mp4", 1.2, seed=1)
    kinds = damaged_copies(good, root)
    out = tmp_path / "out"
    out.mkdir()
    prepare_folder(root, out, n_test=1)
    ready = set(pq.read_table(out / "clips.parquet").column("clip_id").to_pylist())
    reasons = {r["clip_id"]: r["reason"] for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert ready | set(reasons) == set(kinds) and not ready & set(reasons)
    for cid, reason in reasons.items():
        assert "unexpected" not in reason and "Traceback" not in reason, (kinds[cid], reason)
        assert f"{cid}.mp4" in reason or "face" in reason, (kinds[cid], reason)  # names the file (or the face)
    assert {"payload_flips", "two_bad_packets"} <= ready, reasons
    flags = FrameReader(out / "frames.parquet").clip_columns("two_bad_packets", ["damaged"])["damaged"]
    assert flags.sum() == 2, flags
