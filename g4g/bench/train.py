"""Training throughput (printed figures, never asserted): `python -m g4g.bench.train [--steps N]`.

CPU, demo scale (face 104 x 80, width 0.25): samples/s of the real training step (generator update +
discriminator update, g4g.train.step) in the frame and clip stages, the time split into waiting for
data and compute, and the loader alone (with and without the decoded-frame cache).
CPU, paper scale, what a GPU's data loader must keep up with (issue 22 item 5): the loader's samples/s in one
process (one worker's rate) for frame samples and clip samples (5 targets + references) at 416 x 320 without
the frame cache, the model FLOPs of one training step per sample (torch.utils.flop_counter: generator,
discriminators, the sync expert and VGG-19 L_p, forward and backward), and from them the samples/s a GPU
would train at a given MFU and the loader workers that takes (--peak-tflops, --mfu).
CUDA (when available), paper scale (416 x 320, width 1, bf16, channels-last, every loss): samples/s and peak GPU
memory at batch 3 and at the largest batch that fits (doubled until out of memory), the loader's own
samples/s with the configured workers, and the headroom = loader samples/s / training samples/s (below
1 the GPU waits for data). The perceptual term is timed with a randomly initialised VGG-19 when the
weights are absent (same cost). Data: results/demo/clips.parquet when present, else a synthetic set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from g4g.losses import VGGPerceptual
from g4g.models.g4g import model_config
from g4g.models.sync_expert import SyncExpert
from g4g.params import LossWeights, TrainParams
from g4g.train.data import G4GSamples, device_batch, make_loader, read_clips
from g4g.train.run import LossBuffer
from g4g.train.step import build_nets, train_step
from g4g.train.synthetic import write_synthetic
from g4g.weights import WeightsError

DEMO_CLIPS = Path("results/demo/clips.parquet")


def _dataset(cfg, T: int, clips_parquet: str, cache: int):

    return G4GSamples(read_clips(clips_parquet, "train", min_frames=10), cfg, T, seed=0, cache_frames=cache)


def _vgg() -> VGGPerceptual:
    """VGG-19 for L_p: the pretrained weights when present, else random ones (the same cost and FLOPs)."""
    try:
        return VGGPerceptual(pretrained=True)
    except WeightsError:
        return VGGPerceptual(pretrained=False)


def loader_rate(ds, batch: int, workers: int, n: int) -> float:
    """Samples/s of the loader alone (first batch excluded: worker start-up)."""

    it = iter(make_loader(ds, batch, 0, n + 1, workers, prefetch=4, pin_memory=torch.cuda.is_available()))
    next(it)
    t = time.time()
    for _ in it:
        pass
    return n * batch * ds.T / (time.time() - t)


def train_rate(cfg, T: int, batch: int, steps: int, clips: str, device: torch.device, workers: int,
               amp: bool, cache: int = 0, warmup: int = 2, perceptual: bool = True, gan: bool = True) -> dict:
    """Samples/s of the training step, data wait vs compute, and peak memory (CUDA)."""

    vgg = _vgg() if perceptual else None
    expert = SyncExpert(width=cfg.width).to(device).eval().requires_grad_(False) if T > 1 else None
    train = TrainParams()  # the paper's rate, the project's betas
    n = build_nets(cfg, train.lr, train.betas, train.d_betas, LossWeights(), device, T > 1, expert,
                   vgg.to(device) if vgg is not None else None, amp)
    cl = device.type == "cuda"
    for m in (n.G, n.D_f, n.D_t, n.expert, n.perceptual):
        if m is not None and cl:
            m.to(memory_format=torch.channels_last)
    ds = _dataset(cfg, T, clips, cache)
    sync = torch.cuda.synchronize if cl else (lambda: None)
    if cl:
        torch.cuda.reset_peak_memory_stats()
    t_data = t_comp = 0.0
    t_last, losses = time.time(), LossBuffer()
    for i, batch_ in enumerate(make_loader(ds, batch, 0, warmup + steps, workers, 4, pin_memory=cl)):
        t0 = time.time()
        b = device_batch(batch_, device, cl)
        g, dl, _ = train_step(n, b, T, gan=gan)
        losses.add(i, {**g, **{f"D/{k}": v for k, v in dl.items()}}, {})  # read back as the loop does
        if i % 10 == 0:
            losses.drain()
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
    print(f"{name:<52} {r['samples_s']:8.1f} frames/s  step {r['step_s']:.3f} s  "
          f"data wait {100 * r['data_frac']:4.1f}%{mem}{extra}", flush=True)


def cpu_figures(clips: str, steps: int) -> None:

    print("\n-- CPU, demo scale (face 104x80, width 0.25, fp32) as the demo trains: no loader workers, no L_p;")
    print("   frame stage without GAN, clip stage with both discriminators and the sync expert --")
    cfg, cpu = model_config("demo"), torch.device("cpu")
    for T, batch in ((1, 4), (5, 1)):
        r = train_rate(cfg, T, batch, steps, clips, cpu, workers=0, amp=False, cache=4000, perceptual=False,
                       gan=T > 1)
        _row(f"{'frame' if T == 1 else 'clip'} stage, batch {batch}", r)
    r = train_rate(cfg, 1, 4, steps, clips, cpu, workers=0, amp=False, cache=4000)
    _row("frame stage, batch 4, with GAN and L_p (random VGG)", r)
    for cache in (0, 4000):
        rate = loader_rate(_dataset(cfg, 1, clips, cache), 4, 0, max(steps, 20))
        print(f"{f'loader alone (frame samples, cache {cache})':<52} {rate:8.1f} frames/s")


def step_flops(cfg, T: int, batch: int, clips: str) -> float:
    """Model FLOPs of one training step (G update with every loss, D update), per sample, counted on CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    vgg = _vgg()
    cpu = torch.device("cpu")
    expert = SyncExpert(width=cfg.width).eval().requires_grad_(False) if T > 1 else None
    train = TrainParams()
    n = build_nets(cfg, train.lr, train.betas, train.d_betas, LossWeights(), cpu, T > 1, expert, vgg)
    b = device_batch(next(iter(make_loader(_dataset(cfg, T, clips, 0), batch, 0, 1, 0))), cpu)
    with FlopCounterMode(display=False) as counter:
        train_step(n, b, T, gan=True)
    return counter.get_total_flops() / (batch * T)


def paper_cpu_figures(clips: str, steps: int, peak_tflops: float, mfu: float) -> None:

    print("\n-- CPU, paper scale (face 416x320, width 1): what a GPU's loader must keep up with --")
    cfg = model_config("paper")
    rates = {}
    for T, batch, name in ((1, 12, "frame"), (5, 3, "clip")):
        rates[name] = loader_rate(_dataset(cfg, T, clips, 0), batch, 0, max(steps, 4))
        print(f"{f'loader, one worker, {name} samples (batch {batch}, no cache)':<52} {rates[name]:8.1f} frames/s")
    for T, batch, name in ((1, 1, "frame"), (5, 1, "clip")):
        flops = step_flops(cfg, T, batch, clips)
        gpu = mfu * peak_tflops * 1e12 / flops
        print(f"{f'{name} stage: model FLOPs per training frame':<52} {flops / 1e9:8.1f} GFLOP; at "
              f"{100 * mfu:.0f} % MFU of {peak_tflops:.0f} TFLOP/s: {gpu:.0f} frames/s, {gpu / rates[name]:.1f} "
              f"loader workers", flush=True)


def cuda_figures(clips: str, steps: int, workers: int) -> None:

    dev = torch.device("cuda")
    print(f"\n-- CUDA {torch.cuda.get_device_name()}, paper scale (face 416x320, width 1; bf16, channels-last) --")
    cfg = model_config("paper")
    load = loader_rate(_dataset(cfg, 1, clips, 0), 12, workers, max(steps, 20))
    print(f"{f'loader alone, {workers} workers':<52} {load:8.1f} frames/s")
    best, batch = None, 3
    while batch <= 1536:
        try:
            r = train_rate(cfg, 1, batch, steps, clips, dev, workers, amp=True)
        except torch.OutOfMemoryError:
            print(f"frame stage, batch {batch}: out of memory")
            break
        finally:
            torch.cuda.empty_cache()
        _row(f"frame stage, batch {batch}", r, f"  headroom {load / r['samples_s']:.2f}")
        best, batch = batch, batch * 2
    print(f"largest batch that fits (3 x powers of 2): {best}")
    r = train_rate(cfg, 5, 3, steps, clips, dev, workers, amp=True)
    _row("clip stage, batch 3 clips (15 frames)", r, f"  headroom {load / r['samples_s']:.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m g4g.bench.train", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--workers", type=int, default=8, help="loader workers on CUDA")
    ap.add_argument("--clips", help="clips.parquet (default: the demo set, else a synthetic set)")
    ap.add_argument("--cuda-only", action="store_true", help="only the paper-scale CUDA figures (tools/gpu-check)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the GPU's dense bf16 peak for the predicted loader workers (default: H100 SXM, 989)")
    ap.add_argument("--mfu", type=float, default=0.4, help="the model FLOPs utilisation to predict at (default 0.4)")
    a = ap.parse_args(argv)
    clips = a.clips or (str(DEMO_CLIPS) if DEMO_CLIPS.exists() else None)
    if clips is None:

        clips = str(write_synthetic(tempfile.mkdtemp(prefix="g4g-bench-"), 40, 4, 1))
    if a.cuda_only:
        return cuda_figures(clips, a.steps, a.workers)
    print(f"data: {clips}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cpu_figures(clips, a.steps)
    paper_cpu_figures(clips, a.steps, a.peak_tflops, a.mfu)
    if not torch.cuda.is_available():
        print("\nCUDA not available: paper-scale figures skipped")
        return
    # with loader workers the OpenMP threads must not spin (see g4g.train.commands._runtime): own process
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    subprocess.run([sys.executable, "-m", "g4g.bench.train", "--cuda-only", "--clips", clips, "--steps",
                    str(a.steps), "--workers", str(a.workers)], env=env, check=True)


if __name__ == "__main__":
    main()
