"""Inference and evaluation throughput (printed, never asserted): `python -m g4g.bench.infer [--seconds 10]`.

infer: a generated 1920x1080 25 fps talking-head clip lip-synced to its own audio, end to end (decode,
crop, generate, paste back, encode + mux), frames/s overall and per stage, with the demo-size generator
on the CPU; when CUDA is available, also the paper-size generator (416 x 320 faces) in bf16 with batching.
Landmark tracking is timed on its own (the test-set driver reuses the stored landmarks instead).
A trained checkpoint can be given; otherwise a randomly initialised one of the same size is timed.

source rate: the same clip at 30 fps through `g4g lipsync` (landmark tracking included), rendered at its
own 30 fps and at 25 fps. With `--syncnet` (a trained syncnet.pt) and a trained `--checkpoint`, each
output is checked for sync: re-read at 25 fps, tracked, cropped, and the own SyncNet's offset search
run on it (offset 0 and equal LSE at both rates: the 30 fps windows are placed right).

evaluate: frames/s of each metric on 416 x 320 face crops (networks randomly initialised where the
weights are missing: the speed is the same, the numbers are not used).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from g4g.bench.cross_drive import video_sync
from g4g.bench.prep import clip_1080p
from g4g.evaluate.own_syncnet import OwnSyncNet
from g4g.infer.lipsync import Lipsync, track_video
from g4g.io.audio import load_audio
from g4g.io.video import decode_all, ffmpeg_exe
from g4g.metrics.fid import FIDInception
from g4g.metrics.image import image_metrics
from g4g.metrics.lpips_metric import LPIPSMetric
from g4g.metrics.lse import lse
from g4g.metrics.lse_framing import HogFaceBoxes, crop
from g4g.metrics.s3fd import S3FD
from g4g.metrics.syncnet import OfficialSyncNet
from g4g.models.g4g import build_generator
from g4g.models.loading import build_expert
from g4g.params import InferParams, LandmarkParams, SyncParams
from g4g.weights import WeightsError


def _checkpoint(size: str, folder: Path) -> Path:
    import torch


    torch.manual_seed(0)
    G = build_generator(size)
    path = folder / f"{size}.pt"
    torch.save({"generator": G.state_dict(), "config": dataclasses.asdict(G.cfg)}, path)
    return path


def bench_infer(clip: Path, checkpoint: Path, device: str, batch: int, label: str, track=None,
                overlap: bool = True, paste_threads: int = 1) -> dict:

    engine = Lipsync.from_checkpoint(checkpoint, InferParams(batch_size=batch, device=device, overlap=overlap,
                                                               paste_threads=paste_threads))
    with tempfile.TemporaryDirectory() as tmp:
        if device.startswith("cuda"):  # warm-up: kernels, cudnn autotune
            engine.run(clip, clip, Path(tmp) / "warm.mp4", track=track, progress=False)
            engine.timings = dict.fromkeys(engine.timings, 0.0)
        t = time.perf_counter()
        stats = engine.run(clip, clip, Path(tmp) / "out.mp4", track=track, progress=False)
        dt = time.perf_counter() - t
    n = stats["n_frames"]
    print(f"{label:<44} {n / dt:7.2f} frames/s end to end ({n} frames, {dt:.1f} s)")
    for k, v in engine.timings.items():  # each stage's own busy time (overlapped stages add up to more than dt)
        print(f"    {k:<10} {n / v if v else float('inf'):8.1f} frames/s  ({v:.1f} s busy)")
    return {"fps": n / dt, **engine.timings}


def bench_source_rate(clip: Path, checkpoint: Path, syncnet: str | None, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip30 = Path(tmp) / "talking30.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-r", "30", "-c:a", "copy", str(clip30)],
                       check=True)
        for fps in (None, 25.0):
            engine = Lipsync.from_checkpoint(checkpoint, InferParams(fps=fps, threads=threads))
            out = Path(tmp) / f"out_{fps or 'source'}.mp4"
            t = time.perf_counter()
            stats = engine.run(clip30, clip30, out, progress=False)
            dt = time.perf_counter() - t
            label = f"1080p 30 fps in, {stats['output_fps']:g} fps out, tracking included"
            line = f"{label:<56} {stats['n_frames'] / dt:7.2f} frames/s ({stats['n_frames']} frames, {dt:.1f} s)"
            if syncnet:
                res = video_sync(out, load_audio(out), OwnSyncNet(syncnet, "cpu"))
                line += f"  own SyncNet: offset {res.offset:+d}, LSE-D {res.lse_d:.3f}, LSE-C {res.lse_c:.3f}"
            print(line)


def bench_metrics(n: int = 64, batch: int = 16, device: str = "cpu", full: np.ndarray | None = None) -> None:
    """Each metric's frames/s; `full`: 1080p frames of a talking head for the face boxes and crops of
    syncnet_python's LSE framing (the LSE-D/LSE-C columns)."""
    import torch

    rng = np.random.default_rng(0)
    gen = rng.integers(0, 255, (n, 416, 320, 3), dtype=np.uint8)
    gt = np.clip(gen.astype(int) + rng.integers(-20, 20, gen.shape), 0, 255).astype(np.uint8)
    audio = (0.1 * rng.standard_normal(int(n / 25 * 16000) + 640)).astype(np.float32)

    def timed(name, fn, frames=n):
        fn()  # warm-up
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        print(f"    {name:<46} {frames / dt:8.1f} frames/s")

    def load(cls, **kw):
        try:
            return cls(pretrained=True, device=device, **kw), ""
        except WeightsError:
            return cls(pretrained=False, device=device, **kw), " (random init: weights missing)"

    print(f"evaluation throughput on {device}, 416 x 320 crops, batch {batch}:")
    for dt in (torch.float32, torch.float64):
        timed(f"PSNR + SSIM + MSE ({str(dt).split('.')[-1]})",
              lambda: [image_metrics(gen[i:i + batch], gt[i:i + batch], device, dt) for i in range(0, n, batch)])  # noqa: B023
    lp, note = load(LPIPSMetric)
    timed("LPIPS (AlexNet)" + note, lambda: lp.frames(gen, gt, batch))
    fid, note = load(FIDInception)
    timed("FID Inception activations, gen + gt" + note,
          lambda: (fid.activations(gen, batch), fid.activations(gt, batch)))
    sync, note = load(OfficialSyncNet)
    timed("LSE official SyncNet (31 offsets)" + note, lambda: lse(sync, gen, audio, batch_size=batch))
    if full is not None:
        s3fd, note = load(S3FD)
        timed("LSE framing: S3FD face boxes, 1080p at 0.25" + note, lambda: [s3fd.detect(f) for f in full],
              len(full))
        if device == "cpu":
            hog = HogFaceBoxes()
            timed("LSE framing: dlib HOG face boxes (surrogate), 1080p", lambda: [hog.detect(f) for f in full],
                  len(full))
            timed("LSE framing: track crop to 224 x 224, 1080p", lambda: [crop(f, 960.0, 500.0, 180.0) for f in full],
                  len(full))
    with tempfile.TemporaryDirectory() as tmp:
        p = SyncParams(width=0.25, mouth_size=64)
        path = Path(tmp) / "syncnet.pt"
        torch.save({"expert": build_expert(p).state_dict(), "params": dataclasses.asdict(p)}, path)
        own = OwnSyncNet(path, device)
        timed("LSE own SyncNet, demo size (surrogate)", lambda: lse(own, gen, audio, batch_size=batch))


def main(argv: list[str] | None = None) -> None:
    import torch


    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the generated 1080p clip")
    ap.add_argument("--checkpoint", help="a trained model.pt (default: random init of the demo size)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch / OpenCV threads on the CPU (1 as params.yaml infer.threads)")
    ap.add_argument("--syncnet", help="a trained syncnet.pt: check the sync of the source-rate outputs")
    ap.add_argument("--skip-metrics", action="store_true")
    ap.add_argument("--metrics-only", action="store_true", help="only the evaluation figures")
    ap.add_argument("--cuda-only", action="store_true",
                    help="only the paper-size CUDA figures and the metrics on CUDA (tools/gpu-check)")
    a = ap.parse_args(argv)
    import cv2

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    clip = clip_1080p(a.seconds)
    full = None if a.skip_metrics else decode_all(clip, np.arange(8))  # 1080p frames for the LSE framing
    if a.metrics_only:
        bench_metrics(device="cpu", full=full)
        return

    t = time.perf_counter()
    track = track_video(clip, LandmarkParams())
    dt = time.perf_counter() - t
    print(f"{'landmarks + crop transforms (dlib)':<44} {len(track) / dt:7.2f} frames/s ({len(track)} frames)")
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(a.checkpoint) if a.checkpoint else _checkpoint("demo", Path(tmp))
        if not a.cuda_only:
            bench_infer(clip, ck, "cpu", 8, f"1080p, demo size, CPU x{a.threads}, serial", track, overlap=False)
            r = bench_infer(clip, ck, "cpu", 8, f"1080p, demo size, CPU x{a.threads}, overlapped", track)
            print(f"{'overlapped, with landmark tracking':<44} {len(track) / (len(track) / r['fps'] + dt):7.2f} "
                  "frames/s")
        if torch.cuda.is_available():
            ck = _checkpoint("paper", Path(tmp))
            for b, pt in ((8, 1), (8, 4), (32, 4)):
                bench_infer(clip, ck, "cuda", b, f"1080p, paper size, CUDA bf16, batch {b}, {pt} paste threads",
                            track, paste_threads=pt)
        else:
            print("CUDA not available: paper-size GPU figures skipped")
        if not a.cuda_only:
            bench_source_rate(clip, ck, a.syncnet, a.threads)
    if not a.skip_metrics:
        if not a.cuda_only:
            bench_metrics(device="cpu", full=full)
        if torch.cuda.is_available():
            bench_metrics(n=256, batch=64, device="cuda", full=full)


if __name__ == "__main__":
    main()
