"""Training throughput (printed figures, never asserted): `python -m g4g.bench_train [--steps N]`.

CPU, demo scale (face 104 x 80, width 0.25): samples/s of the real training step (generator update +
discriminator update, g4g.train.step) in the frame and clip stages, the time split into waiting for
data and compute, and the loader alone.
CUDA (when available), paper scale (416 x 320, width 1, bf16, channels-last): samples/s and peak GPU
memory at batch 3 and at the largest batch that fits (doubled until out of memory), the loader's own
samples/s with the configured workers, and the headroom = loader samples/s / training samples/s (below
1 the GPU waits for data). The perceptual term is timed with a randomly initialised VGG-19 when the
weights are absent (same cost). Data: results/demo/clips.parquet when present, else a synthetic set.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

DEMO_CLIPS = Path("results/demo/clips.parquet")


def _dataset(cfg, T: int, clips_parquet: str, cache: int):
    from g4g.train.data import G4GSamples, read_clips

    return G4GSamples(read_clips(clips_parquet, "train", min_frames=10), cfg, T, seed=0, cache_frames=cache)


def loader_rate(ds, batch: int, workers: int, n: int) -> float:
    """Samples/s of the loader alone (first batch excluded: worker start-up)."""
    from g4g.train.data import make_loader

    it = iter(make_loader(ds, batch, 0, n + 1, workers, prefetch=4, pin_memory=torch.cuda.is_available()))
    next(it)
    t = time.time()
    for _ in it:
        pass
    return n * batch * ds.T / (time.time() - t)


def train_rate(cfg, T: int, batch: int, steps: int, clips: str, device: torch.device, workers: int,
               amp: bool, cache: int = 0, warmup: int = 2) -> dict:
    """Samples/s of the training step, data wait vs compute, and peak memory (CUDA)."""
    from g4g.losses import LossWeights, VGGPerceptual
    from g4g.models.sync_expert import SyncExpert
    from g4g.train.data import device_batch, make_loader
    from g4g.train.step import build_nets, train_step
    from g4g.weights import WeightsError

    try:
        vgg = VGGPerceptual(pretrained=True)
    except WeightsError:
        vgg = VGGPerceptual(pretrained=False)
    expert = SyncExpert(width=cfg.width).to(device).eval().requires_grad_(False) if T > 1 else None
    n = build_nets(cfg, 1e-4, (0.5, 0.999), LossWeights(), device, T > 1, expert, vgg.to(device), amp)
    cl = device.type == "cuda"
    for m in (n.G, n.D_f, n.D_t, n.expert, n.perceptual):
        if m is not None and cl:
            m.to(memory_format=torch.channels_last)
    ds = _dataset(cfg, T, clips, cache)
    sync = torch.cuda.synchronize if cl else (lambda: None)
    if cl:
        torch.cuda.reset_peak_memory_stats()
    t_data = t_comp = 0.0
    t_last = time.time()
    for i, batch_ in enumerate(make_loader(ds, batch, 0, warmup + steps, workers, 4, pin_memory=cl)):
        t0 = time.time()
        b = device_batch(batch_, device, cl)
        train_step(n, b, T, gan=True)
        sync()
        if i >= warmup:
            t_data += t0 - t_last
            t_comp += time.time() - t0
        t_last = time.time()
    total = t_data + t_comp
    out = {"samples_s": steps * batch * T / total, "data_frac": t_data / total, "step_s": total / steps}
    if cl:
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def _row(name: str, r: dict, extra: str = "") -> None:
    mem = f"  peak {r['peak_gib']:.1f} GiB" if "peak_gib" in r else ""
    print(f"{name:<44} {r['samples_s']:8.1f} frames/s  step {r['step_s']:.3f} s  "
          f"data wait {100 * r['data_frac']:4.1f}%{mem}{extra}", flush=True)


def main(argv: list[str] | None = None) -> None:
    from g4g.models.g4g import model_config

    ap = argparse.ArgumentParser(prog="python -m g4g.bench_train", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--workers", type=int, default=8, help="loader workers on CUDA")
    ap.add_argument("--clips", help="clips.parquet (default: the demo set, else a synthetic set)")
    a = ap.parse_args(argv)
    clips = a.clips or (str(DEMO_CLIPS) if DEMO_CLIPS.exists() else None)
    if clips is None:
        from g4g.train.synthetic import write_synthetic

        clips = str(write_synthetic(tempfile.mkdtemp(prefix="g4g-bench-"), 40, 4, 1))
    print(f"data: {clips}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    cpu = torch.device("cpu")
    print("\n-- CPU, demo scale (face 104x80, width 0.25; fp32) --")
    cfg = model_config("demo")
    for T, batch, workers in ((1, 4, 0), (1, 4, 1), (5, 1, 0)):
        r = train_rate(cfg, T, batch, a.steps, clips, cpu, workers, amp=False, cache=4000)
        _row(f"{'frame' if T == 1 else 'clip'} stage, batch {batch}, workers {workers}", r)
    ds = _dataset(cfg, 1, clips, 0)
    print(f"{'loader alone (frame samples, no cache, 0 workers)':<44} {loader_rate(ds, 4, 0, a.steps):8.1f} frames/s")

    if not torch.cuda.is_available():
        print("\nCUDA not available: paper-scale figures skipped")
        return
    dev = torch.device("cuda")
    print(f"\n-- CUDA {torch.cuda.get_device_name()}, paper scale (face 416x320, width 1; bf16, channels-last) --")
    cfg = model_config("paper")
    ds = _dataset(cfg, 1, clips, 0)
    load = loader_rate(ds, 12, a.workers, max(a.steps, 20))
    print(f"{f'loader alone, {a.workers} workers':<44} {load:8.1f} frames/s")
    best = None
    batch = 3
    while batch <= 1024:
        try:
            r = train_rate(cfg, 1, batch, a.steps, clips, dev, a.workers, amp=True)
        except torch.OutOfMemoryError:
            print(f"frame stage, batch {batch}: out of memory")
            break
        finally:
            torch.cuda.empty_cache()
        _row(f"frame stage, batch {batch}", r, f"  headroom {load / r['samples_s']:.2f}")
        best, batch = (batch, r), batch * 2
    if best:
        print(f"largest batch that fits (powers of 2 x 3): {best[0]}")
    r = train_rate(cfg, 5, 3, a.steps, clips, dev, a.workers, amp=True)
    _row("clip stage, batch 3 clips (15 frames)", r, f"  headroom {load / r['samples_s']:.2f}")


if __name__ == "__main__":
    main()
