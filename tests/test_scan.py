"""Scan stage: clip ids, deterministic splits (paper protocols), shards, bad files in the manifest."""

import pytest
from conftest import make_video

from g4g.data.scan import assign_shards, clip_id_for, dataset_clips, scan, split_clips
from g4g.params import DatasetParams, SplitParams, build

IDS = [f"v{i:03d}" for i in range(200)]


def test_split_hdtf_is_deterministic_and_sized():
    a = split_clips(IDS, build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=0)
    b = split_clips(list(reversed(IDS)), build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=0)
    assert a == b  # order of listing does not matter
    assert sum(v == "test" for v in a.values()) == 20
    c = split_clips(IDS, build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=1)
    assert a != c


def test_split_lrs2():
    s = split_clips(IDS, build(SplitParams, {"protocol": "lrs2", "test_fraction": 0.2, "n_test": 45}), seed=3)
    vals = list(s.values())
    assert vals.count("train") == 160 and vals.count("test") == 40  # held-out 40 < 45: all tested
    s = split_clips(IDS + [f"w{i}" for i in range(300)], build(SplitParams, {"protocol": "lrs2", "n_test": 45}), seed=3)
    vals = list(s.values())
    assert (vals.count("train"), vals.count("test"), vals.count("val")) == (400, 45, 55)


def test_split_list(tmp_path):
    (tmp_path / "test.txt").write_text("v001\nv007\nnot_there\n")
    s = split_clips(IDS, build(SplitParams, {"protocol": "list", "test_list": str(tmp_path / "test.txt")}), seed=0)
    assert sorted(k for k, v in s.items() if v == "test") == ["v001", "v007"]


def test_shards_and_ids():
    sh = assign_shards(list(reversed(IDS[:10])), 4)
    assert list(sh) == ["s0000", "s0001", "s0002"] and sh["s0002"] == ["v008", "v009"]
    assert clip_id_for("spk 1/clip:2.mp4") == "spk_1__clip_2"


def test_scan_records_bad_files(tmp_path):
    root = tmp_path / "raw"
    (root / "sub").mkdir(parents=True)
    make_video(root / "good.mp4", n=10)
    make_video(root / "sub" / "noaudio.mp4", n=10, audio=None)
    (root / "empty.mp4").write_bytes(b"")
    (root / "junk.mov").write_bytes(b"not a video at all" * 100)
    (root / "notes.txt").write_text("ignored")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    ds = build(DatasetParams, {"root": str(root), "split": {"n_test": 1}, "shard_size": 2})
    assert list(dataset_clips(ds)) == ["empty", "good", "junk", "sub__noaudio"]
    table, rejects = scan(ds, seed=0)
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert rows["good"]["ok"] and rows["sub__noaudio"]["ok"] and not rows["sub__noaudio"]["has_audio"]
    assert not rows["empty"]["ok"] and "zero-length" in rows["empty"]["reason"]
    assert not rows["junk"]["ok"]
    assert {r["clip_id"] for r in rejects.rows} == {"empty", "junk"}
    assert all(r["stage"] == "scan" for r in rejects.rows)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # inputs untouched


def test_missing_dataset_folder_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="put the raw videos there"):
        dataset_clips(DatasetParams(root=str(tmp_path / "nope")))
