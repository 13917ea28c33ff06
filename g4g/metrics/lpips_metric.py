"""LPIPS (Zhang et al. 2018) with the AlexNet backbone, on [-1, 1] inputs (docs/design/method.md Sec. 9).

The `lpips` package would fetch torchvision's ImageNet AlexNet through torch hub. We never let it: the
network is built with a random trunk (`pnet_rand=True`) and the trunk is then filled from the verified
manifest file `require('alexnet')` (resources/weights/torch/hub/checkpoints/alexnet-owt-7be5be79.pth),
so a missing file raises WeightsError with the download instructions and nothing is downloaded, whatever
TORCH_HOME says. The linear calibration layers (v0.1, alex.pth) ship inside the lpips wheel.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from g4g.metrics.weights_info import WeightsInfo
from g4g.utils import resolve_device, true_fp32


def load_alexnet_trunk(trunk: torch.nn.Module, path: str | os.PathLike) -> None:
    """Copy torchvision AlexNet weights (`features.{i}.*`) into lpips' sliced trunk (`slice{k}.{i}.*`).

    lpips keeps torchvision's layer index `i` inside each slice, so the mapping is by index alone.
    """
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = trunk.state_dict()
    mapped = {}
    for key in dst:
        _, idx, param = key.split(".")  # "slice2.3.weight" -> torchvision "features.3.weight"
        mapped[key] = src[f"features.{idx}.{param}"]
    trunk.load_state_dict(mapped, strict=True)


class LPIPSMetric:
    """Per-frame LPIPS-Alex. `pretrained=False` keeps a random trunk (tests only)."""

    def __init__(self, pretrained: bool = True, device: str | torch.device | None = None):
        info = WeightsInfo.from_manifest("alexnet") if pretrained else WeightsInfo.random_init()
        import lpips  # heavy, and only needed here

        self.device = resolve_device(device)
        with warnings.catch_warnings():  # lpips still calls torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if pretrained:
            load_alexnet_trunk(net.net, info.files[0][0])
        lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        self.info = info.with_file(lin_file)
        self.net = net.eval().to(self.device)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS per image, (B,), for float (B, 3, H, W) tensors in [-1, 1]."""
        x = x.to(self.device, torch.float32)
        y = y.to(self.device, torch.float32)
        with true_fp32():
            return self.net(x, y).flatten()

    def frames(self, gen: np.ndarray, gt: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """LPIPS per frame for uint8 (T, H, W, 3) RGB frames, in batches."""
        out = []
        for i in range(0, len(gen), batch_size):
            x = to_pm1(gen[i:i + batch_size], self.device)
            y = to_pm1(gt[i:i + batch_size], self.device)
            out.append(self(x, y).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def to_pm1(frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, H, W) in [-1, 1]."""
    t = torch.as_tensor(frames).to(device)
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0
