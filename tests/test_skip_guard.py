"""The skip guard (tests/_skip_guard.py) run through pytester: allowed skips pass, others fail the session."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from _skip_guard import (  # noqa: F401
    pytest_addoption, pytest_collectreport, pytest_configure, pytest_runtest_logreport, pytest_sessionfinish,
    pytest_sessionstart, pytest_terminal_summary,
)
"""


def test_allowed_skips_keep_the_session_green(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a="""
        import pytest

        def test_torch():
            pytest.importorskip("torch_that_is_not_here_either", reason="torch (extra [train]) is needed")

        def test_missing_optional_module():
            pytest.skip("could not import 'torch': No module named 'torch'")

        def test_hil():
            pytest.skip("needs a real rig: run pytest with --hil RIG_URL (or a rig profile TOML)")

        def test_shared():
            pytest.skip("real dual-pixel captures not found at /x/shared/realdp (shared/realdp is outside the repo)")

        def test_runs():
            assert True
    """)
    r = pytester.runpytest("-q")
    assert r.ret == 0
    r.assert_outcomes(passed=1, skipped=4)


def test_a_skip_for_any_other_reason_fails_the_session_and_is_named(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_b="""
        import pytest

        def test_not_in_this_build():
            pytest.importorskip("hil_af.no_such_module", reason="not in this build yet")

        def test_fine():
            assert True
    """)
    r = pytester.runpytest("-q")
    assert r.ret == 1
    r.assert_outcomes(passed=1, skipped=1)
    r.stdout.fnmatch_lines(["*skips that may hide failures*", "*test_not_in_this_build: not in this build yet*"])
    assert pytester.runpytest("-q", "--allow-any-skip").ret == 0


def test_a_module_level_skip_of_a_package_import_fails_the_session(pytester):
    """A module-level importorskip of a module that should exist skips the whole file at collection."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_c="""
        import pytest
        helper = pytest.importorskip("hil_af.sim.no_such_rig")

        def test_never_runs():
            assert False
    """)
    r = pytester.runpytest("-q")
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*skips that may hide failures*", "*test_c.py*could not import 'hil_af.sim.no_such_rig'*"])


def test_a_failing_session_keeps_its_failure_status(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_d="""
        def test_fails():
            assert False
    """)
    assert pytester.runpytest("-q").ret == 1
