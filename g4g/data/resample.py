"""The `resample` stage: each clip's 25 fps frame map and its 16 kHz mono audio, one shard at a time.

The video is not re-encoded: a frame map (`index_map`, the source frame shown at each 25 fps frame) is
stored instead, and every later stage decodes the source through it (docs/decisions.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from g4g.data.shards import write_table
from g4g.io.audio import level_dbfs, load_audio
from g4g.io.video import frame_times, resample_index
from g4g.params import AudioParams, VideoParams
from g4g.rejects import ClipError, Rejects, guard

RESAMPLED_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("path", pa.string()), ("split", pa.string()),
    ("src_fps", pa.float64()), ("variable_rate", pa.bool_()), ("rotation", pa.int16()),
    ("width", pa.int32()), ("height", pa.int32()), ("n_frames", pa.int32()),
    ("index_map", pa.list_(pa.int32())),  # source frame shown at each 25 fps frame
    ("audio_pcm16", pa.binary()),  # 16 kHz mono little-endian int16
    ("audio_seconds", pa.float64()), ("audio_dbfs", pa.float32()), ("audio_silent", pa.bool_()),
])


def clips_of(table: pa.Table, shard: str | None = None) -> list[dict]:
    """The manifest rows of one shard (all rows when `shard` is None)."""
    rows = table.to_pylist()
    return [r for r in rows if shard is None or r.get("shard") == shard]


def resample_clip(row: dict, video: VideoParams, audio: AudioParams) -> dict:
    times = frame_times(row["path"])
    step = 1.0 / row["fps"] if row["fps"] else 1.0 / video.fps
    duration = float(times[-1] + step)
    index_map = resample_index(times, video.fps, duration)
    if len(index_map) < video.min_frames:
        raise ClipError(f"too short: {len(index_map)} frames at {video.fps:g} fps (< {video.min_frames})")
    if not row["has_audio"]:
        raise ClipError("no audio stream")
    wav = load_audio(row["path"], audio.sample_rate)
    dbfs = level_dbfs(wav)
    pcm = np.clip(np.round(wav * 32767), -32768, 32767).astype("<i2")
    return {"clip_id": row["clip_id"], "path": row["path"], "split": row["split"],
            "src_fps": row["fps"], "variable_rate": row["variable_rate"], "rotation": row["rotation"],
            "width": row["width"], "height": row["height"], "n_frames": len(index_map),
            "index_map": index_map.tolist(), "audio_pcm16": pcm.tobytes(),
            "audio_seconds": len(wav) / audio.sample_rate, "audio_dbfs": dbfs,
            "audio_silent": dbfs < audio.silence_dbfs}


def run_resample(manifest: str, shard: str, out: str, rejects_out: str, video: VideoParams, audio: AudioParams) -> None:
    rows = [r for r in clips_of(pq.read_table(manifest), shard) if r["ok"]]  # scan rejects are recorded
    rejects = Rejects("resample")
    done = [r for row in tqdm(rows, desc=f"resample {shard}", unit="clip")
            if (r := guard(rejects, row["clip_id"], row["path"], resample_clip, row, video, audio)) is not None]
    write_table(out, pa.Table.from_pylist(done, schema=RESAMPLED_SCHEMA))
    rejects.write(rejects_out)
