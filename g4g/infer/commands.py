"""`g4g lipsync`, `g4g infer` and `g4g reference-videos`.

    g4g lipsync --video V --audio A --checkpoint C --out O.mp4      any video + any audio -> O.mp4
    g4g infer ...                  every test clip: reconstruction, cross-driven, silent (rule `infer`)
    g4g reference-videos ...       the trivial baselines of the tables (rule `reference_videos`)

Settings: the project's params.yaml (sections infer, mel, audio; `g4g lipsync` also landmarks, crop and
video, of which it reads `max_damaged`: the frames that may fail to decode, as in preparation; its output
rate is `infer.fps`), the sections given as JSON with --params (what the rules pass), then `--infer.KEY`...
options. Each command
imports the code it runs when it runs: a mistyped option is answered before torch is imported.
"""

from __future__ import annotations

import argparse
import logging

from g4g.params import SETTINGS, add_options, from_args

log = logging.getLogger("g4g")


def set_threads(n: int | None) -> None:
    """Bound torch's and OpenCV's thread pools (several jobs share the cores; oversubscription is slow)."""
    if n:
        import cv2
        import torch

        torch.set_num_threads(n)
        cv2.setNumThreads(n)


def cmd_lipsync(a) -> None:
    from g4g.infer.lipsync import lipsync

    p = from_args(a)
    set_threads(a.threads or p.infer.threads)
    stats = lipsync(a.video, a.audio, a.checkpoint, a.out, p.infer, p.landmarks, p.crop, p.mel, p.audio,
                    progress=True, video_p=p.video)
    print(a.out)
    log.info("timings (s): %s", {k: round(v, 2) for k, v in stats["timings"].items()})


def cmd_infer(a) -> None:
    from g4g.infer.testset import infer_test_set

    p = from_args(a)
    set_threads(a.threads)
    infer_test_set(a.clips, a.resampled, a.checkpoint, a.out, a.index, a.rejects, p.infer, p.mel, p.audio,
                   seed=p.seed, settings=tuple(a.settings), progress=True)


def cmd_reference_videos(a) -> None:
    from g4g.infer.references import reference_videos

    p = from_args(a)
    set_threads(a.threads)
    reference_videos(a.clips, a.resampled, a.kind, a.out, a.index, a.rejects, p.infer, seed=p.seed)


def threads_option(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV (default: theirs)")
    return p


def register(add) -> None:
    """Define the inference subcommands; `add(name)` makes a subcommand's parser (g4g.cli)."""
    p = threads_option(add("lipsync"))
    p.add_argument("--video", required=True, help="any video with one visible face (any rate, size, container)")
    p.add_argument("--audio", required=True, help="any file with an audio stream (wav, mp3, m4a, a video ...)")
    p.add_argument("--checkpoint", required=True, help="model.pt written by `g4g train`")
    p.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC, the driving audio)")
    p.add_argument("--fps", type=float, dest="infer.fps", default=argparse.SUPPRESS,
                   help="output frame rate (default: the video's own; 25: the model's rate); = --infer.fps")
    add_options(p, "infer", "landmarks", "crop", "mel", "audio", "video")
    p.set_defaults(fn=cmd_lipsync)

    p = threads_option(add("infer"))
    p.add_argument("--clips", required=True, help="results/{dataset}/clips.parquet")
    p.add_argument("--resampled", nargs="+", required=True, help="results/{dataset}/resampled/*.parquet")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for {clip}.mp4")
    p.add_argument("--index", required=True, help="Parquet: one row per clip (status, reason, video)")
    p.add_argument("--rejects", required=True)
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                   help="how each test clip is driven: its own audio, another test clip's, silence (default: all)")
    add_options(p, "infer", "mel", "audio")
    p.set_defaults(fn=cmd_infer)

    p = threads_option(add("reference-videos"))
    p.add_argument("--kind", required=True, choices=["reference_paste", "mean_face"])
    p.add_argument("--clips", required=True)
    p.add_argument("--resampled", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--rejects", required=True)
    add_options(p, "seed", "infer")
    p.set_defaults(fn=cmd_reference_videos)
