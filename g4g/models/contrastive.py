"""Inter-modality alignment (paper Sec. 3.1.2, Eq. 6-10): symmetric InfoNCE between visual and audio codes.

Projection heads g_v, g_a (Linear -> ReLU -> Linear, L2-normalised) map the pooled visual code v and the
audio code a to a shared space. Momentum copies g'_v, g'_a (EMA) produce the keys and fill a queue of
negatives, as in MoCo / ALBEF, because a batch of 3 alone gives almost no negatives. Only the heads
have momentum copies (the keys are computed from detached v, a): copying the whole generator would
double its cost. Queues, their clip ids and the pointer are buffers, so a checkpoint resumes exactly. With
several ranks (DDP) every rank enqueues the keys of the whole global batch, gathered from all ranks in rank
order (as MoCo does): the queues stay identical, hold what one process at the global batch would hold,
and rank 0's copy in the checkpoint resumes every rank exactly.

Every queued key carries the id of its clip, and a row never counts keys of its own clip as negatives
(METHOD Sec. 3 item 3, revised): on HDTF a clip sits about 10 times in a 4096-key queue, and its other
frames are near-duplicates of the positive. Empty slots carry id -1 and are masked the same way, so the
forward pass never reads the fill count back to the host (no device sync per step).
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

EMPTY = -1  # clip id of a queue slot never written

# ----------------------------------------------------------------------------------------------------
# Projection head and the InfoNCE term
# ----------------------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """g(x) = normalize(W2 relu(W1 x)): (B, in_dim) -> (B, out_dim) on the unit sphere."""

    def __init__(self, in_dim: int = 256, hidden: int = 256, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), dim=-1)


def info_nce(query: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None, tau: torch.Tensor,
             batch_mask: torch.Tensor | None = None, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with the positive on the diagonal (Eq. 8-9).

    query (B, D), pos (B, D): s_ij = q_i . k_j / tau, target j = i; other batch keys are negatives.
    neg (Q, D): extra negatives shared by all rows (the queue). batch_mask (B, B) bool: True where an
    off-diagonal batch key must not count as a negative (frames of the same clip). neg_mask (B, Q) bool:
    True where a queue key must not count for that row (its own clip, an empty slot).
    """
    B = len(query)
    logits = [query @ pos.t()]  # (B, B)
    if neg is not None and len(neg):
        logits.append(query @ neg.t())  # (B, Q)
    s = torch.cat(logits, dim=1) / tau  # Eq. 7
    # masks go in after the division by tau: -inf / tau would give the temperature a NaN gradient (0 * inf)
    drop = torch.zeros_like(s, dtype=torch.bool)
    if batch_mask is not None:
        drop[:, :B] = batch_mask & ~torch.eye(B, dtype=torch.bool, device=query.device)
    if neg_mask is not None and neg is not None and len(neg):
        drop[:, B:B + len(neg)] = neg_mask
    s = s.masked_fill(drop, float("-inf"))  # the diagonal is never dropped: every row stays finite
    target = torch.arange(B, device=query.device)
    return F.cross_entropy(s, target)


# ----------------------------------------------------------------------------------------------------
# Module with momentum heads and queues (Eq. 6-10)
# ----------------------------------------------------------------------------------------------------


class InterModalityContrast(nn.Module):
    """Symmetric InfoNCE between v and a with momentum heads, a negative queue and a learnable tau.

    forward(v, a, groups) -> scalar loss. In training mode it first updates the
    momentum heads (EMA `momentum`) and, after the loss, pushes the momentum keys and their clip ids into
    the queues. groups (B,) int64 >= 0: clip ids; keys of the row's own clip (in the batch and in the
    queue) are not negatives. There are no hard negatives (the same clip's audio shifted by >= 5
    frames, METHOD Sec. 3 item 3 originally): v carries nothing of the target mouth, so in the v -> a
    direction such a window cannot be told from the true one (docs/decisions.md, measured).
    """

    def __init__(self, dim: int = 256, hidden: int = 256, proj_dim: int = 128, queue_size: int = 4096,
                 momentum: float = 0.995, tau: float = 0.07, tau_range: tuple[float, float] = (0.01, 0.5)):
        super().__init__()
        self.momentum, self.tau_range, self.queue_size = momentum, tau_range, queue_size
        self.g_v = ProjectionHead(dim, hidden, proj_dim)
        self.g_a = ProjectionHead(dim, hidden, proj_dim)
        self.g_v_m = copy.deepcopy(self.g_v).requires_grad_(False)  # g'_v
        self.g_a_m = copy.deepcopy(self.g_a).requires_grad_(False)  # g'_a
        self.tau = nn.Parameter(torch.tensor(float(tau)))
        self.register_buffer("queue_v", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_a", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_id", torch.full((queue_size,), EMPTY, dtype=torch.long))  # clip of each key
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """g' <- m g' + (1 - m) g for both heads."""
        for online, target in ((self.g_v, self.g_v_m), (self.g_a, self.g_a_m)):
            for p, p_m in zip(online.parameters(), target.parameters()):
                p_m.mul_(self.momentum).add_(p.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, k_v: torch.Tensor, k_a: torch.Tensor, ids: torch.Tensor) -> None:
        """Write keys (B, D) and their clip ids (B,) at the ring-buffer pointer (oldest are overwritten)."""
        n = min(len(k_v), self.queue_size)
        idx = (self.queue_ptr + torch.arange(n, device=k_v.device)) % self.queue_size
        self.queue_v[idx] = k_v[-n:].to(self.queue_v.dtype)
        self.queue_a[idx] = k_a[-n:].to(self.queue_a.dtype)
        self.queue_id[idx] = ids[-n:]
        self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        """A model file written before the queue kept clip ids has `queue_len` instead of `queue_id`: its
        written slots get the id -2 (a clip no row has), the others stay empty."""
        if prefix + "queue_id" not in state and prefix + "queue_len" in state:
            filled = torch.arange(self.queue_size) < state.pop(prefix + "queue_len")
            state[prefix + "queue_id"] = torch.where(filled, torch.tensor(EMPTY - 1), torch.tensor(EMPTY))
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def temperature(self) -> torch.Tensor:
        """tau, clamped in place to tau_range (as ALBEF does) so the optimiser cannot push it out."""
        with torch.no_grad():
            self.tau.clamp_(*self.tau_range)
        return self.tau

    def forward(self, v: torch.Tensor, a: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=v.device.type, enabled=False):
            v, a = v.float(), a.float()
            if self.training:
                self.momentum_update()
            z_v, z_a = self.g_v(v), self.g_a(a)  # Eq. 6, (B, D)
            with torch.no_grad():
                k_v, k_a = self.g_v_m(v.detach()), self.g_a_m(a.detach())  # momentum keys, (B, D)
            batch_mask = groups[:, None] == groups[None, :]  # (B, B)
            ids = self.queue_id.clone()  # (Q,): a snapshot, enqueue below writes in place
            queue_mask = (ids[None, :] == groups[:, None]) | (ids[None, :] == EMPTY)  # (B, Q)
            q_v, q_a = self.queue_v.clone(), self.queue_a.clone()  # (Q, D)
            tau = self.temperature()
            loss_v2a = info_nce(z_v, k_a, q_a, tau, batch_mask=batch_mask, neg_mask=queue_mask)  # Eq. 8
            loss_a2v = info_nce(z_a, k_v, q_v, tau, batch_mask=batch_mask, neg_mask=queue_mask)  # Eq. 9
            if self.training:
                self.enqueue(gathered(k_v), gathered(k_a), gathered(groups))
            return 0.5 * (loss_v2a + loss_a2v)  # Eq. 10


@torch.no_grad()
def gathered(x: torch.Tensor) -> torch.Tensor:
    """x of every rank concatenated in rank order under torch.distributed (one all-gather), else x."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
