"""The committed dvc.lock records the code, commands and settings its outputs were made from (issue 24 item 5).

A commit that changes a stage's code (anything under g4g/ or workflow/ that tools/dvc-deps lists), its command
in dvc.yaml or a setting it reads from params.yaml, and does not refresh the lock from a clean run
(`make clean-results; make demo`, then `dvc commit`: README, "Contributing"), leaves a lock that describes
outputs the code no longer makes. `dvc status` names exactly that; on a fresh clone it also lists every output
"not in cache" and every data dependency "deleted" (nothing has run there), which says nothing about the lock.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ROOT, run_tool

DATA = ("results/", "resources/")  # what a run makes or downloads: absent from a fresh clone


def stale_stages(project: Path) -> dict[str, list[str]]:
    """stage -> what `dvc status` finds changed in it besides outputs and data: code or params.yaml entries
    modified, or the command."""
    status = json.loads(run_tool(project, "dvc", "status", "--json").stdout or "{}")
    stale = {}
    for stage, changes in status.items():
        found = []
        for change in changes:
            if not isinstance(change, dict):  # "always changed", "changed checksum": a lock edited by hand
                found.append(str(change))
                continue
            if "changed command" in change:
                found.append("its command")
            for path, what in change.get("changed deps", {}).items():
                if isinstance(what, dict):  # params.yaml: {key: modified/new/deleted}
                    found += [f"{path} {key} {state}" for key, state in what.items()]
                elif not path.startswith(DATA):
                    found.append(f"{path} {what}")
        if found:
            stale[stage] = found
    return stale


def test_the_committed_lock_matches_the_code_and_settings():
    stale = stale_stages(ROOT)
    assert not stale, ("dvc.lock no longer describes what these stages run; refresh it from a clean run "
                       f"(make clean-results; make demo; dvc commit -f): {stale}")


def test_a_change_the_lock_does_not_record_is_found(tmp_path):
    """The check fails where it must: code changed, a setting changed."""
    project = tmp_path / "p"
    files = run_tool(ROOT, "git", "ls-files", "-z").stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (project / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, project / f)
    run_tool(project, "git", "init", "-q")  # dvc finds its project by the .dvc folder; git only for ignores
    with open(project / "g4g/metrics/image.py", "a") as f:
        f.write("# a change\n")
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text.replace("lse_vshift: 15", "lse_vshift: 14", 1))
    assert "lse_vshift: 14" in (project / "params.yaml").read_text()
    stale = stale_stages(project)
    assert "g4g/metrics/image.py modified" in stale["train_sync"], stale
    assert "params.yaml evaluate modified" in stale["evaluate"], stale  # DVC names the section dvc.yaml lists
