"""params.yaml, the one configuration: one typed dataclass per section, and the resolver.

Each section of params.yaml is one dataclass below; its fields own the default and the one-line meaning
(`metadata["help"]`) and the constraints of the JSON schema (`metadata["schema"]`). From them come:

  - workflow/schemas/params.schema.yaml (`g4g params schema --write`; a test fails on any difference),
    which Snakemake validates params.yaml against and which fills in defaults;
  - the options of every `g4g` subcommand (`--crop.scale 1.1`; `g4g faces --help` lists them);
  - `resolve(config, dataset)`: params.yaml plus a dataset's `overrides`, merged and then validated (a
    misspelt key in an override is an error that names it), as typed sections. The Snakefile and every
    command go through it.

This module is the bottom layer of the package: it imports nothing of g4g but `g4g.utils`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS_PATH = ROOT / "params.yaml"
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"


def opt(default: Any, help: str, *, runtime: bool = False, **schema: Any) -> Any:
    """A params field: its default, its one-line meaning and its JSON-schema constraints. `runtime`: it changes
    how a run executes, not what it computes (RUNTIME_KEYS)."""
    meta = {"help": help, "schema": schema, "runtime": runtime}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------------------
# Preparation (docs/design/pipeline.md Sec. 2 steps 1-5)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoParams:
    fps: float = opt(25.0, "every input is resampled to this rate first", exclusiveMinimum=0)
    min_frames: int = opt(5, "shorter clips are rejected (one 5-frame window is the minimum)", minimum=1)
    max_damaged: float = opt(0.1, "fraction of a clip's frames that may fail to decode (corrupt packets, a cut "
                                  "tail): each shows the next frame that decodes and is flagged `damaged`; "
                                  "beyond it the clip is rejected", minimum=0, maximum=1)


@dataclass(frozen=True)
class AudioParams:
    sample_rate: int = opt(16000, "audio is resampled to this rate (Hz), mono", minimum=8000)
    silence_dbfs: float = opt(-60.0, "RMS level below which a clip's audio counts as silent")
    reject_silent: bool = opt(True, "silent clips teach nothing about lip sync: reject them")


@dataclass(frozen=True)
class LandmarkParams:
    backend: str = opt("dlib", "dlib (offline) | fan (needs resources/weights, see `g4g weights status`)",
                       enum=["dlib", "fan"])
    detect_every: int = opt(5, "run the face detector every N frames, track in between", minimum=1)
    detect_max_side: int = opt(640, "detector input is downscaled so its long side is at most this", minimum=64)
    upsample: int = opt(0, "dlib HOG upsampling (1 finds faces down to ~40 px at detect scale, ~4x slower)",
                        minimum=0)
    roi_margin: float = opt(0.35, "a confirming detection searches the tracked box +- this x its side "
                                  "(0: whole frame)", minimum=0)
    full_detect_every: int = opt(25, "a whole-frame detection at least this often while tracking (counts "
                                     "faces in view; 0: never)", minimum=0)
    smooth_sigma: float = opt(1.0, "temporal Gaussian smoothing of the points, in frames (0: off)", minimum=0)
    min_detected_fraction: float = opt(0.5, "clips with a face on fewer frames than this are rejected",
                                       minimum=0, maximum=1)
    max_gap: int = opt(25, "failed runs longer than this many frames are flagged `long_gap`", minimum=0)
    device: str = opt("cpu", "torch device of the FAN backend")


@dataclass(frozen=True)
class CropParams:
    scale: float = opt(1.05, "s of docs/design/method.md Sec. 1 at inference; r -> 128 px", minimum=1.0)
    window: int = opt(25, "r is the max over this many frames (a stable scale)", minimum=1)
    smooth_sigma: float = opt(2.0, "Gaussian smoothing of the anchor and r after the window max (frames)",
                              minimum=0)
    codec: str = opt("jpeg", "image codec of the stored crops", enum=["jpeg", "png"])
    quality: int = opt(95, "JPEG quality of the stored crops", minimum=50, maximum=100)
    row_group_frames: int = opt(250, "a long clip is split into Parquet row groups of at most this many frames",
                                minimum=1)
    buffer_mb: int = opt(512, "faces stage: decoded frames waiting for a final crop box (beyond: a second "
                              "decode pass)", minimum=16)
    workers: int = opt(1, "threads cutting and encoding crops while the main thread tracks landmarks",
                       minimum=0)


@dataclass(frozen=True)
class MelParams:
    """Wav2Lip's mel settings (docs/design/method.md Sec. 1)."""

    sample_rate: int = opt(16000, "audio rate the mels are computed at (Hz)", minimum=8000)
    n_fft: int = opt(800, "FFT size (samples)", minimum=16)
    win_length: int = opt(800, "STFT window (samples)", minimum=16)
    hop_length: int = opt(200, "STFT hop (samples): 80 mel frames/s at 16 kHz", minimum=1)
    n_mels: int = opt(80, "mel bands", minimum=1)
    fmin: float = opt(55.0, "lowest mel frequency (Hz)", minimum=0)
    fmax: float = opt(7600.0, "highest mel frequency (Hz)", exclusiveMinimum=0)
    preemphasis: float = opt(0.97, "pre-emphasis filter coefficient", minimum=0, maximum=1)
    ref_level_db: float = opt(20.0, "reference level subtracted from the dB spectrogram")
    min_level_db: float = opt(-100.0, "floor of the dB spectrogram before normalisation")
    max_abs_value: float = opt(4.0, "mels are normalised to [-this, this]", exclusiveMinimum=0)
    fps: float = opt(25.0, "video rate the audio windows are aligned to", exclusiveMinimum=0)
    window_frames: int = opt(16, "mel frames per audio window A (0.2 s = 5 video frames)", minimum=1)

    @property
    def mel_fps(self) -> float:
        return self.sample_rate / self.hop_length  # 80


# ---------------------------------------------------------------------------------------------------------
# Training (docs/design/method.md Sec. 5, 6, 8)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """A G4G variant of Table 2: its method name in the tables and its G4GConfig field overrides."""

    method: str
    flags: dict


# The ablations of Table 2 (docs/design/method.md Sec. 8): the one registry the workflow, the schema,
# dvc.yaml (through params.yaml `variants`) and the tests read.
VARIANTS: dict[str, Variant] = {
    "full": Variant("g4g", {}),
    "wo_alignment": Variant("g4g_wo_alignment", {"alignment": False}),  # plain res blocks, lambda_v = 0,
                                                                        # no InfoNCE (the sync loss stays)
    "wo_supervision": Variant("g4g_wo_supervision", {"multiscale_supervision": False}),  # one mask scale
    "wo_fusion": Variant("g4g_wo_fusion", {"fusion": False}),  # no blend net: I_out = I_comp
}
VARIANT_OF_METHOD = {v.method: name for name, v in VARIANTS.items()}
REPLICATE = "@seed"  # a seed replicate's method name: its variant's, then @seed<N> (params.yaml extra_seeds)


def replicate_method(method: str, seed: int) -> str:
    """The method name of `method` trained under another seed: g4g -> g4g@seed1 (g4g.evaluate.seeds)."""
    return f"{method}{REPLICATE}{seed}"


def split_replicate(name: str) -> tuple[str, int | None]:
    """(method, seed) of a replicate's method name; (name, None) for any other method."""
    base, sep, seed = name.rpartition(REPLICATE)
    return (base, int(seed)) if sep and base and seed.isdigit() else (name, None)
REFERENCES = ("ground_truth", "reference_paste", "mean_face")  # reference rows of Table 1
# how a test clip is driven (g4g.infer.testset): its own audio (the tables' reconstruction setting), another test
# clip's audio, silence; the last two make the cross-driven table
SETTINGS = ("reconstruction", "cross", "silent")


@dataclass(frozen=True)
class ModelParams:
    size: str = opt("paper", "g4g.models.g4g.MODEL_SIZES: paper (width 1) | small | demo; stages set the "
                             "resolution", enum=["paper", "small", "demo"])
    width: float | None = opt(None, "override of the size's channel multiplier", exclusiveMinimum=0)
    norm: str = opt("group", "GroupNorm: batch-size independent (a clip batch is 3 x 5 correlated frames)",
                    enum=["group", "batch", "instance", "none"])


@dataclass(frozen=True)
class Stage:
    mode: str = opt("frame", "frame: single targets, no temporal D, no sync loss | clip: 5 consecutive targets",
                    enum=["frame", "clip"])
    scale: int = opt(256, "mouth size of the stage: 64, 128 or 256 (face 104x80, 208x160, 416x320)",
                     enum=[64, 128, 256])
    steps: int = opt(1000, "optimiser steps of the stage", minimum=1)
    batch: int = opt(3, "samples per step and rank (a clip sample holds 5 frames)", minimum=1)
    gan: bool = opt(True, "adversarial terms (frame D; temporal D in clip stages) on in this stage")
    lr: float | None = opt(None, "learning rate of the stage (default: train.lr)", exclusiveMinimum=0)


@dataclass(frozen=True)
class LossWeights:
    """Eq. 24: L = lambda_v L_v + lambda_p L_p + lambda_gan L_GAN + lambda_r L_r + lambda_con L_con."""

    lambda_v: float = opt(1.0, "facial attribute L_v (Eq. 19)", minimum=0)
    lambda_p: float = opt(2.0, "perception L_p (Eq. 20)", minimum=0)
    lambda_gan: float = opt(3.0, "LS-GAN L_GAN (Eq. 21)", minimum=0)
    lambda_r: float = opt(4.0, "reconstruction L_r (Eq. 22)", minimum=0)
    lambda_con: float = opt(5.0, "L_con = w_nce InfoNCE + w_sync sync BCE (Eq. 23)", minimum=0)
    w_temporal: float = opt(1.0, "temporal D relative to the frame D inside L_GAN", minimum=0)
    w_nce: float = opt(1.0, "InfoNCE inside L_con", minimum=0)
    w_sync: float = opt(1.0, "sync-expert BCE inside L_con", minimum=0)
    w_gen: float = opt(1.0, "L_r on I_gen relative to I_out", minimum=0)


PAPER_STAGES = [  # coarse-to-fine as DINet; step counts and frame batches are our choice (the paper gives none)
    Stage(mode="frame", scale=64, steps=100_000, batch=24),
    Stage(mode="frame", scale=128, steps=100_000, batch=12),
    Stage(mode="frame", scale=256, steps=100_000, batch=6),
    Stage(mode="clip", scale=256, steps=50_000, batch=3),  # batch 3 clips of 5 frames (paper)
]


@dataclass(frozen=True)
class RunSettings:
    """How a training run executes, shared by both loops (TrainParams, SyncParams): loading, precision, memory
    format, checkpoints, logging, the end-of-training check. None changes what the run computes, so all are
    left out of its fingerprint (RUNTIME_KEYS): changing one resumes a run instead of starting it anew."""

    workers: int = opt(8, "DataLoader processes per rank", minimum=0, runtime=True)
    prefetch: int = opt(4, "batches prefetched per loader process", minimum=1, runtime=True)
    frame_cache: int = opt(0, "decoded frames kept per loader process (LRU)", minimum=0, runtime=True)
    amp: bool = opt(True, "bf16 autocast on CUDA", runtime=True)
    channels_last: bool = opt(True, "channels-last memory format on CUDA", runtime=True)
    checkpoint_every: int = opt(2000, "steps between checkpoints", minimum=1, runtime=True)
    keep_checkpoints: int = opt(2, "checkpoints kept (older ones are deleted)", minimum=1, runtime=True)
    log_every: int = opt(50, "steps between reading the losses back from the device and logging them (MLflow, "
                             "the log; the CSV gets every step) and between the ranks' agreement on a stop "
                             "signal", minimum=1, runtime=True)
    eval_clips: int = opt(0, "held-out clips checked at the end of training (0 = all)", minimum=0, runtime=True)


@dataclass(frozen=True)
class TrainParams(RunSettings):
    stages: list[Stage] = opt(PAPER_STAGES, "coarse-to-fine stages run in order, weights carried over",
                              minItems=1)
    lr: float = opt(1e-4, "Adam learning rate, generator and discriminators (paper)", exclusiveMinimum=0)
    betas: tuple[float, float] = opt((0.9, 0.999), "the generator's Adam betas; the specification's beta1 0.5 made "
                                                   "training spike at the demo's rates (docs/decisions.md)",
                                     minimum=0, maximum=1)
    d_betas: tuple[float, float] = opt((0.5, 0.999), "the discriminators' Adam betas (the specification's)",
                                       minimum=0, maximum=1)
    lr_decay: float = opt(0.0, "last fraction of each stage over which lr falls linearly to 0 (0 = constant)",
                          minimum=0, maximum=1)
    weights: LossWeights = opt(LossWeights(), "loss weights of Eq. 24 (paper values by default)")
    allow_no_perceptual: bool = opt(False, "without resources/weights VGG-19, train without L_p (labelled "
                                           "everywhere)")
    crop_scale: tuple[float, float] = opt((1.05, 1.15), "train-time crop scale s ~ U[a, b), a zoom-out of the "
                                                        "stored s = 1.05 crops", minimum=1.0)
    min_ref_gap: int = opt(5, "references at least this many frames from every target", minimum=1)
    sample_every: int = opt(2000, "steps between sample grids (MLflow artefacts; 0: never)", minimum=0, runtime=True)
    eval_frames: int = opt(64, "frames per held-out clip for the quality check", minimum=1, runtime=True)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


@dataclass(frozen=True)
class SyncParams(RunSettings):
    steps: int = opt(50_000, "optimiser steps of the lip-sync expert", minimum=1)
    batch: int = opt(64, "windows per step (Wav2Lip trains its expert with large batches)", minimum=2)
    lr: float = opt(1e-4, "Adam learning rate", exclusiveMinimum=0)
    betas: tuple[float, float] = opt((0.5, 0.999), "Adam betas", minimum=0, maximum=1)
    width: float = opt(1.0, "channel multiplier of the expert", exclusiveMinimum=0)
    norm: str = opt("batch", "normalisation layers of the expert", enum=["group", "batch", "instance", "none"])
    mouth_size: int = opt(256, "mouths cut at the clip stage's mouth size (what the generator outputs), then "
                               "128 px", enum=[64, 128, 256])
    min_shift: int = opt(5, "off-sync windows are at least this many frames away (same clip)", minimum=1)
    crop_scale: tuple[float, float] = opt((1.05, 1.15), "train-time crop scale s ~ U[a, b)", minimum=1.0)
    eval_windows: int = opt(64, "centre frames per held-out clip for the accuracy check", minimum=1, runtime=True)
    bn_recalibrate: int = opt(20, "batches that re-estimate the BatchNorm statistics of the final weights "
                                  "(precise BN; 0: keep the EMA, which lags a short schedule)", minimum=0)


# Knobs that change how a run executes, not what it computes (RunSettings and the loops' own): left out of the
# run's fingerprint.
RUNTIME_KEYS = frozenset(f.name for cls in (TrainParams, SyncParams) for f in dataclasses.fields(cls)
                         if f.metadata["runtime"])


@dataclass(frozen=True)
class TrackingParams:
    """Where runs are logged; not a rule parameter, so changing it re-runs nothing."""

    mlflow: bool = opt(True, "false: CSV only (also automatic where mlflow is not importable)")
    uri: str | None = opt(None, "default sqlite:///mlflow.db in the project root; MLFLOW_TRACKING_URI overrides")
    experiment: str = opt("G4G", "MLflow experiment name")


# ---------------------------------------------------------------------------------------------------------
# Inference, evaluation (docs/design/method.md Sec. 7, 9; docs/design/pipeline.md Sec. 5)
# ---------------------------------------------------------------------------------------------------------

PASTE_REGIONS = ("lower_face", "crop")
# x264's output bytes depend on its thread count: the same 100 frames encoded with 1, 2, 3, 4 and 8
# threads gave five different files (each repeat identical), and ffmpeg's default is 1.5 x the machine's
# cores. A fixed count makes a video's hash independent of the machine; 3 is that default on the 2-core
# machines the committed dvc.lock is made on, so fixing it changed no video there.
ENCODE_THREADS = 3


@dataclass(frozen=True)
class InferParams:
    batch_size: int = opt(8, "frames per generator call", minimum=1)
    chunk_frames: int = opt(32, "frames decoded, generated, pasted and encoded at a time (bounds memory)",
                            minimum=1)
    overlap: bool = opt(True, "while the generator works on a chunk, one thread decodes + crops the next and "
                              "one pastes + encodes the previous (same output; ~5 chunks in memory, not 2)")
    paste_threads: int = opt(1, "threads pasting one chunk's frames (4 on a GPU machine, where paste is the "
                                "CPU limit)", minimum=1)
    feather: float = opt(16.0, "paste-back edge ramp, in 416 x 320 crop pixels", minimum=0)
    paste_region: str = opt("lower_face", "lower_face: only the lower-face mask G replaces the frame | crop: "
                                          "the whole 416 x 320 face", enum=list(PASTE_REGIONS))
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    amp: bool = opt(True, "bf16 autocast on CUDA")
    crf: int = opt(18, "x264 quality of the rendered videos", minimum=0, maximum=51)
    preset: str = opt("veryfast", "x264 speed/size trade-off")
    encode_threads: int = opt(ENCODE_THREADS, "x264 threads: fixed, because the bytes of a video depend on the "
                                              "count (more is faster on big machines, and re-renders)", minimum=1)
    fps: float | None = opt(None, "output frame rate of `g4g lipsync`: null = the source video's own; 25 = the "
                                  "model's rate (the test-set renders are always 25 fps, the paper's protocol)",
                            exclusiveMinimum=0)
    allow_silent: bool = opt(False, "render silent driving audio anyway (closed mouth) instead of refusing it")
    threads: int = opt(1, "CPU threads per job (torch, OpenCV): small jobs side by side beat one "
                          "oversubscribed", minimum=1)


@dataclass(frozen=True)
class EvalParams:
    allow_surrogates: bool = opt(False, "LSE also with the project's sync expert, as 'LSE-D/C (own SyncNet)' "
                                        "columns (LPIPS / FID never get a surrogate)")
    full_frame: bool = opt(True, "PSNR / SSIM / MSE on full frames too (extra columns)")
    chunk_frames: int = opt(64, "frames decoded and scored at a time", minimum=1)
    batch_size: int = opt(16, "frames or sync windows per network call", minimum=1)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    image_dtype: str = opt("auto", "PSNR/SSIM/MSE arithmetic: auto = float64 on CUDA, float32 on CPU",
                           enum=["auto", "float32", "float64"])
    lse_vshift: int = opt(15, "LSE offsets searched: -v..+v frames (syncnet_python)", minimum=1)
    strip_frames: int = opt(4, "frames of the report strip (ground truth | generated | difference)", minimum=0)
    threads: int = opt(1, "CPU threads per job", minimum=1)
    references: list[str] = opt(list(REFERENCES), "reference rows of table 1",
                                items={"enum": list(REFERENCES)})
    external_methods: dict[str, str] = opt({}, "name: folder of {clip}.mp4 made by that method's own code",
                                           propertyNames={"pattern": "^[A-Za-z0-9_.-]+$", "not": {"enum": [
                                               "summary", "plots", "strips", *REFERENCES,
                                               *VARIANT_OF_METHOD]}})
    table_datasets: list[str] = opt([], "datasets in table1 / table2 (empty: `dataset`)")


# ---------------------------------------------------------------------------------------------------------
# Datasets and the whole file
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitParams:
    protocol: str = opt("count", "hdtf: n_test random videos | lrs2: 8:2 split, n_test sampled | count | "
                                 "list: test_list", enum=["hdtf", "lrs2", "count", "list"])
    n_test: int | None = opt(None, "test videos", minimum=0)
    test_fraction: float | None = opt(None, "lrs2: fraction of videos in the test part", minimum=0, maximum=1)
    test_list: str | None = opt(None, "list: file of test clip ids, one per line")
    replace_rejected: bool = opt(False, "a test clip rejected during preparation is replaced by a ready "
                                        "training clip (seeded), so the test split keeps the protocol's size")


@dataclass(frozen=True)
class DatasetParams:
    root: str = opt("", "folder of raw videos (or where the demo set is generated)", minLength=1)
    manifest: str | None = opt(None, "CSV with columns video,audio (paths relative to root; audio may be "
                                     "empty): the clips, for layouts where a sound file does not sit beside "
                                     "its video under the same name")
    generate: str | None = opt(None, "demo: the set is generated here (`g4g demo-data`)", enum=["demo", None])
    n_clips: int = opt(12, "demo: clips generated", minimum=2)
    n_faces: int | None = opt(None, "demo: appearance variants of the face, clip i speaking as variant i mod n_faces "
                                    "(null: one per clip)", minimum=1)
    size: int = opt(256, "demo: frame size of the generated clips (px)", minimum=64)
    min_seconds: float = opt(3.0, "demo: shortest generated clip (s)", exclusiveMinimum=0)
    max_seconds: float = opt(6.0, "demo: longest generated clip (s)", exclusiveMinimum=0)
    shard_size: int = opt(8, "clips per shard (one preparation job each)", minimum=1)
    checksum: str = opt("quick", "video identity in the manifest: quick (size + head/tail) | full sha256",
                        enum=["quick", "full"])
    split: SplitParams = opt(SplitParams(), "how test clips are chosen (deterministic from `seed`)")
    overrides: dict = opt({}, "sections merged over the top-level ones for this dataset (mappings key by key, "
                              "other values replaced), validated after merging")


@dataclass(frozen=True)
class Params:
    """params.yaml, resolved for one dataset (its `overrides` merged into the sections)."""

    dataset: str = opt("demo", "dataset the default target runs on")
    seed: int = opt(0, "base seed of splits, data order and initialisation")
    extra_seeds: list[int] = opt([], "more training seeds: each variant is trained, rendered and scored again "
                                     "under each (the split and the sync expert stay those of `seed`); the "
                                     "tables add the mean and standard deviation over `seed` and these "
                                     "(g4g.evaluate.seeds)", items={"type": "integer", "minimum": 0},
                                 uniqueItems=True)
    datasets: dict[str, DatasetParams] = opt({}, "datasets by name")
    variants: list[str] = opt(list(VARIANTS), "G4G variants trained by the workflow (Table 2)",
                              items={"enum": list(VARIANTS)})
    video: VideoParams = opt(VideoParams(), "frame rate and minimum length")
    audio: AudioParams = opt(AudioParams(), "sample rate and silence")
    landmarks: LandmarkParams = opt(LandmarkParams(), "68-point landmarks (faces stage)")
    crop: CropParams = opt(CropParams(), "416 x 320 face crops (faces stage)")
    mel: MelParams = opt(MelParams(), "mel spectrograms (Wav2Lip's settings)")
    model: ModelParams = opt(ModelParams(), "G4G generator size")
    train: TrainParams = opt(TrainParams(), "G4G training")
    sync: SyncParams = opt(SyncParams(), "the lip-sync expert, frozen during G4G training")
    tracking: TrackingParams = opt(TrackingParams(), "MLflow (changing it retrains nothing)")
    infer: InferParams = opt(InferParams(), "inference: `g4g lipsync`, `g4g infer`")
    evaluate: EvalParams = opt(EvalParams(), "the evaluation protocol and the rows of the tables")

    @property
    def ds(self) -> DatasetParams:
        return self.datasets[self.dataset]


SECTIONS = ("video", "audio", "landmarks", "crop", "mel", "model", "train", "sync", "tracking", "infer",
            "evaluate")


def section_class(name: str) -> type:
    return typing.get_type_hints(Params)[name]


# ---------------------------------------------------------------------------------------------------------
# The JSON schema, generated from the dataclasses
# ---------------------------------------------------------------------------------------------------------

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_ITEM_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}  # on a tuple: each element's


def _type_schema(tp: Any) -> dict:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in args if a is not type(None)]
        s = _type_schema(inner)
        return {**s, "type": [s["type"], "null"]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(args[0]), "minItems": len(args), "maxItems": len(args)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    if tp is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return object_schema(tp)
    raise TypeError(f"no JSON schema for {tp!r}")


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def object_schema(cls: type) -> dict:
    """The JSON schema of a params dataclass: every field with its type, default, meaning, constraints."""
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        s = _type_schema(hints[f.name])
        for k, v in f.metadata.get("schema", {}).items():
            if k in _ITEM_KEYS and s["type"] == "array":
                s["items"] = {**s["items"], k: v}
            elif k == "items":
                s["items"] = {**s["items"], **v}
            else:
                s[k] = v
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            # nested sections default to {} (their own fields' defaults fill it); None is left implicit
            if dataclasses.is_dataclass(default):
                s["default"] = {}
            elif default is not None:
                s["default"] = _jsonable(default)
        s["description"] = f.metadata.get("help", "")
        props[f.name] = s
    out = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out["description"] = " ".join(cls.__doc__.split())
    out.update(properties=props, additionalProperties=False)
    if required:
        out["required"] = required
    return out


def schema() -> dict:
    """The schema of params.yaml (workflow/schemas/params.schema.yaml is this, written out)."""
    s = object_schema(Params)
    s["properties"]["datasets"]["additionalProperties"]["properties"]["overrides"].update(
        properties={name: {"type": "object"} for name in SECTIONS}, additionalProperties=False)
    s["required"] = ["datasets"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": "params.yaml of the G4G pipeline (generated from g4g/params.py: `g4g params schema "
                           "--write`; do not edit by hand)", **s}


def schema_text() -> str:
    return yaml.safe_dump(schema(), sort_keys=False, width=110, default_flow_style=None)


# ---------------------------------------------------------------------------------------------------------
# Validation, typed construction, the resolver
# ---------------------------------------------------------------------------------------------------------


def _filling_validator(s: dict):
    """A jsonschema validator that also fills in each property's `default` (as Snakemake's validate)."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, sch)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(s)


def validate(config: dict, where: str = "params.yaml", s: dict | None = None, prefix: str = "") -> dict:
    """Check `config` against the schema, filling in defaults; a violation is a ValueError naming the key."""
    err = jsonschema.exceptions.best_match(_filling_validator(s or schema()).iter_errors(config))
    if err is not None:
        key = ".".join([prefix] * bool(prefix) + list(map(str, err.absolute_path))) or "(top level)"
        raise ValueError(f"{where}: {key}: {err.message}")
    return config


def build(cls: type, values: dict | None, where: str | None = None, prefix: str = "") -> Any:
    """A params dataclass from a mapping: validated against its schema (defaults filled, unknown or
    misspelt keys an error that names them), nested sections built too."""
    values = validate(copy.deepcopy(dict(values or {})), where or cls.__name__, object_schema(cls), prefix)
    return _convert(cls, values)


def _convert(tp: Any, v: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{k: _convert(hints[k], x) for k, x in v.items()})
    if origin in (types.UnionType, typing.Union):
        return None if v is None else _convert(next(a for a in args if a is not type(None)), v)
    if origin is list:
        return [_convert(args[0], x) for x in v]
    if origin is tuple:
        return tuple(_convert(args[0], x) for x in v)
    if origin is dict:
        return {k: _convert(args[1], x) for k, x in v.items()}
    return v


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of `base` with `over` merged in: mappings key by key, recursively; anything else (numbers,
    strings, lists such as `train.stages`) replaced whole."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load(path: str | Path = PARAMS_PATH) -> dict:
    """params.yaml as a validated mapping with every default filled in."""
    return validate(yaml.safe_load(Path(path).read_text()) or {}, str(path))


def resolve(config: dict, dataset: str | None = None) -> Params:
    """params.yaml (a mapping) for `dataset` (default: its `dataset`): the dataset's `overrides` merged over
    the top-level sections, then validated, so a misspelt override is an error naming it."""
    config = validate(copy.deepcopy(config))
    dataset = dataset or config["dataset"]
    if dataset not in config["datasets"]:
        raise KeyError(f"dataset {dataset!r} is not defined in params.yaml datasets: {sorted(config['datasets'])}")
    merged = deep_merge(config, config["datasets"][dataset].get("overrides") or {})
    merged["dataset"] = dataset
    p = _convert(Params, validate(merged, f"params.yaml (dataset {dataset}, its overrides merged)"))
    if p.seed in p.extra_seeds:
        raise ValueError(f"params.yaml extra_seeds {p.extra_seeds} lists seed {p.seed}: the tables' rows are "
                         "that run already; list only the other seeds")
    return p


def project_params(dataset: str | None = None) -> Params:
    """The params.yaml of the working directory (where Snakemake runs), else the project's, resolved for
    `dataset` (default, or when it is not one of params.yaml's datasets: its `dataset`)."""
    config = load(Path("params.yaml") if Path("params.yaml").is_file() else PARAMS_PATH)
    return resolve(config, dataset if dataset in config["datasets"] else None)


def as_dict(section: Any) -> Any:
    """A section (or Params) as plain JSON-ready values: what `--params` carries and MLflow records."""
    return _jsonable(section)


# ---------------------------------------------------------------------------------------------------------
# Command-line options: every setting of a command's sections, listed by `--help`
# ---------------------------------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _option_type(tp: Any):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        inner = _option_type(next(a for a in args if a is not type(None)))
        return lambda text: None if text.lower() in ("none", "null") else inner(text)
    if tp is bool:
        return _bool
    if tp in (int, float, str):
        return tp
    return json.loads  # lists, mappings, nested sections: a JSON value


def add_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """`--params` and one `--SECTION.KEY` option per setting of the named params.yaml sections."""
    parser.add_argument("--params", help="settings: a params.yaml to resolve (default: ./params.yaml, else the "
                                         "project's), or a JSON object of resolved sections (what the "
                                         "workflow passes); the options below override it")
    for name in names:
        if name == "seed":
            parser.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="params.yaml `seed`")
            continue
        cls = section_class(name)
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(f"params.yaml `{name}`")
        for f in dataclasses.fields(cls):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            group.add_argument(f"--{name}.{f.name}", dest=f"{name}.{f.name}", type=_option_type(hints[f.name]),
                               default=argparse.SUPPRESS, metavar=hints[f.name].__name__.upper()
                               if isinstance(hints[f.name], type) and not dataclasses.is_dataclass(hints[f.name])
                               else "JSON",
                               help=f"{f.metadata.get('help', '')} (default: {json.dumps(_jsonable(default))})")
    parser.set_defaults(param_sections=names)


def from_args(a: argparse.Namespace) -> Params:
    """The settings of a command, in increasing precedence: params.yaml resolved for `--dataset`; the
    sections of `--params` (another params.yaml to resolve, or a JSON object of resolved sections, what
    the workflow passes); the `--SECTION.KEY` options."""
    spec, dataset = getattr(a, "params", None), getattr(a, "dataset", None)
    if spec and not spec.lstrip().startswith("{"):
        p = resolve(load(spec), dataset)
    else:
        p = project_params(dataset)
        if spec:
            given = json.loads(spec)
            built = build(Params, given, "--params")
            p = dataclasses.replace(p, **{k: getattr(built, k) for k in given})
    if "seed" in vars(a):
        p = dataclasses.replace(p, seed=a.seed)
    changes: dict[str, dict] = {}
    for key, value in vars(a).items():
        name, _, fname = key.partition(".")
        if fname and name in SECTIONS:
            changes.setdefault(name, {})[fname] = value
    return dataclasses.replace(p, **{name: build(section_class(name), {**as_dict(getattr(p, name)), **kv},
                                                 "options", name)
                                     for name, kv in changes.items()})
