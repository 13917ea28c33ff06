"""One G4G optimisation step (paper Eq. 24) and the networks it updates; shared by the loop and the bench.

Each step: the generator update on the weighted total of L_v, L_p, L_GAN, L_r and L_con with the
discriminators frozen (their inputs still pass gradients), then the LS-GAN update of the discriminators
on real targets against the detached I_out (Eq. 21-22).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from g4g.losses import discriminator_losses, generator_losses
from g4g.models.discriminators import FrameDiscriminator, TemporalDiscriminator
from g4g.models.g4g import G4G


@dataclass
class Nets:
    """The networks and optimisers of one G4G training (the *_ddp fields are the DDP wrappers, if any)."""
    G: nn.Module
    D_f: nn.Module
    D_t: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    weights: object                       # g4g.losses.LossWeights
    perceptual: nn.Module | None = None   # VGG-19 L_p, None when off
    expert: nn.Module | None = None       # frozen sync expert (clip stages)
    amp: bool = False                     # bf16 autocast (CUDA)
    G_ddp: nn.Module | None = None
    D_f_ddp: nn.Module | None = None
    D_t_ddp: nn.Module | None = None

    def __post_init__(self):
        self.G_ddp = self.G_ddp or self.G
        self.D_f_ddp = self.D_f_ddp or self.D_f
        self.D_t_ddp = self.D_t_ddp or self.D_t

    def autocast(self, device: torch.device):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)


def build_nets(cfg, lr: float, betas: tuple, d_betas: tuple, weights, device, temporal: bool, expert=None,
               perceptual=None, amp: bool = False) -> Nets:
    """G4G from its config, frame D (and the temporal D when a clip stage needs it), Adam for both sides (the
    generator's betas, the discriminators' d_betas)."""

    G = G4G(cfg).to(device)
    D_f = FrameDiscriminator(width=cfg.width, norm=cfg.norm).to(device)
    D_t = TemporalDiscriminator(width=cfg.width, norm=cfg.norm).to(device) if temporal else None
    d_params = list(D_f.parameters()) + (list(D_t.parameters()) if D_t is not None else [])
    opt_g = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=lr, betas=betas)
    opt_d = torch.optim.Adam(d_params, lr=lr, betas=d_betas)
    return Nets(G, D_f, D_t, opt_g, opt_d, weights, perceptual, expert, amp=amp)


def train_step(n: Nets, b: dict, clip_len: int, gan: bool) -> tuple[dict, dict, dict]:
    """One generator and one discriminator update on a device batch; (G terms, D terms, G outputs)."""

    clip, w, dev = clip_len > 1, n.weights, b["I_t"].device
    with n.autocast(dev):  # Eq. 24, discriminators frozen
        o = n.G_ddp(b)  # G4G.prepare renders L_r and G from the landmarks on the device
        for D in (n.D_f, n.D_t):
            if D is not None:
                D.requires_grad_(False)
        g = generator_losses(o, b["I_t"], w, perceptual=n.perceptual, frame_d=n.D_f if gan else None,
                             temporal_d=n.D_t if clip and gan else None, contrast=n.G.contrast,
                             sync_expert=n.expert if clip else None, mel=b["A"],
                             groups=b["clip"], clip_len=clip_len,
                             multiscale=n.G.cfg.multiscale_supervision)
    n.opt_g.zero_grad(set_to_none=True)
    g["total"].backward()
    n.opt_g.step()
    for D in (n.D_f, n.D_t):
        if D is not None:
            D.requires_grad_(True)
    dl = {}
    if gan:
        with n.autocast(dev):  # Eq. 21-22: real targets vs the detached I_out
            dl = discriminator_losses(b["I_t"], o["I_out"], n.D_f_ddp, n.D_t_ddp if clip else None, clip_len,
                                      w.w_temporal)
        n.opt_d.zero_grad(set_to_none=True)
        dl["total"].backward()
        n.opt_d.step()
    return g, dl, o
