"""Shared fixtures: real sample clips (skipped when ../shared/data/real is absent) and media makers."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real sample clips not available: {REAL} is absent (they are never committed)")
    return REAL


def ffmpeg(*args: str) -> None:
    from g4g.io.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def make_video(path: Path, n: int = 25, size=(64, 48), fps: float = 25, audio: str | None = "tone",
               vcodec: str = "libx264", extra: tuple[str, ...] = ()) -> Path:
    """A small test clip from ffmpeg's test sources (moving pattern + tone / silence / none)."""
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={n / fps}"]
    if audio == "tone":
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={n / fps}"]
    elif audio == "silence":
        args += ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", str(n / fps)]
    pix = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    args += ["-c:v", vcodec, "-pix_fmt", pix, *extra]
    if vcodec == "libx265":
        args += ["-x265-params", "log-level=error"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, str(path))
    return path


def dvc_path(text: str, params: dict, item: str | dict | None = None) -> str:
    """A path of dvc.yaml with its ${...} variables filled in from params.yaml (and foreach's or matrix's
    ${item})."""
    def value(m):
        v = {**params, "item": item}
        for key in m.group(1).split("."):
            v = v[key]
        return str(v)

    return re.sub(r"\$\{([a-z_.]+)\}", value, text)


def dvc_stages(params: dict) -> list[tuple[str, dict, str | dict | None]]:
    """The stages of dvc.yaml as DVC expands them under `params`: (name, body, item) for each plain stage,
    each foreach item (train@full) and each matrix combination (train_seed@full-1)."""
    out = []
    for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in spec:
            out += [(f"{name}@{i}", spec["do"], i) for i in params[spec["foreach"].strip("${}")]]
        elif "matrix" in spec:
            axes = {k: params[v.strip("${}")] for k, v in spec["matrix"].items()}
            out += [(f"{name}@" + "-".join(map(str, combo)), spec, dict(zip(axes, combo)))
                    for combo in itertools.product(*axes.values())]
        else:
            out.append((name, spec, None))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)
