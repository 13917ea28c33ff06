"""Tiny-width tests of the G4G networks: shapes at every scale and ablation, and the module equivalences."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from g4g.models import (
    MODEL_SIZES,
    AdaAT,
    AdaIN,
    AudioEncoder,
    BlendNet,
    Decoder,
    FrameDiscriminator,
    G4GConfig,
    InterModalityContrast,
    IntraModalityAlignment,
    SyncExpert,
    TemporalDiscriminator,
    VisualEncoder,
    affine_warp,
    build_generator,
    count_params,
    crop_mouth,
    face_size,
    faces_to_mouths,
    landmark_sketch,
    lower_face_mask,
    mouth_box,
    occlusion_mask,
    sync_loss,
)
from g4g.models.composite import fill_convex_hull, sketch_segments

SCALES = (64, 128, 256)


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny tensors: see conftest.py


def fake_landmarks(size: tuple[int, int], batch: int = 1, jitter: float = 0.0) -> torch.Tensor:
    """A plausible 68-point face in crop pixels (template drawn at 416 x 320, then rescaled)."""
    pts = np.zeros((68, 2))
    phi = np.linspace(np.pi, 0, 17)
    pts[0:17] = np.stack([160 + 135 * np.cos(phi), 100 + 270 * np.sin(phi)], 1)  # jaw
    pts[17:22] = np.stack([np.linspace(60, 140, 5), np.full(5, 60)], 1)  # brows
    pts[22:27] = np.stack([np.linspace(180, 260, 5), np.full(5, 60)], 1)
    pts[27:31] = np.stack([np.full(4, 160), np.linspace(70, 150, 4)], 1)  # nose bridge
    pts[31:36] = np.stack([np.linspace(135, 185, 5), np.full(5, 165)], 1)  # nose base, p33 = (160, 165)
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    pts[36:42] = np.stack([100 + 20 * np.cos(ang), 95 + 8 * np.sin(ang)], 1)  # eyes
    pts[42:48] = np.stack([220 + 20 * np.cos(ang), 95 + 8 * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts[48:60] = np.stack([160 + 50 * np.cos(ang), 260 + 20 * np.sin(ang)], 1)  # lips
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts[60:68] = np.stack([160 + 30 * np.cos(ang), 260 + 8 * np.sin(ang)], 1)
    pts = pts * np.array([size[1] / 320, size[0] / 416])
    out = torch.tensor(pts, dtype=torch.float32).repeat(batch, 1, 1)
    return out + jitter * torch.randn_like(out)


def make_batch(scale: int, batch: int = 1) -> dict:
    H, W = face_size(scale)
    lmk = fake_landmarks((H, W), batch, jitter=1.0)
    b = {"I_t": torch.rand(batch, 3, H, W), "I_r": torch.rand(batch, 15, H, W),
         "A": torch.randn(batch, 1, 80, 16), "lmk": lmk, "lmk_r": lmk[:, None].repeat(1, 5, 1, 1),
         "M": occlusion_mask((H, W), [1.0, 0.8, 1.2][:batch])}  # batch <= 3
    return b


# ----------------------------------------------------------------------------------------------------
# Generator: config, registry, shapes per scale and ablation
# ----------------------------------------------------------------------------------------------------


def test_config_and_registry():
    assert [G4GConfig(scale=s).face_size for s in SCALES] == [(104, 80), (208, 160), (416, 320)]
    assert G4GConfig().chans == (64, 128, 256) and G4GConfig(width=0.25).chans == (16, 32, 64)
    with pytest.raises(ValueError):
        G4GConfig(scale=100)
    assert MODEL_SIZES["demo"] == dict(width=0.25, scale=64) and MODEL_SIZES["paper"]["width"] == 1.0
    torch.manual_seed(0)
    n_demo = count_params(build_generator("demo"))
    n_paper = count_params(build_generator("paper"))
    assert 0.5e6 < n_demo < 5e6 and 10e6 < n_paper < 60e6
    # the same weights serve every scale (coarse-to-fine reuse)
    assert n_paper == count_params(build_generator("paper-64"))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("variant", ["full", "no_alignment", "no_fusion"])
def test_generator_shapes(scale, variant):
    torch.manual_seed(0)
    flags = {"full": {}, "no_alignment": {"alignment": False}, "no_fusion": {"fusion": False}}[variant]
    g = build_generator("demo", scale=scale, width=0.125, **flags)
    B = 1 if scale == 256 else 2
    batch = make_batch(scale, B)
    H, W = g.cfg.face_size
    with torch.no_grad():
        out = g(batch)
    c3 = g.cfg.chans[2]
    for k in ("I_s", "I_gen", "I_comp", "I_out"):
        assert out[k].shape == (B, 3, H, W)
    assert out["G"].shape == out["M"].shape == (B, 1, H, W)
    for k in ("ibar_pool", "F_align_pool", "v", "a"):
        assert out[k].shape == (B, c3)
    assert set(out["adaat"]) == {"scale", "angle", "tx", "ty"}
    assert all(v.shape == (B, c3) for v in out["adaat"].values())
    assert 0 <= out["I_out"].min() and out["I_out"].max() <= 1
    assert torch.equal(out["I_s"], batch["I_t"] * (1 - batch["M"]))
    if variant == "no_alignment":
        assert out["l_r"] is None and g.contrast is None and g.E_l is None
    else:
        assert out["l_r"].shape == (B, c3) and g.contrast is not None
    if variant == "no_fusion":
        assert g.blend is None and torch.equal(out["I_out"], out["I_comp"])
    # composite: outside the lower-face mask the output is the unmasked context
    far = out["G"] < 1e-4
    assert torch.allclose(out["I_comp"].masked_select(far), batch["I_t"].masked_select(far), atol=1e-4)


def test_generator_backward_reaches_every_encoder():
    torch.manual_seed(0)
    g = build_generator("demo", width=0.125)
    torch.nn.init.normal_(g.transform.adaat.heads.weight, std=0.01)  # zero at init: opens the v, a path
    out = g(make_batch(64, 2))
    (out["I_out"].mean() + out["l_r"].sum() * 1e-3).backward()
    for name in ("E_s", "E_r", "E_l", "E_a", "align", "code_v", "transform", "decoder", "blend"):
        grads = [p.grad for p in getattr(g, name).parameters() if p.requires_grad]
        assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), name


def test_generator_channels_last_bf16_autocast():
    torch.manual_seed(0)
    g = build_generator("demo", width=0.125).to(memory_format=torch.channels_last)
    batch = make_batch(64, 2)
    batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
             for k, v in batch.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = g(batch)
    assert out["I_out"].shape == (2, 3, 104, 80) and torch.isfinite(out["I_out"].float()).all()


def test_fp32_islands_stay_fp32_under_bf16_autocast(monkeypatch):
    """Issue 22 item 4: under bf16 autocast the parts whose precision decides the result run in float32 (on
    CUDA with TF32 off for them as well): the AdaAT sampling grid and the warp's grid_sample, the InfoNCE
    similarities (Eq. 8-9, logits over a 4096-key queue at tau 0.07), and the sync expert's BCE (unsafe under
    autocast). Each is watched where it is computed, on the generator's own forward and the losses' own calls."""
    from g4g.models import adaat, contrastive, sync_expert
    from g4g.models.contrastive import InterModalityContrast
    from g4g.models.sync_expert import SyncExpert, sync_loss

    seen: dict[str, set] = {}

    def watch(module, name, *labels):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            for label, x in zip(labels, args):
                seen.setdefault(label, set()).add(x.dtype)
            out = real(*args, **kwargs)
            seen.setdefault(f"{name} result", set()).add(out.dtype)
            return out
        monkeypatch.setattr(module, name, wrapped)

    watch(adaat.F, "grid_sample", "warp input", "warp grid")
    watch(contrastive, "info_nce", "InfoNCE query", "InfoNCE positives", "InfoNCE queue")
    watch(sync_expert.F, "binary_cross_entropy", "sync BCE input")
    torch.manual_seed(0)
    g = build_generator("demo", width=0.125)
    contrast = InterModalityContrast(32, 32, 16, queue_size=8)
    expert = SyncExpert(width=0.125).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = g(make_batch(64, 2))
        nce = contrast(torch.randn(4, 32), torch.randn(4, 32), torch.tensor([0, 0, 1, 1]))
        sync = sync_loss(expert, torch.rand(2, 15, 32, 32), torch.randn(2, 1, 80, 16))
        conv = torch.nn.functional.conv2d(torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3))
    assert conv.dtype == torch.bfloat16  # autocast is on: the rest of the network runs in bf16
    assert out["I_out"].dtype == torch.float32 and nce.dtype == sync.dtype == torch.float32
    assert seen and all(dtypes == {torch.float32} for dtypes in seen.values()), seen
    assert {"warp grid", "InfoNCE queue", "sync BCE input"} <= seen.keys(), seen


# ----------------------------------------------------------------------------------------------------
# Encoders, decoder, blend net, discriminators
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_encoders_decoder_blend(scale):
    torch.manual_seed(0)
    H, W = face_size(scale)
    chans = (8, 16, 32)
    f = VisualEncoder(15, chans)(torch.rand(1, 15, H, W))
    assert f.shape == (1, 32, H // 4, W // 4)
    assert AudioEncoder(32, (8, 8, 16, 16))(torch.randn(3, 1, 80, 16)).shape == (3, 32)
    img = Decoder(chans)(f, f, (H, W))
    assert img.shape == (1, 3, H, W) and 0 <= img.min() and img.max() <= 1
    g = torch.rand(1, 1, H, W)
    assert BlendNet(base=8)(img, img, g).shape == (1, 3, H, W)


@pytest.mark.parametrize("scale", SCALES)
def test_discriminators(scale):
    torch.manual_seed(0)
    H, W = face_size(scale)
    d = FrameDiscriminator(width=0.125)
    dt = TemporalDiscriminator(width=0.125)
    y = d(torch.rand(2, 3, H, W))
    assert y.dim() == 4 and y.shape[:2] == (2, 1) and y.shape[2] >= 8
    clip = torch.rand(1, 5, 3, H, W)
    assert torch.equal(dt(clip), dt(clip.flatten(1, 2)))
    assert dt.net[0][0].in_channels == 15


# ----------------------------------------------------------------------------------------------------
# AdaIN (Eq. 5) and the intra-modality alignment
# ----------------------------------------------------------------------------------------------------


def test_adain_output_statistics_match_prediction():
    torch.manual_seed(0)
    ada = AdaIN(8, style_dim=16)
    torch.nn.init.normal_(ada.affine.weight, std=1.0)
    x = torch.randn(2, 8, 10, 12) * 3 + 5
    style = torch.randn(2, 16)
    out = ada(x, style)
    sigma_dot, mu_dot = ada.predict(style)
    var, mean = torch.var_mean(out, dim=(2, 3), keepdim=True, correction=0)
    assert torch.allclose(mean, mu_dot, atol=1e-4)
    assert torch.allclose(var.sqrt(), sigma_dot.abs(), atol=1e-3)


def test_intra_alignment_switch():
    torch.manual_seed(0)
    f = torch.randn(2, 16, 6, 5)
    l_r = torch.randn(2, 16)
    ibar, fa = IntraModalityAlignment(16, 16, 2, aligned=True)(f, f, l_r)
    assert ibar.shape == fa.shape == (2, 16, 6, 5)
    with pytest.raises(ValueError):
        IntraModalityAlignment(16, 16, 2, aligned=True)(f, f, None)
    _, fa2 = IntraModalityAlignment(16, 16, 2, aligned=False)(f, f)
    assert fa2.shape == (2, 16, 6, 5)


# ----------------------------------------------------------------------------------------------------
# AdaAT (Eq. 18)
# ----------------------------------------------------------------------------------------------------


def _params(B, C, scale=1.0, angle=0.0, tx=0.0, ty=0.0):
    return [torch.full((B, C), float(v)) for v in (scale, angle, tx, ty)]


def test_adaat_identity_returns_input():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 13, 10)
    out = affine_warp(x, *_params(2, 4))
    assert torch.allclose(out[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1], atol=1e-6)
    # the module starts as the identity (zero-initialised heads)
    mod = AdaAT(4, p_dim=8, hidden=8)
    assert torch.allclose(mod(x, torch.randn(2, 8)), x, atol=1e-6)


def test_adaat_channels_are_independent():
    torch.manual_seed(0)
    mod = AdaAT(4, p_dim=8, hidden=8)
    torch.nn.init.normal_(mod.heads.weight, std=1.0)
    x, p = torch.randn(2, 4, 12, 10), torch.randn(2, 8)
    y = x.clone()
    y[:, 1] += torch.randn_like(y[:, 1])
    ox, oy = mod(x, p), mod(y, p)
    others = [0, 2, 3]
    assert torch.equal(ox[:, others], oy[:, others])
    assert not torch.allclose(ox[:, 1], oy[:, 1])


@pytest.mark.parametrize("angle,tx_px,ty_px", [(0.0, 3, -2), (math.pi / 2, 0, 0), (math.pi / 2, 2, 1),
                                               (-math.pi / 2, -1, 3), (math.pi, 0, 2)])
def test_adaat_moves_marker_where_expected(angle, tx_px, ty_px):
    H, W = 21, 15  # odd sizes: the map centre is a pixel; non-square to exercise the aspect handling
    cy, cx = (H - 1) / 2, (W - 1) / 2
    dx, dy = 3, -4  # marker offset from the centre, pixels
    x = torch.zeros(1, 2, H, W)
    x[0, :, int(cy + dy), int(cx + dx)] = 1.0
    s, th, tx, ty = _params(1, 2, 1.0, angle, 2 * tx_px / W, 2 * ty_px / H)
    out = affine_warp(x, s, th, tx, ty)
    # output(q) = input(R q + t) about the centre  =>  q = R(-theta) (p - t)
    px, py = dx - tx_px, dy - ty_px
    c, sn = math.cos(angle), math.sin(angle)
    qx, qy = c * px + sn * py, -sn * px + c * py
    qi, qj = round(cy + qy), round(cx + qx)
    for ch in range(2):
        assert out[0, ch, qi, qj] == pytest.approx(1.0, abs=1e-4)
        assert out[0, ch].sum() == pytest.approx(1.0, abs=1e-4)


def test_sampling_grid_is_affine_grid_in_true_fp32():
    """The warp grid is built elementwise (no matmul, so TF32 never touches it) and equals
    F.affine_grid(align_corners=False) (on CUDA with TF32 on: tests/test_cuda.py)."""
    from g4g.models.adaat import sampling_grid

    torch.manual_seed(0)
    theta = torch.randn(6, 2, 3) * torch.tensor([1.0, 1.0, 0.3])
    for H, W in ((26, 20), (5, 9), (1, 1)):
        ref = torch.nn.functional.affine_grid(theta.double(), [6, 1, H, W], align_corners=False)
        assert torch.allclose(sampling_grid(theta, H, W).double(), ref, atol=1e-6, rtol=0)


def test_adaat_bf16_and_channels_last_preserved():
    x = torch.randn(1, 3, 8, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    out = affine_warp(x, *_params(1, 3, 1.2, 0.3, 0.1, -0.1))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------------
# Inter-modality alignment module: buffers, queue, temperature, resume
# ----------------------------------------------------------------------------------------------------


def test_shared_references_are_encoded_once_with_the_same_result():
    """Issue 14 item 10: a clip's 5 targets share one reference set; encoding it once (I_r (B/5, ...))
    gives the outputs of encoding it for every frame, and the same gradients (float64: exact; GroupNorm
    is per sample, and the repeat's backward sums what the 5 copies would send back)."""
    torch.manual_seed(0)
    g = build_generator("demo", width=0.125).eval()
    b = make_batch(64, 1)
    T = 5
    once = {**{k: v.repeat_interleave(T, 0) for k, v in b.items() if k != "I_r"}, "I_r": b["I_r"],
            "M": occlusion_mask((104, 80), 1.0, batch=T), "A": torch.randn(T, 1, 80, 16)}
    every = {**once, "I_r": b["I_r"].repeat_interleave(T, 0)}
    with torch.no_grad():
        assert torch.allclose(g(once)["I_out"], g(every)["I_out"], atol=1e-5)
    with pytest.raises(ValueError, match="cannot share"):
        g({**every, "I_r": b["I_r"].repeat(2, 1, 1, 1)})  # 5 frames over 2 sets
    E, T_ = g.E_r.double(), g.transform.double()
    I, p = b["I_r"].double(), torch.randn(T, 2 * g.cfg.chans[2], dtype=torch.float64)
    grads = []
    for shared in (True, False):
        E.zero_grad()
        T_.zero_grad()
        f = E(I) if shared else E(I.repeat_interleave(T, 0))
        out, _ = T_(f, p, repeat=T if shared else 1)
        out.square().sum().backward()
        grads.append(torch.cat([q.grad.flatten() for m in (E, T_.pre) for q in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_style_spread_measures_how_much_the_adain_style_varies():
    torch.manual_seed(0)
    m = IntraModalityAlignment(16, 16, n_blocks=2)
    l_r = torch.randn(4, 16)
    assert m.style_spread(l_r[:1].expand(4, -1)) == 0  # one style for the whole batch: collapsed
    assert m.style_spread(l_r) > 0 and m.style_spread(l_r).dim() == 0


def test_contrast_state_and_exact_resume():
    torch.manual_seed(0)
    m = InterModalityContrast(dim=16, hidden=16, proj_dim=8, queue_size=10)
    keys = set(m.state_dict())
    assert {"queue_v", "queue_a", "queue_id", "queue_ptr", "g_v_m.net.0.weight", "g_a_m.net.2.bias"} <= keys
    assert not any(p.requires_grad for p in m.g_v_m.parameters())
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    data = [(torch.randn(4, 16), torch.randn(4, 16), torch.arange(4) + 10 * i) for i in range(5)]
    for v, a, ids in data[:3]:
        opt.zero_grad()
        m(v, a, ids).backward()
        opt.step()
    assert int(m.queue_ptr) == 2  # 12 keys written into a ring of 10: the oldest two overwritten
    assert m.queue_id.tolist() == [22, 23, 2, 3, 10, 11, 12, 13, 20, 21]
    m2 = copy.deepcopy(m)
    m2.load_state_dict(m.state_dict())
    for v, a, ids in data[3:]:
        assert torch.equal(m(v, a, ids), m2(v, a, ids))
    assert torch.equal(m.queue_v, m2.queue_v) and torch.equal(m.g_a_m.net[0].weight, m2.g_a_m.net[0].weight)


def test_contrast_eval_does_not_touch_queue_and_tau_is_clamped():
    torch.manual_seed(0)
    m = InterModalityContrast(dim=16, hidden=16, proj_dim=8, queue_size=10).eval()
    with torch.no_grad():
        m.tau.fill_(5.0)
    q = m.queue_v.clone()
    m(torch.randn(3, 16), torch.randn(3, 16), torch.tensor([0, 0, 1]))
    assert torch.equal(m.queue_v, q) and (m.queue_id == -1).all()
    assert m.tau.item() == 0.5


def test_queue_keys_of_the_rows_own_clip_and_empty_slots_are_not_negatives():
    """METHOD Sec. 3 item 3 (revised): a queued key of the query's own clip is a near-duplicate of its
    positive, and an unwritten slot is noise; neither may enter the denominator. Before the fix the queue
    had no clip ids (only a fill count), so a same-clip key always counted."""
    torch.manual_seed(0)
    m = InterModalityContrast(dim=16, hidden=16, proj_dim=8, queue_size=6).eval()
    v, a = torch.randn(2, 16), torch.randn(2, 16)
    ids = torch.tensor([7, 8])
    empty = m(v, a, ids)
    with torch.no_grad():  # slot 0: a key of clip 7 (row 0's own clip); slots 1..5 stay empty
        m.queue_a[0] = m.g_a_m(a[:1]).squeeze(0)
        m.queue_v[0] = m.g_v_m(v[:1]).squeeze(0)
        m.queue_id[0] = 7
    own = m(v, a, ids)
    # row 0 ignores it; row 1 (clip 8) counts it: the loss changes through row 1 only
    with torch.no_grad():
        m.queue_id[0] = 9  # the same key from another clip: both rows count it
        other = m(v, a, ids)
    assert not torch.isclose(own, empty) and not torch.isclose(other, own) and other > own > empty
    with torch.no_grad():
        m.queue_id[0] = -1  # marked empty again: back to the empty-queue loss, whatever the stored vector
    assert torch.isclose(m(v, a, ids), empty)


def test_model_files_from_before_the_clip_ids_still_load():
    m = InterModalityContrast(dim=16, hidden=16, proj_dim=8, queue_size=6)
    old = {k: v for k, v in m.state_dict().items() if k != "queue_id"}
    old["queue_len"] = torch.tensor(4)  # the earlier fill counter
    m.load_state_dict(old)
    assert m.queue_id.tolist() == [-2, -2, -2, -2, -1, -1]  # written slots: a clip no row has; then empty


def test_clip_keys_are_stable_and_distinct():
    from g4g.train.data import Clip

    a, b = Clip("hdtf/WDA_x_000", 100, "f", "m"), Clip("hdtf/WDA_x_001", 50, "g", "n")
    assert a.key == Clip("hdtf/WDA_x_000", 7, "other", "paths").key  # the id alone names the clip
    assert a.key != b.key and 0 <= a.key < 2 ** 63 and isinstance(a.key, int)


# ----------------------------------------------------------------------------------------------------
# Masks, composite, landmark sketch
# ----------------------------------------------------------------------------------------------------


def test_occlusion_mask_boxes():
    assert mouth_box((416, 320)) == (128, 384, 32, 288)
    m = occlusion_mask((416, 320), 1.0)
    rows, cols = m[0, 0].nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (128, 383, 32, 287)
    assert mouth_box((104, 80)) == (32, 96, 8, 72) and mouth_box((208, 160)) == (64, 192, 16, 144)
    t, b, l, r = mouth_box((416, 320), 0.8)  # shrinks from the top: bottom and sides keep the jaw hidden
    assert (t, b, l, r) == (179, 384, 32, 288)
    t, b, l, r = mouth_box((416, 320), 1.2)
    assert b - t == 308 and 0 <= l and r <= 320
    ms = occlusion_mask((104, 80), torch.tensor([0.8, 1.0, 1.2]))
    areas = ms.sum(dim=(1, 2, 3))
    assert ms.shape == (3, 1, 104, 80) and areas[0] < areas[1] < areas[2]
    assert occlusion_mask((104, 80), 1.0, batch=4).shape == (4, 1, 104, 80)
    assert crop_mouth(torch.rand(2, 3, 104, 80)).shape == (2, 3, 64, 64)


def test_convex_hull_fill_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    torch.manual_seed(0)
    H, W = 60, 50
    pts = torch.rand(3, 14, 2) * torch.tensor([W - 10.0, H - 10.0]) + 5
    ours = fill_convex_hull(pts, (H, W))
    for i in range(3):
        ref = np.zeros((H, W), np.uint8)
        hull = cv2.convexHull(np.round(pts[i].numpy() * 16).astype(np.int32))
        cv2.fillConvexPoly(ref, hull, 1, lineType=cv2.LINE_8, shift=4)
        a, b = ours[i, 0].numpy() > 0.5, ref > 0
        assert (a & b).sum() / (a | b).sum() > 0.9


@pytest.mark.parametrize("scale", SCALES)
def test_lower_face_mask(scale):
    H, W = face_size(scale)
    lmk = fake_landmarks((H, W), 2)
    g = lower_face_mask(lmk, lmk[:, None], (H, W))
    assert g.shape == (2, 1, H, W) and g.min() >= 0 and g.max() <= 1
    row, col = (lambda y: int(y * H / 416)), (lambda x: int(x * W / 320))  # template -> crop pixels
    assert g[0, 0, row(300), col(160)] > 0.95  # below the mouth, well inside the hull
    assert g[0, 0, row(60), col(160)] < 1e-3  # brow level
    assert g[0, 0, :5].max() < 1e-3


def test_landmark_sketch_is_the_same_drawing_at_every_scale():
    """Issue 14 item 7: the line width is a fraction of the face, so the ink (sum of coverage) per face
    area is the same at 104 x 80 and 416 x 320; a fixed 1 px line gave 4 times the ink at the small scale."""
    ink = {}
    for scale in SCALES:
        H, W = face_size(scale)
        ink[scale] = landmark_sketch(fake_landmarks((H, W), 1), (H, W)).sum().item() / (H * W)
    assert abs(ink[64] / ink[256] - 1) < 0.1 and abs(ink[128] / ink[256] - 1) < 0.1
    # thin lines: coverage peaks at the line width (box filter), never above it
    sk = landmark_sketch(fake_landmarks((104, 80), 1), (104, 80), thickness=1.0)  # 0.25 px here
    assert 0.2 < sk.max() <= 0.25 + 1e-6


def test_landmark_sketch_has_no_lips_or_lower_jaw():
    H, W = face_size(128)
    lmk = fake_landmarks((H, W), 1)
    sk = landmark_sketch(lmk, (H, W))
    assert sk.shape == (1, 1, H, W) and sk.min() >= 0 and sk.max() <= 1
    x, y = lmk[0, 19].round().long()  # a brow point lies on the sketch
    assert sk[0, 0, y, x] > 0.99
    moved = lmk.clone()
    moved[:, 48:68] += 7.0  # lips
    moved[:, 5:12] += 5.0  # lower jaw
    assert torch.equal(landmark_sketch(moved, (H, W)), sk)
    used = {i for seg in sketch_segments() for i in seg}
    assert used == set(range(0, 5)) | set(range(12, 48)) and len(sketch_segments()) == 35


# ----------------------------------------------------------------------------------------------------
# Sync expert
# ----------------------------------------------------------------------------------------------------


def test_sync_expert_shapes_and_cosine_range():
    torch.manual_seed(0)
    expert = SyncExpert(width=0.125).eval().requires_grad_(False)
    mouths = torch.rand(3, 15, 128, 128)
    mel = torch.randn(3, 1, 80, 16)
    v, a = expert.embed(mouths, mel)
    assert v.shape == a.shape == (3, 64)
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    cos = expert(mouths, mel)
    assert cos.shape == (3,) and (cos >= -1).all() and (cos <= 1).all()
    for scale in SCALES:
        H, W = face_size(scale)
        assert faces_to_mouths(torch.rand(2, 5, 3, H, W)).shape == (2, 15, 128, 128)
    gen = torch.rand(2, 5, 3, 64, 64, requires_grad=True)  # generated mouths at the demo scale
    loss = sync_loss(expert, gen, torch.randn(2, 1, 80, 16))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and gen.grad.abs().sum() > 0


def test_lower_face_mask_knows_nothing_of_the_target_mouth():
    """G (Sec. 3 item 6, revised) comes from the references' jaws at the target's head pose: opening the
    target's own jaw and lips changes nothing; moving its head moves G; an open reference widens it."""
    import math

    H, W = face_size(256)
    target = fake_landmarks((H, W), 1)
    refs = target[:, None].repeat(1, 3, 1, 1)
    opened = target.clone()
    opened[:, 5:12, 1] += 40.0  # jaw dropped
    opened[:, 48:68, 1] += 25.0  # lips with it
    g = lower_face_mask(target, refs, (H, W))
    assert torch.equal(g, lower_face_mask(opened, refs, (H, W)))  # the target's mouth state never enters

    c, s_, k = math.cos(0.2), math.sin(0.2), 0.9  # the head turned, smaller, moved: G follows the pose
    R = torch.tensor([[k * c, -k * s_], [k * s_, k * c]])
    moved = target @ R.T + torch.tensor([20.0, -10.0])
    g_moved = lower_face_mask(moved, refs, (H, W))
    expect = lower_face_mask(moved, moved[:, None], (H, W))  # as if the references had that pose too
    assert (g_moved - expect).abs().max() < 0.02 and (g_moved - g).abs().max() > 0.5

    chin = opened[0, 8].round().long()  # a reference with an open jaw covers the open chin
    assert g[0, 0, chin[1], chin[0]] < 0.5
    wide = lower_face_mask(target, torch.cat([refs, opened[:, None]], 1), (H, W))
    assert wide[0, 0, chin[1], chin[0]] > 0.5


def test_convex_hull_of_repeated_points_is_the_hull_of_the_points():
    """The union of identical references repeats every point: each hull side must still be found once."""
    H, W = face_size(256)
    pts = fake_landmarks((H, W), 1)[:, list(range(2, 15)) + [33]]
    assert torch.equal(fill_convex_hull(pts.repeat(1, 3, 1), (H, W)), fill_convex_hull(pts, (H, W)))
