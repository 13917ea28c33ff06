"""Metrics: equivalence with reference implementations, network plumbing (random init), LSE algorithm."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import REAL, needs_real

from g4g.metrics import WeightsInfo
from g4g.metrics.fid import ActivationStats, FIDInception, fid_from_stats, frechet_distance
from g4g.metrics.image import image_metrics
from g4g.metrics.lse import SyncEmbedder, lse, lse_from_embeddings
from g4g.metrics.syncnet import OfficialSyncNet, SyncNetV2, mel_filterbank, mfcc, to_syncnet_frames
from g4g.weights import WeightsError

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)


def skimage_reference(gen: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
    a, b = gen / 255.0, gt / 255.0
    return {"psnr": np.array([peak_signal_noise_ratio(x, y, data_range=1) for x, y in zip(b, a)]),
            "ssim": np.array([structural_similarity(x, y, **SK_SSIM) for x, y in zip(a, b)]),
            "mse": np.array([mean_squared_error(x, y) for x, y in zip(a, b)])}


def noisy(frames: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- PSNR / SSIM / MSE


@pytest.mark.parametrize("shape", [(3, 11, 11, 3), (4, 37, 52, 3), (2, 64, 48, 3)])
def test_image_metrics_match_skimage_random(shape):
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, shape, dtype=np.uint8)
    gen = noisy(gt, 25)
    ours, ref = image_metrics(gen, gt), skimage_reference(gen, gt)
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    same = image_metrics(gt, gt)
    assert np.all(np.isinf(same["psnr"])) and np.allclose(same["ssim"], 1) and np.all(same["mse"] == 0)


@needs_real
def test_image_metrics_match_skimage_real_frames():
    import av
    import cv2
    with av.open(str(REAL / "face_a.mp4")) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == 4:
                break
    frames = np.stack(frames)
    h, w = frames.shape[1:3]
    gt = np.ascontiguousarray(frames[:, (h - 416) // 2:(h + 416) // 2, (w - 320) // 2:(w + 320) // 2])
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in gt])
    gen = noisy(blurred, 6)
    ours, ref = image_metrics(gen, gt), skimage_reference(gen, gt)
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-10, err_msg=k)
    assert 0.3 < ours["ssim"].min() < ours["ssim"].max() < 0.99  # a non-trivial comparison


# ----------------------------------------------------------------- LPIPS


def test_lpips_plumbing_random_init():
    from g4g.metrics.lpips_metric import LPIPSMetric
    m = LPIPSMetric(pretrained=False, device="cpu")
    assert m.info.label == "random-init (test only)" and m.info.sha256 is None
    assert m.info.files[0][0].endswith("alex.pth")  # the calibration layers from the lpips wheel
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(m.frames(x, x, batch_size=3), 0, atol=1e-7)
    d_small, d_large = m.frames(x, noisy(x, 8)), m.frames(x, noisy(x, 60))
    assert d_small.shape == (4,) and np.all(d_small > 0) and d_large.mean() > d_small.mean()


def test_lpips_trunk_loads_torchvision_alexnet_keys(tmp_path):
    import lpips
    import torchvision

    from g4g.metrics.lpips_metric import load_alexnet_trunk
    tv = torchvision.models.alexnet(weights=None)
    torch.save(tv.state_dict(), tmp_path / "alexnet.pth")
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    load_alexnet_trunk(net.net, tmp_path / "alexnet.pth")
    for key, v in net.net.state_dict().items():
        _, idx, param = key.split(".")
        assert torch.equal(v, tv.features.state_dict()[f"{idx}.{param}"]), key


# ----------------------------------------------------------------- FID


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    from scipy import linalg
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_of(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two activation sets (N1, D), (N2, D), pooled as the evaluation stage pools them."""
    return fid_from_stats(ActivationStats(a.shape[1]).update(a), ActivationStats(b.shape[1]).update(b))


def test_frechet_distance_matches_scipy_sqrtm():
    from pytorch_fid.fid_score import calculate_frechet_distance
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 24)), rng.normal(0.3, 1.4, size=(300, 24)) @ rng.normal(size=(24, 24))
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    d = frechet_distance(mu1, s1, mu2, s2)
    assert d == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-9)
    assert d == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert fid_of(a, b) == pytest.approx(d, rel=1e-9)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_activation_stats_pool_and_merge():
    rng = np.random.default_rng(5)
    a = rng.normal(5.0, 0.5, size=(257, 16))
    st = ActivationStats(16)
    for chunk in np.array_split(a, 7):
        st.update(chunk)
    mu, cov = st.mean_cov()
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-9, atol=1e-12)
    merged = ActivationStats(16).update(a[:100]).merge(ActivationStats(**ActivationStats(16).update(a[100:]).to_dict()))
    np.testing.assert_allclose(merged.mean_cov()[1], cov, rtol=1e-9, atol=1e-12)


def test_fid_plumbing_random_init():
    rng = np.random.default_rng(6)
    m = FIDInception(pretrained=False, dims=64, device="cpu")
    assert m.info.label == "random-init (test only)"
    x = rng.integers(0, 200, (80, 32, 32, 3), dtype=np.uint8)
    ax = m.activations(x, batch_size=40)
    assert ax.shape == (80, 64)
    ay = m.activations(noisy(x, 10, seed=1))
    shifted = m.activations(np.clip(x.astype(int) + 60, 0, 255).astype(np.uint8))
    mu, cov = ActivationStats(64).update(ax).mean_cov()
    assert abs(fid_of(ax, ax)) < 1e-6 * np.trace(cov)
    assert fid_of(ax, shifted) > fid_of(ax, ay) > 0
    full = FIDInception(pretrained=False, device="cpu")  # the 2048-d pool3 path used for FID
    assert full.activations(x[:2]).shape == (2, 2048)


def test_fid_pretrained_path_loads_the_given_state_dict():
    import pytorch_fid.inception as pfi

    from g4g.metrics.fid import _local_inception_weights
    orig = pfi.load_state_dict_from_url
    with _local_inception_weights(None):
        sd = {k: torch.randn_like(v) if v.is_floating_point() else v
              for k, v in pfi.fid_inception_v3().state_dict().items()}
    with _local_inception_weights(sd):
        net = pfi.InceptionV3([3])
    assert pfi.load_state_dict_from_url is orig  # the download hook is restored
    assert torch.equal(net.blocks[0][0].conv.weight, sd["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(net.blocks[3][2].branch_pool.conv.weight, sd["Mixed_7c.branch_pool.conv.weight"])


# ----------------------------------------------------------------- MFCC front end


def mfcc_loop_reference(sig: np.ndarray, sr: int = 16000) -> np.ndarray:
    """A second, loop-based formula of the python_speech_features 0.6 MFCC definition."""
    from scipy.fft import dct
    x = np.asarray(sig, float)
    x = np.concatenate([[x[0]], x[1:] - 0.97 * x[:-1]])
    mel = lambda f: 2595 * math.log10(1 + f / 700)
    edges = [math.floor(513 * 700 * (10 ** (m / 2595) - 1) / sr) for m in np.linspace(0, mel(sr / 2), 28)]
    fb = np.zeros((26, 257))
    for j in range(26):
        for i in range(edges[j], edges[j + 1]):
            fb[j, i] = (i - edges[j]) / (edges[j + 1] - edges[j])
        for i in range(edges[j + 1], edges[j + 2]):
            fb[j, i] = (edges[j + 2] - i) / (edges[j + 2] - edges[j + 1])
    rows, start = [], 0
    while True:
        frame = np.zeros(400)
        seg = x[start:start + 400]
        frame[:len(seg)] = seg
        p = np.abs(np.fft.rfft(frame, 512)) ** 2 / 512
        c = dct(np.log(np.maximum(p @ fb.T, np.finfo(float).eps)), type=2, norm="ortho")[:13]
        c = c * (1 + 11 * np.sin(np.pi * np.arange(13) / 22))
        c[0] = np.log(max(p.sum(), np.finfo(float).eps))
        rows.append(c)
        start += 160
        if start + 400 - 160 >= len(x):  # the last frame reached the end of the signal
            break
    return np.array(rows)


def test_mfcc_matches_second_formula():
    rng = np.random.default_rng(7)
    for n in (399, 400, 401, 560, 16000 + 37):
        sig = rng.normal(0, 3000, n)
        ref = mfcc_loop_reference(sig)
        assert mfcc(sig).shape == ref.shape, n
        np.testing.assert_allclose(mfcc(sig), ref, rtol=1e-9, atol=1e-9)


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features", reason="optional reference package not installed")
    rng = np.random.default_rng(8)
    signals = [rng.normal(0, 3000, 16000 * 3).astype(np.int16), np.zeros(1000, np.int16)]
    if (REAL / "speech_16k.wav").exists():
        import soundfile as sf
        wav, sr = sf.read(str(REAL / "speech_16k.wav"), dtype="int16")
        assert sr == 16000
        signals.append(wav if wav.ndim == 1 else wav[:, 0])
    for sig in signals:
        np.testing.assert_allclose(mfcc(sig), psf.mfcc(sig, 16000), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mel_filterbank(), psf.get_filterbanks(26, 512, 16000), atol=0)


# ----------------------------------------------------------------- SyncNet v2


def official_keys() -> set[str]:
    """Parameter names of syncnet_python's S (Sequential indices of its conv and BatchNorm layers)."""
    keys = set()
    for seq in ("netcnnaud", "netcnnlip"):
        keys |= {f"{seq}.{i}.{p}" for i in (0, 4, 8, 11, 14, 18) for p in ("weight", "bias")}
        keys |= {f"{seq}.{i}.{p}" for i in (1, 5, 9, 12, 15, 19)
                 for p in ("weight", "bias", "running_mean", "running_var")}
    for seq in ("netfcaud", "netfclip"):
        keys |= {f"{seq}.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}
        keys |= {f"{seq}.1.{p}" for p in ("weight", "bias", "running_mean", "running_var")}
    return keys


def test_syncnet_architecture_and_loading(tmp_path, monkeypatch):
    net = SyncNetV2()
    own = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    assert own == official_keys()
    with torch.no_grad():
        assert net.eval().forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
    # an "official" file: random values, the published key names, no num_batches_tracked (old torch)
    src = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in SyncNetV2().state_dict().items()
           if not k.endswith("num_batches_tracked")}
    (tmp_path / "syncnet").mkdir()
    torch.save(src, tmp_path / "syncnet" / "syncnet_v2.model")
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path))
    m = OfficialSyncNet(pretrained=True, device="cpu")
    assert m.info.label == "syncnet_v2.model" and len(m.info.sha256) == 64
    for k, v in src.items():
        assert torch.equal(m.net.state_dict()[k], v), k
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "syncnet" / "syncnet_v2.model")
    with pytest.raises(WeightsError, match="not a syncnet_v2 state dict"):
        OfficialSyncNet(pretrained=True, device="cpu")


def test_syncnet_input_layout():
    m = OfficialSyncNet(pretrained=False, device="cpu")
    rng = np.random.default_rng(9)
    crops = rng.integers(0, 256, (9, 416, 320, 3), dtype=np.uint8)
    video = m.prepare_video(crops)
    assert video.shape == (9, 224, 224, 3)
    assert np.array_equal(video, to_syncnet_frames(crops))
    x = m.video_batch(video, [0, 3])  # (B, 3, 5, 224, 224), BGR
    assert x.shape == (2, 3, 5, 224, 224)
    assert torch.equal(x[1, :, 2], torch.from_numpy(video[5]).permute(2, 0, 1).float())
    square = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    assert np.array_equal(to_syncnet_frames(square), square[..., ::-1])  # only the channel order changes
    feats = m.prepare_audio(rng.normal(0, 0.1, 640 * 9).astype(np.float32))
    assert feats.shape[0] == 13 and feats.shape[1] >= 4 * 3 + 20
    a = m.audio_batch(feats, [0, 3])
    assert a.shape == (2, 1, 13, 20) and torch.equal(a[1, 0], feats[:, 12:32])


# ----------------------------------------------------------------- LSE


class ToyEmbedder(SyncEmbedder):
    """Lip embedding: the 5 frames' mean brightness; audio embedding: the 5 frames' sine amplitudes."""

    info = WeightsInfo.surrogate("toy brightness/amplitude model (tests)")
    device = torch.device("cpu")

    def prepare_video(self, frames):
        return torch.from_numpy(frames.reshape(len(frames), -1).mean(1) / 255.0)

    def video_batch(self, video, starts):
        return torch.stack([video[s:s + 5] for s in starts])

    def prepare_audio(self, audio):
        n = len(audio) // 640
        rms = np.sqrt(np.mean(audio[:n * 640].astype(np.float64).reshape(n, 640) ** 2, 1))
        return torch.from_numpy(rms * math.sqrt(2) / 0.5)

    def audio_batch(self, feats, starts):
        return torch.stack([feats[s:s + 5] for s in starts])

    def forward_lip(self, x):
        return x.float()

    def forward_aud(self, x):
        return x.float()


def toy_clip(k: int, n_frames: int = 60, seed: int = 0):
    """Frames whose brightness follows a random sequence; audio playing the same sequence k frames early."""
    s = np.random.default_rng(seed).uniform(0.1, 0.9, n_frames + 40)
    frames = np.repeat((s[20:20 + n_frames] * 255).round().astype(np.uint8), 8 * 8 * 3).reshape(n_frames, 8, 8, 3)
    amp = np.repeat(0.5 * s[20 + k:20 + k + n_frames], 640)
    audio = (amp * np.sin(2 * np.pi * 250 * np.arange(len(amp)) / 16000)).astype(np.float64)
    return frames, audio


@pytest.mark.parametrize("k", [0, 3, -4, 15])
def test_lse_offset_sign(k):
    """Audio leading the lips by k frames (the sound k frames early) -> offset +k (syncnet_python)."""
    frames, audio = toy_clip(k)
    res = lse(ToyEmbedder(), frames, audio, batch_size=7)
    assert res.offset == k
    assert res.n_windows == 60 - 5 and res.mean_dists.shape == (31,) and res.offsets[15 - k] == k
    assert res.weights.startswith("surrogate:")


def test_lse_confidence_in_sync_vs_shuffled():
    frames, audio = toy_clip(0)
    shuffled = frames[np.random.default_rng(1).permutation(len(frames))]
    sync, off = lse(ToyEmbedder(), frames, audio), lse(ToyEmbedder(), shuffled, audio)
    assert sync.lse_c > off.lse_c + 0.2 and sync.lse_d < off.lse_d
    assert sync.lse_d < 0.05


def test_lse_matches_calc_pdist_loop():
    """Our vectorised distances against a literal per-window loop of syncnet_python's calc_pdist."""
    g = torch.Generator().manual_seed(10)
    lip, aud = torch.randn(23, 16, generator=g), torch.randn(23, 16, generator=g)
    res = lse_from_embeddings(lip, aud, vshift=15)
    aud_p = torch.nn.functional.pad(aud, (0, 0, 15, 15))
    dists = [torch.nn.functional.pairwise_distance(lip[[i], :].repeat(31, 1), aud_p[i:i + 31]) for i in range(23)]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    np.testing.assert_allclose(res.mean_dists, mdist.numpy(), rtol=1e-6)
    assert res.offset == 15 - int(minidx) and res.lse_d == pytest.approx(float(minval))
    assert res.lse_c == pytest.approx(float(torch.median(mdist) - minval))


def test_lse_official_random_init_end_to_end():
    rng = np.random.default_rng(11)
    crops = rng.integers(0, 256, (12, 52, 40, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, 640 * 12 + 100).astype(np.float32)
    res = lse(OfficialSyncNet(pretrained=False, device="cpu"), crops, audio, batch_size=4)
    assert res.n_windows == 12 - 5 and -15 <= res.offset <= 15
    assert np.isfinite(res.lse_d) and res.lse_c >= 0 and res.weights == "random-init (test only)"
    with pytest.raises(ValueError, match="too short"):
        lse(OfficialSyncNet(pretrained=False, device="cpu"), crops[:5], audio)


# ----------------------------------------------------------------- weights and the per-clip entry point


@pytest.mark.parametrize("build, filename", [
    ("lpips", "alexnet-owt-7be5be79.pth"),
    ("fid", "pt_inception-2015-12-05-6726825d.pth"),
    ("syncnet", "syncnet_v2.model"),
])
def test_missing_weights_name_the_file(build, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("G4G_WEIGHTS_DIR", str(tmp_path))
    from g4g.metrics.lpips_metric import LPIPSMetric
    ctor = {"lpips": LPIPSMetric, "fid": FIDInception, "syncnet": OfficialSyncNet}[build]
    with pytest.raises(WeightsError, match=filename.replace(".", r"\.")) as e:
        ctor(pretrained=True, device="cpu")
    assert str(tmp_path) in str(e.value) and "g4g weights fetch" in str(e.value)


def test_true_fp32_turns_tf32_off_inside_only():
    from g4g.utils import true_fp32

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with true_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
