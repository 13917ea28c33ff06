"""Every command the README and docs/ show is run, so a documented command that fails fails CI.

Command lines are taken from fenced shell blocks and from inline code that starts with a tool name.
Each runs as close to verbatim as is safe: `snakemake` as a dry run (`-n`) in a copy of the project's
workflow files with a one-clip dataset for every dataset a command names, `dvc repro` checked against
dvc.yaml's stages,
`make` with `-n`, `g4g` through its own argument parser (a wrong subcommand or option fails there), and
the others with `--help`; a tool and a subcommand alone (`g4g crops` in a sentence) must at least exist.
Lines with placeholders (`...`, `NAME`, `<x>`) are fragments, not commands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_video

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOOLS = ("snakemake", "g4g", "dvc", "make", "mlflow", "python")
FRAGMENT = re.compile(r"\.\.\.|\bNAME\b|<[^>]*>|\{[^}]*\}")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line) of every command shown in the docs, comments and optional [..] parts removed."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        lines = [ln for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S)
                 for ln in block.splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            cmd = re.sub(r"\[[^\]]*\]", "", line.split(" #")[0]).strip()
            words = cmd.split()
            if len(words) < 2 or words[0] not in TOOLS or FRAGMENT.search(cmd):
                continue
            if words[0] == "python" and words[1] not in ("-m",) and not words[1].endswith(".py"):
                continue
            found.append((f"{doc.relative_to(ROOT)}", cmd))
    return sorted(set(found))


COMMANDS = documented_commands()


def test_the_docs_show_the_main_commands():
    shown = {c for _, c in COMMANDS}
    assert {"make demo", "make test", "dvc repro"} <= shown
    assert any(c.startswith("snakemake") and "--config" in c for c in shown)
    assert any(c.startswith("g4g lipsync") for c in shown)


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    """The workflow files of the project, and a one-clip raw folder for each real dataset in params.yaml."""
    wd = tmp_path_factory.mktemp("project")
    for name in ("Snakefile", "params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, wd / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(ROOT / name, wd / name)
    for ds in yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"].values():
        if not ds.get("generate"):
            (wd / ds["root"]).mkdir(parents=True)
            make_video(wd / ds["root"] / "clip.mp4", n=10)
    return wd


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_runs(where, command, project_copy):
    words = shlex.split(command)
    tool, args = words[0], words[1:]
    if len(words) == 2 and tool in ("g4g", "dvc", "snakemake") and args != ["repro"]:
        args = [*args, "--help"]  # a tool and a subcommand (`g4g crops`) name it in prose: it must exist
    if tool == "g4g" or words[:3] == ["python", "-m", "g4g"]:
        from g4g.cli import build_parser

        argv = args if tool == "g4g" else words[3:]
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit as e:
            assert e.code == 0, f"{where}: `{command}` is not a valid g4g command line"
        return
    if tool == "snakemake" and "--report" in args:
        from snakemake.cli import get_argument_parser

        try:  # a report needs finished results: its arguments must parse
            get_argument_parser().parse_args(args)
        except SystemExit as e:
            assert e.code == 0, f"{where}: `{command}` does not parse"
        return
    if tool == "dvc" and args[0] == "repro":
        # `dvc repro --dry` cannot stand in: before the first run it fails on a later stage's missing deps.
        # The options must parse and every target must be a stage of dvc.yaml.
        assert run(["dvc", *args, "--help"], ROOT).returncode == 0, f"{where}: `{command}` does not parse"
        stages = run(["dvc", "stage", "list", "--name-only"], ROOT).stdout.split()
        targets = [a for a in args[1:] if not a.startswith("-")]
        assert set(targets) <= set(stages), f"{where}: `{command}`: no stage {set(targets) - set(stages)}"
        return
    if tool == "snakemake":
        r = run([sys.executable, "-m", "snakemake", *args, "-n"], project_copy)
    elif tool == "make":
        r = run(["make", "-n", *args], ROOT)
    else:  # dvc status / metrics / plots, mlflow ui, python -m g4g.bench.x, python tools/x.py: the options
        r = run([sys.executable, *args, "--help"] if tool == "python" else [tool, *args, "--help"], ROOT)
    assert r.returncode == 0, f"{where}: `{command}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def test_every_named_module_file_and_function_exists():
    """A doc that names `g4g.models.loading.expert_digest` or `g4g/data/faces.py` points at something real."""
    import importlib

    missing = []
    for doc in DOCS:
        text = " ".join(re.findall(r"`([^`\n]+)`", doc.read_text()))  # what the docs name in code spans
        for ref in sorted(set(re.findall(r"\bg4g(?:\.[A-Za-z_]\w*)+\b(?!\.py)", text)) - {"g4g.py"}):
            parts = ref.split(".")
            for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                for name in parts[i:]:
                    obj = getattr(obj, name, None)
                if obj is None:
                    missing.append(f"{doc.relative_to(ROOT)}: {ref}")
                break
        for ref in sorted(set(re.findall(r"\b(?:g4g|workflow|tests|tools|profiles)/[\w/.{},-]*\w", text))):
            if not any(ROOT.glob(re.sub(r"\{[^}]*\}", "*", ref))):
                missing.append(f"{doc.relative_to(ROOT)}: {ref}")
    assert not missing, "named in the docs but not in the project:\n" + "\n".join(missing)
