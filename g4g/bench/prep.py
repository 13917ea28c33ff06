"""Preparation benchmark (printed figures, never asserted): `python -m g4g.bench.prep [--long]`.

On a generated 10 s 1920x1080 25 fps talking-head clip, decode-only frames/s (the physical
bound of this machine), then frames/s of each preparation stage and of the whole preparation; with
--long, peak memory of the whole preparation of a 10-minute 1080p video (all stages in one process,
an upper bound for any one Snakemake job).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from g4g.data.demo import write_talking_clip
from g4g.data.faces import LANDMARK_SCHEMA, crop_clip, crop_pool, face_clip, landmark_arrays, landmark_clip
from g4g.data.mels import mel_clip
from g4g.data.resample import resample_clip
from g4g.data.scan import scan
from g4g.data.shards import FrameShardWriter
from g4g.io.video import ffmpeg_exe
from g4g.params import (
    AudioParams,
    CropParams,
    DatasetParams,
    LandmarkParams,
    MelParams,
    SplitParams,
    VideoParams,
)

BENCH_DIR = Path("results/bench")


def clip_1080p(seconds: float = 10.0) -> Path:

    path = BENCH_DIR / f"1080p_{seconds:g}s" / "talking.mp4"  # one folder each: scan lists a folder
    if not path.exists():
        t = time.time()
        write_talking_clip(path, seconds=seconds, seed=123, frame_size=(1920, 1080))
        print(f"generated {path} in {time.time() - t:.1f} s")
    return path


def _long_clip(src: Path, loops: int) -> Path:

    path = BENCH_DIR / f"1080p_x{loops}" / "talking.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", str(loops - 1), "-i", str(src),
                        "-c", "copy", str(path)], check=True)
    return path


def decode_only(path: Path) -> tuple[int, float]:
    import av

    t = time.time()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n, time.time() - t


def run_stages(path: Path, workdir: Path, components: bool = True) -> tuple[dict[str, float], int]:
    """Time each stage of one clip exactly as the shard drivers run it; returns seconds per stage.

    The workflow's stages are scan, resample, faces (landmarks + crops in one decode pass) and mels;
    with `components`, landmarks alone and crops alone (the two-pass `g4g landmarks` / `g4g crops`)
    are timed too, for reference: they are not part of the whole.
    """
    import pyarrow as pa


    times, parts = {}, {}
    cp = CropParams()
    t = time.time()
    table, _ = scan(DatasetParams(root=str(path.parent), split=SplitParams(n_test=0)), 0)
    row = [r for r in table.to_pylist() if r["path"] == str(path)][0]
    times["scan (probe)"] = time.time() - t
    t = time.time()
    res = resample_clip(row, VideoParams(), AudioParams())
    times["resample (frame map + 16 kHz audio)"] = time.time() - t
    with crop_pool(cp) as pool:
        if components:
            t = time.time()
            lm = landmark_clip(res, LandmarkParams())
            parts["  landmarks alone (decode + detect/track)"] = time.time() - t
            lm = landmark_arrays(pa.Table.from_pydict(lm, schema=LANDMARK_SCHEMA))
            t = time.time()
            with FrameShardWriter(workdir / "two.frames.parquet") as w:
                crop_clip(res, lm, cp, w, pool)
            parts["  crops alone (decode + warp + JPEG q95)"] = time.time() - t
        t = time.time()
        with FrameShardWriter(workdir / "bench.frames.parquet") as w:
            face_clip(res, LandmarkParams(), cp, w, pool)
        times["faces (landmarks + crops, one decode pass)"] = time.time() - t
    t = time.time()
    mel_clip(res, MelParams(), AudioParams(reject_silent=False))
    times["mels"] = time.time() - t
    return times, res["n_frames"], parts


def bench_prep(long: bool) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    clip = clip_1080p()
    with tempfile.TemporaryDirectory() as d:  # warm-up: imports and model loading happen once per
        run_stages(clip_1080p(1.0), Path(d))  # shard job, not once per clip; keep them out of the rates
    n, dt = decode_only(clip)
    dec = n / dt
    print(f"\n== data preparation, {clip} (1920x1080, 25 fps, {n} frames) ==")
    print(f"{'decode only (PyAV, threaded)':<44} {dec:8.1f} frames/s")
    with tempfile.TemporaryDirectory() as d:
        times, T, parts = run_stages(clip, Path(d))
    for k, v in {**times, **parts}.items():
        print(f"{k:<44} {T / v:8.1f} frames/s  ({v:.2f} s)")
    total = sum(times.values())
    whole = T / total
    print(f"{'whole preparation (scan..mels)':<44} {whole:8.1f} frames/s  ({total:.2f} s, "
          f"{whole / 25:.1f}x real time, {100 * whole / dec:.0f}% of decode-only)")
    if long:
        bench_memory(clip)


def bench_memory(clip: Path, loops: int = 60) -> None:
    long = _long_clip(clip, loops)
    print(f"\n== peak memory, {long} ({loops * 10 / 60:.0f} min 1080p) ==")
    code = ("import sys, resource, tempfile, json; from pathlib import Path; from g4g.bench.prep import run_stages;"
            "t, n, _ = run_stages(Path(sys.argv[1]), Path(tempfile.mkdtemp()), components=False);"
            "print(json.dumps({'frames': n, 'times': t, "
            "'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    t = time.time()
    out = subprocess.run([sys.executable, "-c", code, str(long)], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-2000:])
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"frames {r['frames']}, wall {time.time() - t:.0f} s, peak RSS {r['peak_mib']:.0f} MiB "
          f"(all stages in one process: an upper bound for any single stage)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m g4g.bench.prep", description=__doc__.splitlines()[0])
    ap.add_argument("--long", action="store_true", help="also measure peak memory on a 10-minute video")
    a = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    bench_prep(a.long)


if __name__ == "__main__":
    main()
