"""The package's structure, enforced: layers import only downward, no import cycles, intra-package imports
at module top, and dvc.yaml's code deps equal to what each stage's commands import."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import dvc_path, dvc_stages

ROOT = Path(__file__).resolve().parent.parent
# lowest first: a module may import its own layer and the layers before it, never a later one
LAYERS = ["utils", "rejects", "params", "weights", "tracking", "io", "data", "models", "losses", "metrics",
          "train", "infer", "evaluate", "study", "bench", "cli", "__main__"]
# in-function g4g imports that must stay there, with the reason
_ONE_COMMAND = ("a command imports only the code it runs: a job never pays for another rule's imports (torch, "
                "scipy, librosa: seconds of every job's fixed cost), and a mistyped option is answered at once")
LAZY = {
    "g4g/train/commands.py": "OMP_WAIT_POLICY must be set before torch is imported, once the workers are known",
    "g4g/data/commands.py": _ONE_COMMAND,
    "g4g/infer/commands.py": _ONE_COMMAND,
    "g4g/evaluate/commands.py": _ONE_COMMAND,
    "g4g/study/commands.py": _ONE_COMMAND + " (flask only for `g4g study serve`)",
}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "g4g"


def graph():
    """module -> [(imported g4g module, line, inside a function)] over every file of the package."""
    out = {}
    for path in sorted((ROOT / "g4g").rglob("*.py")):
        rel = path.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)}
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("g4g"):
                targets = [node.module] if node.module != "g4g" else [f"g4g.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("g4g")]
            else:
                continue
            edges += [(t, node.lineno, id(node) in inner) for t in targets]
        out[name] = (str(rel), edges)
    return out


def test_layers_import_only_downward():
    bad = []
    for module, (rel, edges) in graph().items():
        if layer(module) == "g4g":
            continue
        src = LAYERS.index(layer(module))
        for target, line, _ in edges:
            if layer(target) != "g4g" and LAYERS.index(layer(target)) > src:
                bad.append(f"{rel}:{line} imports {target} ({layer(module)} may not import {layer(target)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = {m: {t for t, _, _ in edges if t in graph_names} for graph_names in [set(graph())]
         for m, (_, edges) in graph().items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_intra_package_imports_are_at_module_top():
    bad = [f"{rel}:{line} imports {target} inside a function" for _, (rel, edges) in graph().items()
           for target, line, inner in edges if inner and rel not in LAZY]
    assert not bad, "\n".join(bad)


def test_dvc_deps_are_what_the_stages_import():
    r = subprocess.run([sys.executable, "tools/dvc-deps", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_touching_a_module_marks_every_stage_that_imports_it(tmp_path):
    """In a copy of the project with placeholder outputs committed to DVC, every package module is edited
    once; `dvc status` must then report, for each stage, every module that stage's commands can import."""
    import json
    import runpy
    import shutil

    import yaml

    stage_deps = runpy.run_path(str(ROOT / "tools" / "dvc-deps"))["stage_deps"]

    for name in ("dvc.yaml", "Snakefile", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("g4g", "workflow"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = {**yaml.safe_load((ROOT / "params.yaml").read_text()), "extra_seeds": [1]}  # train_seed@*-1 too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dataset = params["dataset"]
    for _, spec, item in dvc_stages(params):  # placeholders for every output and data dep
        for entry in [*spec["deps"], *spec.get("outs", []), *spec.get("metrics", []), *spec.get("plots", [])]:
            p = tmp_path / dvc_path(entry if isinstance(entry, str) else next(iter(entry)), params, item)
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.mkdir() if not p.suffix else p.write_text("placeholder\n")
                if not p.suffix:
                    (p / "x").write_text("placeholder\n")
    for v in yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]:
        for f in ("model.pt", "metrics.json", "losses.csv"):
            q = tmp_path / "results" / "models" / dataset / v / f
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_text("placeholder\n")

    def dvc(*args):
        r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    dvc("init", "--no-scm", "-q")
    dvc("commit", "-f", "-q")
    assert json.loads(dvc("status", "--json")) == {}
    modules = sorted(p for p in (tmp_path / "g4g").rglob("*.py"))
    for p in modules:
        p.write_text(p.read_text() + "\n# touched\n")
    status = json.loads(dvc("status", "--json"))
    for stage, files in stage_deps().items():
        code = {f for f in files if f.startswith("g4g/")}
        reported = [s for s in status if s == stage or s.startswith(stage + "@")]
        assert reported, f"{stage} not reported after every module changed"
        for s in reported:
            changed = set().union(*(e.get("changed deps", {}) for e in status[s] if isinstance(e, dict)))
            assert code <= changed, f"{s}: {sorted(code - changed)} changed but not reported"


def test_each_dvc_stage_may_run_the_rules_it_forces():
    """dvc.yaml: a stage's --forcerun rules are among its --allowed-rules (else Snakemake refuses the job), and
    every rule it allows exists."""
    import re

    import yaml

    rules = set(re.findall(r"^(?:rule (\w+):|use rule \w+ as (\w+))", "\n".join(
        f.read_text() for f in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]), re.M))
    rules = {a or b for a, b in rules}
    for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        cmd = (spec.get("do") or spec)["cmd"]
        forced = set(re.search(r"--forcerun ([a-z_ ]+)", cmd).group(1).split())
        allowed = set(re.search(r"--allowed-rules ([a-z_ ]+)", cmd).group(1).split())
        assert forced <= allowed <= rules, (name, forced - allowed, allowed - rules)
