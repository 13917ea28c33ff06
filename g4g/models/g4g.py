"""The G4G generator (paper Sec. 3, Fig. 2): encoders -> intra-modality alignment -> AdaAT -> decoder
-> composite -> blend net, with its config dataclass and a registry of model sizes.

The generator works per frame; the clip stage feeds B clips x 5 frames flattened clip-major (B*5, ...)
and the losses regroup them (see g4g.losses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from g4g.models.adaat import AdaptiveSpatialTransform
from g4g.models.adain import IntraModalityAlignment
from g4g.models.blend_net import BlendNet
from g4g.models.blocks import count_params, scaled
from g4g.models.composite import composite, face_size, landmark_sketch, lower_face_mask, occlusion_mask
from g4g.models.contrastive import InterModalityContrast
from g4g.models.decoder import Decoder
from g4g.models.encoders import AudioEncoder, CodeHead, LandmarkEncoder, VisualEncoder
from g4g.params import VARIANTS, ModelParams

# ----------------------------------------------------------------------------------------------------
# Config and registry
# ----------------------------------------------------------------------------------------------------


@dataclass
class G4GConfig:
    width: float = 1.0                   # channel multiplier; 1.0 = paper channels 64/128/256
    scale: int = 256                     # mouth size in px; face crop = (416, 320) * scale / 256
    alignment: bool = True               # AdaIN alignment + InfoNCE; off = plain res blocks (Table 2)
    fusion: bool = True                  # blend net; off => I_out = I_comp (Table 2)
    multiscale_supervision: bool = True  # mask scales + image pyramid; read by the losses and data
    n_refs: int = 5                      # reference frames stacked on channels (15 ch)
    n_align_blocks: int = 4              # K AdaIN residual blocks (Sec. 3.1.1)
    n_adaat_pre: int = 4                 # residual blocks before AdaAT (DINet)
    n_adaat_post: int = 4                # residual blocks after AdaAT
    blend_base: int = 32                 # blend U-Net base channels at width 1
    proj_dim: int = 128                  # contrastive embedding size (Sec. 3.1.2)
    queue_size: int = 4096               # negative queue (MoCo / ALBEF)
    momentum: float = 0.995              # EMA of the momentum projection heads
    tau: float = 0.07                    # initial InfoNCE temperature, clamped to [0.01, 0.5]
    mask_sigma_frac: float = 0.04        # Gaussian sigma of G as a fraction of the face width
    sketch_thickness: float = 2.0        # L_r line width in px of the 416 x 320 face (scaled with the face)
    aspect_correct: bool = True          # AdaAT rotations are rigid in pixel space
    norm: str = "group"                  # norm of every conv block

    def __post_init__(self):
        if self.scale not in (64, 128, 256):
            raise ValueError(f"scale must be 64, 128 or 256 (mouth size), got {self.scale}")

    @property
    def chans(self) -> tuple[int, int, int]:
        return tuple(scaled(c, self.width) for c in (64, 128, 256))

    @property
    def face_size(self) -> tuple[int, int]:
        """(H, W) of the face crop: 104x80, 208x160 or 416x320."""
        return face_size(self.scale)


MODEL_SIZES: dict[str, dict] = {
    "demo": dict(width=0.25, scale=64),      # CPU-friendly, face 104 x 80
    "small": dict(width=0.5, scale=128),     # face 208 x 160
    "paper-64": dict(width=1.0, scale=64),   # coarse-to-fine stage 1 (DINet schedule)
    "paper-128": dict(width=1.0, scale=128),  # stage 2
    "paper": dict(width=1.0, scale=256),     # final stage, face 416 x 320
}


def model_config(name: str = "paper", **overrides) -> G4GConfig:
    """G4GConfig of a registered size, with field overrides (e.g. alignment=False)."""
    if name not in MODEL_SIZES:
        raise KeyError(f"unknown model size '{name}'; known: {', '.join(MODEL_SIZES)}")
    return G4GConfig(**{**MODEL_SIZES[name], **overrides})


def variant_config(model: ModelParams, variant: str, scale: int) -> G4GConfig:
    """G4GConfig of a Table 2 variant (g4g.params.VARIANTS) at a training stage's mouth scale."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    kw = dict(VARIANTS[variant].flags, scale=scale, norm=model.norm)
    if model.width is not None:
        kw["width"] = model.width
    return model_config(model.size, **kw)


# ----------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------


class G4G(nn.Module):
    """The G4G generator; forward(batch dict) -> dict of images, codes and AdaAT parameters.

    Inputs (H, W = cfg.face_size; images RGB in [0, 1]):
      I_t (B, 3, H, W)   the unmasked target/source frame (context of the composite), required
      I_r (B / k, 15, H, W)  5 reference frames stacked frame-major, required; one set per k consecutive
                         frames (a clip's 5 targets, a lipsync batch): the reference encoder and the
                         pre-warp blocks run once per set, not once per frame
      A   (B, 1, 80, 16) mel window of the frame, required
      M   (B, 1, H, W)   occlusion mask (default: mouth box at scale 1.0)
      I_s (B, 3, H, W)   masked source (default: I_t * (1 - M))
      L_r (B, 1, H, W)   landmark sketch    } either given, or rendered from
      G   (B, 1, H, W)   lower-face mask    } lmk (B, 68, 2) in crop pixel coordinates
    """

    def __init__(self, cfg: G4GConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or G4GConfig()
        c3 = cfg.chans[2]
        self.E_s = VisualEncoder(4, cfg.chans, cfg.norm)  # Eq. 1, cat(I_s, M)
        self.E_r = VisualEncoder(3 * cfg.n_refs, cfg.chans, cfg.norm)  # Eq. 2
        self.E_l = LandmarkEncoder(cfg.chans, cfg.norm) if cfg.alignment else None  # Eq. 3
        audio_chans = tuple(scaled(c, cfg.width) for c in (32, 64, 128, 256))
        self.E_a = AudioEncoder(c3, audio_chans, cfg.norm)  # Eq. 4
        self.align = IntraModalityAlignment(c3, c3, cfg.n_align_blocks, cfg.alignment, cfg.norm)  # Eq. 5
        self.code_v = CodeHead(c3, 2, cfg.norm)
        self.contrast = (InterModalityContrast(c3, c3, cfg.proj_dim, cfg.queue_size, cfg.momentum, cfg.tau)
                         if cfg.alignment else None)  # Eq. 6-10
        self.transform = AdaptiveSpatialTransform(c3, 2 * c3, c3, cfg.n_adaat_pre, cfg.n_adaat_post,
                                                  cfg.norm, cfg.aspect_correct)  # Eq. 18
        self.decoder = Decoder(cfg.chans, cfg.norm)
        self.blend = BlendNet(scaled(cfg.blend_base, cfg.width), norm=cfg.norm) if cfg.fusion else None

    def prepare(self, batch: dict) -> dict:
        """Fill the derived inputs (M, I_s, L_r, G) that the batch does not carry."""
        b = dict(batch)
        i_t = b["I_t"]
        size = tuple(i_t.shape[-2:])
        if b.get("M") is None:
            b["M"] = occlusion_mask(size, 1.0, batch=len(i_t), device=i_t.device, dtype=i_t.dtype)
        if b.get("I_s") is None:
            b["I_s"] = i_t * (1 - b["M"])
        need_sketch = self.cfg.alignment and b.get("L_r") is None
        if (need_sketch or b.get("G") is None) and b.get("lmk") is None:
            raise KeyError("batch needs 'L_r' and 'G', or the landmarks 'lmk' (B, 68, 2) to render them")
        if need_sketch:
            b["L_r"] = landmark_sketch(b["lmk"].to(i_t.device), size, self.cfg.sketch_thickness)
        if b.get("G") is None:  # from the references' jaws at the target's pose, never the target's own
            if b.get("lmk_r") is None:
                raise KeyError("batch needs 'G', or the references' landmarks 'lmk_r' (B, n_refs, 68, 2) to render it")
            b["G"] = lower_face_mask(b["lmk"].to(i_t.device), b["lmk_r"].to(i_t.device), size,
                                     self.cfg.mask_sigma_frac)
        return b

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """E_a over (..., 1, 80, 16) -> (..., c3)."""
        lead = mel.shape[:-3]
        return self.E_a(mel.reshape(-1, *mel.shape[-3:])).reshape(*lead, -1)

    def forward(self, batch: dict) -> dict:
        b = self.prepare(batch)
        f_s = self.E_s(torch.cat([b["I_s"], b["M"].to(b["I_s"].dtype)], dim=1))  # (B, c3, h, w)
        k = refs_per_set(len(b["I_t"]), len(b["I_r"]))
        f_ref = self.E_r(b["I_r"])  # (B / k, c3, h, w)
        l_r = self.E_l(b["L_r"]) if self.E_l is not None else None  # (B, c3)
        a = self.encode_audio(b["A"])  # (B, c3)
        ibar_s, f_align = self.align(f_s, f_ref.repeat_interleave(k, dim=0), l_r)  # Eq. 5, 2 x (B, c3, h, w)
        v = self.code_v(f_align)  # (B, c3)
        f_def, adaat = self.transform(f_ref, torch.cat([v, a], dim=1), repeat=k)  # Eq. 18, (B, c3, h, w)
        i_gen = self.decoder(f_s, f_def, tuple(b["I_t"].shape[-2:]))  # (B, 3, H, W)
        g = b["G"]
        i_comp = composite(i_gen, b["I_t"], g)  # (B, 3, H, W)
        i_out = self.blend(i_comp, i_gen, g) if self.blend is not None else i_comp  # (B, 3, H, W)
        out = {"I_s": b["I_s"], "M": b["M"], "G": g, "I_gen": i_gen, "I_comp": i_comp, "I_out": i_out,
               "ibar_pool": ibar_s.mean(dim=(2, 3)), "F_align_pool": f_align.mean(dim=(2, 3)),
               "l_r": l_r, "v": v, "a": a, "adaat": adaat}
        return out

    def extra_repr(self) -> str:
        return f"{asdict(self.cfg)}, params={count_params(self) / 1e6:.2f}M"


def refs_per_set(n_frames: int, n_sets: int) -> int:
    """How many consecutive frames share each reference set: B frames over B / k sets."""
    if n_sets == 0 or n_frames % n_sets:
        raise ValueError(f"{n_frames} frames cannot share {n_sets} reference sets evenly")
    return n_frames // n_sets


def build_generator(name: str | G4GConfig = "paper", **overrides) -> G4G:
    """G4G from a registry name (or a config) plus field overrides."""
    cfg = replace(name, **overrides) if isinstance(name, G4GConfig) else model_config(name, **overrides)
    return G4G(cfg)
