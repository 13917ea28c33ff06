"""Scan stage: clip ids, deterministic splits (paper protocols), shards, bad files in the manifest."""

import pytest
from conftest import make_video

from g4g.data.scan import assign_shards, clip_id_for, dataset_clips, scan, split_clips
from g4g.params import DatasetParams, SplitParams, build
from g4g.rejects import ClipError

IDS = [f"v{i:03d}" for i in range(200)]


def test_split_hdtf_is_deterministic_and_sized():
    a = split_clips(IDS, build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=0)
    b = split_clips(list(reversed(IDS)), build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=0)
    assert a == b  # order of listing does not matter
    assert sum(v == "test" for v in a.values()) == 20
    c = split_clips(IDS, build(SplitParams, {"protocol": "hdtf", "n_test": 20}), seed=1)
    assert a != c


def test_a_dataset_smaller_than_its_test_split_is_warned(caplog):
    """2 clips and a protocol of 3 test clips: 1 test clip (one is left to train on), and the log says so."""
    s = split_clips(["a", "b"], build(SplitParams, {"protocol": "count", "n_test": 3}), seed=0)
    assert sorted(s.values()) == ["test", "train"]
    assert "2 clip(s) listed, so 1 test clip(s) instead of the protocol's 3" in caplog.text


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


def _silent_video_and_sound(root, name: str, video_s: float, audio_s: float, ext: str = ".wav"):
    """A picture-only clip and its sound in a separate file of another length."""
    import numpy as np

    from g4g.io.audio import write_wav

    make_video(root / f"{name}.mp4", n=int(round(video_s * 25)), audio=None)
    t = np.arange(int(audio_s * 16000)) / 16000
    write_wav(root / f"{name}{ext}", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))


def test_sound_beside_the_picture_or_in_a_manifest(tmp_path):
    """`clip.mp4` + `clip.wav` is one clip with that sound; other layouts list (video, audio) in a CSV.
    Separate sound of another length: the longer of the two is cut to the shorter, and the clip says so."""
    from g4g.data.resample import resample_clip
    from g4g.params import AudioParams, VideoParams

    root = tmp_path / "raw"
    (root / "audio").mkdir(parents=True)
    _silent_video_and_sound(root, "long_sound", 1.0, 1.6)           # sound 0.6 s longer: trimmed
    _silent_video_and_sound(root, "short_sound", 1.6, 1.0, ".flac")  # sound shorter: the video is cut
    make_video(root / "own.mp4", n=20)                               # sound inside the container
    make_video(root / "mute.mp4", n=20, audio=None)                  # no sound anywhere
    ds = build(DatasetParams, {"root": str(root), "split": {"n_test": 1}})
    clips = dataset_clips(ds)
    assert list(clips) == ["long_sound", "mute", "own", "short_sound"]  # the sound files are not clips
    assert clips["long_sound"].audio.endswith("long_sound.wav") and clips["own"].audio is None
    table, _ = scan(ds, seed=0)
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert rows["short_sound"]["audio_path"].endswith("short_sound.flac") and rows["own"]["audio_path"] == ""
    assert rows["short_sound"]["has_audio"] and not rows["mute"]["has_audio"]

    v, a = VideoParams(), AudioParams()
    long_ = resample_clip(rows["long_sound"], v, a)
    assert long_["n_frames"] == 25 and long_["audio_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert "trimmed" in long_["note"] and "0.60 s" in long_["note"]
    short = resample_clip(rows["short_sound"], v, a)
    assert short["n_frames"] == 25 and short["audio_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert "cut" in short["note"]
    assert resample_clip(rows["own"], v, a)["note"] == ""
    with pytest.raises(ClipError, match="no audio stream.*mute.wav"):
        resample_clip(rows["mute"], v, a)

    # a manifest pairs the videos it names with sound kept elsewhere; the folder's other videos stay clips
    # (issue 23 item 4: a one-line manifest made a one-clip dataset, and a test split of 0, without a word)
    (root / "long_sound.wav").rename(root / "audio" / "speaker1.wav")
    (root / "list.csv").write_text("video,audio\nlong_sound.mp4,audio/speaker1.wav\n")
    ds = build(DatasetParams, {"root": str(root), "manifest": str(root / "list.csv"), "split": {"n_test": 1}})
    clips = dataset_clips(ds)
    assert list(clips) == ["long_sound", "mute", "own", "short_sound"]
    assert clips["long_sound"].audio == str(root / "audio" / "speaker1.wav") and clips["own"].audio is None
    assert clips["short_sound"].audio.endswith("short_sound.flac")
    (root / "bad.csv").write_text("video,audio\nnot_there.mp4,\n")
    with pytest.raises(FileNotFoundError, match="bad.csv.*not_there.mp4"):
        dataset_clips(build(DatasetParams, {"root": str(root), "manifest": str(root / "bad.csv")}))
