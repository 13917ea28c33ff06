"""The suite's own rules: a test that leaves global state changed fails, and no wait outlasts the timeout."""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT

pytest_plugins = ["pytester"]

LEAKS = """
import os
import torch

def test_leaks_threads():
    torch.set_num_threads(1)

def test_leaks_an_environment_variable():
    os.environ["G4G_PLANTED"] = "1"

def test_after_the_leaks():
    assert torch.get_num_threads() == N and "G4G_PLANTED" not in os.environ
"""
MODULE_LEAK = """
import os
import pytest

@pytest.fixture(scope="module")
def leaky():
    os.environ["G4G_PLANTED_BY_A_FIXTURE"] = "1"
    yield

def test_uses_it(leaky):
    pass
"""


def test_a_test_or_fixture_that_changes_global_state_fails_and_the_next_is_unaffected(pytester):
    """The guard in conftest.py, on planted leaks: a test that changes torch's thread count, one that sets an
    environment variable, a module-scoped fixture that does; each fails naming what it changed, and the
    tests after them find the state as it was."""
    import torch

    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_a=LEAKS.replace("== N", f"== {torch.get_num_threads()}"), test_b=MODULE_LEAK,
                        test_c="def test_clean():\n    import os\n    assert 'G4G_PLANTED' not in str(os.environ)\n")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(passed=5, errors=3)
    out = r.stdout.str()
    assert "test_leaks_threads left global state changed: torch threads" in out
    assert "test_leaks_an_environment_variable left global state changed: environment variables G4G_PLANTED" in out
    assert ("test_b (a module-scoped fixture) left global state changed: environment variables "
            "G4G_PLANTED_BY_A_FIXTURE") in out


def test_no_wait_in_the_tests_outlasts_the_test_timeout():
    """One rule (pyproject.toml): pytest-timeout bounds each test function; a fixture that installs or starts
    something bounds its own waits; so no subprocess or poll in tests/ may wait longer than that bound."""
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    limit = int(ini["timeout"])
    assert ini.get("timeout_func_only") is True
    waits = {f"{p.name}:{m.group(0)}": int(m.group(1).replace("_", ""))
             for p in (ROOT / "tests").glob("*.py")
             for m in re.finditer(r"timeout(?:: float)?\s*=\s*([0-9_]+)", p.read_text())}
    assert waits and all(v <= limit for v in waits.values()), {k: v for k, v in waits.items() if v > limit}
