"""Trained networks from their files: the G4G generator (model.pt) and the sync expert (syncnet.pt).

Training writes these files (g4g.train); inference, evaluation and training itself load them from here,
so the layers above the models never reach into the training package.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from g4g.models.g4g import G4G, G4GConfig
from g4g.models.sync_expert import SyncExpert
from g4g.params import RUNTIME_KEYS, SyncParams

GENERATOR, EXPERT = "a G4G model (results/models/<dataset>/<variant>/model.pt)", \
    "a sync expert (results/models/<dataset>/syncnet.pt)"


def read_model_file(path: str | Path, keys: tuple[str, str], expected: str) -> dict:
    """The dict in a model file that holds `keys`; otherwise a ValueError that names the file, what it is
    (another kind of file, a training checkpoint, the other network) and what was expected."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file, expected {expected}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # unpickling raises anything at all on a file of another kind
        raise ValueError(f"{p}: not a PyTorch model file ({type(e).__name__}); expected {expected}") from e
    if isinstance(state, dict) and all(k in state for k in keys):
        return state
    if isinstance(state, dict) and "step" in state and ("G" in state or "opt" in state):
        what = f"a training checkpoint (step {state['step']}), not the finished model"
    elif isinstance(state, dict) and "expert" in state:
        what = "the sync expert"
    elif isinstance(state, dict) and "generator" in state:
        what = "a G4G model"
    else:
        what = "not a G4G model or sync expert"
    raise ValueError(f"{p}: {what}; expected {expected}")


def load_generator(path: str | Path, device="cpu"):
    """(G4G in eval mode, the checkpoint dict) from a model.pt written by training_loop."""

    state = read_model_file(path, ("generator", "config"), GENERATOR)
    g = G4G(G4GConfig(**state["config"]))
    g.load_state_dict(state["generator"])
    return g.to(device).eval(), state


def build_expert(p: SyncParams):

    return SyncExpert(width=p.width, norm=p.norm)


def load_sync_expert(path: str | Path, device="cpu"):
    """(expert in eval mode with frozen weights, its metadata) from a syncnet.pt written by train_sync."""
    state = read_model_file(path, ("expert", "params"), EXPERT)
    p = SyncParams(**state["params"])
    expert = build_expert(p)
    expert.load_state_dict(state["expert"])
    return expert.to(device).eval().requires_grad_(False), state


def expert_digest(state: dict) -> str:
    """16 hex digits identifying a loaded syncnet.pt (`load_sync_expert(...)[1]`) by what the expert
    computes (its parameters, buffers and SyncParams), not by the file's bytes: the file also carries
    run tags (the dataset, the rule) and the torch version's serialisation, so an identical expert
    published by another run or torch release must not look like a new one to the runs that depend on it."""


    params = {k: v for k, v in state["params"].items() if k not in RUNTIME_KEYS}  # as fingerprint(): no log_every...
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    return hash_tensors(h, state["expert"]).hexdigest()[:16]


def hash_tensors(h, tensors: dict[str, torch.Tensor]):
    """Feed name, dtype, shape and raw bytes of every tensor of a state dict, by name, into hashlib `h`."""
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h


def weights_digest(path: str | Path) -> str:
    """sha256 of the network weights in a model.pt or syncnet.pt (hash_tensors), not of the file's bytes:
    equal where another torch release serialises the same weights differently."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = next((state[k] for k in ("generator", "expert") if k in state), None)
    if net is None:
        raise ValueError(f"{path}: neither a G4G model nor a sync expert (no 'generator' or 'expert' weights)")
    return hash_tensors(hashlib.sha256(), net).hexdigest()
