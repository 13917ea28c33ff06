"""The `prepare` stage: the rejects of every stage merged, and the index of the clips that made it
through all of them (results/{dataset}/clips.parquet), with a summary of the counts per stage.

A test clip that a stage rejected leaves the test split smaller than the protocol says. That is
warned about here, recorded in clips.parquet (schema metadata `g4g_test_split`) so every evaluation
summary and the tables note it, and, with `split.replace_rejected`, repaired: each lost test clip is
replaced by a ready training clip, drawn in a seeded order, so "20 test videos" means 20 scored videos.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from g4g.data.shards import FrameReader, MelReader, write_table
from g4g.params import SplitParams
from g4g.rejects import read_rejects, write_rejects
from g4g.utils import write_json

log = logging.getLogger(__name__)
TEST_SPLIT_KEY = b"g4g_test_split"

CLIPS_SCHEMA = pa.schema([("clip_id", pa.string()), ("split", pa.string()), ("shard", pa.string()),
                          ("n_frames", pa.int32()), ("frames_path", pa.string()), ("mels_path", pa.string())])


def fill_test_split(rows: list[dict], listed_test: list[str], split: SplitParams, seed: int) -> dict:
    """Compare the ready test clips with the protocol's; with split.replace_rejected, move ready training
    clips (in a seeded order) into the test split in place of the rejected ones. Returns the record
    {'protocol', 'ready', 'rejected', 'replaced'} that clips.parquet and prepared.json carry."""
    ready = {r["clip_id"] for r in rows}
    lost = sorted(c for c in listed_test if c not in ready)
    replaced: dict[str, str] = {}
    if lost and split.replace_rejected:
        train = sorted(r["clip_id"] for r in rows if r["split"] == "train")
        order = np.random.default_rng([seed, 1]).permutation(len(train))  # its own stream: not the split's
        replaced = dict(zip(lost, (train[i] for i in order)))
        for r in rows:
            if r["clip_id"] in replaced.values():
                r["split"] = "test"
    record = {"protocol": len(listed_test), "ready": sum(r["split"] == "test" for r in rows), "rejected": lost,
              "replaced": replaced}
    if record["ready"] < record["protocol"]:
        log.warning("test split: %d of the protocol's %d test clips were rejected (%s), so the tables score %d; "
                    "%s", len(lost), len(listed_test), ", ".join(lost[:5]) + ("..." if len(lost) > 5 else ""),
                    record["ready"], "not enough ready training clips to replace them" if split.replace_rejected
                    else "set split.replace_rejected: true for the dataset to replace them")
    elif replaced:
        log.info("test split: %d rejected test clip(s) replaced by training clips: %s", len(replaced), replaced)
    return record


def test_split_note(clips_parquet: str) -> str | None:
    """One sentence for the tables when the test split is not what the protocol asked for, else None."""
    meta = pq.read_schema(clips_parquet).metadata or {}
    if TEST_SPLIT_KEY not in meta:
        return None
    t = json.loads(meta[TEST_SPLIT_KEY])
    if not t["rejected"]:
        return None
    if t["ready"] < t["protocol"]:
        return (f"test split: {t['ready']} of the protocol's {t['protocol']} clips ({len(t['rejected'])} rejected "
                f"in preparation: {', '.join(t['rejected'][:5])}; split.replace_rejected replaces them)")
    return (f"test split: {len(t['replaced'])} clip(s) rejected in preparation replaced by training clips "
            f"({t['replaced']})")


def run_summary(manifest: str, frames: list[str], mels: list[str], rejects_in: list[str],
                clips_out: str, rejects_out: str, summary_out: str, split: SplitParams = SplitParams(),
                seed: int = 0) -> dict:
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
    test = fill_test_split(rows, [c for c, r in man.items() if r["split"] == "test"], split, seed)
    schema = CLIPS_SCHEMA.with_metadata({TEST_SPLIT_KEY: json.dumps(test, sort_keys=True)})
    write_table(clips_out, pa.Table.from_pylist(rows, schema=schema))
    by_stage: dict[str, int] = {}
    for r in rej.to_pylist():
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + 1
    summary = {"clips_listed": len(man), "clips_ready": len(rows),
               "frames_ready": int(sum(r["n_frames"] for r in rows)),
               "ready_by_split": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
               "rejected_by_stage": by_stage, "test_split": test}
    write_json(summary_out, summary)
    return summary
