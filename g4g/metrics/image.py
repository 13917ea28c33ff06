"""Per-frame PSNR, SSIM and MSE on RGB frames in [0, 1] (docs/design/method.md Sec. 9), batched, CPU or CUDA.

SSIM is the Gaussian-window definition of Wang et al. (2004): sigma 1.5, an 11-tap window (radius
int(3.5 sigma + 0.5) = 5), K1 0.01, K2 0.03, population (co)variances, the SSIM map averaged over the
pixels at least one radius away from the border, then over the RGB channels. This is exactly
skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1): the cropped border is where skimage's reflect padding would matter, so a
'valid' convolution computes the same numbers without any padding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Frames = np.ndarray | torch.Tensor


def to_tensor01(frames: Frames, device: str | torch.device | None = None,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """uint8 (B, H, W, 3) array/tensor -> (B, 3, H, W) in [0, 1]; float (B, 3, H, W) passes through."""
    t = torch.as_tensor(frames)
    if t.dtype == torch.uint8:
        if t.ndim == 3:
            t = t[None]
        t = t.to(device).permute(0, 3, 1, 2).to(dtype) / 255.0
    else:
        t = t.to(device=device, dtype=dtype)
    if t.ndim != 4:
        raise ValueError(f"expected a batch of frames (B, 3, H, W) or (B, H, W, 3), got {tuple(t.shape)}")
    return t


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per frame, (B,), for inputs (B, C, H, W) in [0, 1]."""
    return (x - y).square().flatten(1).mean(1)


def psnr(mse: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB from a mean squared error (any shape); +inf where the MSE is 0 (as skimage)."""
    return 10.0 * torch.log10(data_range ** 2 / mse)


def gaussian_kernel1d(sigma: float = 1.5, truncate: float = 3.5, dtype=torch.float64,
                      device=None) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius int(truncate * sigma + 0.5), normalised to sum 1."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_valid(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter with no padding: (N, C, H, W) -> (N, C, H-2r, W-2r). On the CPU it is OpenCV's
    sepFilter2D, map by map: torch's depthwise conv2d there took 42 s for the 320 moment maps of 64 face crops
    (416 x 320, one thread), sepFilter2D 0.6 s, equal to 3e-7 in float32."""
    if x.device.type == "cpu":
        import cv2

        r, kk = k.numel() // 2, k.numpy()
        maps = x.contiguous().reshape(-1, *x.shape[-2:]).numpy()
        out = np.stack([cv2.sepFilter2D(m, -1, kk, kk, borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r] for m in maps])
        return torch.from_numpy(out).reshape(*x.shape[:2], *out.shape[-2:])
    c = x.shape[1]
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM per frame, (B,), channel-averaged, for (B, C, H, W) inputs (Wang et al. 2004)."""
    k = gaussian_kernel1d(sigma, dtype=x.dtype, device=x.device)
    if min(x.shape[-2:]) < k.numel():
        raise ValueError(f"frames {tuple(x.shape[-2:])} are smaller than the {k.numel()}-tap SSIM window")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    b = x.shape[0]
    # one filter call for the five moment maps: (5B, C, H, W)
    moments = _blur_valid(torch.cat([x, y, x * x, y * y, x * y]), k).split(b)
    ux, uy, uxx, uyy, uxy = moments
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(1)  # pixels of each channel, then channels (skimage's order)


@torch.no_grad()
def image_metrics(gen: Frames, gt: Frames, device: str | torch.device | None = None,
                  dtype: torch.dtype = torch.float64) -> dict[str, np.ndarray]:
    """PSNR, SSIM, MSE per frame for one batch of uint8 (B, H, W, 3) frames (or [0, 1] tensors)."""
    x, y = to_tensor01(gen, device, dtype), to_tensor01(gt, device, dtype)
    if x.shape != y.shape:
        raise ValueError(f"frame shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    e = mse(x, y)
    return {"psnr": psnr(e).cpu().numpy(),
            "ssim": ssim(x, y).cpu().numpy(),
            "mse": e.cpu().numpy()}
