"""Tests of the G4G losses: known values, the perceptual VGG path, the generator and discriminator sums."""

from __future__ import annotations

import pytest
import torch

from g4g.losses import (
    LossWeights,
    VGGPerceptual,
    contrastive_loss,
    discriminator_losses,
    facial_attribute_loss,
    generator_losses,
    lsgan_d_loss,
    lsgan_g_loss,
    reconstruction_loss,
)
from g4g.models import (
    FrameDiscriminator,
    InterModalityContrast,
    SyncExpert,
    TemporalDiscriminator,
    build_generator,
    face_size,
    occlusion_mask,
)
from g4g.weights import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny tensors: see conftest.py


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGGPerceptual(pretrained=False)


# ----------------------------------------------------------------------------------------------------
# Known values
# ----------------------------------------------------------------------------------------------------


def test_paper_default_weights():
    w = LossWeights()
    assert (w.lambda_v, w.lambda_p, w.lambda_gan, w.lambda_r, w.lambda_con) == (1, 2, 3, 4, 5)


def test_lsgan_known_values():
    assert lsgan_g_loss(torch.full((2, 1, 4, 4), 0.5)).item() == pytest.approx(0.25)
    assert lsgan_g_loss(torch.ones(3, 1, 2, 2)).item() == 0.0
    assert lsgan_d_loss(torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)).item() == 0.0
    assert lsgan_d_loss(torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)).item() == pytest.approx(2.0)
    d_real, d_fake = torch.tensor([0.0, 2.0]), torch.tensor([1.0, -1.0])
    assert lsgan_d_loss(d_real, d_fake).item() == pytest.approx(1.0 + 1.0)


def test_facial_attribute_loss_known_values():
    x = torch.randn(4, 8)
    assert facial_attribute_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert facial_attribute_loss(x, -x).item() == pytest.approx(2.0, abs=1e-6)
    e = torch.eye(2)
    assert facial_attribute_loss(e, e.flip(0)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("multiscale", [True, False])
def test_reconstruction_loss_known_values(multiscale):
    t = torch.rand(2, 3, 16, 12)
    m = occlusion_mask((16, 12), 1.0, batch=2)
    assert reconstruction_loss(t, t, m, multiscale).item() == 0.0
    # a uniform error of 0.1: 0.1 on the whole face + 0.1 in the region, at every level
    assert reconstruction_loss(t + 0.1, t, m, multiscale).item() == pytest.approx(0.2, abs=1e-5)
    assert reconstruction_loss(t + 0.1, t, None, multiscale).item() == pytest.approx(0.1, abs=1e-5)
    # an error only inside the box weighs more than the same error only outside it
    inside = reconstruction_loss(t + 0.1 * m, t, m, multiscale)
    outside = reconstruction_loss(t + 0.1 * (1 - m), t, m, multiscale)
    assert inside > outside


# ----------------------------------------------------------------------------------------------------
# Contrastive (Eq. 6-10)
# ----------------------------------------------------------------------------------------------------


def test_contrastive_lower_for_aligned_than_shuffled():
    torch.manual_seed(0)
    m = InterModalityContrast(dim=32, hidden=32, proj_dim=16, queue_size=64).eval()
    m.g_a.load_state_dict(m.g_v.state_dict())  # a shared space: the same head on both sides
    m.g_v_m.load_state_dict(m.g_v.state_dict())
    m.g_a_m.load_state_dict(m.g_v.state_dict())
    v = torch.randn(8, 32)
    perm = torch.roll(torch.arange(8), 1)
    ids = torch.arange(8)
    aligned = contrastive_loss(m, v, v + 0.05 * torch.randn_like(v), ids)
    shuffled = contrastive_loss(m, v, v[perm], ids)
    assert aligned < shuffled


def test_same_clip_masking_keeps_the_temperature_gradient_finite():
    """Masking same-clip batch keys (-inf) must come after the division by tau, else d/dtau = 0 * inf."""
    from g4g.models.contrastive import info_nce
    q = torch.nn.functional.normalize(torch.arange(12.0).view(3, 4) + 1, dim=1)
    tau = torch.tensor(0.07, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)  # rows 0 and 1: one clip
    loss = info_nce(q, q.flip(0), None, tau, batch_mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(tau.grad) and tau.grad != 0
    # a masked key drops out of the denominator: the loss differs from the unmasked one
    assert not torch.isclose(loss, info_nce(q, q.flip(0), None, torch.tensor(0.07)))


# ----------------------------------------------------------------------------------------------------
# Perceptual loss (Eq. 20)
# ----------------------------------------------------------------------------------------------------


def test_perceptual_random_init(vgg):
    x = torch.rand(2, 3, 32, 24, requires_grad=True)
    y = torch.rand(2, 3, 32, 24)
    assert vgg(y, y).item() == 0.0
    loss = vgg(x, y)
    loss.backward()
    assert loss > 0 and x.grad.abs().sum() > 0
    assert vgg(x, y, levels=1).item() > 0
    assert not any(p.requires_grad for p in vgg.parameters())


def test_perceptual_missing_weights_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth"):
        VGGPerceptual(pretrained=True)


def test_perceptual_loads_torchvision_layout(monkeypatch, tmp_path, vgg):
    # a file shaped like torchvision's vgg19 checkpoint (features beyond relu5_1, a classifier)
    state = {f"features.{k}": v.clone() + 1.0 for k, v in vgg.features.state_dict().items()}
    state["features.30.weight"] = torch.zeros(512, 512, 3, 3)
    state["classifier.0.weight"] = torch.zeros(4096, 8)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    monkeypatch.setattr("g4g.weights.require", lambda name: path)
    loaded = VGGPerceptual(pretrained=True)
    assert torch.equal(loaded.features[28].weight, vgg.features[28].weight + 1.0)


# ----------------------------------------------------------------------------------------------------
# Totals
# ----------------------------------------------------------------------------------------------------


def _clip_batch(scale: int, n_clips: int = 1, T: int = 5) -> dict:
    H, W = face_size(scale)
    B = n_clips * T
    lmk = torch.tensor([[160.0, 100.0]]).repeat(B, 68, 1) * torch.tensor([W / 320, H / 416])
    lmk[:, 2:15, 1] += torch.linspace(0, 250, 13) * H / 416  # a crude jaw fan below the nose
    lmk[:, 2:15, 0] += torch.linspace(-120, 120, 13) * W / 320
    return {"I_t": torch.rand(B, 3, H, W), "I_r": torch.rand(B, 15, H, W), "A": torch.randn(B, 1, 80, 16),
            "lmk": lmk, "lmk_r": lmk[:, None], "M": occlusion_mask((H, W), 1.0, batch=B)}


@pytest.mark.parametrize("alignment,multiscale", [(True, True), (False, False)])
def test_generator_and_discriminator_losses(vgg, alignment, multiscale):
    torch.manual_seed(0)
    g = build_generator("demo", width=0.125, alignment=alignment, multiscale_supervision=multiscale)
    d, dt = FrameDiscriminator(width=0.125), TemporalDiscriminator(width=0.125)
    expert = SyncExpert(width=0.125).eval().requires_grad_(False)
    batch = _clip_batch(64)
    out = g(batch)
    w = LossWeights()
    terms = generator_losses(out, batch["I_t"], w, perceptual=vgg, frame_d=d, temporal_d=dt,
                             contrast=g.contrast, sync_expert=expert, mel=batch["A"],
                             groups=torch.zeros(5, dtype=torch.long), multiscale=g.cfg.multiscale_supervision)
    expected = {"L_p", "L_gan_frame", "L_gan_temporal", "L_gan", "L_r", "L_sync", "L_con", "total"}
    expected |= {"L_v", "L_nce"} if alignment else set()
    assert set(terms) == expected
    assert all(v.ndim == 0 and torch.isfinite(v) for v in terms.values())
    total = (w.lambda_p * terms["L_p"] + w.lambda_gan * terms["L_gan"] + w.lambda_r * terms["L_r"]
             + w.lambda_con * terms["L_con"] + (w.lambda_v * terms["L_v"] if alignment else 0))
    assert torch.allclose(terms["total"], total)
    terms["total"].backward()
    assert g.E_s.net[0][0].weight.grad.abs().sum() > 0
    d_terms = discriminator_losses(batch["I_t"], out["I_out"], d, dt)
    assert set(d_terms) == {"D_frame", "D_temporal", "total"}
    assert torch.allclose(d_terms["total"], d_terms["D_frame"] + d_terms["D_temporal"])


def test_each_ablation_switches_off_exactly_what_it_names():
    """Table 2's variants differ from the full model only in their registry flags, and "w/o supervision"
    keeps L_p at full and half resolution (Eq. 20): it drops the mask scales and the L1 pyramid only."""
    import dataclasses

    from g4g.models.g4g import variant_config
    from g4g.params import VARIANTS, ModelParams

    full = dataclasses.asdict(variant_config(ModelParams(size="demo"), "full", 64))
    changed = {name: {k for k, v in dataclasses.asdict(variant_config(ModelParams(size="demo"), name, 64)).items()
                      if full[k] != v} for name in VARIANTS}
    assert changed == {"full": set(), "wo_alignment": {"alignment"}, "wo_supervision": {"multiscale_supervision"},
                       "wo_fusion": {"fusion"}}

    calls = []

    class Perceptual(torch.nn.Module):
        def forward(self, x, y, levels=1):
            calls.append(levels)
            return (x - y).abs().mean()

    out = {"I_out": torch.rand(2, 3, 16, 12), "I_gen": torch.rand(2, 3, 16, 12)}
    t = torch.rand(2, 3, 16, 12)
    for multiscale in (True, False):
        generator_losses(out, t, perceptual=Perceptual(), multiscale=multiscale)
    assert calls == [2, 2]
    assert reconstruction_loss(out["I_out"], t, None, True) != reconstruction_loss(out["I_out"], t, None, False)
