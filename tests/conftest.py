"""Shared fixtures: real sample clips (skipped when ../shared/data/real is absent), media makers, and the
guard that keeps tests independent of their order (global state)."""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"
# `make test` runs the suite in pytest-xdist workers on a 2-core machine. Two processes whose OpenMP threads
# spin while they wait for work take the cores from each other (a torch job beside another ran 10-30x slower):
# waiting threads sleep instead, here and in every subprocess. Set before torch is imported (libgomp reads it
# once); it changes no result, only how idle threads wait.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


# ----------------------------------------------------------------------------------------------------
# Order independence: what one test changes in the process must not reach the next
# ----------------------------------------------------------------------------------------------------


def global_state() -> dict:
    """The process-wide settings a test can change and a later test's result can depend on: torch's thread
    count decides float summation order (a 300-step overfit once ended at 0.41x at 2 threads, 0.83x at 1),
    backend flags pick kernels, the environment and umask reach every subprocess, the root logger's handlers
    decide where a later test's log lines go."""
    import torch

    from g4g.utils import umask

    root = logging.getLogger()
    return {
        "torch threads": torch.get_num_threads(),
        "torch default dtype": torch.get_default_dtype(),
        "torch grad enabled": torch.is_grad_enabled(),
        "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch float32 matmul precision": torch.get_float32_matmul_precision(),
        "cudnn benchmark": torch.backends.cudnn.benchmark,
        "cudnn deterministic": torch.backends.cudnn.deterministic,
        "cudnn allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda matmul allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "environment": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},  # pytest's own
        "umask": umask(),
        "working directory": os.getcwd(),
        "root logger": (root.level, tuple(h for h in root.handlers  # but pytest's own capture handlers
                                          if not type(h).__module__.startswith("_pytest"))),
    }


def restore_global_state(state: dict) -> None:
    import torch

    torch.set_num_threads(state["torch threads"])
    torch.set_default_dtype(state["torch default dtype"])
    torch.set_grad_enabled(state["torch grad enabled"])
    torch.use_deterministic_algorithms(state["torch deterministic algorithms"])
    torch.set_float32_matmul_precision(state["torch float32 matmul precision"])
    torch.backends.cudnn.benchmark = state["cudnn benchmark"]
    torch.backends.cudnn.deterministic = state["cudnn deterministic"]
    torch.backends.cudnn.allow_tf32 = state["cudnn allow_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = state["cuda matmul allow_tf32"]
    current = os.environ.get("PYTEST_CURRENT_TEST")
    os.environ.clear()
    os.environ.update(state["environment"])
    if current is not None:
        os.environ["PYTEST_CURRENT_TEST"] = current
    os.umask(state["umask"])
    os.chdir(state["working directory"])
    root = logging.getLogger()
    root.setLevel(state["root logger"][0])
    ours = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    root.handlers[:] = [*state["root logger"][1], *ours]


def state_changes(before: dict, after: dict) -> list[str]:
    """What differs, one phrase per setting (environment variables by name)."""
    out = []
    for key, old in before.items():
        new = after[key]
        if key == "environment":
            names = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if names:
                out.append(f"environment variables {', '.join(names)}")
        elif new != old:
            out.append(f"{key} {old!r} -> {new!r}")
    return out


_SESSION_STATE: dict = {}


def pytest_collection_finish(session):
    """The reference state, taken once every test module is imported: imports may change the environment,
    which is their doing, not a test's. These do it on first import, which may come inside a test: OpenCV
    sets LD_LIBRARY_PATH, joblib (through librosa) KMP_INIT_AT_FORK, torch._dynamo (imported by the metrics'
    libraries) TORCHINDUCTOR_CACHE_DIR."""
    import cv2  # noqa: F401
    import joblib  # noqa: F401
    import torch._dynamo  # noqa: F401

    _SESSION_STATE.update(global_state())


@pytest.fixture(autouse=True, scope="module")
def _module_starts_clean(request):
    """Each module starts from the session's global state: a change a module-scoped fixture or an earlier
    module left behind fails here, loudly, instead of silently changing this module's results."""
    changed = state_changes(_SESSION_STATE, global_state())
    if changed:
        restore_global_state(_SESSION_STATE)
        pytest.fail(f"{request.module.__name__} starts with global state changed by an earlier module: "
                    f"{'; '.join(changed)}", pytrace=False)
    yield
    changed = state_changes(_SESSION_STATE, global_state())
    restore_global_state(_SESSION_STATE)
    if changed:
        pytest.fail(f"{request.module.__name__} (a module-scoped fixture) left global state changed: "
                    f"{'; '.join(changed)}", pytrace=False)


@pytest.fixture(autouse=True)
def _test_keeps_global_state(request):
    """Every test starts from the same random state (its result never depends on which tests ran before)
    and must leave the process's global state as it found it: a test that does not fails (naming what it
    changed), and the state is put back so the failure stays its own."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = global_state()
    yield
    changed = state_changes(before, global_state())
    if changed:
        restore_global_state(before)
        pytest.fail(f"{request.node.nodeid} left global state changed: {'; '.join(changed)} (use the "
                    f"`torch_threads` fixture, monkeypatch or a try/finally)", pytrace=False)


@pytest.fixture
def torch_threads():
    """torch_threads(n): run the rest of the test with n intra-op threads, restored afterwards. Tests whose
    result depends on float summation order set the count themselves rather than inherit the machine's."""
    import torch

    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def one_thread_module():
    """One intra-op thread for a whole module of tiny tensors: OpenMP contention on a busy 2-core machine
    costs them up to 10x."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------------
# Real clips
# ----------------------------------------------------------------------------------------------------


# pytest-xdist (`make test`: -n 4 --dist loadfile) hands its workers whole modules, in collection order: FIRST
# comes first. The two SLURM modules start at once, on workers of their own: they mostly wait on the scheduler
# (and the preemption test on tiny_dag), while the DVC remote tests build tiny_dag and the overfits use the
# CPU. xdist gives a worker its next module as soon as it has 2 tests or fewer left, so a 1-test module has the
# next one queued behind it from the start: the DVC experiments and the DDP tests, which need tiny_dag and
# the CPU by the time the SLURM tests end. The SLURM and DVC tests share the session's local SLURM, tiny demo
# DAG and DVC remote, built once by whichever worker asks first. `make test-fast` (no slow tests) starts with
# test_lipsync.py, its longest module (130 s: seven `g4g lipsync` runs and three end-to-end ones): started
# last, it ended 40 s after the others. (--dist loadgroup, finer, needs pytest-xdist to rename test ids,
# which pytest 9 no longer allows.)
FIRST = ("test_slurm_dag.py", "test_slurm_preemption.py", "test_dvc_remote.py", "test_overfit.py",
         "test_dvc_experiments.py", "test_ddp.py", "test_slurm.py", "test_lipsync.py")


def pytest_collection_modifyitems(config, items):
    """A test that uses the real clips (the `real_dir` fixture, directly or through another fixture) is
    marked `real`, so `-m real` / `-m "not real"` select exactly those. The modules named in FIRST move to the
    front (a stable sort: the rest keep their order)."""
    for item in items:
        if "real_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))


def needs_real(test):
    """For a test that reads the real clips by path rather than through `real_dir`: marked `real`, skipped
    with the reason where they are absent."""
    return pytest.mark.real(pytest.mark.skipif(not REAL.is_dir(), reason=f"real sample clips not available: "
                                                                         f"{REAL} is absent")(test))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real sample clips not available: {REAL} is absent (they are never committed)")
    return REAL


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised demo-size generator saved as training saves it (what load_generator reads)."""
    import dataclasses

    import torch

    from g4g.models.g4g import build_generator

    torch.manual_seed(0)
    G = build_generator("demo")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save({"generator": G.state_dict(), "config": dataclasses.asdict(G.cfg), "variant": "full"}, path)
    return path


def ffmpeg(*args: str) -> None:
    from g4g.io.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def make_video(path: Path, n: int = 25, size=(64, 48), fps: float = 25, audio: str | None = "tone",
               vcodec: str = "libx264", extra: tuple[str, ...] = ()) -> Path:
    """A small test clip from ffmpeg's test sources (moving pattern + tone / silence / none)."""
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={n / fps}"]
    if audio == "tone":
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={n / fps}"]
    elif audio == "silence":
        args += ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", str(n / fps)]
    pix = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    args += ["-c:v", vcodec, "-pix_fmt", pix, *extra]
    if vcodec == "libx265":
        args += ["-x265-params", "log-level=error"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, str(path))
    return path


def dvc_path(text: str, params: dict, item: str | dict | None = None) -> str:
    """A path of dvc.yaml with its ${...} variables filled in from params.yaml (and foreach's or matrix's
    ${item})."""
    def value(m):
        v = {**params, "item": item}
        for key in m.group(1).split("."):
            v = v[key]
        return str(v)

    return re.sub(r"\$\{([a-z_.]+)\}", value, text)


def dvc_stages(params: dict) -> list[tuple[str, dict, str | dict | None]]:
    """The stages of dvc.yaml as DVC expands them under `params`: (name, body, item) for each plain stage,
    each foreach item (train@full) and each matrix combination (train_seed@full-1)."""
    out = []
    for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in spec:
            out += [(f"{name}@{i}", spec["do"], i) for i in params[spec["foreach"].strip("${}")]]
        elif "matrix" in spec:
            axes = {k: params[v.strip("${}")] for k, v in spec["matrix"].items()}
            out += [(f"{name}@" + "-".join(map(str, combo)), spec, dict(zip(axes, combo)))
                    for combo in itertools.product(*axes.values())]
        else:
            out.append((name, spec, None))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------------
# The demo DAG at its smallest, run once per session and read by every end-to-end test that can
# ----------------------------------------------------------------------------------------------------

# the venv's commands (snakemake, dvc, g4g) first; no proxy (every remote in the tests is local); a git
# identity for the test repositories
TOOL_ENV = {**{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The project's workflow run in `workdir` (its params.yaml, its results/)."""
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                           *args], capture_output=True, text=True, env={**TOOL_ENV, **(env or {})}, cwd=workdir,
                          timeout=timeout)


def run_tool(wd: Path, *cmd: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """A command line (dvc, git, tools/...) in `wd`; with `check`, a failure shows its output."""
    r = subprocess.run(cmd, cwd=wd, env=TOOL_ENV, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def tiny_pipeline(wd: Path) -> Path:
    """params.yaml of the demo DAG at its smallest in `wd`: 4 clips of ~1.4 s in 2 shards (one clip for test: the
    cross-driven setting is then a row with its reason, the silent one runs; two test clips cost the suite more
    than 2 minutes, and tests/test_infer.py and test_evaluate.py drive two clips), a few training steps, one
    variant, one trivial baseline beside the ground truth (every rule still runs: reference_paste is mean_face's
    rule with another argument), no MLflow."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    demo = params["datasets"]["demo"]
    demo.update(n_clips=4, min_seconds=1.2, max_seconds=1.6, shard_size=2, split={"protocol": "count", "n_test": 1})
    demo["overrides"]["train"].update(stages=[{"mode": "frame", "scale": 64, "steps": 3, "batch": 2, "gan": False},
                                              {"mode": "clip", "scale": 64, "steps": 2, "batch": 1}],
                                      checkpoint_every=2, sample_every=0, log_every=1, eval_frames=4)
    demo["overrides"]["evaluate"]["references"] = ["ground_truth", "mean_face"]
    demo["overrides"]["sync"].update(steps=4, batch=4, checkpoint_every=2, log_every=1, eval_windows=4,
                                     bn_recalibrate=2)
    params.update(variants=["full"], tracking={"mlflow": False})
    (wd / "params.yaml").write_text(yaml.safe_dump(params))
    return wd


def dvc_outputs(dataset: str, variants: list[str]) -> list[str]:
    """Every path dvc.yaml declares as an out, metric or plot, for one dataset and the given variants."""
    params = {**yaml.safe_load((ROOT / "params.yaml").read_text()), "dataset": dataset, "variants": variants}
    return [dvc_path(next(iter(entry)) if isinstance(entry, dict) else entry, params, item)
            for _, body, item in dvc_stages(params) for kind in ("outs", "metrics", "plots")
            for entry in body.get(kind, [])]


def differing_outputs(a: Path, b: Path, outputs: list[str]) -> tuple[list[str], int]:
    """(the files among `outputs` that differ or exist on one side only, the number of files compared)."""
    differ, compared = [], 0
    for out in outputs:
        if not ((a / out).exists() and (b / out).exists()):
            differ.append(f"{out} (missing)")
            continue
        files = sorted(p.relative_to(a / out) for p in (a / out).rglob("*") if p.is_file()) \
            if (a / out).is_dir() else [Path()]
        if (a / out).is_dir() and files != sorted(p.relative_to(b / out) for p in (b / out).rglob("*")
                                                  if p.is_file()):
            differ.append(f"{out} (other files)")
            continue
        for f in files:
            compared += 1
            if (a / out / f).read_bytes() != (b / out / f).read_bytes():
                differ.append(str(Path(out) / f))
    return differ, compared


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run folder that a test may change: file times (what Snakemake compares) and
    Snakemake's own records kept."""
    return Path(shutil.copytree(src, dst, symlinks=True))


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `name` made by `build(folder)` once per test session, also when pytest-xdist runs the suite
    in several workers: the first worker to ask builds it under a file lock, the others wait and read it. A
    build that failed is not tried again: the others fail with its message."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    base = base.parent if WORKER else base  # xdist: each worker's basetemp is in the session's
    folder, done, failed = base / name, base / f"{name}.done", base / f"{name}.failed"
    with FileLock(base / f"{name}.lock"):
        if failed.exists():
            pytest.fail(f"{name}, built by another worker, failed:\n{failed.read_text()}", pytrace=False)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            done.touch()
    return folder


def _run_tiny_dag(wd: Path) -> None:
    tiny_pipeline(wd)
    r = snakemake(wd, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def tiny_dag_run(tmp_path_factory) -> Path:
    """The whole demo DAG (raw clips to tables, contact sheet, fingerprints) at the tiny_pipeline scale, run
    once per session with plain Snakemake. The workflow, reproduction and SLURM tests read it; none writes
    into it (copy_run first). A test that needs it only at its end (the SLURM DAG, compared with it) calls
    this there, so that its own run and this one overlap."""
    return built_once(tmp_path_factory, "tiny_dag", _run_tiny_dag)


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> Path:
    return tiny_dag_run(tmp_path_factory)


def git_project(dst: Path) -> Path:
    """The repository's tracked files in `dst` at the tiny_pipeline scale, committed to a git repository of
    their own."""
    dst.mkdir(parents=True, exist_ok=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    tiny_pipeline(dst)
    run_tool(dst, "git", "init", "-q")
    run_tool(dst, "git", "add", "-A")
    run_tool(dst, "git", "commit", "-qm", "project")
    return dst


@pytest.fixture(scope="session")
def pushed(tmp_path_factory, tiny_dag) -> dict:
    """Clone A: git_project with tiny_dag's outputs recorded by `dvc commit` (same code, same params.yaml), a
    DVC project as `dvc repro` leaves it without running the DAG a second time (300 s of the suite); a shared
    remote set up by tools/dvc-remote (a directory, as on a cluster's shared file system); pushed. The DVC
    remote and experiment tests clone it beside the remote (B, C, ...), pull, and run stages there (`dvc exp
    run`, `dvc repro prepare`); nothing changes A."""
    def build(base: Path) -> None:
        a = git_project(base / "a")
        for out in ("results", "resources"):
            shutil.copytree(tiny_dag / out, a / out, dirs_exist_ok=True, symlinks=True)
        run_tool(a, "dvc", "commit", "--force")
        assert "Data and pipelines are up to date" in run_tool(a, "dvc", "status").stdout
        run_tool(a, "tools/dvc-remote", str(base / "shared" / "g4g-dvc"))
        run_tool(a, "git", "add", "-A")
        run_tool(a, "git", "commit", "-qm", "reproduced; shared remote")
        run_tool(a, "dvc", "push")

    base = built_once(tmp_path_factory, "dvc_pushed", build)
    return {"base": base, "a": base / "a", "remote": base / "shared" / "g4g-dvc"}


# ----------------------------------------------------------------------------------------------------
# A local SLURM, shared by the SLURM test modules
# ----------------------------------------------------------------------------------------------------

SLURM_LOCAL = ROOT / "tools" / "slurm-local"
SLURM_PROFILE = ROOT / "profiles" / "slurm"
# what this machine must change in profiles/slurm (README "On a SLURM cluster"): it has no accounting
# daemon (squeue, not sacct), 2 CPUs and 24 GiB; the tests poll often to stay short
SLURM_SITE = {"G4G_SLURM_STATUS": "squeue", "G4G_SLURM_GPU_CPUS": "2", "G4G_SLURM_GPU_MEM_MB": "8000",
              "G4G_SLURM_CPU_MEM_MB": "2000", "G4G_SLURM_POLL_S": "2"}


def _slurm_up(folder: Path) -> None:
    """tools/slurm-local up, unless a local SLURM already runs; `started` records that this session started
    it (pytest_sessionfinish stops it), `unavailable` why it could not."""
    if subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True, text=True).returncode == 0:
        return
    up = subprocess.run([str(SLURM_LOCAL), "up"], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        (folder / "unavailable").write_text(up.stderr.strip()[-500:])
    else:
        (folder / "started").touch()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> dict:
    """A running local SLURM (tools/slurm-local up), started once per session whichever pytest-xdist worker
    asks first, stopped at the end of the session (pytest_sessionfinish) when the session started it; the
    environment that points SLURM's commands at it."""
    folder = built_once(tmp_path_factory, "slurm", _slurm_up)
    if (folder / "unavailable").exists():
        pytest.skip(f"no local SLURM: tools/slurm-local up failed: {(folder / 'unavailable').read_text()}")
    conf = subprocess.run([str(SLURM_LOCAL), "env"], capture_output=True, text=True).stdout.split("=", 1)[1]
    return {"SLURM_CONF": conf.strip()}


def pytest_sessionfinish(session):
    """The local SLURM this session started stops once every test is done: in the pytest-xdist controller
    after all its workers (a worker's own session end would stop it under another worker's jobs), or in the
    only process. It is stopped by the pids tools/slurm-local recorded."""
    if WORKER:
        return
    base = session.config._tmp_path_factory.getbasetemp()  # the workers' basetemps are inside it
    if (base / "slurm" / "started").exists():
        subprocess.run([str(SLURM_LOCAL), "down"], capture_output=True, text=True)


def slurm_jobs(env: dict, wd: Path, state: str = "all") -> list[tuple[str, str]]:
    """(job id, state) of the SLURM jobs that run in `wd`, oldest first (squeue keeps finished jobs for
    tools/slurm-local's MinJobAge)."""
    q = subprocess.run(["squeue", f"--states={state}", "-h", "-o", "%i %T %Z"], capture_output=True, text=True,
                       env=env)
    return sorted(((j, s) for j, s, d in (ln.split() for ln in q.stdout.splitlines()) if d == str(wd)),
                  key=lambda js: int(js[0]))
