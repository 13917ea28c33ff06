"""The `g4g` command line: one subcommand per workflow rule, under the rule's name (`g4g faces` runs rule
`faces`), plus `lipsync`, `score`, `study`, `runs`, `show-table`, `weights` and `params`.

Each phase defines its subcommands in g4g/<phase>/commands.py; this module lists them and dispatches. A
phase's module is imported only when one of its subcommands runs, so `g4g lipsync` never loads the
preparation code, a workflow job imports exactly the code its rule runs (which is what dvc.yaml's deps
are derived from, tools/dvc-deps), and `g4g --help` answers without loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import yaml

from g4g import weights
from g4g.params import PARAMS_PATH, SCHEMA_PATH, SECTIONS, as_dict, load, project_params, schema_text
from g4g.rejects import ClipError
from g4g.utils import setup_logging, write_text

log = logging.getLogger("g4g")

DATA, TRAIN, INFER, EVALUATE, STUDY = "g4g.data.commands", "g4g.train.commands", "g4g.infer.commands", \
    "g4g.evaluate.commands", "g4g.study.commands"
# subcommand -> (the module that defines it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": (DATA, "generate the embedded demo dataset"),
    "scan": (DATA, "list, probe and split a dataset -> manifest.parquet"),
    "resample": (DATA, "25 fps frame map + 16 kHz mono audio for one shard"),
    "faces": (DATA, "landmarks + 416x320 face crops in one decode pass -> frame shard"),
    "landmarks": (DATA, "the first pass of `faces` alone: 68-point landmarks of one shard (a tool)"),
    "crops": (DATA, "the second pass of `faces` alone: crops from a landmarks table (a tool)"),
    "mels": (DATA, "mel spectrograms for one shard"),
    "prepare": (DATA, "merge the rejects, index the ready clips -> clips.parquet"),
    "contact-sheet": (DATA, "contact sheet PNG of one clip of a shard"),
    "train-sync": (TRAIN, "train the lip-sync expert -> syncnet.pt (resumable)"),
    "train": (TRAIN, "train one G4G variant -> model.pt (resumable)"),
    "lipsync": (INFER, "lip-sync a video to an audio file with a trained G4G"),
    "infer": (INFER, "every test clip driven by its own audio, another's, and silence (three settings)"),
    "reference-videos": (INFER, "baseline videos of table 1: reference mouth paste, mean face"),
    "evaluate": (EVALUATE, "score one method's test videos against the ground truth"),
    "tables": (EVALUATE, "table1/table2 and the cross-driven table (CSV + Markdown), DVC metrics, charts"),
    "score": (EVALUATE, "score folders of generated videos against ground-truth videos (no model needed)"),
    "runs": (EVALUATE, "the MLflow runs behind a table's measured rows: commits, DVC hashes of data and checkpoint"),
    "show-table": (EVALUATE, "print results/table1.csv or table2.csv as aligned text"),
    "study": (STUDY, "the user study of Table 3: create | invite | serve | table"),
    "fingerprints": (EVALUATE, "short digests of the data, weights, videos and tables, to compare reproductions"),
}
# what a user gets wrong (a missing file, a bad setting, a clip that cannot be used): one line, status 2
USER_ERRORS = (weights.WeightsError, ClipError, FileNotFoundError, KeyError, ValueError)


def _log_option(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--log", help="also write the log to this file")
    return p


def cmd_weights(a) -> None:
    if a.action == "status":
        for r in weights.status():
            state = ("ok" if r["verified"] else "CHECKSUM MISMATCH") if r["present"] else "missing"
            print(f"{r['name']:<14} {state:<18} {r['file']}  [{r['stage']}]")
        return
    failed = []
    for n in a.names or list(weights.MANIFEST):
        try:
            print(f"{n}: {weights.fetch(n)}")
        except weights.WeightsError as e:
            failed.append(n)
            print(f"{n}: FAILED\n{e}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


def cmd_params(a) -> None:
    if a.action == "schema":
        text = schema_text()
        if a.write:
            write_text(SCHEMA_PATH, text)
            print(SCHEMA_PATH)
        else:
            print(text, end="")
        return
    load(PARAMS_PATH)  # validated as a whole first
    p = project_params(a.dataset)
    print(f"# params.yaml resolved for dataset {p.dataset} (its overrides merged)")
    print(yaml.safe_dump({"dataset": p.dataset, "seed": p.seed, **{s: as_dict(getattr(p, s)) for s in SECTIONS}},
                         sort_keys=False, default_flow_style=None, width=110), end="")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="g4g", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((x for x in argv if not x.startswith("-")), None)
    phase = COMMANDS[chosen][0] if chosen in COMMANDS else None
    for name, (module, help) in COMMANDS.items():
        if module != phase:
            sub.add_parser(name, help=help, add_help=False)  # listed by `g4g --help`; never parsed
    if phase:
        def add(name: str) -> argparse.ArgumentParser:
            return _log_option(sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1]))

        importlib.import_module(phase).register(add)

    p = sub.add_parser("weights", help="pretrained weights: status | fetch [names]")
    p.add_argument("action", choices=["status", "fetch"])
    p.add_argument("names", nargs="*")
    p.set_defaults(fn=cmd_weights)

    p = sub.add_parser("params", help="params.yaml: show (resolved for a dataset) | schema [--write]")
    p.add_argument("action", choices=["show", "schema"])
    p.add_argument("--dataset", help="show: the dataset whose overrides are merged (default: params.yaml's)")
    p.add_argument("--write", action="store_true", help=f"schema: write {SCHEMA_PATH.relative_to(PARAMS_PATH.parent)}")
    p.set_defaults(fn=cmd_params)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser(argv).parse_args(argv)
    setup_logging(getattr(a, "log", None), append=getattr(a, "log_append", False))
    try:
        a.fn(a)
    except USER_ERRORS as e:
        log.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)  # KeyError's str() quotes
        _traceback_to_log()
        return 2
    return 0


def _traceback_to_log() -> None:
    """The traceback of a user error goes to the --log file (if any), not to the terminal: the one-line
    message is what the user acts on, the traceback is for a bug report."""
    import traceback

    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.stream.write(traceback.format_exc())
            h.flush()
