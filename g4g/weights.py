"""The manifest of external pretrained weights: where each file lives, where it comes from, its checksum.

`g4g weights status` lists what is present and verified; `g4g weights fetch` downloads what is missing
(on a machine with internet) and verifies it. Users can also drop files into resources/weights/
(torch-hub style files under resources/weights/torch/hub/checkpoints).

Checksums: `sha256` is the full digest where it is published or was recorded by us; torch-hub style
files carry a digest prefix in their name (`vgg19-dcbb9e9d.pth`), which is what torch.hub itself
verifies, so `sha256_prefix` is checked for those. A file with neither is accepted but reported as
unverified, and every metric that uses weights records the sha256 it actually loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from g4g.utils import atomic_path, sha256_file

log = logging.getLogger(__name__)

ENV_DIR = "G4G_WEIGHTS_DIR"


def weights_dir() -> Path:
    """resources/weights of the project (or $G4G_WEIGHTS_DIR)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "resources" / "weights"


def torch_home() -> Path:
    return weights_dir() / "torch"


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    url: str
    subdir: str  # under weights_dir()
    stage: str
    licence: str
    sha256: str | None = None
    sha256_prefix: str | None = None

    @property
    def path(self) -> Path:
        return weights_dir() / self.subdir / self.filename

    def verify(self, path: Path | None = None) -> tuple[bool, str]:
        """(ok, sha256 actually found)."""
        digest = sha256_file(path or self.path)
        if self.sha256:
            return digest == self.sha256, digest
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix), digest
        return True, digest

    def missing_message(self) -> str:
        return (f"missing pretrained weights '{self.name}' ({self.filename}), needed by {self.stage}.\n"
                f"  download: {self.url}\n  put it at: {self.path}\n"
                f"  or run `g4g weights fetch {self.name}` on a machine with internet access.")


class WeightsError(RuntimeError):
    pass


HUB = "torch/hub/checkpoints"

MANIFEST: dict[str, WeightFile] = {w.name: w for w in [
    WeightFile("fan2d", "2DFAN4-11f355bf06.pth.tar",  # what face_alignment 1.5.0 loads for 2D landmarks
               "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
               HUB, "landmarks (backend=fan)", "BSD-3-Clause (face-alignment)", sha256_prefix="11f355bf06"),
    WeightFile("s3fd", "s3fd-619a316812.pth",
               "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
               HUB, "landmarks (backend=fan, face detector)", "BSD-3-Clause (face-alignment)",
               sha256_prefix="619a316812"),
    WeightFile("vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               HUB, "train (perceptual loss)", "BSD-3-Clause (torchvision)", sha256_prefix="dcbb9e9d"),
    WeightFile("alexnet", "alexnet-owt-7be5be79.pth",
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
               HUB, "evaluate (LPIPS backbone)", "BSD-3-Clause (torchvision)", sha256_prefix="7be5be79"),
    WeightFile("inception_fid", "pt_inception-2015-12-05-6726825d.pth",
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth",
               HUB, "evaluate (FID)", "Apache-2.0 (pytorch-fid)", sha256_prefix="6726825d"),
    WeightFile("sfd_face", "sfd_face.pth", "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
               "syncnet", "evaluate (LSE face boxes, syncnet_python framing)",
               "see joonson/syncnet_python (S3FD, research use)"),
    WeightFile("syncnet_v2", "syncnet_v2.model",
               "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
               "syncnet", "evaluate (LSE-D, LSE-C)", "see joonson/syncnet_python (research use)"),
]}


def get(name: str) -> WeightFile:
    try:
        return MANIFEST[name]
    except KeyError:
        raise WeightsError(f"unknown weight '{name}'; known: {', '.join(MANIFEST)}") from None


def require(name: str) -> Path:
    """Path of a verified weight file, or WeightsError with a message saying what to do."""
    w = get(name)
    if not w.path.exists():
        raise WeightsError(w.missing_message())
    ok, digest = w.verify()
    if not ok:
        raise WeightsError(f"checksum mismatch for {w.path}: sha256 {digest} does not match "
                           f"{w.sha256 or w.sha256_prefix + '...'}; delete it and fetch it again.")
    return w.path


def status() -> list[dict]:
    rows = []
    for w in MANIFEST.values():
        row = {"name": w.name, "file": str(w.path), "stage": w.stage, "present": w.path.exists(),
               "verified": None, "sha256": None}
        if row["present"]:
            row["verified"], row["sha256"] = w.verify()
        rows.append(row)
    return rows


def fetch(name: str, timeout: float = 60.0) -> Path:
    w = get(name)
    if w.path.exists() and w.verify()[0]:
        return w.path
    log.info("downloading %s from %s", w.filename, w.url)
    try:
        with atomic_path(w.path) as tmp:
            with urllib.request.urlopen(w.url, timeout=timeout) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            ok, digest = w.verify(tmp)
            if not ok:
                raise WeightsError(f"downloaded {w.filename} has sha256 {digest}, expected "
                                   f"{w.sha256 or w.sha256_prefix + '...'}")
    except OSError as e:
        raise WeightsError(f"could not download {w.url} ({e}).\n{w.missing_message()}") from e
    return w.path


def dlib_predictor_path() -> Path:
    """dlib's 68-point shape predictor, shipped inside the face_recognition_models wheel (no download).

    Located without importing that package (its __init__ needs pkg_resources, gone from setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("dlib landmark model not found: install the pinned 'face_recognition_models' "
                           "wheel (make venv does), or choose landmarks.backend: fan.")
    p = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not p.exists():
        raise WeightsError(f"dlib landmark model missing at {p}; reinstall face_recognition_models.")
    return p
