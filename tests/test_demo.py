"""The embedded demo dataset: deterministic speech, a mouth that follows the audio, decodable clips, dlib faces."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from g4g.data import demo
from g4g.io.audio import load_audio
from g4g.io.video import decode_all


def frame_rms(audio: np.ndarray) -> np.ndarray:
    hop = demo.SR // demo.FPS
    n = len(audio) // hop
    return np.sqrt(np.mean(audio[:n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


@pytest.fixture(scope="module")
def detector():
    dlib = pytest.importorskip("dlib")
    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    paths = demo.generate_demo(out, n_clips=2, seed=3, size=256, min_seconds=3.0, max_seconds=3.0)
    return out, paths


def test_speech_is_deterministic_and_well_formed():
    a1, o1, _ = demo.speech_and_articulation(3.0, seed=11)
    a2, o2, _ = demo.speech_and_articulation(3.0, seed=11)
    a3, _, _ = demo.speech_and_articulation(3.0, seed=12)
    assert a1.dtype == np.float32 and a1.shape == (48000,) and o1.shape == (75,)
    assert a1.tobytes() == a2.tobytes() and np.array_equal(o1, o2)
    assert not np.array_equal(a1, a3)
    assert 0.1 < np.abs(a1).max() <= 1.0 and o1.min() >= 0 and o1.max() <= 1
    assert (frame_rms(a1) < 0.01).any(), "speech needs pauses"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_openness_follows_audio_envelope(seed):
    audio, openness, _ = demo.speech_and_articulation(5.0, seed)
    r = np.corrcoef(frame_rms(audio), openness)[0, 1]
    assert r > 0.7, r


def test_rendered_mouth_opens_with_openness():
    """Dark mouth interior in the rendered frame grows with the articulation target."""
    audio, openness, width = demo.speech_and_articulation(4.0, seed=5)
    r = demo.FaceRenderer((256, 256))
    x, y = (r.affine() @ np.append(r.mc, 1)).astype(int)
    dark = [(r.render(o, w)[y - 10:y + 30, x - 25:x + 25].mean(-1) < 70).mean() for o, w in zip(openness, width)]
    assert np.corrcoef(dark, openness)[0, 1] > 0.9
    assert np.corrcoef(dark, frame_rms(audio))[0, 1] > 0.7


def test_rendered_frames_are_deterministic():
    v = demo.Variant.sample(4)
    _, f1 = demo.render_clip(1.0, 7, (160, 128), variant=v)
    _, f2 = demo.render_clip(1.0, 7, (160, 128), variant=v)
    a, b = np.stack(list(f1)), np.stack(list(f2))
    assert a.shape == (25, 128, 160, 3) and np.array_equal(a, b)
    _, f3 = demo.render_clip(1.0, 8, (160, 128), variant=v)
    assert not np.array_equal(a, np.stack(list(f3)))
    assert not np.array_equal(a[0], a[12]), "the face must move"


def test_variants_differ():
    vs = [demo.Variant.sample(s) for s in range(6)]
    assert len({json.dumps(v.to_dict(), sort_keys=True) for v in vs}) == 6
    assert len({v.flip for v in vs}) == 2
    frames = [demo.FaceRenderer((128, 128), v).render(0.5) for v in vs[:3]]
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


def test_clips_can_share_a_face_and_keep_their_own_speech(tmp_path, monkeypatch):
    """n_faces: clip i speaks its own sentence as appearance variant i mod n_faces (the demo's test clips are new
    sentences of faces seen in training); without it every clip is its own variant, as before."""
    written = []
    monkeypatch.setattr(demo, "write_talking_clip", lambda path, seconds, seed, size, fh, v, backdrop:
                        written.append((seed, json.dumps(v.to_dict(), sort_keys=True))) or Path(path))
    demo.generate_demo(tmp_path / "a", n_clips=5, n_faces=2, min_seconds=1.0, max_seconds=1.0)
    faces = [v for _, v in written]
    assert faces[0] == faces[2] == faces[4] != faces[1] == faces[3]
    assert len({seed for seed, _ in written}) == 5  # five sentences
    shared = written[:]
    written.clear()
    demo.generate_demo(tmp_path / "b", n_clips=5, min_seconds=1.0, max_seconds=1.0)
    assert len({v for _, v in written}) == 5 and written[:2] == shared[:2]  # the first n_faces clips: unchanged


def test_generated_clips_decode(demo_set):
    out, paths = demo_set
    assert [p.name for p in paths] == ["demo_000.mp4", "demo_001.mp4"]
    meta = json.loads((out / "demo.json").read_text())
    assert [c["file"] for c in meta["clips"]] == ["demo_000.mp4", "demo_001.mp4"]
    assert meta["clips"][0]["variant"] != meta["clips"][1]["variant"]
    for p in paths:
        with av.open(str(p)) as c:
            vs, aus = c.streams.video[0], c.streams.audio
            assert vs.average_rate == 25 and vs.codec_context.name == "h264"
            assert sum(1 for _ in c.decode(vs)) == 75
            assert len(aus) == 1 and aus[0].rate == 16000
        assert abs(len(load_audio(p)) / 16000 - 3.0) < 0.1
    first = [decode_all(p)[0].astype(int) for p in paths]
    assert np.abs(first[0] - first[1]).mean() > 5


def test_dlib_finds_the_face_in_every_frame(demo_set, detector):
    _, paths = demo_set
    frames = np.concatenate([decode_all(p) for p in paths])
    found = np.mean([len(detector(f, 0)) > 0 for f in frames])
    assert found >= 0.95, found


def test_large_frame_paste(tmp_path, detector):
    """write_talking_clip renders any frame size: face about 40% of the height on a gradient backdrop."""
    p = demo.write_talking_clip(tmp_path / "wide.mp4", 1.0, seed=2, frame_size=(480, 270))
    frames = decode_all(p)
    assert frames.shape == (25, 270, 480, 3)
    rects = detector(frames[10], 0)
    assert len(rects) == 1 and 0.3 < rects[0].height() / 270 < 0.55
