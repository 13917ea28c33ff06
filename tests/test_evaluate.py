"""Evaluation: the own-SyncNet LSE adapter, chunked LSE, scoring a folder of videos, the tables."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_video


@pytest.fixture(scope="module")
def expert_checkpoint(tmp_path_factory):
    """A randomly initialised demo-size sync expert saved as train_sync saves it."""
    import torch

    from g4g.models.loading import build_expert
    from g4g.params import SyncParams

    torch.manual_seed(0)
    p = SyncParams(width=0.25, mouth_size=64)
    path = tmp_path_factory.mktemp("sync") / "syncnet.pt"
    torch.save({"expert": build_expert(p).state_dict(), "params": dataclasses.asdict(p)}, path)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One prepared test clip (what results/{dataset}/ holds after `prepare`), built directly from a video:
    a resampled table, a frame shard with 416 x 320 crops under a fixed crop transform, clips.parquet."""
    from g4g.data.crops import box_to_affine, warp_crop
    from g4g.data.prepare import CLIPS_SCHEMA
    from g4g.data.resample import RESAMPLED_SCHEMA
    from g4g.data.shards import FrameShardWriter, write_table
    from g4g.io.audio import load_audio
    from g4g.io.video import decode_all, frame_times, resample_index

    root = tmp_path_factory.mktemp("prepared")
    (root / "raw").mkdir()
    video = make_video(root / "raw" / "c0.mp4", n=30, size=(160, 128))
    idx = resample_index(frame_times(video), 25.0)
    frames, T = decode_all(video, idx), len(idx)
    A = box_to_affine(np.repeat([[30.0, 0.0, 130.0, 130.0]], T, axis=0))
    audio = load_audio(video)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    write_table(root / "resampled" / "s0000.parquet", pa.Table.from_pylist([{
        "clip_id": "c0", "path": str(video), "split": "test", "src_fps": 25.0, "variable_rate": False, "rotation": 0,
        "width": 160, "height": 128, "n_frames": T, "index_map": idx.tolist(), "audio_pcm16": pcm.tobytes(),
        "audio_seconds": len(audio) / 16000, "audio_dbfs": -10.0, "audio_silent": False}], schema=RESAMPLED_SCHEMA))
    lmk = np.zeros((T, 136), np.float32)
    shard = root / "shards" / "s0000.frames.parquet"
    with FrameShardWriter(shard) as w:
        w.write_clip({"clip_id": ["c0"] * T, "frame": np.arange(T, dtype=np.int32), "src_frame": idx,
                      "landmarks": list(lmk), "landmarks_raw": list(lmk), "crop_landmarks": list(lmk),
                      "detected": [True] * T, "interpolated": [False] * T, "n_faces": [1] * T,
                      "affine": list(A.reshape(T, 6).astype(np.float32)), "box_outside": [False] * T,
                      "damaged": [False] * T,
                      "image": [_jpeg(warp_crop(f, a)) for f, a in zip(frames, A)]})
    write_table(root / "clips.parquet", pa.Table.from_pylist([{
        "clip_id": "c0", "split": "test", "shard": "s0000", "n_frames": T, "frames_path": str(shard),
        "mels_path": ""}], schema=CLIPS_SCHEMA))
    return {"root": root, "video": video, "clips": str(root / "clips.parquet"),
            "resampled": [str(root / "resampled" / "s0000.parquet")]}


def _jpeg(img):
    from g4g.data.shards import encode_image

    return encode_image(img, "jpeg", 95)


# ------------------------------------------------------------------------------------------ LSE adapter
def test_own_syncnet_adapter_shapes_and_offset_search(expert_checkpoint, torch_threads):

    from g4g.evaluate.own_syncnet import OwnSyncNet
    from g4g.evaluate.protocol import ChunkedLSE
    from g4g.metrics.lse import lse

    torch_threads(1)
    net = OwnSyncNet(expert_checkpoint, "cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (24, 416, 320, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    video = net.prepare_video(frames)
    assert video.shape == (24, 3, 128, 128)
    v = net.video_batch(video, [0, 3, 19])
    a = net.audio_batch(net.prepare_audio(audio), [0, 3, 19])
    assert v.shape == (3, 15, 128, 128) and a.shape == (3, 1, 80, 16)
    lip, aud = net.forward_lip(v), net.forward_aud(a)
    emb = net.expert.visual.net[-2].out_channels  # 512 x width
    assert lip.shape == aud.shape == (3, emb) and bool((lip.norm(dim=1) <= 1 + 1e-5).all())
    res = lse(net, frames, audio, batch_size=8)
    assert res.n_windows == 19 and len(res.mean_dists) == 31 and -15 <= res.offset <= 15
    assert 0 <= res.lse_d <= 2 and res.lse_c >= 0 and res.weights.startswith("surrogate: own SyncNet")
    ch = ChunkedLSE(net, len(frames), audio, batch_size=8)
    for s in range(0, len(frames), 7):  # windows straddling chunks give the same numbers
        ch.feed(frames[s:s + 7], s)
    r2 = ch.result()
    assert r2.offset == res.offset and r2.lse_d == pytest.approx(res.lse_d, abs=1e-5)


# ------------------------------------------------------------------------------------------ scoring
def test_external_folder_is_scored_and_missing_weights_leave_columns_empty(prepared, expert_checkpoint,
                                                                          tmp_path, monkeypatch):
    from g4g.evaluate.score import evaluate_method
    from g4g.evaluate.tables import run_tables, table1_columns
    from g4g.params import EvalParams

    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path / "no-weights"))  # no AlexNet, Inception, SyncNet
    ext = tmp_path / "wav2lip"
    ext.mkdir()
    shutil.copy(prepared["video"], ext / "c0.mp4")  # an "external method" that returns the source
    p = EvalParams(allow_surrogates=True, chunk_frames=8, strip_frames=2)
    out = {}
    for method, folder in (("wav2lip", ext), ("empty", tmp_path / "nothing")):
        out[method] = evaluate_method("demo", method, prepared["clips"], prepared["resampled"], str(folder),
                                      str(tmp_path / "m" / method), str(tmp_path / "m" / f"{method}.json"),
                                      str(tmp_path / "m" / f"{method}.png"), p, syncnet=str(expert_checkpoint),
                                      tracking={"mlflow": False}, progress=False)
    s = out["wav2lip"]
    assert s["n_videos"] == 1 and s["n_frames"] == 30
    assert s["metrics"]["PSNR"] > 35 and s["metrics"]["SSIM"] > 0.95  # the stored crops, re-cut: JPEG loss only
    assert "PSNR (full frame)" in s["metrics"] and "LSE-C (own SyncNet)" in s["metrics"]
    assert not {"LPIPS", "FID", "LSE-D", "LSE-C"} & set(s["metrics"])
    notes = " ".join(s["notes"])
    assert "LPIPS empty: missing pretrained weights 'alexnet'" in notes and "FID empty" in notes
    assert s["weights"]["LSE (own SyncNet)"].startswith("surrogate: own SyncNet")
    frames = pq.read_table(tmp_path / "m" / "wav2lip" / "c0.parquet")
    assert frames.num_rows == 30 and {"psnr", "ssim", "mse", "sync_dist_own"} <= set(frames.column_names)
    assert json.loads(frames.schema.metadata[b"g4g_clip"])["clip_id"] == "c0"
    assert out["empty"]["n_videos"] == 0 and "no video" in " ".join(out["empty"]["notes"])

    rows1, _ = run_tables([str(tmp_path / "m" / "wav2lip.json")], ["demo"], ["wav2lip"], ["g4g"],
                          str(tmp_path / "table1.csv"), str(tmp_path / "table2.csv"),
                          str(tmp_path / "metrics"), str(tmp_path / "figures"))
    import csv

    table = list(csv.DictReader(open(tmp_path / "table1.csv")))
    assert tuple(table[0]) == table1_columns()
    ours = table[0]
    assert (ours["dataset"], ours["method"], ours["source"]) == ("demo", "wav2lip", "this run")
    assert float(ours["PSNR"]) > 35 and ours["LPIPS"] == "" and ours["FID"] == "" and ours["LSE-C"] == ""
    assert "LPIPS empty" in ours["notes"] and "surrogate: own SyncNet" in ours["weights used"]
    assert json.loads((tmp_path / "metrics" / "demo" / "summary.json").read_text())["wav2lip"]["psnr"] > 35
    assert (tmp_path / "figures" / "demo" / "charts" / "psnr.png").exists()


def test_lse_in_both_framings_and_the_labelled_fallback_detector(prepared, tmp_path, monkeypatch):
    """syncnet_v2 weights present (random ones), sfd_face.pth not. By default (no surrogates) LSE-D/LSE-C stay
    empty, the note naming the missing file and the setting that would allow dlib's HOG boxes instead (issue
    25: they were filled from HOG boxes without anyone opting in); the landmark-crop columns need no face
    detector and are filled. With evaluate.allow_surrogates they are framed with the HOG boxes and say so; the
    clip (a test pattern) holds no face, so they are empty with that reason."""
    import torch

    from g4g.evaluate.score import evaluate_method
    from g4g.metrics.syncnet import SyncNetV2
    from g4g.params import EvalParams

    torch.manual_seed(0)
    (tmp_path / "w" / "syncnet").mkdir(parents=True)
    torch.save(SyncNetV2().state_dict(), tmp_path / "w" / "syncnet" / "syncnet_v2.model")
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path / "w"))
    ext = tmp_path / "ext"
    ext.mkdir()
    shutil.copy(prepared["video"], ext / "c0.mp4")

    def score(name: str, **p) -> dict:
        return evaluate_method("demo", "ext", prepared["clips"], prepared["resampled"], str(ext), str(tmp_path / name),
                               str(tmp_path / f"{name}.json"), None, EvalParams(chunk_frames=8, strip_frames=0, **p),
                               tracking={"mlflow": False}, progress=False)

    s = score("default")
    assert {"LSE-D (landmark crop)", "LSE-C (landmark crop)"} <= set(s["metrics"])
    assert not {"LSE-D", "LSE-C"} & set(s["metrics"]) and "LSE face boxes" not in s["weights"]
    boxes = next(n for n in s["notes"] if n.startswith("LSE face boxes empty"))
    assert "sfd_face.pth" in boxes and "evaluate.allow_surrogates: true" in boxes, boxes

    s = score("surrogate", allow_surrogates=True)
    assert {"LSE-D (landmark crop)", "LSE-C (landmark crop)"} <= set(s["metrics"])
    assert not {"LSE-D", "LSE-C"} & set(s["metrics"])
    assert s["weights"]["LSE face boxes"].startswith("surrogate: dlib HOG face boxes instead of S3FD")
    notes = " ".join(s["notes"])
    assert "framed with surrogate: dlib HOG" in notes and "no face track by syncnet_python's rules" in notes
    assert [n.split(":")[0] for n in s["notes"][:3]] == [  # the network and its framing named together
        "LPIPS empty", "FID empty", "LSE-D, LSE-C framed with surrogate"]
    frames = pq.read_table(tmp_path / "surrogate" / "c0.parquet")
    assert "sync_dist" in frames.column_names and "sync_dist_tracks" not in frames.column_names


def test_a_new_metric_is_one_class_and_one_registry_line(prepared, tmp_path, monkeypatch):
    """Issue 28 item 5: every metric is one class behind one accumulator interface, listed once in the registry;
    a new one's column reaches the clip's Parquet file, the method's values and the tables, after the columns
    placed before it."""
    import csv

    from g4g.evaluate import registry
    from g4g.evaluate.score import evaluate_method
    from g4g.evaluate.tables import run_tables
    from g4g.params import EvalParams

    assert registry.metric_columns() == (
        "PSNR", "SSIM", "LPIPS", "MSE", "FID", "LSE-D", "LSE-C", "LMD", "Mouth-audio agreement", "Silent-mouth ratio",
        "Mouth movement", "LSE-D (landmark crop)", "LSE-C (landmark crop)", "LSE-D (own SyncNet)",
        "LSE-C (own SyncNet)", "PSNR (full frame)", "SSIM (full frame)", "MSE (full frame)")

    class Brightness(registry.FrameMean):  # the mean pixel of the face crops, standing in for the next metric
        per_frame = {"brightness": "Brightness"}

        def frame_values(self, chunk):
            return {"brightness": chunk.crops.mean(axis=(1, 2, 3))}

    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, Brightness))
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    ext = tmp_path / "ext"
    ext.mkdir()
    shutil.copy(prepared["video"], ext / "c0.mp4")
    s = evaluate_method("demo", "ext", prepared["clips"], prepared["resampled"], str(ext), str(tmp_path / "m" / "ext"),
                        str(tmp_path / "m" / "ext.json"), None, EvalParams(chunk_frames=8, strip_frames=0),
                        tracking={"mlflow": False}, progress=False)
    brightness = pq.read_table(tmp_path / "m" / "ext" / "c0.parquet").column("brightness").to_numpy()
    assert len(brightness) == 30 and s["clips"][0]["Brightness"] == pytest.approx(brightness.mean())
    assert s["metrics"]["Brightness"] == pytest.approx(brightness.mean())
    run_tables([str(tmp_path / "m" / "ext.json")], ["demo"], ["ext"], ["g4g"], str(tmp_path / "table1.csv"),
               str(tmp_path / "table2.csv"), str(tmp_path / "metrics"), str(tmp_path / "figures"))
    header, row = list(csv.reader(open(tmp_path / "table1.csv")))[:2]
    assert header[header.index("MSE (full frame)") + 1] == "Brightness"
    assert float(row[header.index("Brightness")]) == pytest.approx(brightness.mean(), rel=1e-5)


def test_tables_hold_the_papers_rows_labelled(tmp_path):
    from g4g.evaluate import paper
    from g4g.evaluate.tables import make_tables, table2_columns, write_markdown

    ours = {"dataset": "demo", "method": "g4g", "n_videos": 3, "n_frames": 309, "metrics": {"PSNR": 25.0},
            "weights": {}, "notes": []}
    rows1, rows2 = make_tables([ours], ["demo"], ["g4g"], ["g4g"])
    published = [r for r in rows1 if r["source"] == "paper"]
    assert len(published) == 10 and {r["dataset"] for r in published} == {"hdtf", "lrs2"}
    g4g_hdtf = next(r for r in published if r["method"] == "g4g" and r["dataset"] == "hdtf")
    assert g4g_hdtf["metrics"]["PSNR"] == 27.5560 and g4g_hdtf["metrics"]["LSE-C"] == 7.3381
    assert all(r["notes"] == paper.NOTE for r in published)
    assert rows1[0]["source"] == "this run" and rows2[0]["variant"] == "full"
    assert [r["variant"] for r in rows2 if r["source"] == "paper"] == [
        "w/o alignment", "w/o supervision", "w/o fusion", "full"]
    write_markdown(rows2, table2_columns(), tmp_path / "t2.md", "Table 2")
    md = (tmp_path / "t2.md").read_text()
    assert "| hdtf | g4g_wo_fusion | w/o fusion | paper | 25.7960 |" in md

    # what `make demo` prints: identity and filled metric columns, notes by number
    from g4g.evaluate.tables import format_table, table1_columns, write_csv

    write_csv(rows1, table1_columns(), tmp_path / "t1.csv")
    text = format_table(tmp_path / "t1.csv")
    lines = text.splitlines()
    assert lines[1].split() == ["dataset", "method", "source", "PSNR", "SSIM", "LPIPS", "MSE", "LSE-D", "LSE-C",
                                "notes"]
    assert lines[3].split() == ["demo", "g4g", "this", "run", "25.0000"]
    assert "hdtf     g4g" in text and "27.5560" in text and f"[1] {paper.NOTE}" in text
    assert format_table(tmp_path / "t1.csv", source="this run").count("\n") == 3  # path, header, rule, 1 row


def test_table1_lists_every_trained_variant_and_the_references():
    from g4g.evaluate.wiring import methods
    from g4g.params import EvalParams, Params

    p = Params(variants=["full", "wo_alignment", "wo_fusion"], dataset="demo",
               evaluate=EvalParams(references=["ground_truth", "reference_paste"], external_methods={"wav2lip": "x"}))
    m = methods(p)
    assert m["table1"] == ["g4g", "g4g_wo_alignment", "g4g_wo_fusion", "ground_truth", "reference_paste", "wav2lip"]
    assert m["table2"] == ["g4g", "g4g_wo_alignment", "g4g_wo_fusion"] and m["datasets"] == ["demo"]


def test_bootstrap_interval_of_a_mean():
    from g4g.evaluate.intervals import bootstrap_interval

    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 2.0, 400)
    lo, hi = bootstrap_interval(x)
    half = 1.96 * x.std() / np.sqrt(len(x))  # the normal-theory interval the bootstrap approximates
    assert lo < x.mean() < hi and abs((hi - lo) / 2 - half) < 0.1 * half, (lo, hi, half)
    assert bootstrap_interval(np.full(5, 0.25)) == (0.25, 0.25)
    assert bootstrap_interval(np.array([1.0])) is None  # one clip: no interval
    assert bootstrap_interval(x) == bootstrap_interval(x)  # seeded: the same bytes every run


def test_intervals_in_tables_and_paired_differences(tmp_path):
    """Issue 12 item 3: each measured cell gets a 95 % interval over the test clips, each method its paired
    difference from G4G. A method that is G4G + 0.5 dB on every clip, on clips whose PSNR spreads over
    10 dB: the two cells' intervals overlap, the paired difference is exactly [0.5, 0.5]."""
    from g4g.evaluate.tables import run_tables

    psnr = np.linspace(20, 30, 12)
    summaries = []
    for method, shift in (("g4g", 0.0), ("mean_face", 0.5)):
        clips = [{"clip_id": f"c{i:02d}", "PSNR": float(v + shift), "SSIM": 0.9, "n_frames": 10}
                 for i, v in enumerate(psnr)]
        summaries.append({"dataset": "demo", "method": method, "n_videos": 12, "n_frames": 120, "weights": {},
                          "notes": [], "clips": clips,
                          "metrics": {"PSNR": float(psnr.mean() + shift), "SSIM": 0.9, "FID": 12.0}})
    paths = []
    for s in summaries:
        paths.append(tmp_path / f"{s['method']}.json")
        paths[-1].write_text(json.dumps(s))
    outs = []
    for run in ("a", "b"):
        t1 = tmp_path / run / "table1.csv"
        run_tables([str(p) for p in paths], ["demo"], ["g4g", "mean_face"], ["g4g"], str(t1),
                   str(tmp_path / run / "table2.csv"), str(tmp_path / run / "metrics"), str(tmp_path / run / "fig"))
        outs.append((tmp_path / run / "table1_intervals.csv").read_text())
    assert outs[0] == outs[1]
    import csv

    rows = {(r["method"], r["metric"]): r for r in csv.DictReader(open(tmp_path / "a" / "table1_intervals.csv"))}
    ours, theirs = rows[("g4g", "PSNR")], rows[("mean_face", "PSNR")]
    assert float(ours["ci_low"]) < psnr.mean() < float(ours["ci_high"])
    assert float(theirs["ci_low"]) < float(ours["ci_high"])  # unpaired, the two overlap
    assert float(theirs["diff_vs_g4g"]) == pytest.approx(0.5)
    assert float(theirs["diff_low"]) == pytest.approx(0.5) and float(theirs["diff_high"]) == pytest.approx(0.5)
    assert ours["diff_vs_g4g"] == "" and ("g4g", "FID") not in rows  # FID is pooled: no per-clip values
    assert rows[("g4g", "SSIM")]["ci_low"] == rows[("g4g", "SSIM")]["ci_high"] == "0.9"
    md = (tmp_path / "a" / "table1.md").read_text()
    assert f"| demo | g4g | this run | {psnr.mean():.4f} [{float(ours['ci_low']):.4f}, " in md
    assert "| demo | mean_face | +0.5000 [0.5000, 0.5000] |" in md
    # the paper's rows carry the same (dataset, method) keys as a run on HDTF: they never get this run's interval
    from g4g.evaluate.tables import make_tables, table1_columns, write_markdown

    hdtf = {**summaries[0], "dataset": "hdtf"}
    rows1, _ = make_tables([hdtf], ["hdtf"], ["g4g"], ["g4g"])
    ci = {("hdtf", "g4g", "PSNR"): {"ci_low": 1.0, "ci_high": 2.0}}
    write_markdown(rows1, table1_columns(), tmp_path / "hdtf.md", "t", ci)
    lines = (tmp_path / "hdtf.md").read_text().splitlines()
    assert "[1.0000, 2.0000]" in next(ln for ln in lines if "| hdtf | g4g | this run |" in ln)
    assert "[" not in next(ln for ln in lines if "| hdtf | g4g | paper |" in ln)
    table2_rows = (tmp_path / "a" / "table2_intervals.csv").read_text().splitlines()
    assert len(table2_rows) == 1 + 2 and all(",g4g," in r for r in table2_rows[1:])  # table 2 shows g4g only


def test_the_cross_driven_table_reads_the_driven_settings(tmp_path):
    """The cross-driven table: a row per method rendered in the driven settings (the full model, the baselines,
    the ground truth), with the cross-driven measures against the driving audio and the silent render's mouth
    movement as the leakage, their intervals and the paired differences from G4G; a method scored only in the
    reconstruction setting (an ablation, an external folder) has no row."""
    import csv

    from g4g.evaluate.tables import LEAKAGE, run_tables

    def summary(method, agreement, movement, driven=True):
        def setting(values):
            clips = [{"clip_id": f"c{i}", "n_frames": 50, **{k: v + 0.01 * i for k, v in values.items()}}
                     for i in range(4)]
            return {"n_videos": 4, "n_frames": 200, "notes": ["a note"], "rejects": [], "clips": clips,
                    "metrics": {k: float(np.mean([c[k] for c in clips])) for k in values}}
        s = {"dataset": "demo", "method": method, "n_videos": 4, "n_frames": 200, "weights": {}, "notes": [],
             "clips": [{"clip_id": f"c{i}", "PSNR": 25.0, "n_frames": 50} for i in range(4)], "metrics": {"PSNR": 25.0}}
        if driven:
            s["settings"] = {"cross": setting({"Mouth-audio agreement": agreement, "Mouth movement": 2.0}),
                             "silent": setting({"Mouth movement": movement})}
        return s

    paths = []
    for s in (summary("g4g", 0.8, 0.3), summary("mean_face", 0.1, 0.05), summary("ground_truth", 0.3, 2.5),
              summary("g4g_wo_fusion", 0.2, 0.2, driven=False)):
        paths.append(tmp_path / f"{s['method']}.json")
        paths[-1].write_text(json.dumps(s))
    t3 = tmp_path / "table_cross.csv"
    run_tables([str(p) for p in paths], ["demo"], ["g4g", "ground_truth", "mean_face"], ["g4g", "g4g_wo_fusion"],
               str(tmp_path / "table1.csv"), str(tmp_path / "table2.csv"), str(tmp_path / "metrics"),
               str(tmp_path / "fig"), table_cross=str(t3))
    rows = {r["method"]: r for r in csv.DictReader(open(t3))}
    assert list(rows) == ["g4g", "ground_truth", "mean_face"]  # table 1's order; no ablation without renders
    assert float(rows["g4g"]["Mouth-audio agreement"]) == pytest.approx(0.815)
    assert float(rows["g4g"][LEAKAGE]) == pytest.approx(0.315) and float(rows["ground_truth"][LEAKAGE]) == 2.515
    assert "cross-driven: a note" in rows["g4g"]["notes"] and "silent: a note" in rows["g4g"]["notes"]
    ci = {(r["method"], r["metric"]): r for r in csv.DictReader(open(tmp_path / "table_cross_intervals.csv"))}
    assert float(ci[("mean_face", LEAKAGE)]["diff_vs_g4g"]) == pytest.approx(-0.25)
    assert float(ci[("mean_face", "Mouth-audio agreement")]["diff_high"]) == pytest.approx(-0.7)
    md = (tmp_path / "table_cross.md").read_text()
    assert md.startswith("# Cross-driven") and "Leakage" in md and "| demo | mean_face | -0.7000" in md


def test_seed_replicates_give_the_spread_beside_the_table_row(tmp_path):
    """Issue 10 item 4: with extra_seeds, each variant's replicates (g4g@seed1, ...) give a mean and a sample
    standard deviation over seeds, in tableN_seeds.csv, under the Markdown table and in the DVC metrics; the
    table row stays the run of `seed`, byte for byte, and a method without replicates has no spread."""
    import csv

    from g4g.evaluate.tables import run_tables
    from g4g.params import replicate_method, split_replicate

    assert replicate_method("g4g_wo_fusion", 2) == "g4g_wo_fusion@seed2"
    assert split_replicate("g4g_wo_fusion@seed2") == ("g4g_wo_fusion", 2)
    assert split_replicate("g4g") == ("g4g", None) and split_replicate("x@seedy") == ("x@seedy", None)

    def summary(method, psnr, fid=None):
        clips = [{"clip_id": f"c{i}", "PSNR": psnr + d, "n_frames": 5} for i, d in enumerate((-1.0, 0.0, 1.0))]
        return {"dataset": "demo", "method": method, "n_videos": 3, "n_frames": 15, "weights": {}, "notes": [],
                "clips": clips, "metrics": {"PSNR": psnr, **({"FID": fid} if fid is not None else {})}}

    runs = {"g4g": summary("g4g", 24.0, 10.0), "g4g@seed1": summary("g4g@seed1", 25.0, 14.0),
            "g4g@seed2": summary("g4g@seed2", 27.0), "mean_face": summary("mean_face", 20.0)}
    runs["g4g@seed1"]["metrics"]["MSE"] = runs["g4g@seed2"]["metrics"]["MSE"] = 1.0  # not in the table's run
    paths = {}
    for name, s in runs.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(s))

    def tables(folder, names):
        out = tmp_path / folder
        run_tables([str(paths[n]) for n in names], ["demo"], ["g4g", "mean_face"], ["g4g"], str(out / "table1.csv"),
                   str(out / "table2.csv"), str(out / "metrics"), str(out / "fig"), {"demo": 7})
        return out

    alone, seeded = tables("alone", ["g4g", "mean_face"]), tables("seeded", list(runs))
    assert (alone / "table1.csv").read_bytes() == (seeded / "table1.csv").read_bytes()
    assert (alone / "table1_intervals.csv").read_bytes() == (seeded / "table1_intervals.csv").read_bytes()
    assert (alone / "table1_seeds.csv").read_text().splitlines() == [
        "dataset,method,metric,n_seeds,seeds,mean,sd,min,max,values"]
    rows = {(r["method"], r["metric"]): r for r in csv.DictReader(open(seeded / "table1_seeds.csv"))}
    assert set(rows) == {("g4g", "PSNR"), ("g4g", "FID")}  # mean_face: one run; FID: two seeds; MSE: not the row's
    psnr = rows[("g4g", "PSNR")]
    assert psnr["seeds"] == "7 1 2" and psnr["values"] == "24 25 27" and psnr["n_seeds"] == "3"
    sd = float(np.std([24, 25, 27], ddof=1))  # CSV cells: 6 significant digits
    assert float(psnr["mean"]) == pytest.approx(76 / 3, rel=1e-5) and float(psnr["sd"]) == pytest.approx(sd, rel=1e-5)
    assert rows[("g4g", "FID")]["seeds"] == "7 1" and float(rows[("g4g", "FID")]["sd"]) == pytest.approx(8 ** 0.5,
                                                                                                           rel=1e-5)
    assert (seeded / "table2_seeds.csv").read_text() == (seeded / "table1_seeds.csv").read_text()
    md = (seeded / "table1.md").read_text()
    assert f"| demo | g4g | 7 1 2 | {76 / 3:.4f} ± {sd:.4f} | 12.0000 ± 2.8284 (seeds 7 1) |" in md
    assert md.index("Intervals: 95 %") < md.index("Spread over training seeds")  # footnotes stay by their table
    with pytest.raises(ValueError, match="two runs under seed 1"):  # the table's run and g4g@seed1 both seed 1
        run_tables([str(paths[n]) for n in runs], ["demo"], ["g4g"], ["g4g"], str(tmp_path / "x" / "t1.csv"),
                   str(tmp_path / "x" / "t2.csv"), str(tmp_path / "x" / "m"), str(tmp_path / "x" / "f"), {"demo": 1})
    assert "Spread over training seeds" not in (alone / "table1.md").read_text()
    dvc_metrics = json.loads((seeded / "metrics" / "demo" / "summary.json").read_text())
    assert dvc_metrics["g4g"]["seeds"]["psnr"] == {"mean": pytest.approx(76 / 3), "sd": pytest.approx(sd), "n": 3}
    assert "seeds" not in dvc_metrics["mean_face"]
    chart = "fig/demo/charts/psnr.png"
    assert (seeded / chart).read_bytes() != (alone / chart).read_bytes()  # seed dots
    from g4g.evaluate.charts import bar_chart  # no seeds: the chart of before, byte for byte

    row = [{"dataset": "demo", "method": "g4g", "source": "this run", "metrics": {"PSNR": 24.0}}]
    charts = [bar_chart(row, "PSNR", tmp_path / f"{i}.png", "higher is better", seeds=s).read_bytes()
              for i, s in enumerate((None, {}, {("demo", "g4g"): [24.0, 25.0]}))]
    assert charts[0] == charts[1] != charts[2]


def test_seed_replicates_are_wired_to_their_own_models():
    from g4g.evaluate.wiring import checkpoint, evaluate_inputs, methods
    from g4g.params import Params

    p = Params(variants=["full", "wo_fusion"], dataset="demo", extra_seeds=[3, 1])
    m = methods(p)
    assert m["replicates"] == ["g4g@seed3", "g4g@seed1", "g4g_wo_fusion@seed3", "g4g_wo_fusion@seed1"]
    assert "g4g@seed3" not in m["table1"] + m["table2"] and "g4g@seed3" in m["evaluated"]
    models = ("m/{dataset}/{variant}/model.pt", "m/{dataset}/seed{seed}/{variant}/model.pt")
    assert checkpoint(p, "g4g_wo_fusion@seed3", models) == "m/demo/seed3/wo_fusion/model.pt"
    assert checkpoint(p, "g4g_wo_fusion", models) == "m/demo/wo_fusion/model.pt"
    d = evaluate_inputs(p, "g4g@seed1", {}, "v/{dataset}/{method}", "v/{dataset}/{method}.index", models, "s.pt")
    assert d == {"videos": "v/demo/g4g@seed1", "index": "v/demo/g4g@seed1.index",
                 "checkpoint": "m/demo/seed1/full/model.pt"}


def test_run_folders_left_behind_are_named(tmp_path, caplog):
    """A seed dropped from extra_seeds (or a variant from variants) leaves its run folder, which dvc.yaml's
    evaluate stage would hash: the workflow names it when it starts."""
    from g4g.evaluate.wiring import stale_runs, warn_stale_runs
    from g4g.params import Params

    for run in ("full", "syncnet", "wo_fusion", "seed1/full", "seed3/full", "seed3/full/checkpoints/x"):
        (tmp_path / "demo" / run).mkdir(parents=True, exist_ok=True)
        (tmp_path / "demo" / run / ("losses.csv" if run == "syncnet" else "model.pt")).write_text("x")
    (tmp_path / "demo" / "seed2" / "full").mkdir(parents=True)  # no model in it: nothing DVC would hash
    p = Params(variants=["full"], dataset="demo", extra_seeds=[1])
    assert stale_runs(p, tmp_path) == [str(tmp_path / "demo" / "seed3" / "full"), str(tmp_path / "demo" / "wo_fusion")]
    assert stale_runs(Params(variants=["full", "wo_fusion"], dataset="demo", extra_seeds=[1, 3]), tmp_path) == []
    with caplog.at_level("WARNING", logger="g4g"):
        warn_stale_runs(p, tmp_path)
    assert [r.args[0] for r in caplog.records] == stale_runs(p, tmp_path)
    assert "DVC's evaluate stage hashes every model under" in caplog.records[0].getMessage()


def test_extra_seeds_may_not_repeat_the_tables_seed():
    import yaml

    from g4g.params import PARAMS_PATH, resolve

    config = yaml.safe_load(PARAMS_PATH.read_text())
    assert resolve({**config, "extra_seeds": [1, 2]}).extra_seeds == [1, 2]
    with pytest.raises(ValueError, match=r"extra_seeds \[0, 2\] lists seed 0"):
        resolve({**config, "extra_seeds": [0, 2]})
    with pytest.raises(Exception, match="non-unique"):
        resolve({**config, "extra_seeds": [2, 2]})


@pytest.mark.slow
def test_score_folders_without_a_model(tmp_path):
    """Issue 12 item 2: `g4g score` pairs generated videos with ground-truth videos by name (any container,
    rate and size), prepares the ground truth with the workflow's own rules into a cache that the next call
    reuses, and lists every clip that is not scored with its reason: a missing video, a corrupt one, a
    ground truth without a face (rejected by preparation), a video that pairs with nothing."""
    import subprocess
    import sys

    from conftest import ffmpeg

    gt, a, b = tmp_path / "gt", tmp_path / "a", tmp_path / "b"
    demo = {"dataset": "demo", "seed": 0, "datasets": {"demo": {"root": str(gt), "generate": "demo", "n_clips": 2,
                                                          "min_seconds": 1.2, "max_seconds": 1.4, "size": 256}}}
    g4g = [sys.executable, "-m", "g4g"]
    subprocess.run([*g4g, "demo-data", "--out", str(gt), "--params", json.dumps(demo)], check=True,
                   capture_output=True)
    (gt / "demo.json").unlink()
    make_video(gt / "noface.mp4", n=40, size=(128, 128))  # a test pattern: preparation finds no face
    a.mkdir()
    b.mkdir()
    shutil.copy(gt / "demo_000.mp4", a / "demo_000.mp4")
    ffmpeg("-i", str(gt / "demo_001.mp4"), "-r", "30", "-vf", "scale=128:128", str(a / "demo_001.mkv"))
    shutil.copy(gt / "demo_000.mp4", a / "stray.mp4")
    (b / "demo_000.mp4").write_bytes((gt / "demo_000.mp4").read_bytes()[:2000])  # cut short: corrupt
    cmd = [*g4g, "score", "--gt", str(gt), "--method", f"a={a}", "--method", f"b={b}", "--out", str(tmp_path / "out"),
           "--cache", str(tmp_path / "cache"), "--cores", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import csv

    clips = {(c["method"], c["clip_id"]): c for c in csv.DictReader(open(tmp_path / "out" / "clips.csv"))}
    assert len(clips) == 3 * 3  # every ground-truth clip, for each method and the ground truth itself
    assert clips[("a", "demo_000")]["status"] == "scored" and float(clips[("a", "demo_000")]["PSNR"]) > 35
    assert "an exact copy scores about 42 dB there" in r.stdout  # the JPEG ceiling, said (issue 23 item 7)
    assert clips[("a", "demo_001")]["status"] == "scored" and 20 < float(clips[("a", "demo_001")]["PSNR"]) < 40
    for m in ("a", "b", "ground_truth"):
        assert clips[(m, "noface")]["reason"].startswith("ground truth not prepared: "), clips[(m, "noface")]
    assert clips[("b", "demo_001")]["reason"].startswith("no video ")
    assert clips[("b", "demo_000")]["status"] == "not scored" and clips[("b", "demo_000")]["reason"]
    methods = {m["method"]: m for m in csv.DictReader(open(tmp_path / "out" / "methods.csv"))}
    assert (methods["a"]["scored"], methods["a"]["not scored"], methods["b"]["scored"]) == ("2", "1", "0")
    assert "pair with no ground truth, not scored: stray.mp4" in methods["a"]["notes"]
    assert "video at 30" in methods["a"]["notes"] and "transforms rescaled" in methods["a"]["notes"]
    # the second call reuses the prepared ground truth and scores again (the videos may have changed)
    (a / "demo_001.mkv").unlink()
    without_b = cmd[:cmd.index(f"b={b}") - 1] + cmd[cmd.index(f"b={b}") + 1:]  # one method: one evaluate job less
    r = subprocess.run(without_b, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "rule faces" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert "no video" in next(c for c in csv.DictReader(open(tmp_path / "out" / "clips.csv"))
                              if (c["method"], c["clip_id"]) == ("a", "demo_001"))["reason"]


def test_a_methods_video_is_its_clip_id_in_any_container(tmp_path):
    from types import SimpleNamespace

    from g4g.evaluate.score import video_of

    clip = SimpleNamespace(clip_id="talk")
    (tmp_path / "talk.v2.mp4").write_bytes(b"x")  # another clip's id ("talk.v2"), not this one's
    assert video_of(clip, str(tmp_path), {})[0] is None
    (tmp_path / "talk.mkv").write_bytes(b"x")
    assert video_of(clip, str(tmp_path), {}) == (str(tmp_path / "talk.mkv"), None)
    (tmp_path / "talk.avi").write_bytes(b"x")
    assert video_of(clip, str(tmp_path), {})[1].startswith("several videos for one clip")


def test_score_refuses_method_names_it_cannot_use(tmp_path):
    """Each refusal names the option; `g4g score` turns it into exit status 2 and that one line (the command
    line is run once: every run costs a process start)."""
    import subprocess
    import sys

    from g4g.evaluate.folders import parse_methods

    for specs, words in ((["ground_truth=x"], "reserved"), (["a/b=x"], "NAME of letters"),
                         (["a"], "write NAME=FOLDER"), (["a=x", "a=y"], "given twice")):
        with pytest.raises(ValueError, match=words):
            parse_methods(specs)
    r = subprocess.run([sys.executable, "-m", "g4g", "score", "--gt", str(tmp_path), "--method", "a=x", "--method",
                        "a=y"], capture_output=True, text=True)
    assert r.returncode == 2 and "--method 'a=y': the name 'a' is given twice" in r.stderr, r.stderr[-1000:]
    assert "Traceback" not in r.stderr


def test_runs_lead_from_a_table_row_to_its_evaluation_and_training(prepared, tmp_path, monkeypatch):
    """Issue 10 item 4 (provenance): the evaluation run carries the DVC md5 of the data and of the checkpoint;
    `g4g runs` finds it from the table's row, with the training run of the checkpoint and whether the
    checkpoint is the one dvc.lock records."""
    import hashlib

    import torch

    from g4g.evaluate.runs import table_runs
    from g4g.tracking import Tracker, git_info, log_evaluation

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    train = Tracker(True, None, "G4G")
    train_id = train.start("g4g-full", {}, {**git_info(), "kind": "training"})  # as training_loop tags it
    train.end()
    ckpt = tmp_path / "results/models/demo/full/model.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"mlflow_run_id": train_id}, ckpt)
    md5 = hashlib.md5(ckpt.read_bytes()).hexdigest()
    summary = {"dataset": "demo", "method": "g4g", "weights": {}, "params": {}, "metrics": {"PSNR": 20.0},
               "n_videos": 1, "n_frames": 30, "notes": []}
    ids = log_evaluation(summary, {"mlflow": True}, "results/models/demo/full/model.pt", [], prepared["clips"])
    table = tmp_path / "table1.csv"
    table.write_text("dataset,method,source\ndemo,g4g,this run\nhdtf,g4g,paper\n")
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml_lock := f"stages:\n  train@full:\n    outs:\n    - path: results/models/demo/full/model.pt\n"
                                 f"      md5: {md5}\n")
    newer = log_evaluation(summary, {"mlflow": True}, "results/models/demo/full/model.pt", [], prepared["clips"])
    summary_dir = tmp_path / "results/metrics/demo"
    summary_dir.mkdir(parents=True)
    (summary_dir / "g4g.json").write_text(json.dumps({**summary, **ids}))  # the row came from the first run
    (row,) = table_runs(table, lock=lock)
    assert row["evaluation_run"] == ids["mlflow_run_id"] != newer["mlflow_run_id"]
    assert row["training_run"] == train_id == ids["training_run_id"]
    assert row["checkpoint_md5"] == md5 and row["checkpoint_in_dvc_lock"] == "yes"
    assert row["data_md5"] == hashlib.md5(open(prepared["clips"], "rb").read()).hexdigest()
    assert row["evaluated_at_commit"] == row["trained_at_commit"] == git_info()["git_commit"]
    lock.write_text(yaml_lock.replace(md5, "f" * 32))  # the lock moved on: the table's run scored another file
    assert table_runs(table, lock=lock)[0]["checkpoint_in_dvc_lock"] == f"no: dvc.lock has {'f' * 32}"
    # a seed replicate behind the row's spread (table1_seeds.csv) is listed after the row, with its own runs
    seed1 = "results/models/demo/seed1/full/model.pt"
    (tmp_path / seed1).parent.mkdir(parents=True)
    torch.save({"mlflow_run_id": train_id}, tmp_path / seed1)
    rep = log_evaluation({**summary, "method": "g4g@seed1"}, {"mlflow": True}, seed1, [], prepared["clips"])
    (summary_dir / "g4g@seed1.json").write_text(json.dumps({**summary, "method": "g4g@seed1", **rep}))
    (tmp_path / "table1_seeds.csv").write_text("dataset,method,metric,n_seeds,seeds\ndemo,g4g,PSNR,2,0 1\n")
    rows = table_runs(table, lock=lock)
    assert [r["method"] for r in rows] == ["g4g", "g4g@seed1"]
    assert rows[1]["evaluation_run"] == rep["mlflow_run_id"] and rows[1]["checkpoint"] == seed1
