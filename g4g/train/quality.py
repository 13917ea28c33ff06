"""Held-out sanity checks run at the end of every training (numbers go to metrics.json and MLflow).

Sync expert: on held-out clips, for evenly spaced centre frames, one in-sync pair (the window of the
centre frame) and one off-sync pair (a window >= min_shift frames away, same clip). `sync_acc` is the
accuracy of thresholding the cosine at 0.5 (the expert's own decision rule, BCE on the cosine);
`sync_pair_acc` the fraction of centre frames whose in-sync cosine beats the off-sync one.

Generator: masked-region PSNR on held-out clips at the training resolution, in the mouth box (the
occlusion mask at scale 1.0), no augmentation, references drawn >= 5 frames from the target. Naive
references a working generator must beat, pasted into the mouth box: (a) `reference_paste`, the mouth
region of a reference frame of the same clip (the first of the 5 the model gets); (b) `mean_face_paste`,
the clip's mean face (per-pixel mean of all its frames). A stricter pair pastes the same two through the
model's own lower-face mask G over the target frame, as I_comp is made (`*_composite`): then the context
outside G, ground truth in the reconstruction setting, favours neither side. I_gen and I_comp are
reported as well. PSNR per frame, averaged per clip, then over clips.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from g4g.metrics.image import psnr
from g4g.models.composite import composite, mouth_box
from g4g.train.data import Clip, G4GSamples, SyncSamples, device_batch, read_clips, shifted_frames


def held_out_clips(clips_parquet: str, n: int = 0, min_frames: int = 16) -> list[Clip]:
    """Test clips (or val clips when there is no test split); the first n by id (0 = all); [] if none."""
    for split in ("test", "val"):
        try:
            clips = read_clips(clips_parquet, split, min_frames)
        except ValueError:
            continue
        return clips[:n] if n else clips
    return []


# ----------------------------------------------------------------------------------------------------
# Sync expert
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def sync_accuracy(expert, clips: list[Clip], mouth_size: int, windows: int = 64, min_shift: int = 5,
                  seed: int = 0, device="cpu", batch: int = 64) -> dict[str, float]:

    was_training = expert.training
    expert.eval()
    ds = SyncSamples(clips, mouth_size, seed, min_shift=min_shift, crop_scale=None)
    rng = np.random.default_rng([seed, 7])
    items = []
    for ci, c in enumerate(clips):
        centres = np.unique(np.linspace(2, c.n_frames - 3, min(windows, c.n_frames - 4)).round().astype(int))
        for t in centres:
            off = int(shifted_frames(rng, np.array([t]), c.n_frames, min_shift, 1)[0, 0]) - int(t)
            items += [(ci, int(t), 0), (ci, int(t), off)]
    cos = []
    for i in range(0, len(items), batch):
        b = default_collate([ds.item(*it) for it in items[i:i + batch]])
        cos.append(expert(b["mouths"].to(device).float() / 255.0, b["A"].to(device)).float().cpu())
    expert.train(was_training)
    cos = torch.cat(cos)
    label = torch.tensor([float(it[2] == 0) for it in items])
    c_in, c_off = cos[label == 1], cos[label == 0]
    return {"sync_acc": float(((cos > 0.5).float() == label).float().mean()),
            "sync_pair_acc": float((c_in > c_off).float().mean()),
            "sync_cos_in": float(c_in.mean()), "sync_cos_off": float(c_off.mean()),
            "sync_eval_pairs": len(items) // 2, "sync_eval_clips": len(clips)}


# ----------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def masked_psnr(generator, clips: list[Clip], cfg, frames: int = 64, seed: int = 0, device="cpu",
                batch: int = 16, amp: bool = False) -> dict[str, float]:
    """Masked-region PSNR (and L1) of the generator's I_out ('model'; also I_gen, I_comp) and of the naive
    references; 'beats_*' flags say whether the model's PSNR is higher."""

    was_training = generator.training
    generator.eval()
    ds = G4GSamples(clips, cfg, n_frames=1, seed=seed, crop_scale=None)
    t_, b_, l_, r_ = mouth_box(ds.size, 1.0)
    kinds = ("model", "generated", "composite", "reference_paste", "mean_face_paste", "reference_composite",
             "mean_face_composite")
    scores: dict[str, list[float]] = {f"{m}_{k}": [] for m in ("psnr", "l1") for k in kinds}
    n_frames = 0
    for ci, clip in enumerate(clips):
        mean_face = torch.stack([torch.from_numpy(ds.src.face(clip, f, ds.size)) for f in range(clip.n_frames)])
        mean_face = (mean_face.float().mean(0) / 255.0).permute(2, 0, 1).to(device)  # (3, H, W)
        rng = np.random.default_rng([seed, 11, ci])
        targets = np.unique(np.linspace(0, clip.n_frames - 1, min(frames, clip.n_frames)).round().astype(int))
        samples = [ds.assemble(ci, np.array([t]), ds.references(rng, clip.n_frames, np.array([t])))
                   for t in targets]
        per: dict[str, list[torch.Tensor]] = {k: [] for k in scores}
        for i in range(0, len(samples), batch):
            b = device_batch(default_collate(samples[i:i + batch]), torch.device(device))
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                out = generator(b)
            box = lambda x: x.float()[..., t_:b_, l_:r_]
            ref, mean = b["I_r"][:, :3], mean_face[None].expand_as(b["I_t"])
            paste = lambda x: composite(x, b["I_t"], out["G"])  # noqa: B023  (as the model's I_comp)
            gt = box(b["I_t"])
            preds = {"model": box(out["I_out"]), "generated": box(out["I_gen"]), "composite": box(out["I_comp"]),
                     "reference_paste": box(ref), "mean_face_paste": box(mean),
                     "reference_composite": box(paste(ref)), "mean_face_composite": box(paste(mean))}
            for k, p in preds.items():
                err = (p - gt).flatten(1)
                per[f"psnr_{k}"].append(psnr(err.square().mean(1).clamp_min(1e-10)))  # finite: a mean is logged
                per[f"l1_{k}"].append(err.abs().mean(1))
        for k in scores:
            scores[k].append(float(torch.cat(per[k]).mean()))
        n_frames += len(samples)
    generator.train(was_training)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    for k in ("reference_paste", "mean_face_paste", "reference_composite", "mean_face_composite"):
        out[f"beats_{k}"] = out["psnr_model"] > out[f"psnr_{k}"]
    return {**out, "eval_clips": len(clips), "eval_frames": n_frames}
