"""Losses of G4G (paper Sec. 3.3, Eq. 19-24; docs/design/method.md Sec. 4-5), each returned separately for logging.

    L = lambda_v L_v + lambda_p L_p + lambda_GAN L_GAN + lambda_r L_r + lambda_con L_con
L_v facial attribute, L_p VGG-19 perception, L_GAN LS-GAN (frame + temporal D), L_r multi-scale L1,
L_con InfoNCE + sync-expert BCE. Images are RGB in [0, 1]; the clip stage lays frames out clip-major
(B*T, ...), T = 5. The VGG-19 is built here in plain torch and loads torchvision's checkpoint file, so
no torchvision import is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from g4g import weights as weight_files
from g4g.models.contrastive import InterModalityContrast
from g4g.models.discriminators import stack_clips
from g4g.models.sync_expert import SyncExpert, faces_to_mouths, sync_loss
from g4g.params import LossWeights

# ----------------------------------------------------------------------------------------------------
# Individual terms
# ----------------------------------------------------------------------------------------------------


def facial_attribute_loss(ibar_pool: torch.Tensor, l_r: torch.Tensor) -> torch.Tensor:
    """L_v = mean(1 - cos(pool(ibar_s), l_r)) over the batch (Eq. 19): 2 x (B, C) -> scalar."""
    return (1.0 - F.cosine_similarity(ibar_pool.float(), l_r.float(), dim=1)).mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Generator LS-GAN term mean (D(fake) - 1)^2 (Eq. 21)."""
    return (d_fake.float() - 1.0).pow(2).mean()


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator LS-GAN loss mean (D(real) - 1)^2 + mean D(fake)^2 (Eq. 21)."""
    return (d_real.float() - 1.0).pow(2).mean() + d_fake.float().pow(2).mean()


def pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[x, x/2, x/4, ...] by 2x2 average pooling: `levels` tensors (B, C, H / 2^l, W / 2^l)."""
    out = [x]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                        multiscale: bool = True) -> torch.Tensor:
    """L_r (Eq. 22, METHOD Sec. 4): mean over pyramid levels (full, 1/2, 1/4; full only when
    multiscale is off) of L1 on the whole face plus L1 inside the occluded region `mask` (B, 1, H, W)."""
    levels = 3 if multiscale else 1
    preds, targets = pyramid(pred.float(), levels), pyramid(target.float(), levels)
    masks = pyramid(mask.float(), levels) if mask is not None else [None] * levels
    total = 0.0
    for p, t, m in zip(preds, targets, masks):
        err = (p - t).abs()  # (B, 3, h, w)
        total = total + err.mean()
        if m is not None:
            total = total + (err * m).sum() / (m.sum() * err.shape[1]).clamp_min(1.0)
    return total / levels


def contrastive_loss(contrast: InterModalityContrast, v: torch.Tensor, a: torch.Tensor,
                     groups: torch.Tensor) -> torch.Tensor:
    """InfoNCE part of L_con (Eq. 23; defined in Eq. 6-10), see g4g.models.contrastive."""
    return contrast(v, a, groups)


# ----------------------------------------------------------------------------------------------------
# VGG-19 perceptual loss (Eq. 20)
# ----------------------------------------------------------------------------------------------------

VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
VGG_TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in vgg19.features
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGGPerceptual(nn.Module):
    """L1 between VGG-19 relu1_1..relu5_1 features (summed over layers), averaged over the resolutions.

    pretrained=True loads torchvision's vgg19 checkpoint via g4g.weights.require('vgg19') (WeightsError
    with the download instructions when it is absent); pretrained=False keeps a random init (tests).
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        layers, cin = [], 3
        for v in VGG19_LAYOUT:  # same indices as torchvision's vgg19().features, up to relu5_1
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # ceil: small faces keep >= 1 px
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        if pretrained:
            state = torch.load(weight_files.require("vgg19"), map_location="cpu", weights_only=True)
            keep = {k[len("features."):]: w for k, w in state.items()
                    if k.startswith("features.") and int(k.split(".")[1]) < len(layers)}
            self.features.load_state_dict(keep)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_TAPS:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor, levels: int = 2) -> torch.Tensor:
        """pred, target (B, 3, H, W) in [0, 1]; levels 2 = full and half resolution -> scalar."""
        total = 0.0
        for p, t in zip(pyramid(pred, levels), pyramid(target.detach(), levels)):
            fp = self.feats(torch.cat([p, t.to(p.dtype)], dim=0))  # features of pred and target
            total = total + sum(F.l1_loss(f[: len(p)].float(), f[len(p):].float()) for f in fp)
        return total / levels


# ----------------------------------------------------------------------------------------------------
# Totals
# ----------------------------------------------------------------------------------------------------


def generator_losses(out: dict, target: torch.Tensor, weights: LossWeights | None = None, *,
                     perceptual: VGGPerceptual | None = None, frame_d: nn.Module | None = None,
                     temporal_d: nn.Module | None = None, contrast: InterModalityContrast | None = None,
                     sync_expert: SyncExpert | None = None, mel: torch.Tensor | None = None,
                     groups: torch.Tensor | None = None, clip_len: int = 5,
                     multiscale: bool = True) -> dict[str, torch.Tensor]:
    """All generator terms that the given modules allow, and 'total' (Eq. 24).

    out: the G4G forward dict; target: ground-truth faces (B, 3, H, W). Terms whose module is None (or
    whose inputs are absent, e.g. l_r without alignment) are left out of the dict. The temporal D and
    the sync expert need B = n_clips * clip_len frames laid out clip-major; `mel` is the per-frame A
    (B, 1, 80, 16), of which each clip's centre window is used by the sync expert.
    """
    w = weights or LossWeights()
    i_out, t = out["I_out"], target
    terms: dict[str, torch.Tensor] = {}
    if out.get("l_r") is not None and w.lambda_v > 0:
        terms["L_v"] = facial_attribute_loss(out["ibar_pool"], out["l_r"])
    if perceptual is not None:  # full + half resolution is L_p's own definition (Eq. 20), in every variant:
        terms["L_p"] = perceptual(i_out, t, levels=2)  # "w/o supervision" drops the mask scales and L1 pyramid
    gan = []
    if frame_d is not None:
        terms["L_gan_frame"] = lsgan_g_loss(frame_d(i_out))
        gan.append(terms["L_gan_frame"])
    if temporal_d is not None:
        terms["L_gan_temporal"] = lsgan_g_loss(temporal_d(stack_clips(i_out, clip_len)))
        gan.append(w.w_temporal * terms["L_gan_temporal"])
    if gan:
        terms["L_gan"] = sum(gan)
    terms["L_r"] = (reconstruction_loss(i_out, t, out.get("M"), multiscale)
                    + w.w_gen * reconstruction_loss(out["I_gen"], t, out.get("M"), multiscale))
    con = []
    if contrast is not None:
        if groups is None:
            raise ValueError("InfoNCE needs the clip id of every frame `groups` (B,)")
        terms["L_nce"] = contrastive_loss(contrast, out["v"], out["a"], groups)
        con.append(w.w_nce * terms["L_nce"])
    if sync_expert is not None:
        if mel is None:
            raise ValueError("the sync term needs the per-frame mel windows `mel`")
        clips = i_out.reshape(-1, clip_len, *i_out.shape[1:])  # (n, T, 3, H, W)
        centre = mel.reshape(-1, clip_len, *mel.shape[1:])[:, clip_len // 2]  # (n, 1, 80, 16)
        terms["L_sync"] = sync_loss(sync_expert, faces_to_mouths(clips), centre)
        con.append(w.w_sync * terms["L_sync"])
    if con:
        terms["L_con"] = sum(con)
    lam = {"L_v": w.lambda_v, "L_p": w.lambda_p, "L_gan": w.lambda_gan, "L_r": w.lambda_r,
           "L_con": w.lambda_con}
    terms["total"] = sum(lam[k] * v for k, v in terms.items() if k in lam)
    return terms


def discriminator_losses(real: torch.Tensor, fake: torch.Tensor, frame_d: nn.Module,
                         temporal_d: nn.Module | None = None, clip_len: int = 5,
                         w_temporal: float = 1.0) -> dict[str, torch.Tensor]:
    """LS-GAN discriminator terms on real faces and (detached) generated faces, (B, 3, H, W) each."""
    fake = fake.detach()
    terms = {"D_frame": lsgan_d_loss(frame_d(real), frame_d(fake))}
    if temporal_d is not None:
        terms["D_temporal"] = lsgan_d_loss(temporal_d(stack_clips(real, clip_len)),
                                           temporal_d(stack_clips(fake, clip_len)))
    terms["total"] = terms["D_frame"] + w_temporal * terms.get("D_temporal", 0.0)
    return terms
