"""The `prepare` stage: the rejects of every stage merged, and the index of the clips that made it
through all of them (results/{dataset}/clips.parquet), with a summary of the counts per stage."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from g4g.data.shards import FrameReader, MelReader, write_table
from g4g.rejects import read_rejects, write_rejects
from g4g.utils import write_json

CLIPS_SCHEMA = pa.schema([("clip_id", pa.string()), ("split", pa.string()), ("shard", pa.string()),
                          ("n_frames", pa.int32()), ("frames_path", pa.string()), ("mels_path", pa.string())])


def run_summary(manifest: str, frames: list[str], mels: list[str], rejects_in: list[str],
                clips_out: str, rejects_out: str, summary_out: str) -> dict:
    man = {r["clip_id"]: r for r in pq.read_table(manifest).to_pylist()}
    rej = read_rejects(rejects_in)
    write_rejects(rej.to_pylist(), rejects_out)
    rows = []
    for fpath, mpath in zip(sorted(frames), sorted(mels)):
        fr, mr = FrameReader(fpath), set(MelReader(mpath).clip_ids)
        for cid in fr.clip_ids:
            if cid in mr:
                rows.append({"clip_id": cid, "split": man[cid]["split"], "shard": man[cid]["shard"],
                             "n_frames": fr.n_frames(cid), "frames_path": fpath, "mels_path": mpath})
    write_table(clips_out, pa.Table.from_pylist(rows, schema=CLIPS_SCHEMA))
    by_stage: dict[str, int] = {}
    for r in rej.to_pylist():
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + 1
    summary = {"clips_listed": len(man), "clips_ready": len(rows),
               "frames_ready": int(sum(r["n_frames"] for r in rows)),
               "ready_by_split": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
               "rejected_by_stage": by_stage}
    write_json(summary_out, summary)
    return summary
