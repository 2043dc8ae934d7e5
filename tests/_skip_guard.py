"""A pytest plugin (imported by tests/conftest.py): a skip must not hide a failure.

Every skipped test or module is checked against ALLOWED_SKIPS, the reasons a
test may legitimately not run here: a missing optional extra (torch / onnx of
[train], Pillow of [l2af], matplotlib of [report], mypy of [dev], picamera2
of [pi]) or optional OS tool, no real rig (--hil), or no ../shared beside the
repository, or a documented command (tests/test_docs_commands.py) that needs
a real rig, a dataset, a daemon or hours of CPU.  Any other skip (an ImportError of the package itself turned
into a skip, a "not in this build yet" guard, a missing shipped file) fails
the session with the list of offending tests and reasons.

``pytest -p no:hil_af_skip_guard`` is not a thing: to run with skips that
are not allowed (say while porting), pass ``--allow-any-skip``.
"""

from __future__ import annotations

import re

import pytest

OPTIONAL_MODULES = r"(torch|onnx|onnxscript|PIL|matplotlib|mypy|picamera2|libcamera)(\.\w+)*"
ALLOWED_SKIPS: tuple[tuple[str, str], ...] = (
    ("missing optional extra", rf"could not import '{OPTIONAL_MODULES}'"),
    ("missing optional extra", r"\(extra \[(train|l2af|report|dev|pi|mutation)\]\)"),
    ("missing optional extra", r"^mypy is not installed"),
    ("missing optional tool", r"^systemd-analyze not installed|this systemd-analyze has no offline security check"),
    ("no --hil rig", r"needs a real rig: run pytest with --hil|^rig .* lacks feature\(s\)"),
    ("no ../shared", r"shared/"),
    # tests/test_docs_commands.py: a documented command that needs what a test run has not (each names
    # the test that covers it on the simulator or on synthetic data)
    ("docs command needing a rig, a dataset, a daemon or hours of CPU",
     r"^\S+\.md: `[^`]*`: (needs a real rig \(|needs the Learning-to-Autofocus dataset \(|needs the Xin et al\. Pixel 4 release \(|"
     r"a daemon that runs until stopped \(|trains for minutes to hours of CPU \()"),
)


def skip_reason(report) -> str | None:
    """The reason of a skipped test/collect report, or None if it was not skipped."""
    if not report.skipped:
        return None
    lr = report.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def allowed(reason: str) -> str | None:
    """The allowed category that ``reason`` falls under, or None."""
    for category, pattern in ALLOWED_SKIPS:
        if re.search(pattern, reason):
            return category
    return None


def pytest_addoption(parser):
    parser.addoption("--allow-any-skip", action="store_true", default=False,
                     help="do not fail the session on skips outside tests/_skip_guard.ALLOWED_SKIPS")


def pytest_configure(config):
    config._hil_af_bad_skips = []  # type: ignore[attr-defined]


def _check(config, report) -> None:
    reason = skip_reason(report)
    if reason is None or hasattr(report, "wasxfail"):
        return
    if allowed(reason) is None:
        config._hil_af_bad_skips.append((report.nodeid, reason))  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.skipped and _CONFIG:
        _check(_CONFIG[0], report)


@pytest.hookimpl(trylast=True)
def pytest_collectreport(report):
    if report.skipped and _CONFIG:
        _check(_CONFIG[0], report)


_CONFIG: list = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG[:] = [session.config]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bad = getattr(config, "_hil_af_bad_skips", [])
    if bad and not config.getoption("--allow-any-skip"):
        terminalreporter.section("skips that may hide failures", sep="=", red=True, bold=True)
        for nodeid, reason in bad:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line("allowed: a missing optional extra or tool, no --hil rig, no ../shared "
                              "(tests/_skip_guard.py ALLOWED_SKIPS)")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    bad = getattr(session.config, "_hil_af_bad_skips", [])
    if bad and not session.config.getoption("--allow-any-skip") and exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
