"""Training: samplers, resume equivalence, checkpoints, preemption, learning checks, missing weights.

Everything runs on a tiny synthetic dataset written here (a drawn face whose mouth opening follows a
band of the mel spectrogram), at the smallest scale (face 104 x 80) and a small width.
"""

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from g4g.data.mels import audio_windows
from g4g.models.g4g import variant_config
from g4g.params import ModelParams, SyncParams, TrainParams, build

N_FRAMES, TRAIN_CLIPS, TEST_CLIPS = 40, 4, 3


# ----------------------------------------------------------------------------------------------------
# Synthetic data: 416 x 320 crops, 68 landmarks, mels, clips.parquet
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """clips.parquet of 4 train + 3 test clips of 40 frames, in two shards (g4g.train.synthetic)."""
    from g4g.train.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth"), N_FRAMES, TRAIN_CLIPS, TEST_CLIPS)


SMALL = ModelParams(size="demo", width=0.125)


def tiny_train(**kw) -> TrainParams:
    base = dict(stages=[dict(mode="frame", scale=64, steps=4, batch=2, gan=True),
                        dict(mode="clip", scale=64, steps=2, batch=1)],
                lr=1e-3, allow_no_perceptual=True, workers=0, checkpoint_every=2, sample_every=3,
                log_every=1, eval_frames=4, crop_scale=[1.05, 1.15])
    return build(TrainParams, {**base, **kw})


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    """An (untrained) sync expert file in train_sync's format, for the clip stage."""
    from g4g.models.loading import build_expert
    from g4g.train.checkpoint import save_checkpoint

    p = SyncParams(width=0.125, mouth_size=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("expert") / "syncnet.pt"
    save_checkpoint(path, {"expert": build_expert(p).state_dict(), "params": dataclasses.asdict(p)})
    return path


# ----------------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 5])
def test_sampler_shapes_and_constraints(synth, T):
    from g4g.data.shards import MelReader
    from g4g.train.data import G4GSamples, IndexStream, read_clips

    clips = read_clips(str(synth))
    cfg = variant_config(SMALL, "full", 64)
    ds = G4GSamples(clips, cfg, T, seed=3)
    for i in range(12):
        s = ds[i]
        assert s["I_t"].shape == (T, 3, 104, 80) and s["I_t"].dtype == torch.uint8
        assert s["I_r"].shape == (15, 104, 80) and s["A"].shape == (T, 1, 80, 16)
        assert "A_neg" not in s and s["lmk"].shape == (T, 68, 2)  # no hard negatives (docs/decisions.md)
        assert s["lmk_r"].shape == (5, 68, 2)  # the references': G is built from them
        assert s["M"].shape == (T, 1, 104, 80) and round(float(s["mask_scale"][0]), 3) in (0.8, 1.0, 1.2)
        assert 1.0 <= float(s["zoom"]) < 1.15 / 1.05
        frames, refs = s["frames"].numpy(), s["refs"].numpy()
        assert np.all(np.diff(frames) == 1) and len(set(s["clip"].tolist())) == 1  # consecutive, one clip
        assert np.abs(refs[:, None] - frames[None, :]).min() >= 5  # references >= 5 frames away
        clip = next(c for c in clips if c.key == int(s["clip"][0]))  # the clip's stable id
        mel = MelReader(clip.mels_path).mel(clip.clip_id)
        for k, t in enumerate(frames):  # the audio window of each target frame
            np.testing.assert_array_equal(s["A"][k, 0].numpy(), audio_windows(mel, np.array([t]))[0])
        torch.testing.assert_close(ds[i]["I_r"], s["I_r"])  # a pure function of the index
    straight = [b for b in IndexStream(4, 0, 6, rank=1, world=2)]
    assert [b for b in IndexStream(4, 3, 6, rank=1, world=2)] == straight[3:]  # resume = same stream


def test_sync_samples(synth):
    from g4g.train.data import SyncSamples, read_clips

    ds = SyncSamples(read_clips(str(synth)), mouth_size=64, seed=1)
    labels = []
    for i in range(40):
        s = ds[i]
        assert s["mouths"].shape == (15, 64, 64) and s["A"].shape == (1, 80, 16)
        assert (s["label"] == 1) == (s["shift"] == 0) and (s["shift"] == 0 or abs(int(s["shift"])) >= 5)
        labels.append(float(s["label"]))
    assert 0.25 < np.mean(labels) < 0.75


def test_batchnorm_recalibration_matches_the_batch_statistics(synth):
    """After precise BN on one batch, the eval-mode expert scores that batch as the train-mode expert does
    (batch statistics); with the stale running statistics it does not. Momenta and mode are restored."""
    from torch.utils.data import default_collate

    from g4g.models.loading import build_expert
    from g4g.train.data import SyncSamples, read_clips
    from g4g.train.sync import recalibrate_batchnorm

    torch.manual_seed(0)
    expert = build_expert(SyncParams(width=0.125, mouth_size=64))
    bns = [m for m in expert.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:  # stale statistics, as an EMA far behind the weights
        m.running_mean.fill_(0.5)
        m.running_var.fill_(4.0)
    ds = SyncSamples(read_clips(str(synth)), mouth_size=64, seed=1)
    b = default_collate([ds[j] for j in range(16)])
    mouths = b["mouths"].float() / 255.0
    with torch.no_grad():
        batch_stats = expert.train()(mouths, b["A"])
        expert.eval()
        assert (expert(mouths, b["A"]) - batch_stats).abs().max() > 0.05
        before = [m.running_var.clone() for m in bns]
        assert recalibrate_batchnorm(expert, ds, batches=0, batch=16, device="cpu") == 0  # off: untouched
        assert all(torch.equal(m.running_var, v) for m, v in zip(bns, before))
        assert recalibrate_batchnorm(expert, ds, batches=1, batch=16, device="cpu") == 16
        assert not expert.training and all(m.momentum == 0.1 for m in bns)
        torch.testing.assert_close(expert(mouths, b["A"]), batch_stats, atol=2e-3, rtol=0)


def test_expert_digest_follows_the_weights_not_the_file(expert_file, tmp_path):
    """A G4G run's checkpoint folder is keyed on the expert's weights: re-publishing the same expert with
    other provenance (a new commit) keeps the key, so training resumes; a changed weight changes it."""
    import torch

    from g4g.models.loading import expert_digest as digest_of_state
    from g4g.models.loading import load_sync_expert
    from g4g.train.checkpoint import save_checkpoint
    from g4g.utils import sha256_file

    def expert_digest(path):
        return digest_of_state(load_sync_expert(path)[1])

    state = torch.load(expert_file, map_location="cpu", weights_only=False)
    again = tmp_path / "again.pt"
    save_checkpoint(again, {**state, "meta": {"git_commit": "another"}})
    assert sha256_file(again) != sha256_file(expert_file)
    assert expert_digest(again) == expert_digest(expert_file)
    save_checkpoint(again, {**state, "params": {**state["params"], "log_every": 7, "eval_windows": 3}})
    assert expert_digest(again) == expert_digest(expert_file)  # runtime-only knobs: the same expert
    name = next(k for k, v in state["expert"].items() if v.is_floating_point())
    changed = {**state["expert"], name: state["expert"][name] + 1e-6}
    save_checkpoint(again, {**state, "expert": changed})
    assert expert_digest(again) != expert_digest(expert_file)


# ----------------------------------------------------------------------------------------------------
# Checkpoints and preemption
# ----------------------------------------------------------------------------------------------------


def test_checkpoint_write_killed_midway_keeps_previous(tmp_path, monkeypatch):
    from g4g.train import checkpoint as ck

    ck.save_checkpoint(ck.checkpoint_path(tmp_path, 1), {"step": 1, "w": torch.ones(3)})

    def dies_half_way(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as if killed while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(ck.checkpoint_path(tmp_path, 2), {"step": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-00000001.pt"]  # no partial file, no temp left
    assert ck.load_latest(tmp_path)["step"] == 1
    ck.checkpoint_path(tmp_path, 3).write_bytes(b"truncated by a non-atomic copy")
    assert ck.load_latest(tmp_path)["step"] == 1  # an unreadable newest file falls back to the previous
    ck.save_checkpoint(ck.checkpoint_path(tmp_path, 4), {"step": 4})
    ck.prune(tmp_path, keep=2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [3, 4]


def test_checkpoint_bytes_follow_the_state_alone(tmp_path):
    """The same state saved under two names (through two random temporary files) is the same bytes; a
    plain torch.save would name the archive after each file. The weights digest ignores the bytes."""
    import zipfile

    from g4g.models.loading import weights_digest
    from g4g.train import checkpoint as ck
    from g4g.utils import sha256_file

    state = {"generator": {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}, "meta": {"variant": "full"}}
    a, b = ck.save_checkpoint(tmp_path / "a.pt", state), ck.save_checkpoint(tmp_path / "sub" / "b.pt", state)
    assert sha256_file(a) == sha256_file(b)
    assert {n.split("/")[0] for n in zipfile.ZipFile(a).namelist()} == {"archive"}
    torch.save(state, tmp_path / "plain.pt")  # torch's own naming: the root folder is "plain"
    assert sha256_file(tmp_path / "plain.pt") != sha256_file(a)
    assert weights_digest(tmp_path / "plain.pt") == weights_digest(a)
    state["generator"]["b"] = torch.ones(2) + 1e-6
    assert weights_digest(ck.save_checkpoint(tmp_path / "c.pt", state)) != weights_digest(a)
    with pytest.raises(ValueError, match="neither a G4G model nor a sync expert"):
        weights_digest(ck.save_checkpoint(tmp_path / "d.pt", {"step": 1}))


def test_fingerprints_of_a_folder_follow_names_and_contents(tmp_path):
    from g4g.evaluate.fingerprints import fingerprint, folder_sha256

    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "1.bin").write_bytes(b"one")
    (tmp_path / "d" / "2.bin").write_bytes(b"two")
    first = folder_sha256(tmp_path / "d")
    (tmp_path / "d" / ".tmp-2.bin-abc").write_bytes(b"litter of a killed write")  # hidden: not content
    assert folder_sha256(tmp_path / "d") == first
    (tmp_path / "d" / "2.bin").rename(tmp_path / "d" / "3.bin")
    assert folder_sha256(tmp_path / "d") != first
    row = fingerprint(tmp_path / "d", "data")
    assert row["kind"] == "data" and len(row["sha256"]) == 64 and row["weights"] == ""
    with pytest.raises(FileNotFoundError, match="not built yet"):
        fingerprint(tmp_path / "missing.pt", "weights")


def test_tracking_without_mlflow(monkeypatch, tmp_path):
    """Where mlflow is not importable (GPU machines) the tracker is a silent no-op; the CSV still works."""
    from g4g.tracking import LossLog, Tracker, read_losses

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    t = Tracker(enabled=True)
    assert t.start("x", {"a": "1"}, {"b": "2"}) is None and not t.active
    t.log_metrics(1, {"loss": 1.0})
    t.flush()
    t.end()
    log = LossLog(tmp_path / "l.csv", ["step", "loss"])
    log.write({"step": 1, "loss": 0.5})
    log.close()
    log = LossLog(tmp_path / "l.csv", ["step", "loss"], resume_step=0)  # a resume before step 1 drops it
    log.close()
    assert read_losses(tmp_path / "l.csv") == {}


def test_loss_log_copy_survives_its_file_being_deleted(tmp_path):
    """A checkpoint's copy of losses.csv is read through the open file: Snakemake deletes a failed job's
    outputs while a preempted run may still be saving (issue 11, seen under scancel)."""
    from g4g.tracking import LossLog, read_losses

    log = LossLog(tmp_path / "l.csv", ["step", "loss"])
    for step in (1, 2):
        log.write({"step": step, "loss": step / 4})
    (tmp_path / "l.csv").unlink()
    log.copy_to(tmp_path / "ckpt" / "l.csv")
    log.write({"step": 3, "loss": 0.75})  # the log goes on where it was
    log.copy_to(tmp_path / "ckpt" / "l.csv")
    log.close()
    assert read_losses(tmp_path / "ckpt" / "l.csv") == {"step": [1.0, 2.0, 3.0], "loss": [0.25, 0.5, 0.75]}


def test_preemption_handler_sets_flag():
    from g4g.train.checkpoint import Preemption

    with Preemption() as pre:
        assert not pre.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert pre.requested and pre.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_sigterm_saves_checkpoint_and_rerun_resumes(synth, tmp_path):
    """A training process that receives SIGTERM saves a checkpoint, exits 143; the same command resumes."""
    params = {"sync": {"steps": 500, "batch": 4, "width": 0.125, "mouth_size": 64, "workers": 0,
                       "checkpoint_every": 1000, "log_every": 1, "eval_windows": 4}, "seed": 0}
    out = tmp_path / "syncnet.pt"
    cmd = [sys.executable, "-m", "g4g", "train-sync", "--dataset", "synth", "--clips", str(synth),
           "--params", json.dumps(params), "--out", str(out), "--tracking.mlflow", "false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    losses = tmp_path / "syncnet" / "losses.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not losses.exists() or len(losses.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, log
    from g4g.train.checkpoint import list_checkpoints

    (fp_dir,) = (tmp_path / "syncnet" / "checkpoints").iterdir()
    (step, _), = list_checkpoints(fp_dir)
    assert 2 <= step < 500 and not out.exists()
    rerun = subprocess.run(cmd + ["--stop-at", str(step + 1)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"from {fp_dir}" in rerun.stderr and f"(step {step})" in rerun.stderr
    assert [s for s, _ in list_checkpoints(fp_dir)][-1] == step + 1


# ----------------------------------------------------------------------------------------------------
# Training loops
# ----------------------------------------------------------------------------------------------------


def _rows(path):
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def test_resume_equals_straight_run(synth, expert_file, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 steps (frame stage then clip stage, GAN, sync)."""
    from g4g.train.checkpoint import load_latest
    from g4g.train.loop import training_loop

    kw = dict(variant="full", model=SMALL, train=tiny_train(), syncnet=str(expert_file), seed=0)
    m_a = training_loop(str(synth), tmp_path / "a", tmp_path / "a" / "model.pt", tracking={"mlflow": False}, **kw)
    mlflow_cfg = {"mlflow": True, "uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"}
    assert training_loop(str(synth), tmp_path / "b", tmp_path / "b" / "model.pt", tracking=mlflow_cfg,
                         tags={"snakemake_rule": "train"}, stop_at=3, **kw) == {"step": 3}
    assert not (tmp_path / "b" / "model.pt").exists()
    m_b = training_loop(str(synth), tmp_path / "b", tmp_path / "b" / "model.pt", tracking=mlflow_cfg,
                        tags={"snakemake_rule": "train"}, **kw)
    rows_a, rows_b = _rows(tmp_path / "a" / "losses.csv"), _rows(tmp_path / "b" / "losses.csv")
    assert [r["step"] for r in rows_b] == list(range(1, 7)) and rows_a[-1]["L_sync"] > 0
    # wall-clock figures live in timings.csv (resumed like the losses), never in the DVC-tracked losses.csv
    assert [r["step"] for r in _rows(tmp_path / "b" / "timings.csv")] == list(range(1, 7))
    assert not {"data_s", "step_s", "samples_s"} & rows_b[0].keys()
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        assert torch.allclose(torch.tensor(list(ra.values())), torch.tensor(list(rb.values())), rtol=1e-5), (ra, rb)
    g_a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    g_b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)
    for k, v in g_a["generator"].items():
        assert torch.allclose(v.float(), g_b["generator"][k].float(), atol=1e-6), k
    assert m_a["psnr_model"] == pytest.approx(m_b["psnr_model"], abs=1e-4)
    # Snakemake deletes a job's outputs before re-running it: the finished run resumes at its last step
    # and publishes its whole loss history again
    for f in ("model.pt", "losses.csv", "metrics.json"):
        (tmp_path / "b" / f).unlink()
    m_c = training_loop(str(synth), tmp_path / "b", tmp_path / "b" / "model.pt", tracking={"mlflow": False}, **kw)
    assert _rows(tmp_path / "b" / "losses.csv") == rows_b and (tmp_path / "b" / "model.pt").exists()
    assert m_c["psnr_model"] == pytest.approx(m_b["psnr_model"], abs=1e-6)
    # every output of a run without VGG weights says so
    assert g_b["meta"]["perceptual"] == "off (no VGG weights)"
    assert "off (no VGG weights)" in (tmp_path / "b" / "config.yaml").read_text()
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["perceptual"] == "off (no VGG weights)"
    assert load_latest(next((tmp_path / "b" / "checkpoints").iterdir()))["meta"]["perceptual"].startswith("off")
    assert (tmp_path / "b" / "samples.png").exists() and (tmp_path / "b" / "curve.png").exists()
    # one MLflow run across the restart, with params, tags, batched metrics and artefacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_cfg["uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.data.tags["perceptual"] == "off (no VGG weights)" and run.data.tags["variant"] == "full"
    assert run.data.tags["snakemake_rule"] == "train" and len(run.data.tags["git_commit"]) >= 7
    assert run.data.params["train.lr"] == "0.001" and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "L_r")] == list(range(1, 7))
    assert {"psnr_model", "psnr_mean_face_paste", "psnr_reference_paste"} <= set(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "samples", "model"} <= arts


def test_missing_vgg_weights_is_a_clear_error(synth, tmp_path, monkeypatch, capsys):
    from g4g.cli import main
    from g4g.train.loop import perceptual_term
    from g4g.weights import WeightsError

    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth") as e:
        perceptual_term(allow_missing=False)
    assert "allow_no_perceptual" in str(e.value) and str(tmp_path / "empty") in str(e.value)
    assert perceptual_term(allow_missing=True) == (None, "off (no VGG weights)")
    params = json.dumps({"model": {"size": "demo"}, "train": {"allow_no_perceptual": False}})
    root = logging.getLogger()  # main() configures logging (setup_logging): give it copies to change
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    rc = main(["train", "--dataset", "synth", "--clips", str(synth), "--params", params,
               "--out", str(tmp_path / "m" / "model.pt"), "--tracking.mlflow", "false"])
    assert rc == 2 and "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow  # a learning run: minutes
def test_sync_expert_learns(synth, tmp_path):
    """Held-out in-sync vs >= 5-frame-shifted pairs told apart clearly above chance (0.5). Over 3 x 36
    centre frames chance has a standard deviation of about 0.035 (acc) and 0.05 (pair acc); runs of this
    setting show about 0.61-0.67 and 0.68-0.72, and the in-sync cosine 0.15-0.2 above the off-sync one."""
    from g4g.models.loading import load_sync_expert
    from g4g.train.sync import train_sync

    p = SyncParams(steps=80, batch=32, lr=1e-3, width=0.25, mouth_size=64, workers=0, frame_cache=2000,
                   checkpoint_every=1000, log_every=20, eval_windows=36)
    m = train_sync(str(synth), str(tmp_path / "sync"), str(tmp_path / "syncnet.pt"), p, tracking={"mlflow": False})
    assert m["sync_eval_pairs"] == TEST_CLIPS * 36
    assert m["sync_pair_acc"] > 0.62 and m["sync_acc"] > 0.56, m
    assert m["sync_cos_in"] > m["sync_cos_off"] + 0.08, m
    expert, state = load_sync_expert(tmp_path / "syncnet.pt")
    assert not expert.training and not any(q.requires_grad for q in expert.parameters())
    assert state["metrics"]["sync_acc"] == m["sync_acc"]


# ----------------------------------------------------------------------------------------------------
# Clip lengths, off-sync labels, matching sizes (issue 14, items 1, 2, 8)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("T", "gap"), [(1, 5), (5, 5), (5, 3)])
def test_min_clip_frames_is_exactly_what_references_need(T, gap):
    """At min_clip_frames(T, gap) every window of T targets has references; one frame less, some has none."""
    from types import SimpleNamespace

    from g4g.train.data import G4GSamples, min_clip_frames

    n = min_clip_frames(T, gap)
    ds = G4GSamples.__new__(G4GSamples)
    ds.min_ref_gap, ds.cfg = gap, SimpleNamespace(n_refs=5)
    rng = np.random.default_rng(0)
    for t0 in range(n - T + 1):
        assert len(ds.references(rng, n, np.arange(t0, t0 + T))) == 5
    with pytest.raises(ValueError, match="no frame"):
        for t0 in range(n - T):
            ds.references(rng, n - 1, np.arange(t0, t0 + T))
    assert (min_clip_frames(1, 5), min_clip_frames(5, 5)) == (10, 14)


def test_short_clips_are_skipped_and_counted(caplog):
    from g4g.train.data import Clip, long_enough, min_clip_frames

    clips = [Clip(f"c{n}", n, "", "") for n in (9, 10, 12, 13, 14, 40)]
    with caplog.at_level("INFO", logger="g4g.train.data"):
        kept = long_enough(clips, min_clip_frames(5, 5), "stage 2 (clip)")
    assert [c.n_frames for c in kept] == [14, 40]
    assert "stage 2 (clip): 4 of 6 clips are shorter than 14 frames and are skipped" in caplog.text


def test_off_sync_pairs_are_always_at_least_min_shift_apart():
    """Never a nearer stand-in: a shift below min_shift overlaps the in-sync window and would be mislabelled."""
    from g4g.train.data import shifted_frames

    rng = np.random.default_rng(1)
    for n in (10, 11, 20):
        for t in range(2, n - 2):
            assert (np.abs(shifted_frames(rng, np.array([t]), n, 5, 3) - t) >= 5).all()
    with pytest.raises(ValueError, match="no frame 5 away"):
        shifted_frames(rng, np.array([4]), 9, 5, 1)


def test_clip_stage_refuses_an_expert_of_another_mouth_size(synth, expert_file, tmp_path):
    from g4g.train.loop import training_loop

    train = tiny_train(stages=[dict(mode="frame", scale=64, steps=1, batch=2),
                               dict(mode="clip", scale=128, steps=1, batch=1)])
    with pytest.raises(ValueError, match=r"train.stages\[1\] works at mouth size 128.*sync.mouth_size 64"):
        training_loop(str(synth), tmp_path / "run", tmp_path / "model.pt", model=SMALL, train=train,
                      syncnet=str(expert_file), tracking={"mlflow": False})


def test_loss_buffer_reads_every_step_back_in_order():
    from g4g.train.run import LossBuffer

    buf = LossBuffer()
    buf.add(1, {"L_r": torch.tensor(0.5), "total": torch.tensor(2.0, requires_grad=True) * 1}, {"stage": 0},
            {"step_s": 0.1})
    buf.add(2, {"L_r": torch.tensor(0.25), "D_temporal": torch.tensor(3.0)}, {"stage": 1})
    rows = buf.drain()
    assert rows == [(1, {"stage": 0, "L_r": 0.5, "total": 2.0}, {"step_s": 0.1}),
                    (2, {"stage": 1, "L_r": 0.25, "D_temporal": 3.0}, {})]
    assert buf.drain() == []


def test_ranks_agree_on_a_stop_only_every_few_steps():
    from g4g.train.distributed import Dist, stop_agreed

    assert stop_agreed(True, Dist(), 7, 50) and not stop_agreed(False, Dist(), 50, 50)  # one process: at once
    # several ranks: between agreement steps no collective runs (none is initialised here) and none stops
    assert not stop_agreed(True, Dist(rank=0, world=2), 7, 50)


def test_buffered_rows_before_a_crash_are_written(tmp_path):
    """Losses stay on the device between reads (LossBuffer); a step that raises must not lose the rows
    before it (they are the ones wanted after a blow-up)."""
    from g4g.train.distributed import Dist
    from g4g.train.run import TrainingRun

    run = TrainingRun(tmp_path, "t", {}, "fp", Dist(), ["step", "L_r"], {}, {}, {"mlflow": False}, log_every=50)
    run.start(None)
    with pytest.raises(RuntimeError, match="boom"), run.rows_kept():
        for step in (1, 2, 3):
            run.log(step, {"L_r": torch.tensor(step / 10)}, {}, {"step_s": 0.1})
        raise RuntimeError("boom")
    assert (tmp_path / "losses.csv").read_text().splitlines()[1:] == ["1,0.1", "2,0.2", "3,0.3"]


# ----------------------------------------------------------------------------------------------------
# The training skeleton both loops run (issue 28 item 4)
# ----------------------------------------------------------------------------------------------------


def test_skeleton_resumes_a_toy_loop_exactly(synth, tmp_path):
    """g4g.train.skeleton.train with a toy loop of two stages whose batches come from the global RNG: a
    run stopped mid-stage and resumed equals a straight one (weights, losses.csv), every stage ends in a
    checkpoint of the loop's parts, and the final model records the run's meta after the loop's entries."""
    from g4g.train import skeleton
    from g4g.train.checkpoint import list_checkpoints, load_latest

    class Toy(skeleton.Loop):
        columns, title = ["step", "stage", "loss"], "toy"

        def __init__(self, ranks, clips, clips_hash):
            self.net = torch.nn.Linear(3, 1)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
            self.identity, self.tags, self.provenance = ("toy", clips_hash), {"model": "toy"}, {}
            self.config, self.parts, self.extra = {"toy": {"lr": 0.1}}, {"net": self.net, "opt": self.opt}, {"kind": 1}
            self.stages = [3, 2]

        def distribute(self, channels_last):
            assert not channels_last  # CPU

        def batches(self, stage, done):
            return ({"x": torch.randn(4, 3)} for _ in range(self.stages[stage] - done))  # drawn step by step

        def step(self, batch, stage):
            loss = self.net(batch["x"]).pow(2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            return {"loss": loss}, {"stage": stage}, len(batch["x"])

        def report(self, run, step):
            return {"step": step, **run.recent_means(["loss"])}, {"net": self.net.state_dict()}

    settings = SyncParams(checkpoint_every=100, keep_checkpoints=5, log_every=1)

    def run(folder, stop_at=None):
        return skeleton.train(make=Toy, name="toy", settings=settings, min_frames=1, clips_parquet=str(synth),
                              run_dir=str(tmp_path / folder), out=str(tmp_path / folder / "model.pt"), seed=3,
                              tracking={"mlflow": False}, config={"dataset": "synth"}, tags={"dataset": "synth"},
                              device="cpu", stop_at=stop_at)

    straight = run("a")
    assert run("b", stop_at=2) == {"step": 2} and not (tmp_path / "b" / "model.pt").exists()
    assert run("b") == straight and straight["step"] == 5
    assert (tmp_path / "a" / "losses.csv").read_bytes() == (tmp_path / "b" / "losses.csv").read_bytes()
    model_a, model_b = (torch.load(tmp_path / f / "model.pt", weights_only=False) for f in "ab")
    assert list(model_a) == ["net", "meta", "metrics"] and model_a["metrics"] == straight
    for k, v in model_a["net"].items():
        assert torch.equal(v, model_b["net"][k]), k
    meta = model_b["meta"]
    assert list(meta) == ["data_hash", "fingerprint", "model", "dataset"] and meta["model"] == "toy"
    (folder,) = (tmp_path / "b" / "checkpoints").iterdir()
    assert folder.name == meta["fingerprint"]
    assert [s for s, _ in list_checkpoints(folder)] == [2, 3, 5]  # the stop, then each stage's end
    state = load_latest(folder)
    assert {"net", "opt", "kind", "sampler", "step", "rng"} <= state.keys() and state["sampler"]["next_step"] == 5


def test_training_flops_are_counted_per_frame(synth):
    """`python -m g4g.bench.train`'s model FLOPs of a training step (issue 22 item 5), counted per frame: the
    same at batch 1 and 2 (the count scales with the batch, not a fixed cost), and in the clip stage more than
    twice a generator forward alone (both updates, every loss, the backward)."""
    from torch.utils.data import default_collate
    from torch.utils.flop_counter import FlopCounterMode

    from g4g.bench.train import step_flops
    from g4g.models.g4g import build_generator, model_config
    from g4g.train.data import G4GSamples, device_batch, read_clips

    cfg = model_config("demo", width=0.125)
    one, two = step_flops(cfg, 1, 1, str(synth)), step_flops(cfg, 1, 2, str(synth))
    assert one > 0 and abs(two - one) < 0.02 * one, (one, two)
    ds = G4GSamples(read_clips(str(synth), "train", 10), cfg, 1, seed=0, crop_scale=None)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        build_generator("demo", width=0.125)(device_batch(default_collate([ds[0]]), torch.device("cpu")))
    assert step_flops(cfg, 5, 1, str(synth)) > 2 * counter.get_total_flops(), (counter.get_total_flops(), one)
