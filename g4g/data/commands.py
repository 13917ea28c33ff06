"""The data subcommands of `g4g`, one per Snakemake rule of the preparation phase (same names):

    g4g demo-data       rule demo_data       the generated demo clips
    g4g scan            rule scan            list, probe and split a dataset -> manifest.parquet
    g4g resample        rule resample        25 fps frame map + 16 kHz mono audio of one shard
    g4g faces           rule faces           landmarks + 416 x 320 crops in one decode pass -> frame shard
    g4g mels            rule mels            mel spectrograms of one shard
    g4g prepare         rule prepare         merged rejects + the index of the ready clips
    g4g contact-sheet   rule contact_sheet   contact sheet PNG of one clip
    g4g landmarks, g4g crops                 the faces stage in two passes (tools; byte-identical output)

Each command imports the code it runs when it runs (a `g4g resample` job never loads the landmark detector,
and a mistyped option is answered before torch is imported).

Settings come from params.yaml (its sections are listed by `--help`), a JSON object of sections
(`--params`, what the rules pass), or `--SECTION.KEY` options.
"""

from __future__ import annotations

import json
import logging

from g4g.params import add_options, from_args

log = logging.getLogger("g4g")


def cmd_demo_data(a) -> None:
    from g4g.data.demo import generate_demo

    p = from_args(a)
    ds = p.datasets.get("demo") if p.datasets else None
    kw = {k: getattr(ds, k) for k in ("n_clips", "n_faces", "size", "min_seconds", "max_seconds")} if ds else {}
    paths = generate_demo(a.out, seed=p.seed, progress=True, **kw)
    log.info("wrote %d demo clips to %s", len(paths), a.out)


def cmd_scan(a) -> None:
    from g4g.data.scan import scan
    from g4g.data.shards import write_table

    p = from_args(a)
    table, rejects = scan(p.datasets[p.dataset], p.seed)
    write_table(a.out, table)
    rejects.write(a.rejects)
    log.info("scan: %d clips listed, %d rejected", table.num_rows, len(rejects.rows))


def cmd_resample(a) -> None:
    from g4g.data.resample import run_resample

    p = from_args(a)
    run_resample(a.manifest, a.shard, a.out, a.rejects, p.video, p.audio)


def cmd_faces(a) -> None:
    from g4g.data.faces import run_faces

    p = from_args(a)
    run_faces(a.resampled, a.out, a.rejects, p.landmarks, p.crop, p.video)


def cmd_landmarks(a) -> None:
    from g4g.data.faces import run_landmarks

    run_landmarks(a.resampled, a.out, a.rejects, from_args(a).landmarks)


def cmd_crops(a) -> None:
    from g4g.data.faces import run_crops

    p = from_args(a)
    run_crops(a.resampled, a.landmarks, a.out, a.rejects, p.crop, p.video)


def cmd_mels(a) -> None:
    from g4g.data.mels import run_mels

    p = from_args(a)
    run_mels(a.resampled, a.out, a.rejects, p.mel, p.audio)


def cmd_prepare(a) -> None:
    from g4g.data.prepare import run_summary

    p = from_args(a)
    s = run_summary(a.manifest, a.frames, a.mels, a.rejects_in, a.clips, a.rejects, a.summary, p.ds.split, p.seed)
    log.info("prepared: %s", json.dumps(s))


def cmd_contact_sheet(a) -> None:
    from g4g.data.contact_sheet import contact_sheet

    print(contact_sheet(a.frames, a.mels, a.out, clip_id=a.clip, n=a.n, resampled=a.resampled))


def register(add) -> None:
    """Define the data subcommands; `add(name)` makes a subcommand's parser (g4g.cli)."""

    def command(name: str, fn, *inputs: str, sections: tuple[str, ...] = (), dataset: bool = False):
        p = add(name)
        for arg in inputs:
            p.add_argument(f"--{arg}", required=True)
        if dataset:
            p.add_argument("--dataset", help="dataset of params.yaml (default: its `dataset`)")
        add_options(p, *sections)
        p.set_defaults(fn=fn)
        return p

    command("demo-data", cmd_demo_data, "out", dataset=True)
    command("scan", cmd_scan, "out", "rejects", dataset=True)
    command("resample", cmd_resample, "manifest", "shard", "out", "rejects", sections=("video", "audio"))
    command("faces", cmd_faces, "resampled", "out", "rejects", sections=("landmarks", "crop", "video"))
    command("landmarks", cmd_landmarks, "resampled", "out", "rejects", sections=("landmarks",))
    command("crops", cmd_crops, "resampled", "landmarks", "out", "rejects", sections=("crop", "video"))
    command("mels", cmd_mels, "resampled", "out", "rejects", sections=("mel", "audio"))

    p = add("prepare")
    p.add_argument("--manifest", required=True)
    p.add_argument("--frames", nargs="+", required=True)
    p.add_argument("--mels", nargs="+", required=True)
    p.add_argument("--rejects-in", nargs="*", default=[])
    p.add_argument("--clips", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--dataset", help="dataset of params.yaml (default: its `dataset`): its split protocol")
    add_options(p, "seed")
    p.set_defaults(fn=cmd_prepare)

    p = add("contact-sheet")
    p.add_argument("--frames", required=True)
    p.add_argument("--mels", required=True)
    p.add_argument("--clip", help="clip id (default: the first in the shard)")
    p.add_argument("-n", type=int, default=6, help="frames on the sheet")
    p.add_argument("--resampled", help="resampled table of the shard: also show source frames")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_contact_sheet)
