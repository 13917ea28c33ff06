"""The embedded demo dataset: the scikit-image astronaut photograph, animated by synthetic speech.

Audio is a small source-filter synthesiser (glottal pulses with jitter through vowel formant resonators,
consonant noise bursts, 3-5 Hz syllables in phrases with pauses). Video is the real face: its 68 dlib
landmarks are found once, the mouth is opened by a smooth displacement field that follows the audio
envelope (lip width by vowel), the eyelids blink, the head moves a little, and each clip gets its own
appearance variant (colour, scale, flip, background tint, pose). Everything is deterministic in the seed.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import signal

from g4g.io.audio import write_wav
from g4g.io.video import VideoWriter
from g4g.utils import stable_seed, write_json
from g4g.weights import dlib_predictor_path

log = logging.getLogger(__name__)

FPS = 25
SR = 16000
# vowel: F1, F2, F3 (Hz), mouth openness, lip width (relative)
VOWELS = {"a": (750, 1200, 2600, 1.0, 1.0), "e": (500, 1850, 2600, 0.7, 1.1),
          "i": (300, 2250, 3000, 0.45, 1.15), "o": (520, 900, 2500, 0.75, 0.8),
          "u": (320, 800, 2400, 0.5, 0.72)}
_VT = np.array(list(VOWELS.values()), dtype=np.float64)
BANDWIDTHS = (80.0, 100.0, 150.0)


# ----------------------------------------------------------------------------------------- speech
def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Moving average over n samples, same length, edges held."""
    if n <= 1:
        return x
    return np.convolve(np.pad(x, (n // 2, n - 1 - n // 2), mode="edge"), np.ones(n) / n, mode="valid")


def _fade(n: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release envelope of n samples."""
    e = np.ones(n)
    a, r = min(attack, n // 2), min(release, n // 2)
    e[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / max(a, 1))
    e[n - r:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(r) / max(r, 1))
    return e


def _glottal(phase: np.ndarray, tp: float = 0.4, tn: float = 0.16) -> np.ndarray:
    """Rosenberg glottal flow pulse at phase in [0, 1)."""
    g = np.where(phase < tp, 0.5 - 0.5 * np.cos(np.pi * phase / tp), 0.0)
    closing = (phase >= tp) & (phase < tp + tn)
    g[closing] = np.cos(0.5 * np.pi * (phase[closing] - tp) / tn)
    return g


def _formants(x: np.ndarray, tracks: np.ndarray, sr: int, block: int = 80) -> np.ndarray:
    """Cascade of time-varying two-pole resonators (unit DC gain); tracks (3, n) Hz, updated per block."""
    y = x
    for track, bw in zip(tracks, BANDWIDTHS):
        out, zi = np.empty_like(y), np.zeros(2)
        c = -np.exp(-2 * np.pi * bw / sr)
        for s in range(0, len(y), block):
            b = 2 * np.exp(-np.pi * bw / sr) * np.cos(2 * np.pi * track[s] / sr)
            out[s:s + block], zi = signal.lfilter([1 - b - c], [1, -b, -c], y[s:s + block], zi=zi)
        y = out
    return y


def speech_and_articulation(seconds: float, seed: int, sr: int = SR):
    """(audio float32, openness (T,), lip width (T,)) with T = round(seconds * 25) video frames."""
    rng = np.random.default_rng(seed)
    n_frames = int(round(seconds * FPS))
    n = n_frames * sr // FPS
    vowel = np.full(n, -1)
    env_v, cons, accent = np.zeros(n), np.zeros(n), np.zeros(n)
    f0_base, rate = rng.uniform(100, 220), rng.uniform(3.0, 5.0)
    decl = np.ones(n)
    pos = int(rng.uniform(0.1, 0.4) * sr)
    while pos < n - int(0.2 * sr):  # phrases of 2-7 syllables separated by pauses
        start = pos
        for _ in range(int(rng.integers(2, 8))):
            dur = int(sr / rate * rng.uniform(0.8, 1.25))
            if pos + dur > n:
                break
            kind = rng.choice(3, p=[0.3, 0.35, 0.35])  # none, plosive, fricative
            c_len = [0, int(0.045 * sr), int(rng.uniform(0.05, 0.09) * sr)][kind]
            if kind:  # consonant: plosive = closure then short burst; fricative = band noise
                lo, hi = ((1000, 7000) if kind == 1 else sorted(rng.uniform(1500, 7500, 2) * [1, 1.6]))
                sos = signal.butter(2, [lo, min(hi, 7800)], btype="bandpass", fs=sr, output="sos")
                m = c_len if kind == 2 else int(0.015 * sr)
                burst = signal.sosfilt(sos, rng.standard_normal(m)) * _fade(m, m // 4, m // 3)
                amp = rng.uniform(0.15, 0.3) if kind == 2 else rng.uniform(0.3, 0.5)
                cons[pos + c_len - m:pos + c_len] += amp * burst / (burst.std() + 1e-9)
            v0, v1 = pos + c_len, pos + dur - int(rng.uniform(0.0, 0.04) * sr)
            vi = int(rng.integers(len(VOWELS)))
            vowel[v0:v1] = vi
            env_v[v0:v1] = rng.uniform(0.5, 1.0) * (0.7 + 0.3 * _VT[vi, 3]) * _fade(v1 - v0, sr // 40, sr // 25)
            accent[v0:v1] = rng.uniform(-0.08, 0.08)
            pos += dur
        decl[start:pos] = np.linspace(1.08, 0.92, pos - start)
        pos += int(rng.uniform(0.15, 0.6) * sr)
    jitter = _smooth(rng.standard_normal(n), sr // 200) * 0.09  # ~1% pitch jitter
    f0 = f0_base * decl * (1 + _smooth(accent, int(0.06 * sr))) * (1 + jitter)
    source = np.diff(_glottal(np.cumsum(f0 / sr) % 1.0), prepend=0.0)  # lip radiation = derivative
    source += 0.002 * rng.standard_normal(n)  # aspiration
    neutral = np.array([500.0, 1500.0, 2500.0])
    tracks = np.where(vowel[None] >= 0, _VT[vowel, :3].T, neutral[:, None])
    tracks = np.stack([_smooth(t, int(0.03 * sr)) * (1 + (f0_base - 100) / 800) for t in tracks])
    voiced = _formants(source, tracks, sr)
    voiced /= voiced[env_v > 0.5].std() + 1e-9 if (env_v > 0.5).any() else 1.0
    audio = 0.25 * voiced * env_v + 0.25 * cons
    audio = audio / (np.abs(audio).max() + 1e-9) * 0.7 + 1e-4 * rng.standard_normal(n)
    audio = audio.astype(np.float32)

    # articulation per 40 ms video frame, from the generated signal's own RMS envelope
    hop = sr // FPS
    rms = np.sqrt(np.mean(audio[:n_frames * hop].astype(np.float64).reshape(n_frames, hop) ** 2, axis=1))
    env = np.clip(rms / max(np.percentile(rms, 95), 1e-3), 0, 1) ** 0.8
    w = env_v[:n_frames * hop].reshape(n_frames, hop)
    vi = np.clip(vowel[:n_frames * hop].reshape(n_frames, hop), 0, None)
    tot = w.sum(1)
    shape_open = np.where(tot > 0, (w * _VT[vi, 3]).sum(1) / np.maximum(tot, 1e-9), 0.3)
    shape_width = np.where(tot > 0, (w * _VT[vi, 4]).sum(1) / np.maximum(tot, 1e-9), 1.0)
    openness = np.clip(env * (0.4 + 0.6 * shape_open), 0, 1)
    width = 1 + (shape_width - 1) * env
    return audio, openness.astype(np.float32), width.astype(np.float32)


# ------------------------------------------------------------------------------------------- face
@functools.lru_cache(maxsize=1)
def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photograph (RGB uint8) and its 68 dlib landmarks (float, x y), computed once."""
    import dlib
    import skimage.data


    img = skimage.data.astronaut()
    rects, scores, _ = dlib.get_frontal_face_detector().run(img, 1, 0.0)
    rect = rects[int(np.argmax(scores))]
    shape = dlib.shape_predictor(str(dlib_predictor_path()))(img, rect)
    return img, np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


@dataclass
class Variant:
    """Per-clip appearance: colour, scale, flip, background tint and a slight pose (roll, squash, shear)."""
    hue: float = 0.0  # degrees
    saturation: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    face_frac: float = 0.42  # face height (brow to chin) over frame height
    flip: bool = False
    roll: float = 0.0  # degrees
    squash: float = 1.0  # horizontal compression, a yaw cue
    shear: float = 0.0
    tint: tuple = (128, 128, 128)  # RGB background tint
    tint_strength: float = 0.0
    offset: tuple = (0.0, 0.0)  # face centre offset, fraction of frame size

    @classmethod
    def sample(cls, seed: int) -> Variant:
        r = np.random.default_rng(seed)
        u = lambda a, b: round(float(r.uniform(a, b)), 4)
        return cls(hue=u(-12, 12), saturation=u(0.75, 1.25), brightness=u(0.8, 1.15), contrast=u(0.85, 1.15),
                   face_frac=u(0.4, 0.5), flip=bool(r.random() < 0.5), roll=u(-5, 5), squash=u(0.9, 1.0),
                   shear=u(-0.05, 0.05), tint=tuple(int(c) for c in r.integers(0, 256, 3)),
                   tint_strength=u(0.0, 0.45), offset=(u(-0.04, 0.04), u(-0.03, 0.03)))

    def to_dict(self) -> dict:
        return asdict(self)


def _recolour(img: np.ndarray, v: Variant) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + v.hue / 2) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * v.saturation, 0, 255)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(((rgb - 128) * v.contrast + 128) * v.brightness, 0, 255)


def head_motion(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) smooth random head motion: roll (deg, +-3), dx, dy (face heights, +-0.04), scale (+-0.025)."""
    t = np.arange(n)[:, None, None] / FPS
    f, ph = rng.uniform(0.1, 0.6, (1, 4, 3)), rng.uniform(0, 2 * np.pi, (1, 4, 3))
    return np.sin(2 * np.pi * f * t + ph).mean(-1) * [3.0, 0.04, 0.04, 0.025]


def blinks(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) eyelid closure in [0, 1]: 3-4 frame blinks every 2-4.5 s."""
    out, k = np.zeros(n), int(rng.uniform(0.3, 1.5) * FPS)
    while k < n:
        prof = [0.5, 1.0, 1.0, 0.5] if rng.random() < 0.5 else [0.6, 1.0, 0.6]
        out[k:k + len(prof)] = prof[:n - k]
        k += int(rng.uniform(2.0, 4.5) * FPS)
    return out


class FaceRenderer:
    """Renders frames of the astronaut face for given openness, lip width, blink and head motion."""

    def __init__(self, frame_size=(256, 256), variant: Variant | None = None, face_height: float | None = None,
                 backdrop: str = "photo"):
        img, p = astronaut_face()
        variant = Variant(**variant) if isinstance(variant, dict) else variant
        self.v, self.size, self.backdrop, self.p = variant or Variant(), tuple(frame_size), backdrop, p
        W, H = self.size
        self.face_h = p[8, 1] - p[17:27, 1].min()
        self.centre = np.array([p[27:31, 0].mean(), (p[17:27, 1].min() + p[8, 1]) / 2])
        self.scale = (face_height or self.v.face_frac * H) / self.face_h
        yy, xx = np.mgrid[:img.shape[0], :img.shape[1]].astype(np.float32)
        e = ((xx - self.centre[0]) / (1.1 * self.face_h)) ** 2 + ((yy - self.centre[1] - 0.15 * self.face_h)
                                                                  / (1.5 * self.face_h)) ** 2
        self.mask = cv2.GaussianBlur(np.clip((1.15 - e) / 0.3, 0, 1).astype(np.float32), (0, 0), 4)
        rgb, bg, k = _recolour(img, self.v), np.float32(self.v.tint), self.v.tint_strength * (1 - self.mask)
        if backdrop != "photo":  # a plain vertical gradient (in frame coordinates), tinted like the variant
            M = self.affine()
            g = np.clip((M[1, 0] * xx + M[1, 1] * yy + M[1, 2]) / H, 0, 1)[..., None]
            bg = (np.float32([92, 100, 115]) * (1 - g) + np.float32([35, 38, 48]) * g) * (1 - self.v.tint_strength) \
                + bg * self.v.tint_strength
            k = 1 - self.mask
        self.canvas = np.clip(rgb * (1 - k[..., None]) + bg * k[..., None], 0, 255).astype(np.uint8)
        self.dark, self.tongue = _recolour(np.uint8([[[40, 12, 18], [150, 60, 70]]]), self.v)[0]
        # mouth geometry (canvas pixels)
        self.mw = p[54, 0] - p[48, 0]
        self.mc = np.array([p[[60, 64], 0].mean(), p[[62, 66], 1].mean()])
        x0, x1 = int(self.mc[0] - 1.3 * self.mw), int(self.mc[0] + 1.3 * self.mw)
        y0, y1 = int(p[50:53, 1].min() - 0.3 * self.mw), int(p[8, 1] + 0.7 * self.mw)
        self.mroi = (x0, y0, x1, y1)
        self.mgrid = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.lower = p[[60, 67, 66, 65, 64]]  # inner lower lip, left to right
        self.upper = p[[60, 61, 62, 63, 64]]
        self.lip_thick = p[57, 1] - p[66, 1]

    def _mouth(self, c: np.ndarray, openness: float, width: float) -> None:
        x0, y0, x1, y1 = self.mroi
        yy, xx = self.mgrid
        mw, (cx, cy) = self.mw, self.mc
        gw = np.exp(-((xx - cx) / (0.7 * mw)) ** 2 - ((yy - cy) / (0.45 * mw)) ** 2)
        u = xx - (width - 1) * (xx - cx) * gw  # source column of each output pixel (lip width)
        yl = np.interp(u, self.lower[:, 0], self.lower[:, 1])
        gap = np.maximum(yl - np.interp(u, self.upper[:, 0], self.upper[:, 1]), 0)
        half = (self.lower[-1, 0] - self.lower[0, 0]) / 2
        dmax, gc = 0.4 * mw, self.lower[2, 1] - self.upper[2, 1]
        dl = openness * dmax * np.clip(1 - ((u - cx) / half) ** 2, 0, 1) ** 1.5 - (1 - openness) * 0.8 * gap
        dj = (openness * dmax - (1 - openness) * 0.8 * gc) * np.exp(-0.5 * ((u - cx) / (0.6 * mw)) ** 2)
        rel = yy - yl
        wy = np.where(dl > 0, np.clip(rel / np.maximum(dl, 1e-3), 0, 1), np.clip(rel - dl + 0.5, 0, 1))
        s = np.clip((rel - np.maximum(dl, 0)) / (self.lip_thick + 0.4 * mw), 0, 1)
        fall = np.clip(1 - (yy - self.p[8, 1]) / (0.6 * mw), 0, 1)
        dy = wy * (dl * (1 - s) + dj * s) * fall ** 2 * (3 - 2 * fall)
        roi = cv2.remap(c[y0:y1, x0:x1], (u - x0).astype(np.float32), (yy - dy - y0).astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = np.clip(np.minimum(rel, dl - rel) + 0.5, 0, 1) * np.clip(dl - 0.3, 0, 1)  # between the lips
        frac = np.clip(rel / np.maximum(dl, 1e-3), 0, 1)
        q = (np.clip((frac - 0.45) / 0.55, 0, 1) ** 2 * 0.6)[..., None]
        col = self.dark * (1 - q) + self.tongue * q
        a = inside[..., None]
        c[y0:y1, x0:x1] = (roi * (1 - a) + col * a).astype(np.uint8)

    def _blink(self, c: np.ndarray, closure: float) -> None:
        """Close the eyelids by stretching the upper-lid skin down over the eye, with a lash line."""
        for up, lo in (([36, 37, 38, 39], [36, 41, 40, 39]), ([42, 43, 44, 45], [42, 47, 46, 45])):
            pu, pl = self.p[up], self.p[lo]
            x0, x1 = int(pu[0, 0]) - 2, int(pu[-1, 0]) + 3
            y0, y1 = int(pu[:, 1].min()) - 8, int(pl[:, 1].max()) + 3
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            top = np.interp(xx, pu[:, 0], pu[:, 1]) - 0.5
            bot = np.interp(xx, pl[:, 0], pl[:, 1]) + 1.0
            lid = top + closure * (bot - top)
            yb = top - 6  # the lid skin between yb and top is stretched to cover yb..lid
            src = np.where(yy < lid, yb + (yy - yb) * (top - yb) / np.maximum(lid - yb, 1e-3), yy)
            src = np.where(yy < yb, yy, src)
            roi = cv2.remap(c[y0:y1, x0:x1], (xx - x0), (src - y0).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            lash = 1 - 0.45 * closure * np.exp(-0.5 * ((yy - lid) / 0.8) ** 2) * (bot - top > 2)
            c[y0:y1, x0:x1] = np.clip(roi * lash[..., None], 0, 255).astype(np.uint8)

    def affine(self, head=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
        """2x3 map from canvas (photo) pixels to frame pixels for head motion (roll, dx, dy, scale)."""
        v, (W, H) = self.v, self.size
        rot, dx, dy, ds = head
        a = np.deg2rad(v.roll + rot)
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        A = R @ np.diag([self.scale * (1 + ds) * v.squash * (-1 if v.flip else 1), self.scale * (1 + ds)])
        A = A @ np.array([[1, v.shear], [0, 1]])
        fh = self.face_h * self.scale
        dst = np.array([W / 2 + v.offset[0] * W + dx * fh, H / 2 + v.offset[1] * H + dy * fh])
        return np.hstack([A, (dst - A @ self.centre)[:, None]])

    def render(self, openness: float, width: float = 1.0, blink: float = 0.0, head=(0, 0, 0, 0)) -> np.ndarray:
        """One RGB frame (H, W, 3) uint8."""
        c = self.canvas.copy()
        self._mouth(c, float(openness), float(width))
        if blink > 0:
            self._blink(c, float(blink))
        border = cv2.BORDER_REFLECT_101 if self.backdrop == "photo" else cv2.BORDER_REPLICATE
        return cv2.warpAffine(c, self.affine(head), self.size, flags=cv2.INTER_LINEAR, borderMode=border)


def render_clip(seconds: float, seed: int, frame_size=(256, 256), face_height: float | None = None,
                variant: Variant | None = None, backdrop: str = "photo") -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(audio, lazy frame iterator) of one talking clip; the mouth follows the audio."""
    audio, openness, width = speech_and_articulation(seconds, seed)
    rng = np.random.default_rng(stable_seed("face", seed))
    n = len(openness)
    head, blink = head_motion(n, rng), blinks(n, rng)
    r = FaceRenderer(frame_size, variant, face_height, backdrop)
    return audio, (r.render(openness[k], width[k], blink[k], head[k]) for k in range(n))


def write_talking_clip(path, seconds: float, seed: int, frame_size=(256, 256), face_height: float | None = None,
                       variant: Variant | None = None, backdrop: str = "gradient") -> Path:
    """Render and encode one clip (25 fps H.264 + AAC); default face height is 40% of the frame height."""
    face_height = face_height or 0.4 * frame_size[1]
    audio, frames = render_clip(seconds, seed, frame_size, face_height, variant, backdrop)
    with tempfile.TemporaryDirectory(prefix="g4g-demo-") as tmp:
        wav = Path(tmp) / "speech.wav"
        write_wav(wav, audio, SR)
        with VideoWriter(path, FPS, tuple(frame_size), audio=wav) as vw:
            for f in frames:
                vw.write(f)
    return Path(path)


def generate_demo(out_dir, n_clips: int = 12, seed: int = 0, size: int = 256, min_seconds: float = 3.0,
                  max_seconds: float = 6.0, n_faces: int | None = None, progress: bool = False) -> list[Path]:
    """Write out_dir/demo_000.mp4 ... and out_dir/demo.json; returns the clip paths. Clip i speaks its own
    sentence as appearance variant i mod n_faces (None: every clip its own variant)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, rows, t0 = [], [], time.time()
    for i in range(n_clips):
        cs = stable_seed("g4g-demo", seed, i)
        seconds = round(np.random.default_rng(cs).uniform(min_seconds, max_seconds) * FPS) / FPS
        face = i if n_faces is None else i % n_faces  # the clip whose appearance this one has
        v = Variant.sample(stable_seed("variant", stable_seed("g4g-demo", seed, face)))
        p = write_talking_clip(out / f"demo_{i:03d}.mp4", seconds, cs, (size, size), v.face_frac * size, v, "photo")
        paths.append(p)
        rows.append({"file": p.name, "seed": cs, "seconds": seconds, "n_frames": int(round(seconds * FPS)),
                     "variant": v.to_dict()})
        if progress:
            log.info("demo clip %d/%d: %s (%.2f s) after %.1f s", i + 1, n_clips, p.name, seconds, time.time() - t0)
    for stale in out.glob("demo_*.mp4"):  # clips of an earlier, larger set
        if stale not in paths:
            stale.unlink()
    write_json(out / "demo.json", {"source": "skimage.data.astronaut", "generator": "g4g.data.demo", "seed": seed,
                                   "size": size, "fps": FPS, "sample_rate": SR, "clips": rows})
    return paths
