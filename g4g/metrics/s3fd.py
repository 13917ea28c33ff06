"""S3FD face boxes as syncnet_python's pipeline takes them (run_pipeline.py, detectors/s3fd), for LSE.

Network: S3FD (Zhang et al. 2017), a VGG-16 trunk with L2-normalised conv3_3/4_3/5_3 sources, two extra
stages and six box/score heads, written here with the module names and list indices of syncnet_python's
S3FDNet, so its published `sfd_face.pth` loads key for key. Detection as its `detect_faces`, at
conf_th 0.9 and one scale 0.25:
- the RGB frame is resized by the scale (cv2 bilinear) and fed in RGB order less the mean (123, 117, 104);
- the first head's score is max-out: the background score is the max of its first three channels;
- priors: one square per cell of each source, sides 16..512 px at strides 4..128, in the scaled image;
- boxes decoded with variances (0.1, 0.2), scaled by the *unscaled* frame's size;
- per image: scores > 0.05, NMS at IoU 0.3 over the 5000 best, at most 750 kept; then scores > conf_th;
  then NMS at IoU 0.1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from g4g.metrics.weights_info import WeightsInfo
from g4g.utils import resolve_device, true_fp32

MEAN_RGB = (123.0, 117.0, 104.0)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCE = (0.1, 0.2)
CONF_TH = 0.9   # run_pipeline.py: detect_faces(image, conf_th=0.9, scales=[facedet_scale])
SCALE = 0.25    # run_pipeline.py --facedet_scale
FINAL_NMS = 0.1


def _vgg() -> nn.ModuleList:
    """VGG-16 conv1_1..conv5_3 + fc6 (dilated) + fc7, with ReLU and pooling entries at the indices
    syncnet_python uses (its state dict names vgg.0, vgg.2, ..., vgg.33)."""
    layers, c_in = [], 3
    for i, (c, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        for _ in range(n):
            layers += [nn.Conv2d(c_in, c, 3, 1, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        if i < 4:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=i == 2))  # pool3 rounds up
    layers.append(nn.MaxPool2d(2, 2))
    layers += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(1024, 1024, 1, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


class L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight[None, :, None, None]


class S3FDNet(nn.Module):
    """Returns (loc (B, P, 4), face score (B, P), feature map sizes) for a (B, 3, H, W) input."""

    SOURCES = (16, 23, 30)  # vgg indices after conv3_3, conv4_3, conv5_3 (+ ReLU)

    def __init__(self):
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3 = L2Norm(256, 10), L2Norm(512, 8), L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        chans = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in chans])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(chans)])

    def forward(self, x: torch.Tensor):
        sources, k = [], 0
        for end, norm in zip(self.SOURCES, (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)):
            for layer in self.vgg[k:end]:
                x = layer(x)
            sources.append(norm(x))
            k = end
        for layer in self.vgg[k:]:
            x = layer(x)
        sources.append(x)
        for i, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if i % 2:
                sources.append(x)
        locs, confs = [], []
        for i, s in enumerate(sources):
            c = self.conf[i](s)
            if i == 0:  # max-out background label: the smallest faces' head has 3 background channels
                c = torch.cat([c[:, :3].max(dim=1, keepdim=True).values, c[:, 3:]], dim=1)
            locs.append(self.loc[i](s).permute(0, 2, 3, 1).flatten(1, 2))
            confs.append(c.permute(0, 2, 3, 1).flatten(1, 2))
        score = torch.cat(confs, 1).softmax(-1)[..., 1]
        return torch.cat(locs, 1), score, [tuple(s.shape[2:]) for s in sources]


def priors(image_hw: tuple[int, int], maps: list[tuple[int, int]]) -> torch.Tensor:
    """(P, 4) prior boxes (cx, cy, w, h), normalised by the network input's size, row-major per map."""
    h, w = image_hw
    out = []
    for (fh, fw), size, step in zip(maps, MIN_SIZES, STEPS):
        cy, cx = torch.meshgrid((torch.arange(fh, dtype=torch.float64) + 0.5) * step / h,
                                (torch.arange(fw, dtype=torch.float64) + 0.5) * step / w, indexing="ij")
        out.append(torch.stack([cx.flatten(), cy.flatten(), torch.full_like(cx.flatten(), size / w),
                                torch.full_like(cx.flatten(), size / h)], 1))
    return torch.cat(out).float()


def decode(loc: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """(P, 4) normalised x1, y1, x2, y2 from the regression outputs and their priors."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCE[0] * prior[:, 2:]
    size = prior[:, 2:] * torch.exp(loc[:, 2:] * VARIANCE[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


class S3FD:
    """Face boxes of RGB frames. `pretrained=False`: random init (tests, the reference comparison)."""

    def __init__(self, pretrained: bool = True, device: str | torch.device | None = None):
        self.info = WeightsInfo.from_manifest("sfd_face") if pretrained else WeightsInfo.random_init()
        self.net = S3FDNet()
        if pretrained:
            self.net.load_state_dict(torch.load(self.info.files[0][0], map_location="cpu", weights_only=True))
        self.device = resolve_device(device)
        self.net = self.net.eval().to(self.device)

    @torch.no_grad()
    def detect(self, frame: np.ndarray, conf_th: float = CONF_TH, scale: float = SCALE) -> np.ndarray:
        """(N, 5) boxes x1, y1, x2, y2 (pixels of `frame`) and score, best first."""
        import cv2
        from torchvision.ops import nms  # here: importing torchvision doubles the import time of every job

        h, w = frame.shape[:2]
        small = cv2.resize(frame, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(small.astype(np.float32) - np.float32(MEAN_RGB)).permute(2, 0, 1)[None]
        with true_fp32():
            loc, score, maps = self.net(x.to(self.device))
        boxes = decode(loc[0].float().cpu(), priors(small.shape[:2], maps)) * torch.tensor([w, h, w, h])
        score = score[0].float().cpu()
        cand = torch.nonzero(score > 0.05).flatten()
        cand = cand[score[cand].argsort(descending=True)[:5000]]
        keep = cand[nms(boxes[cand], score[cand], 0.3)[:750]]
        keep = keep[score[keep] > conf_th]
        keep = keep[nms(boxes[keep], score[keep], FINAL_NMS)]
        return torch.cat([boxes[keep], score[keep, None]], 1).numpy().astype(np.float64)
