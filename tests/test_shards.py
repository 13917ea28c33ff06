"""Parquet shards: round trip, random access by (clip, frame), atomic writes."""

import os
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from g4g.data.shards import FrameReader, FrameShardWriter, MelReader, mel_row, write_mels
from g4g.utils import atomic_path


def clip_columns(cid, T, rng):
    img = rng.integers(0, 255, (T, 416, 320, 3), dtype=np.uint8)
    from g4g.data.shards import encode_image

    lm = rng.uniform(0, 300, (T, 136)).astype(np.float32)
    return img, {
        "clip_id": [cid] * T, "frame": np.arange(T, dtype=np.int32), "src_frame": np.arange(T, dtype=np.int32),
        "landmarks": list(lm), "landmarks_raw": list(lm), "crop_landmarks": list(lm / 2),
        "detected": np.ones(T, bool), "interpolated": np.zeros(T, bool), "n_faces": np.ones(T, np.int8),
        "affine": list(np.tile(np.float32([2, 0, -5, 0, 2, -7]), (T, 1))), "box_outside": np.zeros(T, bool),
        "damaged": np.zeros(T, bool),
        "image": [encode_image(i, "png") for i in img]}


def test_round_trip_random_access(tmp_path, rng):
    path = tmp_path / "s0000.frames.parquet"
    data = {}
    with FrameShardWriter(path, {"crop": {"scale": 1.05}}, row_group_frames=7) as w:
        for cid, T in [("a", 5), ("b", 17), ("c", 1)]:
            img, cols = clip_columns(cid, T, rng)
            data[cid] = (img, cols)
            w.write_clip(cols)
    pf = pq.ParquetFile(path)
    assert pf.num_row_groups == 1 + 3 + 1  # row groups never mix clips; long clips are split
    r = FrameReader(path, cache_row_groups=2)
    assert r.clip_ids == ["a", "b", "c"] and r.n_frames("b") == 17
    assert r.metadata["crop"]["scale"] == 1.05
    for cid, f in [("b", 0), ("b", 6), ("b", 7), ("b", 16), ("a", 4), ("c", 0)]:
        row = r.get(cid, f)
        np.testing.assert_array_equal(row["image"], data[cid][0][f])  # PNG is lossless
        np.testing.assert_array_equal(row["landmarks"].ravel(), data[cid][1]["landmarks"][f])
        assert row["frame"] == f and row["affine"].shape == (2, 3)
    cols = r.clip_columns("b", ["landmarks", "affine", "detected"])
    assert cols["landmarks"].shape == (17, 68, 2) and cols["affine"].shape == (17, 2, 3)
    with pytest.raises(IndexError):
        r.get("a", 5)


def test_jpeg_quality_default_close(tmp_path, rng):
    from g4g.data.shards import decode_image, encode_image

    x = np.clip(rng.normal(128, 20, (416, 320, 3)), 0, 255).astype(np.uint8)
    x = np.ascontiguousarray(np.repeat(np.repeat(x[::8, ::8], 8, 0), 8, 1))  # image-like (smooth blocks)
    y = decode_image(encode_image(x, "jpeg", 95))
    assert y.shape == x.shape and np.abs(y.astype(int) - x).mean() < 3


def test_writer_abort_leaves_no_file(tmp_path, rng):
    path = tmp_path / "s.parquet"
    with pytest.raises(KeyError):
        with FrameShardWriter(path) as w:
            w.write_clip(clip_columns("a", 2, rng)[1])
            raise KeyError("killed")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_mels_round_trip(tmp_path, rng):
    m = rng.normal(size=(80, 33)).astype(np.float32)
    write_mels(tmp_path / "m.parquet", [mel_row("x", 10, m, -20.0)])
    r = MelReader(tmp_path / "m.parquet")
    np.testing.assert_array_equal(r.mel("x"), m)
    assert r.info("x")["n_frames"] == 10


def test_atomic_path(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_permissions_of_a_plain_write(tmp_path, umask):
    """Temporary files are created 0600; what atomic_path publishes follows the umask as open() would,
    so group members on a shared cluster account can read the results."""
    from g4g.utils import write_json

    old = os.umask(umask)
    try:
        (tmp_path / "plain.txt").write_text("x")
        write_json(tmp_path / "atomic.json", {"x": 1})
        with FrameShardWriter(tmp_path / "s.frames.parquet") as w:
            assert w.clips == 0
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("atomic.json", "s.frames.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_a_rerun_clears_its_own_leftovers_only(tmp_path):
    """A killed writer leaves `.tmp-<name>-*` / `.spool-<name>-*`; the next write of <name> removes them,
    and leaves another output's temporary files alone (that job may be running)."""
    target = tmp_path / "s0000.frames.parquet"
    mine = [tmp_path / f".tmp-{target.name}-ab12cd.parquet", tmp_path / f".spool-{target.name}-x9.parquet"]
    other = [tmp_path / ".tmp-s0001.frames.parquet-zz.parquet", tmp_path / ".spool-s0001.frames.parquet-q.parquet"]
    for p in mine + other:
        p.write_bytes(b"left by kill -9")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert not any(p.exists() for p in mine) and all(p.exists() for p in other)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name] + [p.name for p in other])


def test_a_killed_process_scratch_folder_is_removed_by_the_next(tmp_path, monkeypatch):
    """Issue 23 item 6: `g4g lipsync` killed with -9 left `g4g-lipsync-*` (the extracted audio) in the system
    temp folder. The next scratch_dir of that prefix removes the folders of processes that are gone, by the
    pid in their name, and never a running process's."""
    import signal
    import subprocess
    import sys
    import tempfile

    from g4g.utils import scratch_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    code = ("import sys, time\nfrom g4g.utils import scratch_dir\nwith scratch_dir('g4g-lipsync-') as d:\n"
            "    (d / 'audio.wav').write_bytes(b'x')\n    print(d, flush=True)\n    time.sleep(600)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path)}) for _ in range(2)]
    killed, running = procs
    try:
        folders = [Path(p.stdout.readline().strip()) for p in procs]
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert all((f / "audio.wav").exists() for f in folders)  # kill -9: nothing ran to remove it
        with scratch_dir("g4g-lipsync-") as mine:
            assert not folders[0].exists() and folders[1].exists()  # the running process's stays
            assert mine.exists() and str(os.getpid()) in mine.name
        assert not mine.exists()
    finally:
        running.kill()
        running.wait()
