"""The generator learns whatever the float summation order: the overfit of issue 29 item 6, at 1, 2 and 4
torch threads and under bf16 autocast, and bf16 training beside fp32 (issue 22 item 4); its own module, so that
pytest-xdist runs it beside tests/test_train.py."""

import numpy as np
import pytest
import torch

from g4g.models.g4g import variant_config
from g4g.params import ModelParams, TrainParams

STEPS, CHECK, DONE = 200, 20, 0.45  # at most 200 steps; the masked L1 looked at every 20; 0.45x is far enough


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """clips.parquet of 4 train + 3 test clips of 40 frames (g4g.train.synthetic), as tests/test_train.py's."""
    from g4g.train.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synth"), 40, 4, 3)


def overfit_setup(synth):
    """The overfit's fixed batch of 2 frames, a freshly seeded demo-size generator (width 0.125), Adam at 2e-3
    with the generator's betas of training, and the loss weights without L_p and L_con."""
    from torch.utils.data import default_collate

    from g4g.losses import LossWeights
    from g4g.models.g4g import G4G
    from g4g.train.data import G4GSamples, device_batch, read_clips

    cfg = variant_config(ModelParams(size="demo", width=0.125), "full", 64)
    ds = G4GSamples(read_clips(str(synth)), cfg, 1, seed=0, crop_scale=None)
    b = device_batch(default_collate([ds[0], ds[1]]), torch.device("cpu"))
    torch.manual_seed(0)
    G = G4G(cfg)
    return b, G, torch.optim.Adam(G.parameters(), lr=2e-3, betas=TrainParams().betas), LossWeights(lambda_v=0,
                                                                                                    lambda_con=0)


@pytest.mark.slow  # learning runs: minutes
@pytest.mark.parametrize(("threads", "bf16"), [(1, False), (2, False), (4, False), (1, True)])
def test_generator_overfits_a_few_frames(synth, torch_threads, threads, bf16):
    """On 2 fixed frames, with the generator's Adam betas of training (TrainParams), the masked-region L1 falls
    to half that of copying a reference frame and the loss never jumps, whatever the thread count (the order
    of float sums) and under bf16 autocast. With the specification's beta1 0.5 the one-thread run ended at
    0.83x, its loss up from 0.49 to 2.19 around step 90 (docs/decisions.md, "Training spikes").

    The run stops at the first look from step 100 on (past where those spikes came) that finds 0.45x or less:
    the four settings stop at steps 120-160 (run on to 200 they stand at 0.38-0.44x at step 160 and 0.34-0.42x
    at 200), and the module costs 236 CPU-s alone against 420 at a fixed 200 steps. The look is in eval mode,
    which leaves the contrastive queue as training left it, so looking does not change the run. bf16 runs at
    one thread: the thread count is the other three's question, and bf16 at two threads cost 150 CPU-s against
    55 for fp32 at one."""
    from g4g.losses import generator_losses

    torch_threads(threads)
    b, G, opt, w = overfit_setup(synth)
    m = b["M"]
    masked_l1 = lambda x: float(((x - b["I_t"]).abs() * m).sum() / (3 * m.sum()))
    l1_ref = masked_l1(b["I_r"][:, :3])
    losses, ratios = [], []
    for step in range(1, STEPS + 1):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = G(b)
        loss = generator_losses(out, b["I_t"], w)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % CHECK == 0:
            with torch.no_grad():
                ratios.append(masked_l1(G.eval()(b)["I_out"]) / l1_ref)
            G.train()
            if step >= 100 and ratios[-1] <= DONE:
                break
    print(f"\n{threads} threads, bf16 {bf16}: masked L1 / the reference copy's every {CHECK} steps "
          f"{[round(r, 3) for r in ratios]}; loss every 20 steps {[round(v, 3) for v in losses[::20]]}")
    assert ratios[-1] < 0.5, ratios
    # no spike: once learning has started, the loss never rises above 1.5x the best so far
    best = np.minimum.accumulate(losses)
    assert (np.array(losses[40:]) < 1.5 * best[40:]).all(), losses


@pytest.mark.slow  # two short learning runs
def test_bf16_training_follows_fp32(synth, torch_threads):
    """Issue 22 item 4: the same 30 steps from the same weights in fp32 and under bf16 autocast (what
    `train.amp` turns on for CUDA; CPU autocast runs the same casts). Every loss is finite; the first step's
    loss is within 1 % of fp32's (the forward's precision: 0.15 % measured); over 30 steps the curves part
    (the updates differ) but stay within 25 % of each other (17 % at most over 40 steps measured, bf16 the
    lower) and both fall below half the first loss."""
    from g4g.losses import generator_losses

    torch_threads(1)
    curves = {}
    for bf16 in (False, True):
        b, G, opt, w = overfit_setup(synth)
        losses = []
        for _ in range(30):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = generator_losses(G(b), b["I_t"], w)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        curves[bf16] = np.array(losses)
    fp32, bf16 = curves[False], curves[True]
    print(f"\nloss every 5 steps: fp32 {np.round(fp32[::5], 3)}, bf16 {np.round(bf16[::5], 3)}")
    assert np.isfinite(fp32).all() and np.isfinite(bf16).all()
    assert abs(bf16[0] - fp32[0]) < 0.01 * fp32[0], (bf16[0], fp32[0])
    assert (np.abs(bf16 - fp32) < 0.25 * fp32).all(), (fp32, bf16)
    assert fp32[-1] < 0.5 * fp32[0] and bf16[-1] < 0.5 * bf16[0], (fp32, bf16)
