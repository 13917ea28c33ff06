"""`g4g lipsync`, `g4g infer` and `g4g reference-videos` (hooked into g4g/cli.py through `register`).

    g4g lipsync --video V --audio A --checkpoint C --out O.mp4      any video + any audio -> O.mp4
    g4g infer ...                  every test clip, reconstruction setting (Snakemake rule `infer`)
    g4g reference-videos ...       the trivial baselines of the tables (rule `reference_videos`)

Tunables arrive as one JSON object (`--params`), as for the other subcommands: its `infer` entry holds
g4g.infer.lipsync.LipsyncParams fields (plus `threads`), `mel` overrides g4g.data.mels.MelParams.
`g4g lipsync` starts from the project's params.yaml (landmarks, crop, mel, infer sections) when it finds
one; --params and the flags override it.
"""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger("g4g")


def job_args(p: argparse.ArgumentParser, params_help: str) -> argparse.ArgumentParser:
    """--log, --params and --threads: what every inference and evaluation job takes."""
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("--params", default="{}", help=params_help)
    p.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV (default: theirs)")
    return p


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return job_args(p, "JSON object: {'infer': {...}, 'mel': {...}, ...}")


def set_threads(n: int | None) -> None:
    """Bound torch's and OpenCV's thread pools (several jobs share the cores; oversubscription is slow)."""
    if n:
        import cv2
        import torch

        torch.set_num_threads(n)
        cv2.setNumThreads(n)


def engine_params(d: dict):
    """(LipsyncParams, MelParams) from a params object {'infer': {...}, 'mel': {...}}."""
    from g4g.config import section
    from g4g.data.mels import MelParams
    from g4g.infer.lipsync import LipsyncParams

    infer = {k: v for k, v in (d.get("infer") or {}).items() if k != "threads"}
    return section(LipsyncParams, infer), section(MelParams, d.get("mel") or {})


def cmd_lipsync(a) -> None:
    from g4g.config import section
    from g4g.data.crops import CropParams
    from g4g.data.landmarks import LandmarkParams
    from g4g.infer.lipsync import lipsync

    d = _project_params()
    for k, v in json.loads(a.params).items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    infer = d.setdefault("infer", {})
    for flag in ("batch_size", "device", "allow_silent"):
        if getattr(a, flag) is not None:
            infer[flag] = getattr(a, flag)
    set_threads(a.threads or infer.get("threads"))
    p, mel = engine_params(d)
    crop = {k: v for k, v in (d.get("crop") or {}).items() if k in CropParams.__dataclass_fields__}
    stats = lipsync(a.video, a.audio, a.checkpoint, a.out, p, section(LandmarkParams, d.get("landmarks") or {}),
                    section(CropParams, crop), mel, progress=True)
    print(a.out)
    log.info("timings (s): %s", {k: round(v, 2) for k, v in stats["timings"].items()})


def _project_params() -> dict:
    """The project's params.yaml sections a standalone lip-sync uses ({} outside the project)."""
    from g4g.config import ROOT, load

    if not (ROOT / "params.yaml").exists():
        return {}
    cfg = load(ROOT / "params.yaml")
    d = {k: dict(cfg.get(k) or {}) for k in ("landmarks", "crop", "mel", "infer")}
    d["infer"]["silence_dbfs"] = cfg["audio"]["silence_dbfs"]
    return d


def cmd_infer(a) -> None:
    from g4g.infer.testset import infer_test_set

    d = json.loads(a.params)
    set_threads(a.threads)
    p, mel = engine_params(d)
    infer_test_set(a.clips, a.resampled, a.checkpoint, a.out, a.index, a.rejects, p, mel, progress=True)


def cmd_reference_videos(a) -> None:
    from g4g.infer.references import reference_videos

    d = json.loads(a.params)
    set_threads(a.threads)
    p, _ = engine_params(d)
    reference_videos(a.clips, a.resampled, a.kind, a.out, a.index, a.rejects, feather=p.feather,
                     seed=int(d.get("seed", 0)), crf=p.crf, preset=p.preset)


def register(sub) -> None:
    """Add the inference subcommands to g4g's argparse subparsers."""
    p = _common(sub.add_parser("lipsync", help="lip-sync a video to an audio file with a trained G4G"))
    p.add_argument("--video", required=True, help="any video with one visible face (any rate, size, container)")
    p.add_argument("--audio", required=True, help="any file with an audio stream (wav, mp3, m4a, a video ...)")
    p.add_argument("--checkpoint", required=True, help="model.pt written by `g4g train`")
    p.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC, the driving audio)")
    p.add_argument("--batch-size", type=int, help="frames per generator call")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--allow-silent", action="store_true", default=None, help="render silent audio anyway")
    p.set_defaults(fn=cmd_lipsync)

    p = _common(sub.add_parser("infer", help="every test clip driven by its own audio (reconstruction)"))
    p.add_argument("--clips", required=True, help="results/{dataset}/clips.parquet")
    p.add_argument("--resampled", nargs="+", required=True, help="results/{dataset}/resampled/*.parquet")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for {clip}.mp4")
    p.add_argument("--index", required=True, help="Parquet: one row per clip (status, reason, video)")
    p.add_argument("--rejects", required=True)
    p.set_defaults(fn=cmd_infer)

    p = _common(sub.add_parser("reference-videos", help="baseline videos: reference mouth paste, mean face"))
    p.add_argument("--kind", required=True, choices=["reference_paste", "mean_face"])
    p.add_argument("--clips", required=True)
    p.add_argument("--resampled", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(fn=cmd_reference_videos)
