"""`g4g study create`: freeze a study, clips x methods, in a folder.

The paper's study showed each rater 4 videos per dataset from every method (Table 3). Here the clips are
drawn (seeded) from those that every method, and the ground truth when given, has a video for; each video
is re-encoded to one format a browser plays (H.264 + AAC in mp4, 25 fps), all videos of a clip to the
same height and the same length, with every metadata tag dropped and a random file name, so that nothing
but the picture and the sound tells one method from another. A clip whose any video cannot be used
(unreadable, no sound, silent, shorter than `MIN_SECONDS`) is left out for every method, recorded in
rejects.parquet with the reason, and the next clip in the draw takes its place.
"""

from __future__ import annotations

import logging
import random
import secrets
import subprocess
from pathlib import Path

from tqdm import tqdm

from g4g.data.scan import VIDEO_EXTENSIONS, dataset_clips
from g4g.evaluate.score import GROUND_TRUTH
from g4g.io.audio import level_dbfs, load_audio
from g4g.io.video import VideoInfo, ffmpeg_exe, probe
from g4g.params import DatasetParams, project_params
from g4g.rejects import ClipError, Rejects
from g4g.study.store import CRITERIA, MEDIA, Study
from g4g.utils import atomic_path

log = logging.getLogger(__name__)

MIN_SECONDS = 1.0  # shorter than this, a rater cannot judge lip sync
MAX_HEIGHT = 1080  # taller sources are scaled down: the page must play them smoothly
FPS = 25


def method_videos(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """{clip id: (video, separate sound or None)} of one folder, named as `g4g score` pairs them."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of videos")
    return {p.stem: (p, None) for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}


def ground_truth_videos(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """{clip id: (video, separate sound)} of a raw dataset folder, as the workflow's scan reads it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of videos")
    return {cid: (Path(s.video), Path(s.audio) if s.audio else None)
            for cid, s in dataset_clips(DatasetParams(root=str(folder.resolve()))).items()}


def check_source(video: Path, sound: Path | None, silence_dbfs: float) -> VideoInfo:
    """The probe of a usable source; ClipError naming what makes it unusable."""
    info = probe(video)
    if sound is None and not info.has_audio:
        raise ClipError(f"{video}: no audio stream, so lip sync cannot be rated")
    level = level_dbfs(load_audio(sound or video))
    if level < silence_dbfs:
        raise ClipError(f"{sound or video}: silent audio ({level:.1f} dBFS), so lip sync cannot be rated")
    return info


def encode(video: Path, sound: Path | None, seconds: float, size: tuple[int, int], out: Path) -> None:
    """Re-encode one source for the page: `seconds` long, `size` (w, h) with the picture scaled to fit and
    centred (another aspect ratio is padded, not cut), square pixels, 25 fps, no metadata, bit-exact
    muxing (no encoder version strings). ffmpeg applies rotation metadata itself."""
    w, h = size
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(video)]
    if sound is not None:
        cmd += ["-i", str(sound)]
    cmd += ["-t", f"{seconds:.3f}", "-map", "0:v:0", "-map", f"{1 if sound else 0}:a:0",
            "-vf", f"fps={FPS},scale={w}:{h}:force_original_aspect_ratio=decrease:flags=bicubic,"
                   f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
            "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact",
            "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-movflags", "+faststart"]
    with atomic_path(out) as tmp:
        proc = subprocess.run([*cmd, str(tmp)], capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ClipError(f"{video}: re-encoding failed ({err[-1] if err else proc.returncode})")


def _clip_items(folder: Path, cid: str, videos: dict[str, tuple[Path, Path | None]], height: int,
                silence_dbfs: float, bar) -> list[tuple[str, str, str]]:
    """(clip, method, media) of one clip, every method's video re-encoded; ClipError (and no file left)
    when any of them cannot be used."""
    infos = [check_source(*v, silence_dbfs) for v in videos.values()]
    seconds = min(i.duration for i in infos)
    if seconds < MIN_SECONDS:
        raise ClipError(f"{seconds:.2f} s long, shorter than {MIN_SECONDS} s: too short to rate")
    first = infos[0]  # the ground truth's, else the first method's, frame
    h = height or min(MAX_HEIGHT, first.height) // 2 * 2
    size = (round(first.width * h / first.height / 2) * 2, h)
    made = []
    try:
        for m, v in videos.items():
            made.append((cid, m, f"{secrets.token_hex(16)}.mp4"))
            encode(*v, seconds, size, folder / MEDIA / made[-1][2])
            bar.update()
    except ClipError:
        for *_, media in made:
            (folder / MEDIA / media).unlink(missing_ok=True)
        raise
    return made


def create_study(folder: str | Path, methods: dict[str, str | Path], gt: str | Path | None = None,
                 clips: int = 4, seed: int = 0, height: int = 0) -> Study:
    """Make the study in `folder` (which must not hold one): `clips` clips drawn with `seed` among those
    every method (and the ground truth `gt`, a control rated like a method) has. Every video of a clip gets
    the ground truth's frame (else the first method's) at `height` rows (0: its own, at most MAX_HEIGHT)."""
    folder = Path(folder)
    if (folder / "study.sqlite").exists():
        raise ValueError(f"{folder} already holds a study; a study is frozen once made (ratings refer to "
                         f"it): choose another --study folder")
    if height % 2:
        raise ValueError(f"--height {height}: H.264 in yuv420p needs an even height")
    sources = {m: method_videos(Path(f)) for m, f in methods.items()}
    if gt is not None:
        sources = {GROUND_TRUTH: ground_truth_videos(Path(gt)), **sources}
    names = list(sources)
    rejects = Rejects("study")
    everyone = set.intersection(*(set(v) for v in sources.values()))
    # the clips are the methods' (a ground-truth folder may be a whole dataset, most of it never generated)
    for cid in sorted(set().union(*(sources[m] for m in methods)) - everyone):
        missing = [m for m in names if cid not in sources[m]]
        rejects.add(cid, f"no video from {', '.join(missing)}: every method must show the same clips")
    order = sorted(everyone)
    random.Random(seed).shuffle(order)
    silence = project_params().audio.silence_dbfs
    leftovers = sorted((folder / MEDIA).glob("*.mp4")) if (folder / MEDIA).is_dir() else []
    for p in leftovers:  # of a create that was interrupted (no study.sqlite): they belong to no study
        p.unlink()
    if leftovers:
        log.info("removed %d videos of an interrupted `g4g study create` in %s", len(leftovers), folder)
    (folder / MEDIA).mkdir(parents=True, exist_ok=True)
    items, chosen = [], []
    bar = tqdm(total=min(clips, len(order)) * len(names), desc="study videos", unit="video")
    for cid in order:
        if len(chosen) == clips:
            break
        try:
            items += _clip_items(folder, cid, {m: sources[m][cid] for m in names}, height, silence, bar)
            chosen.append(cid)
        except ClipError as e:
            rejects.add(cid, str(e))
    bar.close()
    if not chosen:
        raise ValueError(f"no clip can be rated: {len(rejects.rows)} rejected, see the log")
    if len(chosen) < clips:
        log.warning("only %d of the %d clips asked for can be rated", len(chosen), clips)
    rejects.write(folder / "rejects.parquet")
    meta = {"methods": {m: str(Path(f).resolve()) for m, f in methods.items()},
            "ground_truth": str(Path(gt).resolve()) if gt is not None else None,
            "clips": sorted(chosen), "seed": seed, "criteria": list(CRITERIA)}
    study = Study.create(folder, items, meta)
    log.info("study in %s: %d clips x %d methods = %d videos (%d clips rejected)", folder, len(chosen),
             len(names), len(items), len(rejects.rows))
    return study
