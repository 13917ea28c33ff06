"""Every command the README and docs/ show is checked, so a documented command that fails fails CI.

Command lines are taken from fenced shell blocks and from inline code that starts with a tool name. Each
kind goes through something that rejects a misspelt option or a wrong value, without doing the work:

- `snakemake`: a dry run (`-n`) in a copy of the project's workflow files with a one-clip dataset for
  every dataset a command names; `snakemake --report` (which needs finished results) its own parser;
- `g4g`, `python -m g4g`: g4g's parser; `python -m g4g.x`, `python tools/x.py`: the module's `main()`, whose
  `parse_args` here parses and then stops it before any work;
- `dvc`: DVC's own parser; `dvc repro` and `dvc exp run` targets must be stages of dvc.yaml, and `-S`
  values are applied to a copy of params.yaml by DVC's own code and the result validated as g4g reads it;
- `mlflow`: click's parser (each command's context is made, never invoked);
- `make`: `make -n`;
- `tools/*` scripts: a Python one as `python tools/x.py`; the others (shell) against the usage lines at the top
  of the script, every literal word of which the script's code must test for; a script that hands its
  arguments to `dvc push`/`pull` has them checked as those;
- `git`: the command with `--dry-run`, in a scratch repository where the project files it names are staged;
- `eval "$(cmd)"`: the inner command.

A subcommand or module that a sentence names alone (`g4g crops`, `dvc add`, `python -m g4g.bench.cross_drive`)
must at least exist; in a shell block it is checked as shown. Optional `[..]` parts are checked both left out
and, when they hold no placeholder, put in; a quoted word such as `'extra_seeds=[1,2]'` is a value, never an
optional part. Lines with placeholders (`...`, `NAME`, `<x>`) are fragments, not commands.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout, suppress
from importlib.machinery import SourceFileLoader
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import make_video

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FRAGMENT = re.compile(r"\.\.\.|\bNAME\b|<[^>]*>|\{[^}]*\}")


def command_variants(line: str) -> set[str]:
    """The command a doc line shows, its comment cut, once without its optional `[..]` parts and once with
    those that hold no placeholder (`tools/dvc-remote --check [--write] [NAME]`: without, and with --write)."""
    lex = shlex.shlex(line, posix=False)  # not posix: quotes stay on the words, so a quoted `[1,2]` is a value
    lex.whitespace_split, lex.commenters = True, ""
    try:
        tokens = list(lex)
    except ValueError:  # an unbalanced quote: prose, not a command
        return set()
    without, with_optional, group = [], [], None
    for t in tokens:
        if t.startswith("#") and group is None:
            break
        if t.startswith("[") and group is None:
            group = []
        if group is None:
            without.append(t)
            with_optional.append(t)
            continue
        group.append(t)
        if t.endswith("]"):
            part = " ".join(group)[1:-1]
            if not FRAGMENT.search(part):
                with_optional.append(part)
            group = None
    return set() if group is not None else {" ".join(without), " ".join(with_optional)}


def kind(word: str) -> str:
    return "tools/" if word.startswith("tools/") else word


def documented_commands() -> list[tuple[str, str, bool]]:
    """(the docs that show it, command line, whether only prose shows it) of every command in the docs. In a
    shell block one word is a command (`tools/dvc-push`); in prose it only names a script or a tool."""
    where: dict[str, list[str]] = {}
    in_block: set[str] = set()
    for doc in DOCS:
        text = doc.read_text()
        block = [ln for b in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S) for ln in b.splitlines()]
        inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line, fewest in [(ln, 1) for ln in block] + [(ln, 2) for ln in inline]:
            for cmd in command_variants(line):
                words = cmd.split()
                if len(words) < fewest or kind(words[0]) not in CHECKS or FRAGMENT.search(cmd):
                    continue
                if words[0] == "python" and words[1] != "-m" and not words[1].endswith(".py"):
                    continue
                where.setdefault(cmd, []).append(str(doc.relative_to(ROOT)))
                if fewest == 1:
                    in_block.add(cmd)
    return sorted((", ".join(sorted(set(w))), cmd, cmd not in in_block) for cmd, w in where.items())


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def parses(parse, *args) -> None:
    """Call an argparse-style `parse`: its usage error (a non-zero exit) fails with what it printed; `--help`
    (exit 0) passes."""
    err = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            parse(*args)
    except SystemExit as e:
        assert e.code == 0, err.getvalue()


def check_g4g(args: list[str], project: Path) -> None:
    from g4g.cli import build_parser

    parses(build_parser(args).parse_args, args)


class Parsed(Exception):
    """Raised by parse_args once the arguments parse, in place of returning: main() stops before its work."""


def check_python(args: list[str], project: Path) -> None:
    if args[:2] == ["-m", "g4g"]:
        return check_g4g(args[2:], project)
    if args[0] == "-m":
        module, argv = importlib.import_module(args[1]), args[2:]
    else:
        path = str(ROOT / args[0])  # tools/ scripts have no .py: name the loader
        spec = importlib.util.spec_from_loader(Path(path).stem, SourceFileLoader(Path(path).stem, path))
        module, argv = importlib.util.module_from_spec(spec), args[1:]
        spec.loader.exec_module(module)
    real_parse_args, called = argparse.ArgumentParser.parse_args, []

    def parse_only(self, *a, **kw):
        called.append(self)
        real_parse_args(self, *a, **kw)  # --help and a usage error exit here
        raise Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_only), suppress(Parsed):
        parses(module.main, argv)
    assert called, f"{module.__name__}.main() parses no arguments with argparse"


@functools.cache
def dvc_stages() -> frozenset[str]:
    return frozenset(run(["dvc", "stage", "list", "--name-only"], ROOT).stdout.split())


def check_set_params(overrides: list[str]) -> None:
    """`dvc exp run -S` values applied to copies of the params files as DVC applies them (a key that is not
    there is refused), then params.yaml validated as g4g reads it, for every dataset."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    from g4g.params import load, resolve

    with tempfile.TemporaryDirectory() as tmp:
        for path, values in to_path_overrides(overrides).items():
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, Path(tmp) / path)
            try:
                apply_overrides(Path(tmp) / path, values)
            except InvalidArgumentError as e:
                raise AssertionError(f"{e}: {e.__cause__}") from e
        if (Path(tmp) / "params.yaml").exists():
            try:
                config = load(Path(tmp) / "params.yaml")
                for dataset in config["datasets"]:
                    resolve(config, dataset)
            except (KeyError, ValueError) as e:
                raise AssertionError(str(e)) from e


def refuse(parser: argparse.ArgumentParser, message: str, *_) -> None:
    raise AssertionError(message)


def check_dvc(args: list[str], project: Path) -> None:
    from dvc.cli import parse_args
    from dvc.cli.parser import DvcParser
    from dvc.commands.repro import CmdRepro

    try:  # DVC's parser logs its complaint and raises a bare "parser error": the complaint is the message
        with mock.patch.object(DvcParser, "error", refuse), redirect_stdout(io.StringIO()):
            ns = parse_args(args)
    except SystemExit as e:  # --help
        assert e.code == 0
        return
    if issubclass(ns.func, CmdRepro):  # `dvc repro`, `dvc exp run`
        # `dvc repro --dry` cannot stand in: before the first run it fails on a later stage's missing deps.
        assert set(ns.targets) <= dvc_stages(), f"no stage {set(ns.targets) - dvc_stages()} in dvc.yaml"
    if getattr(ns, "set_param", None):
        check_set_params(ns.set_param)


def check_mlflow(args: list[str], project: Path) -> None:
    import click
    from mlflow.cli import cli

    cmd, name, ctx = cli, "mlflow", None
    try:
        while isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=name, parent=ctx)
            name, cmd, args = cmd.resolve_command(ctx, args)
        with redirect_stdout(io.StringIO()):
            cmd.make_context(name, args, parent=ctx)
    except click.exceptions.Exit as e:  # --help
        assert e.exit_code == 0
    except click.ClickException as e:
        raise AssertionError(e.format_message()) from e


def check_snakemake(args: list[str], project: Path) -> None:
    if "--report" in args:  # a report needs finished results: its arguments must parse
        from snakemake.cli import get_argument_parser

        return parses(get_argument_parser().parse_args, args)
    r = run([sys.executable, "-m", "snakemake", *args, "-n"], project)
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def check_make(args: list[str], project: Path) -> None:
    r = run(["make", "-n", *args], ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


def usage_regex(synopsis: str) -> str:
    """A regex over NUL-led words for a usage line: `[..]` optional, `X ...` repeated, an UPPERCASE word one
    value (not an option), a value named *ARGS (`DVC PULL ARGS`, `MLFLOW-ARGS`) any words."""
    out: list[list[str]] = [[]]
    for w in re.sub(r"\b(?:[A-Z]+ )*[A-Z-]*ARGS\b", "ARGS", synopsis).replace("[", " [ ").replace("]", " ] ").split():
        if w == "[":
            out.append([])
        elif w == "]":
            group = out.pop()
            out[-1].append(f"(?:{''.join(group)})?")
        elif w == "...":
            out[-1][-1] = f"(?:{out[-1][-1]})+"
        elif w == "ARGS":
            out[-1].append(r"(?:\0[^\0]*)*")
        elif w.isupper():
            out[-1].append(r"\0(?!-)[^\0]+")
        else:
            out[-1].append(re.escape(f"\0{w}"))
    return "".join(out[0])


def check_tool(words: list[str], tools: Path = ROOT / "tools") -> None:
    """A tools/ script's command line against the usage lines at the top of the script (`#   tools/x up
    [--host H]   what it does`): the scripts parse their arguments by hand, and running them would do the work."""
    script = tools / Path(words[0]).name
    assert script.is_file(), f"no script {script}"
    text = script.read_text()
    if text.startswith("#!/usr/bin/env python"):  # an argparse script: its own parser judges the line
        return check_python([str(script.relative_to(ROOT)), *words[1:]], ROOT)
    usages = re.findall(rf"^# {{3}}{re.escape(words[0])}(.*?)(?: {{2,}}|$)", text, re.M)
    assert usages, f"{script} shows no usage lines at its top"
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    literals = {w for u in usages for w in u.replace("[", " ").replace("]", " ").split() if not w.isupper()} - {"..."}
    # the usage lines must be what the script parses: each literal is a `case` pattern or a test in its code
    unparsed = {w for w in literals if not re.search(rf"(?<![\w-]){re.escape(w)}(?:\)| \]|\"| \|)", code)}
    assert not unparsed, f"{script}'s usage names {sorted(unparsed)}, which its code does not test for"
    args = "".join(f"\0{w}" for w in words[1:])
    assert any(re.fullmatch(usage_regex(u), args) for u in usages), f"fits none of {script}'s usages: {usages}"
    for u in usages:
        passed_on = re.fullmatch(r"\s*\[DVC ([A-Z]+) ARGS\]", u)  # tools/dvc-push, tools/dvc-pull
        if passed_on:
            check_dvc([passed_on.group(1).lower(), *words[1:]], ROOT)


def check_git(args: list[str], project: Path) -> None:
    """Not in the project's own repository (others work in it): in a scratch one, with the project files
    the command names staged as they would be, so git's own parser and pathspecs judge it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    with tempfile.TemporaryDirectory() as scratch:
        git = ["git", "-C", scratch, "-c", "user.name=docs", "-c", "user.email=docs@example.org"]
        subprocess.run([*git, "init", "-q"], check=True, capture_output=True, env=env)
        named = [a for a in args[1:] if (ROOT / a).is_file()]
        for path in named:
            (Path(scratch) / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, Path(scratch) / path)
        if named:
            subprocess.run([*git, "add", "--", *named], check=True, capture_output=True, env=env)
        r = subprocess.run([*git, args[0], "--dry-run", *args[1:]], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr or r.stdout


def check_eval(args: list[str], project: Path) -> None:
    inner = re.fullmatch(r"\$\((.*)\)", args[0]) if len(args) == 1 else None
    assert inner, 'eval is shown only as eval "$(command)"'
    check(inner.group(1), project)


CHECKS = {
    "g4g": check_g4g,
    "python": check_python,
    "dvc": check_dvc,
    "mlflow": check_mlflow,
    "snakemake": check_snakemake,
    "make": check_make,
    "tools/": lambda args, project: check_tool(args),
    "git": check_git,
    "eval": check_eval,
}


def check(command: str, project: Path, prose: bool = False) -> None:
    """Fails with the tool's own complaint when `command` is not one the tool accepts (see the top)."""
    words = shlex.split(command)
    args = words if words[0].startswith("tools/") else words[1:]
    named = words[0] in ("g4g", "dvc") and len(words) == 2 and not words[1].startswith("-")
    if prose and (named or words[:2] == ["python", "-m"] and len(words) == 3):
        # a sentence names a subcommand or module (`g4g crops`, `python -m g4g.bench.cross_drive`) without the
        # arguments it needs: it must exist
        args = [*args, "--help"]
    CHECKS[kind(words[0])](args, project)


COMMANDS = documented_commands()


def test_the_docs_show_the_main_commands():
    shown = {c for _, c, _ in COMMANDS}
    assert {"make demo", "make test", "dvc repro", "tools/dvc-push"} <= shown
    assert "dvc exp run -S 'extra_seeds=[1,2]'" in shown  # its value kept whole
    assert any(c.startswith("snakemake") and "--config" in c for c in shown)
    assert any(c.startswith("g4g lipsync") for c in shown)
    assert {kind(c.split()[0]) for c in shown} == set(CHECKS)


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


@pytest.mark.parametrize(("where", "command", "prose"), COMMANDS, ids=[c for _, c, _ in COMMANDS])
def test_documented_command_runs(where, command, prose, project_copy):
    try:
        check(command, project_copy, prose)
    except AssertionError as e:
        pytest.fail(f"{where}: `{command}` is refused:\n{e}", pytrace=False)


PLANTED = [  # a documented command, a word of it, that word misspelt (or a wrong value)
    ("g4g lipsync --video talk.mp4 --audio speech.wav --checkpoint results/models/demo/full/model.pt --out out.mp4",
     "--checkpoint", "--checkpiont"),
    ("python -m g4g.bench.prep --long", "--long", "--lnog"),
    ("tools/dvc-deps --write", "--write", "--wirte"),
    ("snakemake --cores 8 results/table1.csv --config dataset=hdtf", "--cores", "--coress"),
    ("snakemake --report results/report.html", "--report", "--reportt"),
    ("dvc exp run --queue -n lr4x -S datasets.demo.overrides.train.lr=0.004", "--queue", "--queued"),
    ("dvc exp run -n lr2x -S datasets.demo.overrides.train.lr=0.002 train@full", "train@full", "train@fulll"),
    ("dvc exp run -S 'extra_seeds=[1,2]'", "'extra_seeds=[1,2]'", "extra_seeds="),  # the old [..] stripping
    ("dvc exp run -S 'extra_seeds=[1,2]'", "extra_seeds", "extra_seed"),
    ("dvc exp run -S 'extra_seeds=[1,2]'", "[1,2]", "[1,0]"),  # seed 0 is the tables' own run
    ("dvc repro -f -s evaluate", "evaluate", "evalute"),
    ("make demo", "demo", "deom"),
    ("mlflow ui --backend-store-uri sqlite:///mlflow.db", "--backend-store-uri", "--backend-store-url"),
    ("tools/mlflow-server up --host 0.0.0.0 --auth", "--auth", "--aut"),
    ("tools/gpu-check wheels", "wheels", "wheel"),
    ("tools/dvc-remote --check --write", "--write", "--writable"),
    ("tools/dvc-push", "tools/dvc-push", "tools/dvc-push --remotee shared"),
    ('git commit .dvc/config -m "shared DVC remote"', "-m", "--mesage"),
    ('git commit .dvc/config -m "shared DVC remote"', ".dvc/config", ".dvc/conf"),
    ('eval "$(tools/mlflow-server env)"', "env", "evn"),
]


@pytest.mark.parametrize(("command", "word", "typo"), PLANTED, ids=[f"{c} ({t})" for c, _, t in PLANTED])
def test_a_misspelt_documented_command_is_refused(command, word, typo, project_copy):
    """The same check test_documented_command_runs passes this command with fails it with one word changed."""
    prose = {c: p for _, c, p in COMMANDS}[command]
    assert word in command
    with pytest.raises(AssertionError):
        check(command.replace(word, typo, 1), project_copy, prose)


def test_a_script_whose_code_drops_a_documented_option_is_refused(tmp_path):
    """The usage lines of a tools/ script count only while its code parses what they name."""
    script, words = tmp_path / "mlflow-server", ["tools/mlflow-server", "up", "--host", "0.0.0.0", "--auth"]
    script.write_text((ROOT / "tools/mlflow-server").read_text())
    check_tool(words, tmp_path)
    script.write_text(script.read_text().replace("--auth)", "--basic-auth)"))
    with pytest.raises(AssertionError, match="usage names .'--auth'.* its code does not test for"):
        check_tool(words, tmp_path)


def test_every_named_module_file_and_function_exists():
    """A doc that names `g4g.models.loading.expert_digest` or `g4g/data/faces.py` points at something real."""
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
