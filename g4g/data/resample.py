"""The `resample` stage: each clip's 25 fps frame map and its 16 kHz mono audio, one shard at a time.

The video is not re-encoded: a frame map (`index_map`, the source frame shown at each 25 fps frame) is
stored instead, and every later stage decodes the source through it (docs/decisions.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from g4g.data.shards import write_table
from g4g.io.audio import level_dbfs, load_audio
from g4g.io.video import frame_times, resample_index
from g4g.params import AudioParams, VideoParams
from g4g.rejects import ClipError, Rejects, guard

log = logging.getLogger(__name__)

RESAMPLED_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("path", pa.string()), ("split", pa.string()),
    ("src_fps", pa.float64()), ("variable_rate", pa.bool_()), ("rotation", pa.int16()),
    ("width", pa.int32()), ("height", pa.int32()), ("n_frames", pa.int32()),
    ("index_map", pa.list_(pa.int32())),  # source frame shown at each 25 fps frame
    ("audio_pcm16", pa.binary()),  # 16 kHz mono little-endian int16
    ("audio_seconds", pa.float64()), ("audio_dbfs", pa.float32()), ("audio_silent", pa.bool_()),
    ("audio_path", pa.string()),  # the separate sound file, "" for the video's own stream
    ("note", pa.string()),  # how a separate sound file of another length was fitted, else ""
])


def clips_of(table: pa.Table, shard: str | None = None) -> list[dict]:
    """The manifest rows of one shard (all rows when `shard` is None)."""
    rows = table.to_pylist()
    return [r for r in rows if shard is None or r.get("shard") == shard]


def fit_separate_sound(index_map: np.ndarray, wav: np.ndarray, fps: float, sr: int) -> tuple:
    """(index_map, wav, note) for a sound kept in its own file: the longer of picture and sound is cut
    to the shorter (as ffmpeg -shortest), when they differ by more than one frame; the note says so."""
    video_s, audio_s = len(index_map) / fps, len(wav) / sr
    if audio_s > video_s + 1 / fps:
        return index_map, wav[:int(round(video_s * sr))], \
            f"separate sound {audio_s - video_s:.2f} s longer than the video: trimmed to {video_s:.2f} s"
    if audio_s < video_s - 1 / fps:
        n = int(np.floor(audio_s * fps))
        return index_map[:n], wav, \
            f"separate sound {video_s - audio_s:.2f} s shorter than the video: video cut to {n / fps:.2f} s"
    return index_map, wav, ""


def resample_clip(row: dict, video: VideoParams, audio: AudioParams) -> dict:
    times = frame_times(row["path"])
    step = 1.0 / row["fps"] if row["fps"] else 1.0 / video.fps
    duration = float(times[-1] + step)
    index_map = resample_index(times, video.fps, duration)
    if len(index_map) < video.min_frames:
        raise ClipError(f"too short: {len(index_map)} frames at {video.fps:g} fps (< {video.min_frames})")
    separate = row.get("audio_path") or ""
    if not separate and not row["has_audio"]:
        stem = Path(row["path"]).with_suffix("")
        raise ClipError(f"{row['path']}: no audio stream, and no sound file beside it "
                        f"({stem.name}.wav, .flac, ...) or in the dataset's manifest")
    wav = load_audio(separate or row["path"], audio.sample_rate)
    note = ""
    if separate:
        index_map, wav, note = fit_separate_sound(index_map, wav, video.fps, audio.sample_rate)
        if note:
            log.warning("%s: %s", row["clip_id"], note)
        if len(index_map) < video.min_frames:
            raise ClipError(f"too short once cut to its sound: {len(index_map)} frames at {video.fps:g} fps "
                            f"(< {video.min_frames})")
    dbfs = level_dbfs(wav)
    pcm = np.clip(np.round(wav * 32767), -32768, 32767).astype("<i2")
    return {"clip_id": row["clip_id"], "path": row["path"], "split": row["split"],
            "src_fps": row["fps"], "variable_rate": row["variable_rate"], "rotation": row["rotation"],
            "width": row["width"], "height": row["height"], "n_frames": len(index_map),
            "index_map": index_map.tolist(), "audio_pcm16": pcm.tobytes(),
            "audio_seconds": len(wav) / audio.sample_rate, "audio_dbfs": dbfs,
            "audio_silent": dbfs < audio.silence_dbfs, "audio_path": separate, "note": note}


def run_resample(manifest: str, shard: str, out: str, rejects_out: str, video: VideoParams, audio: AudioParams) -> None:
    rows = [r for r in clips_of(pq.read_table(manifest), shard) if r["ok"]]  # scan rejects are recorded
    rejects = Rejects("resample")
    done = [r for row in tqdm(rows, desc=f"resample {shard}", unit="clip")
            if (r := guard(rejects, row["clip_id"], row["path"], resample_clip, row, video, audio)) is not None]
    write_table(out, pa.Table.from_pylist(done, schema=RESAMPLED_SCHEMA))
    rejects.write(rejects_out)
