"""This project's LSE (syncnet_python framing) against syncnet_python's own scripts, on one video.

Not a test: it needs a checkout of joonson/syncnet_python and the PySceneDetect API that checkout was
written for (0.5; 0.5.1 itself fails on current OpenCV, 0.5.6.1 runs), neither of which the project
depends on. Results are quoted in docs/evaluation.md.

    pip install --no-deps --target /tmp/sd056 scenedetect==0.5.6.1
    python tools/compare_syncnet_python.py --reference PATH/syncnet_python --scenedetect /tmp/sd056 \\
        --video ../shared/data/real/face_a.mp4 [--work /tmp/compare] [--seed 0]

Both sides get identical random weights (SyncNet, and S3FD for the detector check); the pretrained ones
cannot be downloaded here, and the comparison is of the pipeline, not of the weights. Steps:

1. S3FD: the reference's S3FDNet + detect_faces and g4g.metrics.s3fd on one frame, same random weights.
2. The reference's run_pipeline.py and SyncNetInstance.evaluate (its run_syncnet.py loop), run as they
   are, except that its S3FD is replaced by a stand-in returning this project's HOG boxes of the same
   frame (random S3FD weights find no face), so both sides track the same boxes.
3. This project on the same video with the same boxes: TrackedLSE's tracks, crops and per-track LSE.
4. This project's LSE arithmetic on the reference's own crop videos (pycrop/*.avi), which separates
   what the reference's lossy steps change (MPEG-4 avi, JPEG frames, XVID crops, JPEG again) from
   what the two implementations compute.
5. The other framing on the same frames and weights: the landmark crop (`LSE-D (landmark crop)`).

The shims the reference needs on a current stack are applied in its process and listed in SHIMS.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

SHIMS = ("np.int = int (removed in NumPy 1.24; the reference's nms_ uses it)",
         "torch .cuda() calls return the CPU module/tensor (no GPU here)",
         "`ffmpeg` on PATH is imageio-ffmpeg's binary",
         "detectors.S3FD replaced by a stand-in that returns the given boxes of each frame")

BOOTSTRAP = textwrap.dedent('''
    import json, pickle, runpy, sys
    import numpy as np, torch
    np.int = int
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    work, ref, boxes_file, weights = sys.argv[1:5]
    sys.path.insert(0, ref)
    import detectors
    boxes = pickle.load(open(boxes_file, "rb"))

    class GivenBoxes:
        def __init__(self, device="cpu"):
            self.calls = 0
        def detect_faces(self, image, conf_th=0.8, scales=[1]):
            b = boxes[self.calls] if self.calls < len(boxes) else np.zeros((0, 5))
            self.calls += 1
            return b

    detectors.S3FD = GivenBoxes
    sys.argv = ["run_pipeline.py", "--videofile", sys.argv[5], "--reference", "ref", "--data_dir", work]
    runpy.run_path(ref + "/run_pipeline.py", run_name="__main__")

    import glob, os
    from SyncNetInstance import SyncNetInstance
    class Opt: pass
    opt = Opt()
    opt.batch_size, opt.vshift, opt.reference = 20, 15, "ref"
    opt.tmp_dir, opt.crop_dir = os.path.join(work, "pytmp"), os.path.join(work, "pycrop")
    s = SyncNetInstance()
    s.loadParameters(weights)
    out = []
    for f in sorted(glob.glob(os.path.join(opt.crop_dir, "ref", "0*.avi"))):
        offset, conf, dists = s.evaluate(opt, videofile=f)
        mdist = dists.mean(0)
        out.append({"file": f, "offset": int(offset), "lse_d": float(mdist.min()), "lse_c": float(conf),
                    "windows": int(dists.shape[0])})
    json.dump(out, open(os.path.join(work, "reference_lse.json"), "w"))
''')


def s3fd_check(ref: Path, frame: np.ndarray, seed: int) -> dict:
    """Same random weights in the reference's S3FD and ours: the boxes both return for one frame."""
    sys.path.insert(0, str(ref))
    np.int = int  # the reference's nms_ (see SHIMS)
    from detectors.s3fd import S3FD as RefS3FD
    from detectors.s3fd.nets import S3FDNet as RefNet

    from g4g.metrics.s3fd import S3FD

    torch.manual_seed(seed)
    ours = S3FD(pretrained=False, device="cpu")
    ref_det = RefS3FD.__new__(RefS3FD)  # its __init__ loads the published weights file
    ref_det.device = "cpu"
    ref_det.net = RefNet(device="cpu").eval()
    ref_det.net.load_state_dict(ours.net.state_dict())
    # random weights score every prior near 0.5: a threshold among the best scores keeps a few boxes
    th = float(np.sort(ours.detect(frame, conf_th=0.0)[:, 4])[-20])
    a = ours.detect(frame, conf_th=th)
    b = ref_det.detect_faces(frame, conf_th=th, scales=[0.25])
    b = b[np.argsort(-b[:, 4], kind="stable")]
    same = a.shape == b.shape
    return {"threshold": th, "boxes_ours": len(a), "boxes_reference": len(b),
            "max_abs_diff": float(np.abs(a - b).max()) if same and len(a) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path, help="a checkout of joonson/syncnet_python")
    ap.add_argument("--scenedetect", required=True, type=Path, help="folder with scenedetect 0.5.6.1 (pip --target)")
    ap.add_argument("--video", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/g4g-compare-syncnet-python"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from g4g.evaluate.protocol import ChunkedLSE
    from g4g.io.audio import load_audio
    from g4g.io.video import decode_all, ffmpeg_exe, frame_times, resample_index
    from g4g.metrics.lse_framing import HogFaceBoxes, ShotCuts, crop, face_tracks, min_track_for
    from g4g.metrics.syncnet import OfficialSyncNet, SyncNetV2

    a.work.mkdir(parents=True, exist_ok=True)
    frames = decode_all(a.video, resample_index(frame_times(a.video), 25.0))
    audio = load_audio(a.video)
    report = {"video": str(a.video), "frames": len(frames), "shims": SHIMS}
    report["s3fd"] = s3fd_check(a.reference, frames[0], a.seed)

    hog = HogFaceBoxes()
    boxes = [hog.detect(f) for f in frames]
    (a.work / "boxes.pckl").write_bytes(pickle.dumps(boxes))
    torch.manual_seed(a.seed)
    state = SyncNetV2().state_dict()
    torch.save(state, a.work / "syncnet_random.model")

    bin_dir = a.work / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "ffmpeg").exists():
        (bin_dir / "ffmpeg").symlink_to(ffmpeg_exe())
    (a.work / "bootstrap.py").write_text(BOOTSTRAP)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(a.scenedetect), str(a.reference)])}
    subprocess.run([sys.executable, str(a.work / "bootstrap.py"), str(a.work), str(a.reference),
                    str(a.work / "boxes.pckl"), str(a.work / "syncnet_random.model"), str(a.video.resolve())],
                   check=True, env=env, cwd=a.reference, stdout=subprocess.DEVNULL)
    reference = json.loads((a.work / "reference_lse.json").read_text())
    ref_tracks = pickle.loads((a.work / "pywork" / "ref" / "tracks.pckl").read_bytes())

    net = OfficialSyncNet(pretrained=False, device="cpu")
    net.net.load_state_dict(state)
    n = len(frames)
    cuts = ShotCuts()
    for f in frames:
        cuts.feed(f)
    tracks = face_tracks(boxes, cuts.shots(min_track_for(n)), min_track_for(n))
    ours = []
    for t, rt in zip(tracks, ref_tracks):
        params = t.crop_params()
        ref_params = np.stack([rt["proc_track"][k] for k in ("x", "y", "s")], 1)
        crops = np.stack([crop(frames[k], *p) for k, p in zip(t.frames, params)])
        lo, hi = t.audio_span()
        ch = ChunkedLSE(net, len(crops), audio[lo:hi], 20)
        ch.feed(crops, 0)
        r = ch.result(15)
        ours.append({"frames": [int(t.frames[0]), int(t.frames[-1])], "offset": r.offset, "lse_d": r.lse_d,
                     "lse_c": r.lse_c, "windows": r.n_windows,
                     "reference_frames": [int(rt["track"]["frame"][0]), int(rt["track"]["frame"][-1])],
                     "crop_params_max_abs_diff": float(np.abs(params - ref_params).max())})
    on_theirs = []
    for r in reference:  # our arithmetic on the reference's own crop videos and their sound
        crops = decode_all(r["file"])
        ch = ChunkedLSE(net, len(crops), load_audio(r["file"]), 20)
        ch.feed(crops, 0)
        x = ch.result(15)
        on_theirs.append({"offset": x.offset, "lse_d": x.lse_d, "lse_c": x.lse_c, "windows": x.n_windows})
    # the other framing, on the same frames and weights: the project's landmark crops padded to a square
    from g4g.data.crops import warp_crop
    from g4g.infer.lipsync import track_video

    landmark = track_video(a.video)
    ch = ChunkedLSE(net, n, audio, 20)
    ch.feed(np.stack([warp_crop(f, A) for f, A in zip(frames, landmark.affine)]), 0)
    x = ch.result(15)
    report.update({"tracks_ours": len(tracks), "tracks_reference": len(reference), "reference": reference,
                   "ours": ours, "ours_on_reference_crops": on_theirs,
                   "ours_landmark_crop": {"offset": x.offset, "lse_d": x.lse_d, "lse_c": x.lse_c,
                                          "windows": x.n_windows}})
    (a.work / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
