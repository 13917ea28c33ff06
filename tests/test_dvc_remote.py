"""A shared DVC remote (issue 10 item 2): tools/dvc-remote sets it up, `dvc push` from one clone and `dvc pull`
into another give a workspace where `dvc status` is clean, `dvc repro` does nothing and the tables are the
same bytes; a damaged object in the remote is refused on pull; a push killed half-way is completed by the
next one. The project is the smallest demo (tests/conftest.py, `pushed`) in a git repository of its own, with
a directory remote, as on a cluster's shared file system. Experiments in clones of it are
tests/test_dvc_experiments.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from conftest import TOOL_ENV, git_project
from conftest import run_tool as run

pytestmark = pytest.mark.slow
TABLES = ("results/table1.csv", "results/table2.csv")


def test_pull_into_a_fresh_clone_needs_no_work(pushed):
    b = pushed["base"] / "b"
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(b))
    run(b, "dvc", "pull")
    assert "Data and pipelines are up to date" in run(b, "dvc", "status").stdout
    repro = run(b, "dvc", "repro").stdout
    assert "Running stage" not in repro and "Data and pipelines are up to date" in repro, repro[-2000:]
    for t in TABLES:
        assert (b / t).read_bytes() == (pushed["a"] / t).read_bytes(), t
    assert (b / "results/models/demo/full/model.pt").read_bytes() == \
        (pushed["a"] / "results/models/demo/full/model.pt").read_bytes()


def test_a_damaged_object_in_the_remote_is_refused(pushed):
    """tools/dvc-remote turns `verify` on: DVC re-hashes what it pulls (its default trusts the remote), so a
    checkpoint damaged in the remote is not checked out, and the pull fails naming it."""
    damaged = pushed["base"] / "damaged"
    shutil.copytree(pushed["remote"], damaged)
    target = "results/models/demo/full/model.pt"
    lock = yaml.safe_load((pushed["a"] / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train@full"]["outs"] if o["path"] == target)
    victim = damaged / "files" / "md5" / md5[:2] / md5[2:]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    c = pushed["base"] / "c"
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(c))
    run(c, "dvc", "remote", "modify", "--local", "shared", "url", str(damaged))
    r = run(c, "tools/dvc-pull", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"Checkout failed for following targets:\n{target}" in out, out[-2000:]
    assert f"not in the remote, or damaged there: {target}" in r.stderr and "`dvc repro`" in r.stderr
    assert not (c / target).exists() and (c / "results/models/demo/syncnet.pt").exists()


def test_a_killed_push_is_completed_by_the_next(pushed):
    a, remote = pushed["base"] / "k", pushed["base"] / "second"  # a clone: the shared project stays as it is
    run(pushed["base"], "git", "clone", "-q", str(pushed["a"]), str(a))
    big = a / "big.bin"  # enough bytes that the push is still running when it is killed
    big.write_bytes(os.urandom(200 * 2 ** 20))
    run(a, "dvc", "add", "big.bin")
    run(a, "dvc", "remote", "add", "--local", "second", str(remote))
    p = subprocess.Popen(["dvc", "push", "-r", "second", "--jobs", "1", "big.bin"], cwd=a, env=TOOL_ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (remote.exists() and any(f.is_file() for f in remote.rglob("*"))):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL  # killed, not finished
    status = run(a, "dvc", "status", "-c", "-r", "second", "big.bin", check=False).stdout
    assert "not in sync" in status.lower() or "new:" in status
    run(a, "dvc", "push", "-r", "second", "big.bin")
    status = run(a, "dvc", "status", "-c", "-r", "second", "big.bin").stdout
    assert "in sync" in status.lower(), status
    d = pushed["base"] / "d"  # what the completed remote holds is whole: a verified pull from it
    run(pushed["base"], "git", "clone", "-q", str(a), str(d))
    shutil.copy2(a / "big.bin.dvc", d / "big.bin.dvc")
    run(d, "dvc", "remote", "add", "--local", "second", str(remote))
    run(d, "dvc", "remote", "modify", "--local", "second", "verify", "true")
    run(d, "dvc", "pull", "-r", "second", "big.bin")
    assert (d / "big.bin").read_bytes() == big.read_bytes()


def test_remote_settings_it_cannot_use_are_named(tmp_path):
    a = git_project(tmp_path / "a")
    r = run(a, "tools/dvc-remote", "s3://bucket/g4g", check=False)
    assert r.returncode == 1 and "remote 'shared' (s3://bucket/g4g) needs the dvc-s3 package" in r.stderr
    r = run(a, "tools/dvc-remote", "/proc/g4g-dvc", "lab", check=False)
    assert r.returncode == 1 and "remote 'lab': cannot create the directory /proc/g4g-dvc" in r.stderr
    r = run(a, "dvc", "push", check=False)  # no remote yet: DVC names the setting
    assert r.returncode != 0 and "no remote specified" in (r.stdout + r.stderr).lower()


def test_a_remote_that_is_gone_unreachable_or_read_only_is_named(tmp_path):
    """Issue 10, bad input: tools/dvc-push and tools/dvc-pull check the remote before anything moves and
    name it, its URL and the setting (remote.NAME.url): a directory that is not there (DVC itself would
    create it on this machine's disk), an HTTP remote nothing answers on, a directory root cannot write to
    (immutable: root passes permission bits), no remote at all."""
    import socket

    a = git_project(tmp_path / "a")
    (a / "data.bin").write_bytes(os.urandom(4096))
    run(a, "dvc", "add", "data.bin")
    gone = tmp_path / "unmounted" / "g4g-dvc"
    run(a, "dvc", "remote", "add", "-d", "lab", str(gone))
    setting = "setting remote.lab.url, changed with: dvc remote modify lab url NEW_URL"
    for tool in ("tools/dvc-push", "tools/dvc-pull"):
        r = run(a, tool, check=False)
        assert r.returncode == 1 and f"remote 'lab' ({gone}; {setting}) does not exist here" in r.stderr, r.stderr
    assert not gone.exists()  # nothing was created, nothing pushed

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/g4g-dvc"
    run(a, "dvc", "remote", "modify", "lab", "url", url)
    for args in (["tools/dvc-push", "-r", "lab"], ["tools/dvc-pull", "-rlab"]):
        r = run(a, *args, check=False)
        assert r.returncode == 1 and f"remote 'lab' ({url}; {setting}) is unreachable: no connection to " \
            f"127.0.0.1:{port} within 5 s" in r.stderr, r.stderr
    proxied = subprocess.run(["tools/dvc-remote", "--check", "lab"], cwd=a, capture_output=True, text=True,
                             env={**TOOL_ENV, "HTTPS_PROXY": "http://proxy.invalid:3128"})
    assert proxied.returncode == 0 and "not checked, connections go through a proxy" in proxied.stderr
    run(a, "dvc", "remote", "add", "ssh", "ssh://me@127.0.0.1/g4g-dvc")  # the port comes from the setting
    run(a, "dvc", "remote", "modify", "ssh", "port", str(port))
    r = run(a, "tools/dvc-remote", "--check", "ssh", check=False)
    assert r.returncode == 1 and f"no connection to 127.0.0.1:{port} within 5 s" in r.stderr, r.stderr
    run(a, "dvc", "remote", "add", "gs", "gs://lab-bucket/g4g")  # not checked: said so, not refused
    r = run(a, "tools/dvc-remote", "--check", "gs", check=False)
    assert r.returncode == 0 and "gs:// remotes are not checked here" in r.stderr, r.stderr

    run(a, "dvc", "remote", "remove", "lab")
    r = run(a, "tools/dvc-push", check=False)
    assert r.returncode == 1 and "no DVC remote is set (setting core.remote): give the project one with " \
        "tools/dvc-remote URL" in r.stderr, r.stderr
    r = run(a, "tools/dvc-push", "-r", "nowhere", check=False)
    assert r.returncode == 1 and "no DVC remote named 'nowhere'" in r.stderr, r.stderr

    ro = tmp_path / "read-only"
    ro.mkdir()
    run(a, "dvc", "remote", "add", "-d", "lab", str(ro))
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here: no directory that root cannot write to")
    try:
        r = run(a, "tools/dvc-push", check=False)
        assert r.returncode == 1 and f"remote 'lab' ({ro}; {setting}) is not writable by" in r.stderr, r.stderr
        r = run(a, "tools/dvc-remote", str(ro), "lab2", check=False)
        assert r.returncode == 1 and f"remote 'lab2': {ro} is not writable by" in r.stderr, r.stderr
        r = run(a, "tools/dvc-pull", check=False)  # reading is allowed: DVC's own message, the file is not there
        assert "dvc-remote: remote 'lab'" in r.stderr and "is usable" in r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)
