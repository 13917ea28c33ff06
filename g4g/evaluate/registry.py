"""The metrics of the protocol behind one interface, and the registry that owns their columns.

    PSNR, SSIM, MSE      per frame on the 416 x 320 face crops ([0, 1] RGB; SSIM Gaussian window)    CropImage
    LPIPS                AlexNet, per frame on the face crops                                          CropLPIPS
    FID                  Inception activations of the face crops, pooled over all frames of a method   CropFID
    ... (full frame)     PSNR, SSIM, MSE on the full frames                                            FullFrameImage
    LSE (landmark crop)  official SyncNet on the stored crops padded to a square                       LandmarkLSE
    LSE (own SyncNet)    the project's sync expert on those crops, only where params allow surrogates  OwnLSE
    LSE-D / LSE-C        official SyncNet on the video framed as syncnet_python frames it; the        OfficialLSE
                         published scale (Wav2Lip's scripts run this pipeline)
    LMD, mouth-audio     dlib's landmarks on the face crops (g4g.metrics.mouth): mouth points against  MouthMotion
    agreement, silent-   the ground truth's, inner-lip opening against the audio's envelope and its
    mouth ratio, mouth   spread over the clip; no downloaded weights, so the demo can show lip sync
    movement             with them

Every test clip is also scored as driven by another clip's audio and by silence (g4g.params SETTINGS),
the driving audio taking the place of the clip's: a metric runs in the settings it lists (`settings`): the
cross-driven one those that read the audio, and FID (real frames pooled unpaired); the silent one the mouth's
movement.

A metric is one `Metric` subclass. `load` gets, once per method, what its clips share (its networks), or
None, and the metric is left empty with the reason in the notes: a metric whose weights are missing is
never replaced silently. An instance is one clip's accumulator: the clip's frames are fed to it chunk by
chunk (`feed`), then `summary()` gives the clip's values, per-frame values and notes. A method's value is
the mean over its clips, unless the metric pools over all frames (FID, `method_values`). METRICS is the
registry: a new metric is one class and one line there, and its columns reach the tables
(`metric_columns()`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from g4g.evaluate.own_syncnet import OwnSyncNet
from g4g.evaluate.protocol import ChunkedLSE, TrackedLSE
from g4g.infer.testset import TestClip
from g4g.io.video import iter_frames
from g4g.metrics.fid import FIDInception, PooledFID
from g4g.metrics.image import image_metrics
from g4g.metrics.lpips_metric import LPIPSMetric
from g4g.metrics.lse_framing import HogFaceBoxes
from g4g.metrics.mouth import MIN_FRAMES, MouthLandmarks, audio_envelope, inner_opening, mouth_audio, mouth_distance
from g4g.metrics.s3fd import S3FD
from g4g.metrics.syncnet import OfficialSyncNet
from g4g.params import SETTINGS, EvalParams, MelParams
from g4g.rejects import ClipError
from g4g.utils import resolve_device
from g4g.weights import WeightsError


def read_frames(path: str, index: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The first n frames of a video at 25 fps (RGB, its own size), decoded as they are asked for."""
    for _, f in iter_frames(path, index[:n]):
        yield f


@dataclass
class ClipInput:
    """The clip being scored, as every metric sees it."""

    clip: TestClip      # its audio: the driving audio of the setting
    path: str           # the video scored: a method's, or the clip's source for the ground truth
    index: np.ndarray   # its 25 fps index map
    n: int              # frames scored
    p: EvalParams
    setting: str = "reconstruction"  # g4g.params.SETTINGS

    def frames(self) -> Iterator[np.ndarray]:
        """A new pass over the n frames scored."""
        return read_frames(self.path, self.index, self.n)


@dataclass
class Chunk:
    """Frames start..start + c - 1 of the clip."""

    start: int
    frames: list[np.ndarray]  # the video's own frames (RGB, its own size)
    crops: np.ndarray         # (c, 416, 320, 3): the frames cut with the stored ground-truth crop transforms
    gt: np.ndarray | None     # (c, 416, 320, 3) ground-truth crops; None for the ground truth's own video


@dataclass
class ClipSummary:
    values: dict = field(default_factory=dict)  # the clip's value per column, with companions (an LSE offset)
    frames: dict = field(default_factory=dict)  # per-frame arrays: columns of the clip's Parquet file
    notes: list = field(default_factory=list)


class Metric(ABC):
    """One metric: the columns it fills, what its clips share (`load`), and one clip's accumulator (an instance)."""

    columns: tuple[str, ...] = ()
    lower_is_better: frozenset[str] = frozenset()  # of its columns; the others: higher is better ...
    against_truth: frozenset[str] = frozenset()    # ... except these: read against the ground truth's value
    compares = True  # against the ground-truth crops: not computed for the ground truth scored against itself
    settings: tuple[str, ...] = ("reconstruction",)  # where it means something (g4g.params.SETTINGS)

    @classmethod
    def load(cls, ms: MetricSet) -> Any:
        """What every clip of a method shares (its networks), loaded once per method; None: the metric is left
        empty, and the reason is in `ms.notes`. By default the MetricSet itself (settings, device): nothing to load."""
        return ms

    def __init__(self, shared: Any, clip: ClipInput):
        self.shared, self.clip = shared, clip

    @abstractmethod
    def feed(self, chunk: Chunk) -> None:
        """The clip's next chunk; chunks come in order."""

    @abstractmethod
    def summary(self) -> ClipSummary:
        """The clip's values, after its last chunk."""

    @classmethod
    def method_values(cls, shared: Any, clips: list[dict]) -> dict[str, float]:
        """The method's values from its clips' summaries: each column's mean over the clips that have it."""
        means = {col: [c[col] for c in clips if col in c] for col in cls.columns}
        return {col: float(np.mean(v)) for col, v in means.items() if v}


class FrameMean(Metric):
    """A metric with a value per frame, its mean being the clip's value. `per_frame` maps the arrays that
    `frame_values` returns (the Parquet columns) to the table's columns."""

    per_frame: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.columns = tuple(cls.per_frame.values())

    def __init__(self, shared: Any, clip: ClipInput):
        super().__init__(shared, clip)
        self.arrays: dict[str, list[np.ndarray]] = {}

    @abstractmethod
    def frame_values(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """Per-frame values of one chunk, each a (c,) array."""

    def feed(self, chunk: Chunk) -> None:
        for key, v in self.frame_values(chunk).items():
            self.arrays.setdefault(key, []).append(v)

    def summary(self) -> ClipSummary:
        frames = {key: np.concatenate(v) for key, v in self.arrays.items()}
        return ClipSummary({self.per_frame[key]: float(np.mean(v)) for key, v in frames.items()}, frames)


def _image_dtype(p: EvalParams, device):
    """float64 on CUDA; on CPU float32 (torch's float64 depthwise convolutions are ~10x slower there;
    SSIM moves by < 1e-7, PSNR by < 1e-5 dB)."""
    import torch

    if p.image_dtype != "auto":
        return getattr(torch, p.image_dtype)
    return torch.float64 if device.type == "cuda" else torch.float32


class CropImage(FrameMean):
    per_frame = {"psnr": "PSNR", "ssim": "SSIM", "mse": "MSE"}
    lower_is_better = frozenset({"MSE"})

    @classmethod
    def load(cls, ms: MetricSet) -> tuple:
        return ms.device, _image_dtype(ms.p, ms.device)

    def frame_values(self, chunk: Chunk) -> dict[str, np.ndarray]:
        device, dtype = self.shared
        return image_metrics(chunk.crops, chunk.gt, device=device, dtype=dtype)


class CropLPIPS(FrameMean):
    per_frame = {"lpips": "LPIPS"}
    lower_is_better = frozenset({"LPIPS"})

    @classmethod
    def load(cls, ms: MetricSet) -> LPIPSMetric | None:
        return ms.network("LPIPS", lambda: LPIPSMetric(pretrained=True, device=ms.device))

    def frame_values(self, chunk: Chunk) -> dict[str, np.ndarray]:
        return {"lpips": self.shared.frames(chunk.crops, chunk.gt, batch_size=self.clip.p.batch_size)}


class CropFID(Metric):
    """No value per clip: every clip feeds the method's pooled activations."""

    columns = ("FID",)
    lower_is_better = frozenset({"FID"})
    settings = ("reconstruction", "cross")  # pooled against the test set's real frames, unpaired

    @classmethod
    def load(cls, ms: MetricSet) -> PooledFID | None:
        net = ms.network("FID", lambda: FIDInception(pretrained=True, device=ms.device))
        return None if net is None else PooledFID(net, ms.p.batch_size)

    def feed(self, chunk: Chunk) -> None:
        self.shared.feed(chunk.crops, chunk.gt)

    def summary(self) -> ClipSummary:
        return ClipSummary()

    @classmethod
    def method_values(cls, shared: PooledFID, clips: list[dict]) -> dict[str, float]:
        fid = shared.summary()
        return {} if fid is None else {"FID": fid}


class FullFrameImage(CropImage):
    """PSNR, SSIM, MSE of the whole frames against the source's, at the source's size (extra columns)."""

    per_frame = {"psnr_full": "PSNR (full frame)", "ssim_full": "SSIM (full frame)", "mse_full": "MSE (full frame)"}
    lower_is_better = frozenset({"MSE (full frame)"})

    @classmethod
    def load(cls, ms: MetricSet) -> tuple | None:
        return super().load(ms) if ms.p.full_frame else None

    def __init__(self, shared: tuple, clip: ClipInput):
        super().__init__(shared, clip)
        self.gt_frames = read_frames(clip.clip.source, clip.clip.index_map, clip.n)

    def frame_values(self, chunk: Chunk) -> dict[str, np.ndarray]:
        import cv2

        device, dtype = self.shared
        full, gt = chunk.frames, [next(self.gt_frames) for _ in chunk.frames]
        if full[0].shape != gt[0].shape:  # another output size: compare at the source size
            full = [cv2.resize(f, gt[0].shape[1::-1], interpolation=cv2.INTER_AREA) for f in full]
        out: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(full), 4):  # 4 full frames per call bounds memory at 1080p
            for name, v in image_metrics(np.stack(full[i:i + 4]), np.stack(gt[i:i + 4]), device=device,
                                         dtype=dtype).items():
                out.setdefault(f"{name}_full", []).append(v)
        return {key: np.concatenate(v) for key, v in out.items()}


def _face_boxes(ms: MetricSet):
    """The face boxes of syncnet_python's framing: S3FD; without its weights, dlib's HOG detector only where
    evaluate.allow_surrogates says so (labelled as a surrogate in the weights and the notes), else None: the
    published-scale columns stay empty, their note naming the missing file and the setting."""

    def build():
        try:
            return S3FD(pretrained=True, device=ms.device)
        except WeightsError as e:
            if not ms.p.allow_surrogates:
                raise WeightsError(f"{str(e).splitlines()[0]} (evaluate.allow_surrogates: true frames the video "
                                   f"with dlib's HOG detector instead, labelled)") from e
            faces = HogFaceBoxes()
            ms.notes.append(f"LSE-D, LSE-C framed with {faces.info.label}: {str(e).splitlines()[0]}")
            return faces

    return ms.network("LSE face boxes", build)


def _official_syncnet(ms: MetricSet) -> OfficialSyncNet | None:
    """The official SyncNet, shared by both of its framings. The face boxes are loaded with it, whichever framing
    asks first, so that the notes name the network and its framing together."""
    net = ms.network("LSE", lambda: OfficialSyncNet(pretrained=True, device=ms.device))
    if net is not None:
        _face_boxes(ms)
    return net


class LandmarkLSE(Metric):
    """The official SyncNet on the stored face crops, the same region for every method (ChunkedLSE)."""

    columns = ("LSE-D (landmark crop)", "LSE-C (landmark crop)")
    lower_is_better = frozenset({"LSE-D (landmark crop)"})
    frame_column = "sync_dist"  # each window's distance at the best offset, at the window's first frame
    compares = False
    settings = ("reconstruction", "cross")

    @classmethod
    def load(cls, ms: MetricSet) -> OfficialSyncNet | None:
        return _official_syncnet(ms)

    def __init__(self, shared: Any, clip: ClipInput):
        super().__init__(shared, clip)
        self.lse = ChunkedLSE(shared, clip.n, clip.clip.audio, clip.p.batch_size)

    def feed(self, chunk: Chunk) -> None:
        self.lse.feed(chunk.crops, chunk.start)

    def summary(self) -> ClipSummary:
        d, c = self.columns
        try:
            r = self.lse.result(self.clip.p.lse_vshift)
        except ClipError as e:  # too short for a sync window: the other metrics still count
            return ClipSummary(notes=[f"{d}: {e}"])
        dist = np.full(self.clip.n, np.nan)
        dist[:r.n_windows] = r.window_dists
        return ClipSummary({d: r.lse_d, c: r.lse_c, f"{d} offset": r.offset}, {self.frame_column: dist})


class OwnLSE(LandmarkLSE):
    """The project's sync expert (g4g.evaluate.own_syncnet): a labelled surrogate under its own columns."""

    columns = ("LSE-D (own SyncNet)", "LSE-C (own SyncNet)")
    lower_is_better = frozenset({"LSE-D (own SyncNet)"})
    frame_column = "sync_dist_own"

    @classmethod
    def load(cls, ms: MetricSet) -> OwnSyncNet | None:
        if not ms.p.allow_surrogates:
            ms.notes.append("LSE (own SyncNet) not computed: evaluate.allow_surrogates is false")
            return None
        if not (ms.syncnet and os.path.exists(ms.syncnet)):
            ms.notes.append(f"LSE (own SyncNet) empty: sync expert {ms.syncnet} not found")
            return None
        net = OwnSyncNet(ms.syncnet, ms.device, ms.mel)
        ms.weights["LSE (own SyncNet)"] = str(net.info)
        return net


class OfficialLSE(Metric):
    """Framed as syncnet_python frames the video (TrackedLSE): the columns published numbers are on."""

    columns = ("LSE-D", "LSE-C")
    lower_is_better = frozenset({"LSE-D"})
    compares = False
    settings = ("reconstruction", "cross")

    @classmethod
    def load(cls, ms: MetricSet) -> tuple | None:
        net = _official_syncnet(ms)
        boxes = None if net is None else _face_boxes(ms)
        return None if boxes is None else (net, boxes)

    def __init__(self, shared: tuple, clip: ClipInput):
        super().__init__(shared, clip)
        self.tracked = TrackedLSE(*shared, clip.n, clip.clip.audio, clip.p.batch_size)

    def feed(self, chunk: Chunk) -> None:
        self.tracked.feed(chunk.frames)  # boxes on the video's own frames, at its own size

    def summary(self) -> ClipSummary:
        d, c = self.columns
        try:
            r = self.tracked.result(self.clip.frames(), self.clip.p.lse_vshift)
        except ClipError as e:
            return ClipSummary(notes=[f"{d}, {c}: {e}"])
        return ClipSummary({d: r.lse_d, c: r.lse_c, f"{d} offset": r.offset, "LSE tracks": r.n_tracks},
                           {"sync_dist_tracks": r.window_dists}, r.notes)


class MouthMotion(Metric):
    """dlib's landmarks on the crops (g4g.metrics.mouth): LMD against the ground truth's crops in the
    reconstruction setting, and for every row, the ground truth included (its own values are the level a method
    is read against): the mouth against the clip's audio (agreement, silent-mouth ratio) and how much it moves
    (the sd of the inner-lip opening over the clip; driven by silence, the leakage of the cross-driven table)."""

    columns = ("LMD", "Mouth-audio agreement", "Silent-mouth ratio", "Mouth movement")
    lower_is_better = frozenset({"LMD", "Silent-mouth ratio"})
    against_truth = frozenset({"Mouth movement"})
    compares = False  # agreement and silence need no ground truth; LMD only where it is given
    settings = SETTINGS

    @classmethod
    def load(cls, ms: MetricSet) -> MouthLandmarks | None:
        return ms.network("mouth landmarks", MouthLandmarks)

    def __init__(self, shared: MouthLandmarks, clip: ClipInput):
        super().__init__(shared, clip)
        self.opening: list[np.ndarray] = []
        self.lmd: list[np.ndarray] = []

    def feed(self, chunk: Chunk) -> None:
        truth = chunk.crops if chunk.gt is None else chunk.gt  # the ground truth's row: its crops are the truth
        # both shapes are fitted in the ground truth's face box (g4g.metrics.mouth), found once per frame for
        # all settings
        boxes = self.shared.boxes(truth, key=(self.clip.clip.clip_id, chunk.start, len(truth)))
        points = self.shared.points(chunk.crops, boxes)
        self.opening.append(inner_opening(points))
        if chunk.gt is not None and self.clip.setting == "reconstruction":
            self.lmd.append(mouth_distance(points, self.shared.points(chunk.gt, boxes)))

    def summary(self) -> ClipSummary:
        lmd_col, agree_col, silent_col, movement_col = self.columns
        opening = np.concatenate(self.opening)
        values, frames, notes = {}, {"mouth_opening": opening}, []
        if (missing := int(np.isnan(opening).sum())):
            notes.append(f"mouth landmarks: no face found in {missing} of {len(opening)} ground-truth crops "
                         f"(those frames left out)")
        if self.lmd:
            frames["lmd"] = lmd = np.concatenate(self.lmd)
            if np.isfinite(lmd).any():
                values[lmd_col] = float(np.nanmean(lmd))
        if np.isfinite(opening).sum() >= MIN_FRAMES:
            values[movement_col] = float(np.nanstd(opening))
        if self.clip.setting == "silent":  # no audio to follow: how much the mouth moves is the measure
            return ClipSummary(values, frames, notes)
        r = mouth_audio(opening, audio_envelope(self.clip.clip.audio, len(opening)))
        if r.agreement is not None:
            values.update({agree_col: r.agreement, f"{agree_col} lag": r.lag})
        if r.silent_ratio is not None:
            values[silent_col] = r.silent_ratio
        return ClipSummary(values, frames, notes + r.reason)


# The registry, in the order a clip's values, Parquet columns and notes list them (and their networks load)
METRICS: tuple[type[Metric], ...] = (CropImage, CropLPIPS, CropFID, FullFrameImage, LandmarkLSE, OwnLSE, OfficialLSE,
                                     MouthMotion)

# Where the tables place the columns: the paper's Table 1 order, FID (which the paper names but does not show)
# after MSE, the lip-sync measures that need no downloaded weights (MouthMotion), then the other framings of
# LSE and the full-frame values. A column not placed here follows these.
TABLE_ORDER = ("PSNR", "SSIM", "LPIPS", "MSE", "FID", "LSE-D", "LSE-C", "LMD", "Mouth-audio agreement",
               "Silent-mouth ratio", "Mouth movement", "LSE-D (landmark crop)", "LSE-C (landmark crop)",
               "LSE-D (own SyncNet)", "LSE-C (own SyncNet)", "PSNR (full frame)", "SSIM (full frame)",
               "MSE (full frame)")


def metric_columns() -> tuple[str, ...]:
    """The tables' metric columns: every registered metric's, in TABLE_ORDER, the others in registry order."""
    registered = [c for m in METRICS for c in m.columns]
    return tuple(sorted(registered, key=lambda c: TABLE_ORDER.index(c) if c in TABLE_ORDER else len(TABLE_ORDER)))


def better(column: str) -> str:
    """Which value of a table column is the better one, as the charts say it."""
    if any(column in m.against_truth for m in METRICS):
        return "the ground truth's is the level"
    return "lower is better" if any(column in m.lower_is_better for m in METRICS) else "higher is better"


class MetricSet:
    """The registered metrics one method's evaluation computes, loaded once: `weights` names the file each
    network was loaded from, `notes` what is left empty and why. `image=False` (the ground truth scored
    against itself): only the metrics that do not compare with the ground truth; `setting`: only the metrics that
    run in it."""

    def __init__(self, p: EvalParams, syncnet: str | None = None, mel: MelParams | None = None, image: bool = True,
                 setting: str = "reconstruction", share: MetricSet | None = None):
        """share: a MetricSet of the same method whose networks (and what they cached) this one reuses."""
        self.p, self.syncnet, self.mel = p, syncnet, mel or MelParams()
        self.device = resolve_device(p.device)
        self.weights: dict[str, str] = {}
        self.notes: list[str] = []
        self._networks: dict[str, tuple[Any, list[str]]] = share._networks if share is not None else {}
        self._seen: set[str] = set()
        self.loaded = [(m, s) for m in METRICS if (image or not m.compares) and setting in m.settings
                       and (s := m.load(self)) is not None]

    def network(self, label: str, build: Callable[[], Any]) -> Any:
        """build(), once per method, its weights listed under `label`; None when its weights are missing (the
        notes name the file)."""
        if label not in self._networks:
            before = len(self.notes)
            try:
                net = build()
            except WeightsError as e:
                self.notes.append(f"{label} empty: {str(e).splitlines()[0]}")
                net = None
            self._networks[label] = (net, self.notes[before:])
            self._seen.add(label)
        net, notes = self._networks[label]
        if label not in self._seen:  # built for a MetricSet shared with: its notes belong here too
            self.notes += notes
            self._seen.add(label)
        if net is not None:
            self.weights[label] = str(net.info)
        return net

    def start(self, clip: ClipInput) -> list[Metric]:
        """One accumulator per metric for a new clip."""
        return [m(shared, clip) for m, shared in self.loaded]

    def method_values(self, clips: list[dict]) -> dict[str, float]:
        """The method's values from its clips' summaries (and what the metrics pooled over them)."""
        return {k: v for m, shared in self.loaded for k, v in m.method_values(shared, clips).items()}
