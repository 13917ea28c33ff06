"""Intra-modality alignment (paper Sec. 3.1.1, Eq. 5): AdaIN residual blocks driven by the landmark code.

ibar_s = conv1x1(cat(F_s, F_ref)); K residual blocks whose normalisation is AdaIN(x, l_r) turn it into
F_align. With alignment switched off (ablation "w/o alignment") the same blocks use plain GroupNorm and
no landmark code.
"""

from __future__ import annotations

import torch
from torch import nn

from g4g.models.blocks import ResBlock, make_act

# ----------------------------------------------------------------------------------------------------
# AdaIN (Eq. 5)
# ----------------------------------------------------------------------------------------------------


def instance_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel spatial mean and std, in float32: (B, C, H, W) -> 2 x (B, C, 1, 1)."""
    var, mu = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
    return mu, torch.sqrt(var + eps)


class AdaIN(nn.Module):
    """AdaIN(x, l) = sigma_dot * (x - mu(x)) / sigma(x) + mu_dot, (sigma_dot, mu_dot) = Linear(l). Eq. 5.

    The Linear is initialised so that sigma_dot starts at 1 and mu_dot at 0 (plain instance norm).
    Statistics are computed in float32 so the block is safe under bf16 autocast.
    """

    def __init__(self, c: int, style_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.affine = nn.Linear(style_dim, 2 * c)
        nn.init.normal_(self.affine.weight, std=0.02)
        with torch.no_grad():
            self.affine.bias[:c].fill_(1.0)  # sigma_dot
            self.affine.bias[c:].zero_()  # mu_dot

    def predict(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma_dot, mu_dot), each (B, C, 1, 1), from the style code (B, style_dim)."""
        sigma_dot, mu_dot = self.affine(style).float().chunk(2, dim=1)  # 2 x (B, C)
        return sigma_dot[..., None, None], mu_dot[..., None, None]

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        mu, sigma = instance_stats(x, self.eps)  # (B, C, 1, 1)
        sigma_dot, mu_dot = self.predict(style)  # (B, C, 1, 1)
        out = sigma_dot * (x.float() - mu) / sigma + mu_dot  # Eq. 5, (B, C, H, W)
        return out.to(x.dtype)


class AdaINResBlock(nn.Module):
    """x + [conv3x3 -> AdaIN -> act -> conv3x3 -> AdaIN](x), then the activation."""

    def __init__(self, c: int, style_dim: int, act: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm1 = AdaIN(c, style_dim)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm2 = AdaIN(c, style_dim)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.act(self.norm1(self.conv1(x), style))
        h = self.norm2(self.conv2(h), style)
        return self.act(x + h)


# ----------------------------------------------------------------------------------------------------
# Intra-modality alignment module
# ----------------------------------------------------------------------------------------------------


class IntraModalityAlignment(nn.Module):
    """cat(F_s, F_ref) -> conv1x1 -> ibar_s -> K (AdaIN) residual blocks -> F_align.

    `aligned=False` is the "w/o alignment" ablation: plain residual blocks, no landmark code needed.
    """

    def __init__(self, c: int, style_dim: int, n_blocks: int = 4, aligned: bool = True,
                 norm: str = "group"):
        super().__init__()
        self.aligned = aligned
        self.fuse = nn.Conv2d(2 * c, c, 1)
        if aligned:
            self.blocks = nn.ModuleList([AdaINResBlock(c, style_dim) for _ in range(n_blocks)])
        else:
            self.blocks = nn.ModuleList([ResBlock(c, norm) for _ in range(n_blocks)])

    @torch.no_grad()
    def style_spread(self, l_r: torch.Tensor) -> torch.Tensor:
        """How much the AdaIN style varies across a batch: the std over the batch of every block's
        (sigma_dot, mu_dot), averaged over channels and layers (0-dim). Near 0 the landmark code has
        collapsed to a constant style (both sides of L_v can meet through constant directions, Eq. 19).
        Called outside autocast: l_r may come out of it in bf16, the Linear is fp32."""
        spreads = [torch.cat(norm.predict(l_r.float()), dim=1).std(dim=0, correction=0).mean()
                   for block in self.blocks for norm in (block.norm1, block.norm2)]
        return torch.stack(spreads).mean()

    def forward(self, f_s: torch.Tensor, f_ref: torch.Tensor,
                l_r: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ibar_s, F_align), both (B, C, h, w); l_r (B, style_dim) is required when aligned."""
        ibar_s = self.fuse(torch.cat([f_s, f_ref], dim=1))  # (B, C, h, w)
        x = ibar_s
        for block in self.blocks:
            if self.aligned:
                if l_r is None:
                    raise ValueError("the aligned model needs the landmark code l_r")
                x = block(x, l_r)  # Eq. 5 inside each block
            else:
                x = block(x)
        return ibar_s, x
