"""Training samples drawn from the Parquet shards (docs/design/method.md Sec. 2 and 6), and the loader around them.

Every sample is a pure function of (seed, stream, index): `dataset[i]` seeds its own generator from
those, so the loader's whole sampling state is the next index. Resuming at step k restarts the index
stream at k * batch * world (rank r takes its own slice), on any number of workers, with the same
samples a straight run would have drawn.

Images travel as uint8 (4x less to pin and copy); the training loop scales them to [0, 1] on the device.
"""

from __future__ import annotations

import hashlib
import logging
import signal
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from g4g.data.crops import ANCHOR, CROP_H
from g4g.data.mels import audio_windows
from g4g.data.shards import FrameReader, MelReader
from g4g.models.composite import MASK_SCALES, face_size, occlusion_mask
from g4g.models.sync_expert import mouth_square
from g4g.params import MelParams

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Clips and frames
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    clip_id: str
    n_frames: int
    frames_path: str
    mels_path: str

    @property
    def key(self) -> int:
        """A non-negative int64 naming the clip wherever it is drawn (the InfoNCE queue stores it with each
        key): a hash of clip_id, not a list index, so it survives the stage filters, ranks and resumes."""
        return int.from_bytes(hashlib.blake2b(self.clip_id.encode(), digest_size=7).digest(), "big")


def min_clip_frames(targets: int, gap: int) -> int:
    """The shortest clip in which every run of `targets` consecutive frames has a frame at least `gap`
    frames away from all of them, before or after: T + 2 gap - 1 (a shorter clip has a middle run with
    no such frame). G4G's references need it (T = 1 or 5 targets, gap train.min_ref_gap: 10 and 14
    frames), the sync expert's off-sync windows too (T = 1 centre frame, gap sync.min_shift: 10)."""
    return targets + 2 * gap - 1


def long_enough(clips: list[Clip], min_frames: int, what: str) -> list[Clip]:
    """The clips of at least `min_frames` frames; how many were skipped, and why, goes to the log."""
    kept = [c for c in clips if c.n_frames >= min_frames]
    if len(kept) < len(clips):
        log.info("%s: %d of %d clips are shorter than %d frames and are skipped", what, len(clips) - len(kept),
                 len(clips), min_frames)
    return kept


def read_clips(clips_parquet: str, split: str | None = "train", min_frames: int = 1, what: str = "") -> list[Clip]:
    """Clips of a split from results/{dataset}/clips.parquet (sorted by id, so the order is stable), at
    least `min_frames` long (`what` names the user in the log line that counts the skipped ones)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(clips_parquet).to_pylist()
    clips = [Clip(r["clip_id"], r["n_frames"], r["frames_path"], r["mels_path"]) for r in rows
             if split is None or r["split"] == split]
    clips = long_enough(sorted(clips, key=lambda c: c.clip_id), min_frames, what or f"{split} clips")
    if not clips:
        raise ValueError(f"{clips_parquet}: no {split} clips with at least {min_frames} frames")
    return clips


def zoom_matrix(z: float, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine that zooms out by z about the crop anchor (p33.x, p29.y) at a face of `size` (H, W).

    Crop-scale augmentation: a crop cut with s = 1.05 z instead of 1.05 shows the face 1/z times smaller
    about the anchor, which stays at (160, 128) of 416 x 320 (docs/design/method.md Sec. 1). Pixel centres are
    integers (OpenCV); the anchor is carried through the INTER_AREA resize as k (x + 0.5) - 0.5.
    """
    k = size[0] / CROP_H
    ax, ay = (ANCHOR[0] + 0.5) * k - 0.5, (ANCHOR[1] + 0.5) * k - 0.5
    return np.array([[1 / z, 0, ax * (1 - 1 / z)], [0, 1 / z, ay * (1 - 1 / z)]], dtype=np.float64)


class FaceSource:
    """Per-process access to frames and mels: lazily opened readers, an optional LRU of resized frames."""

    def __init__(self, clips: list[Clip], cache_frames: int = 0):
        self.clips = clips
        self.cache_frames = cache_frames
        self._readers: dict = {}
        self._mels: dict = {}
        self._lmk: dict = {}
        self._cache: OrderedDict = OrderedDict()

    def __getstate__(self):  # readers are opened again in each worker process
        return {**self.__dict__, "_readers": {}, "_mels": {}, "_lmk": {}, "_cache": OrderedDict()}

    def mel(self, clip: Clip) -> np.ndarray:

        if clip.clip_id not in self._mels:
            if clip.mels_path not in self._readers:
                self._readers[clip.mels_path] = MelReader(clip.mels_path)
            self._mels[clip.clip_id] = np.array(self._readers[clip.mels_path].mel(clip.clip_id))
        return self._mels[clip.clip_id]

    def _reader(self, path: str):

        if path not in self._readers:
            self._readers[path] = FrameReader(path)
        return self._readers[path]

    def face(self, clip: Clip, frame: int, size: tuple[int, int]) -> np.ndarray:
        """(H, W, 3) uint8 RGB crop resized (INTER_AREA) to the working size."""
        import cv2

        key = (clip.clip_id, frame, size)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        img = self._reader(clip.frames_path).get(clip.clip_id, frame, ["image"])["image"]
        if img.shape[:2] != size:
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        if self.cache_frames:
            self._cache[key] = img
            if len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        return img

    def landmarks(self, clip: Clip, frame: int, size: tuple[int, int]) -> np.ndarray:
        """(68, 2) crop landmarks carried to the working size (pixel centres at integers)."""
        if clip.clip_id not in self._lmk:  # whole clip once: small, and spares the row-group cache
            cols = self._reader(clip.frames_path).clip_columns(clip.clip_id, ["crop_landmarks"])
            self._lmk[clip.clip_id] = cols["crop_landmarks"]
        k = size[0] / CROP_H
        return (self._lmk[clip.clip_id][frame] + 0.5) * k - 0.5


def zoom(img: np.ndarray, M: np.ndarray | None) -> np.ndarray:
    """Apply a zoom_matrix with bilinear sampling and edge replication (identity when M is None)."""
    import cv2

    if M is None:
        return img
    return cv2.warpAffine(img, M.astype(np.float32), (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def chw(imgs: list[np.ndarray]) -> torch.Tensor:
    """list of (H, W, 3) uint8 -> (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(imgs).transpose(0, 3, 1, 2)))


def shifted_frames(rng: np.random.Generator, t: np.ndarray, n_frames: int, min_shift: int, n: int) -> np.ndarray:
    """n frames per target t, each at least min_shift away from it (within the clip): (len(t), n).

    A nearer frame is never used as a stand-in: its window overlaps the target's, and a pair labelled
    off-sync would be in sync. Clips shorter than min_clip_frames(1, min_shift) are filtered out before.
    """
    out = np.empty((len(t), n), dtype=np.int64)
    all_f = np.arange(n_frames)
    for i, ti in enumerate(t):
        ok = all_f[np.abs(all_f - ti) >= min_shift]
        if len(ok) == 0:
            raise ValueError(f"a clip of {n_frames} frames has no frame {min_shift} away from frame {ti} "
                             f"(clips need {min_clip_frames(1, min_shift)} frames)")
        out[i] = rng.choice(ok, size=n, replace=len(ok) < n)
    return out


# ----------------------------------------------------------------------------------------------------
# G4G samples (Sec. 2): frame samples (T = 1) and clip samples (T = 5 consecutive targets)
# ----------------------------------------------------------------------------------------------------


class G4GSamples(Dataset):
    """dataset[i] -> one training sample of T target frames of one clip with shared references.

    I_t (T, 3, H, W) uint8 targets; I_r (3 n_refs, H, W) uint8 references, each >= min_ref_gap frames
    from every target; A (T, 1, 80, 16) audio windows; lmk (T, 68, 2) target landmarks at the working
    size; M (T, 1, H, W) occlusion mask at mask_scale (T,); clip (T,) Clip.key; frames (T,) target
    frames; refs (n_refs,) reference frames.

    The landmark sketch L_r and the lower-face mask G are rendered from lmk on the device by
    G4G.prepare (the same code as at inference; brute-force rendering is far cheaper batched on a GPU
    than per sample in a CPU worker).
    """

    def __init__(self, clips: list[Clip], cfg, n_frames: int = 1, seed: int = 0, stream: int = 0,
                 crop_scale: tuple[float, float] | None = (1.05, 1.15), min_ref_gap: int = 5,
                 cache_frames: int = 0, mel: MelParams = MelParams()):
        self.src = FaceSource(clips, cache_frames)
        self.cfg, self.T, self.seed, self.stream = cfg, n_frames, seed, stream
        self.crop_scale, self.min_ref_gap, self.mel_p = crop_scale, min_ref_gap, mel
        self.size = tuple(cfg.face_size)
        w = np.array([max(c.n_frames - n_frames + 1, 0) for c in clips], dtype=np.float64)
        self.clip_p = w / w.sum()  # uniform over valid windows

    def __len__(self) -> int:
        return 2 ** 62  # an index stream, not an epoch: see IndexStream

    def references(self, rng: np.random.Generator, n: int, targets: np.ndarray) -> np.ndarray:
        """n_refs frames of a clip of n frames, each >= min_ref_gap from every target (Sec. 2)."""
        f = np.arange(n)
        far = f[(f <= targets.min() - self.min_ref_gap) | (f >= targets.max() + self.min_ref_gap)]
        if len(far) == 0:
            raise ValueError(f"a clip of {n} frames has no frame {self.min_ref_gap} away from {targets.tolist()}")
        return rng.choice(far, size=self.cfg.n_refs, replace=len(far) < self.cfg.n_refs)

    def __getitem__(self, index: int) -> dict:

        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        ci = int(rng.choice(len(self.clip_p), p=self.clip_p))
        n = self.src.clips[ci].n_frames
        t0 = int(rng.integers(0, n - self.T + 1))
        targets = np.arange(t0, t0 + self.T)
        refs = self.references(rng, n, targets)
        scales = MASK_SCALES if self.cfg.multiscale_supervision else (1.0,)
        mask_scale = float(scales[rng.integers(len(scales))])
        z = float(rng.uniform(*self.crop_scale)) / 1.05 if self.crop_scale else 1.0
        return self.assemble(ci, targets, refs, mask_scale, z)

    def assemble(self, ci: int, targets: np.ndarray, refs: np.ndarray, mask_scale: float = 1.0,
                 z: float = 1.0) -> dict:
        """The sample of given targets and references, occlusion scale and zoom."""

        clip, size, T = self.src.clips[ci], self.size, len(targets)
        M = zoom_matrix(z, size) if z != 1.0 else None
        faces = [zoom(self.src.face(clip, int(f), size), M) for f in list(targets) + list(refs)]
        lmk = np.stack([self.src.landmarks(clip, int(f), size) for f in list(targets) + list(refs)])  # (T + R, 68, 2)
        if M is not None:
            lmk = lmk @ M[:, :2].T + M[:, 2]
        mel = self.src.mel(clip)
        return {
            "I_t": chw(faces[:T]),  # (T, 3, H, W) uint8
            "I_r": chw(faces[T:]).flatten(0, 1),  # (3 n_refs, H, W) uint8, frame-major
            "A": torch.from_numpy(audio_windows(mel, targets, self.mel_p))[:, None],  # (T, 1, 80, 16)
            "lmk": torch.from_numpy(lmk[:T].astype(np.float32)),  # (T, 68, 2)
            "lmk_r": torch.from_numpy(lmk[T:].astype(np.float32)),  # (n_refs, 68, 2): G is built from these
            "M": occlusion_mask(size, mask_scale, batch=T),  # (T, 1, H, W)
            "mask_scale": torch.full((T,), mask_scale),
            "clip": torch.full((T,), clip.key, dtype=torch.long),
            "frames": torch.from_numpy(np.asarray(targets)),
            "refs": torch.from_numpy(np.asarray(refs)),
            "zoom": torch.tensor(z),
        }


def device_batch(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """A collated G4G batch (B, T, ...) -> model inputs (B*T, ...) on the device, images in [0, 1].

    Clip samples are laid out clip-major (the frames of one clip adjacent), as the temporal D and the
    sync loss expect. I_r stays one set per clip (B, 15, H, W): G4G encodes each set once for its T
    frames; the references' landmarks are repeated per frame (B*T, n_refs, 68, 2) for the mask G.
    """
    B, T = batch["I_t"].shape[:2]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if k == "lmk_r":
            v = v.repeat_interleave(T, dim=0)  # (B*T, n_refs, 68, 2)
        elif k not in ("refs", "zoom") and v.dim() >= 2 and v.shape[:2] == (B, T):
            v = v.flatten(0, 1)
        if k in ("I_t", "I_r"):
            v = (v.float() / 255.0).contiguous(memory_format=fmt)
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------
# Loader: a resumable index stream, workers, pinned memory
# ----------------------------------------------------------------------------------------------------


class IndexStream(Sampler):
    """Batches of sample indices for steps [start, stop) of one rank: step k, rank r -> (k world + r) B + j."""

    def __init__(self, batch: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.batch, self.start, self.stop, self.rank, self.world = batch, start, stop, rank, world

    def __iter__(self):
        for k in range(self.start, self.stop):
            base = (k * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_):
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):  # the main process handles preemption
        signal.signal(sig, signal.SIG_IGN)


def make_loader(dataset: Dataset, batch: int, start: int, stop: int, workers: int = 0, prefetch: int = 2,
                rank: int = 0, world: int = 1, pin_memory: bool = False) -> DataLoader:
    """DataLoader over steps [start, stop) of the index stream.

    Under DDP the workers come from a fork server: a worker forked from a rank whose process-group threads
    hold a lock deadlocks (seen with gloo at the second stage's loader); alone, plain fork starts faster.
    """
    kw = dict(prefetch_factor=prefetch, worker_init_fn=_worker_init) if workers > 0 else {}
    if workers > 0 and world > 1:
        kw["multiprocessing_context"] = "forkserver"
    return DataLoader(dataset, batch_sampler=IndexStream(batch, start, stop, rank, world), num_workers=workers,
                      pin_memory=pin_memory, **kw)


class SyncSamples(Dataset):
    """dataset[i] -> {'mouths' (15, m, m) uint8, 'A' (1, 80, 16), 'label' (), 'shift' ()}.

    The mouths are the mouth squares of frames t-2..t+2 of faces resized to the generator's working size
    for mouth size m (so the expert sees what the generator produces at that scale); A is the window of t
    (label 1) or of a frame at least min_shift away in the same clip (label 0). Pure in (seed, index).
    """

    def __init__(self, clips: list[Clip], mouth_size: int = 256, seed: int = 0, stream: int = 0, min_shift: int = 5,
                 crop_scale: tuple[float, float] | None = (1.05, 1.15), cache_frames: int = 0,
                 mel: MelParams = MelParams()):

        self.src = FaceSource(clips, cache_frames)
        self.size, self.seed, self.stream = face_size(mouth_size), seed, stream
        self.min_shift, self.crop_scale, self.mel_p = min_shift, crop_scale, mel
        w = np.array([max(c.n_frames - 4, 0) for c in clips], dtype=np.float64)
        self.clip_p = w / w.sum()

    def __len__(self) -> int:
        return 2 ** 62

    def item(self, ci: int, t: int, shift: int, z: float = 1.0) -> dict:
        clip = self.src.clips[ci]
        M = zoom_matrix(z, self.size) if z != 1.0 else None
        mouths = [mouth_square(zoom(self.src.face(clip, f, self.size), M)) for f in range(t - 2, t + 3)]
        a = audio_windows(self.src.mel(clip), np.array([t + shift]), self.mel_p)  # (1, 80, 16)
        return {"mouths": chw(mouths).flatten(0, 1), "A": torch.from_numpy(a),
                "label": torch.tensor(float(shift == 0)), "shift": torch.tensor(shift)}

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        ci = int(rng.choice(len(self.clip_p), p=self.clip_p))
        n = self.src.clips[ci].n_frames
        t = int(rng.integers(2, n - 2))  # frames t-2..t+2 inside the clip
        shift = 0
        if rng.random() < 0.5:
            shift = int(shifted_frames(rng, np.array([t]), n, self.min_shift, 1)[0, 0]) - t
        z = float(rng.uniform(*self.crop_scale)) / 1.05 if self.crop_scale else 1.0
        return self.item(ci, t, shift, z)
