"""Cross-driven lip sync, printed (never asserted): does the mouth follow the driving audio or the video?

    python -m g4g.bench.cross_drive --clips results/demo/clips.parquet \
        --resampled results/demo/resampled/*.parquet --checkpoint results/models/demo/full/model.pt \
        --syncnet results/models/demo/syncnet.pt

Each test clip is rendered with the next test clip's audio (the reconstruction setting of the tables
cannot tell a model that listens from one that copies the source's mouth). The output is re-tracked at
25 fps, and the own SyncNet's offset search is run against the driving audio and against the source
video's own audio. A model that follows the driving audio gets offset 0 and the higher LSE-C against
it; a lower-face mask that leaks the source frame's jaw (docs/design/method.md Sec. 3 item 6) pulls
the mouth towards the source's own speech.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from g4g.data.crops import warp_crop
from g4g.evaluate.own_syncnet import OwnSyncNet
from g4g.infer.lipsync import Lipsync, track_video
from g4g.infer.testset import stored_track, test_clips
from g4g.io.video import iter_frames
from g4g.metrics.lse import LSEResult, lse
from g4g.params import InferParams, LandmarkParams


def video_sync(video: str | Path, audio: np.ndarray, sync: OwnSyncNet) -> LSEResult:
    """The own SyncNet's offset search on a rendered video against `audio`, with the video read as the
    evaluation reads one: re-tracked at 25 fps, then cut to 416 x 320 crops."""
    track = track_video(video, LandmarkParams(), fps=25.0)
    crops = np.stack([warp_crop(f, track.affine[k]) for k, f in iter_frames(video, track.index_map)])
    return lse(sync, crops, audio)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", required=True)
    ap.add_argument("--resampled", nargs="+", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--syncnet", required=True)
    a = ap.parse_args(argv)
    clips = test_clips(a.clips, a.resampled)
    engine = Lipsync.from_checkpoint(a.checkpoint, InferParams(device="cpu"))
    sync = OwnSyncNet(a.syncnet, "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, clip in enumerate(clips):
            driver = clips[(i + 1) % len(clips)]
            n = min(len(driver.audio), len(clip.audio))  # as long as both, so both audios can be scored
            out = Path(tmp) / f"{clip.clip_id}.mp4"
            engine.run(clip.source, driver.audio[:n], out, track=stored_track(clip), progress=False)
            to_driver, to_source = video_sync(out, driver.audio[:n], sync), video_sync(out, clip.audio[:n], sync)
            rows.append((to_driver.offset, to_driver.lse_d, to_driver.lse_c, to_source.lse_c))
            print(f"{clip.clip_id} driven by {driver.clip_id}: driving audio offset {to_driver.offset:+d} "
                  f"LSE-D {to_driver.lse_d:.3f} LSE-C {to_driver.lse_c:.3f} | source's own audio LSE-C "
                  f"{to_source.lse_c:.3f}")
    r = np.asarray(rows, dtype=np.float64)
    print(f"mean over {len(rows)} clips: driving audio LSE-D {r[:, 1].mean():.3f} LSE-C {r[:, 2].mean():.3f}, "
          f"|offset| {np.abs(r[:, 0]).mean():.1f}; source's own audio LSE-C {r[:, 3].mean():.3f}")


if __name__ == "__main__":
    main()
