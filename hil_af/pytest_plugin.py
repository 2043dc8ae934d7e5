"""pytest plugin (entry point ``pytest11``): run the same tests on the sim or a real rig.

Options::

    --hil RIG        a rig URL or rig profile (TOML path or name): the ``rig``
                     fixture opens it (once per session) and tests marked
                     ``@pytest.mark.hil`` run
    --hil-lens URL   the lens URL when RIG is a frame source only
    --sim-rig URL    the simulated rig used without --hil (default sim://?seed=1);
                     it is opened afresh for every test, on a virtual clock

Markers::

    @pytest.mark.hil                      needs a real rig: skipped without --hil
    @pytest.mark.rig_feature("truth", ...) needs rig features: skipped (with the
                                          reason) on rigs that lack them

Features a rig may have: ``sim`` (simulated), ``real`` (opened with --hil),
``truth`` (knows in-focus positions: ``rig.truth``), ``scene_change``
(``rig.change_scene``), ``lens_map`` (dioptres <-> native units),
``readback`` (the lens has ``read_position``).  The ``rig`` fixture is a
``hil_af.drivers.base.Rig``; ``rig_clock`` is its clock (a ``SimClock`` on
the sim, so waiting costs nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

FEATURES = ("sim", "real", "truth", "scene_change", "lens_map", "readback")
_SKIP_HIL = "needs a real rig: run pytest with --hil RIG_URL (or a rig profile TOML)"


def pytest_addoption(parser):
    group = parser.getgroup("hil-af", "hardware-in-the-loop autofocus")
    group.addoption("--hil", action="store", default=None, metavar="RIG",
                    help="run against a real rig: a rig URL or a rig profile (TOML path or name)")
    group.addoption("--hil-lens", action="store", default=None, metavar="URL",
                    help="lens URL when the --hil RIG is a frame source only")
    group.addoption("--sim-rig", action="store", default="sim://?seed=1", metavar="URL",
                    help="the simulated rig used when --hil is not given (default: sim://?seed=1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: needs a real rig (run with --hil RIG_URL)")
    config.addinivalue_line("markers", "rig_feature(*names): needs these rig features "
                                       f"({', '.join(FEATURES)}); skipped where the rig lacks one")


def pytest_report_header(config):
    hil = config.getoption("--hil")
    if hil:
        lens = config.getoption("--hil-lens")
        return f"hil-af rig: {hil}" + (f" + lens {lens}" if lens else "") + " (real hardware)"
    return f"hil-af rig: {config.getoption('--sim-rig')} (simulated; --hil RIG for hardware)"


def pytest_collection_modifyitems(config, items):
    if config.getoption("--hil"):
        return
    skip = pytest.mark.skip(reason=_SKIP_HIL)
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)


def rig_features(rig: Any, real: bool) -> set[str]:
    """The feature names (FEATURES) an open rig has."""
    feats = {"real" if real else "sim"}
    if getattr(rig, "truth", None) is not None:
        feats.add("truth")
    if getattr(rig, "change_scene", None) is not None:
        feats.add("scene_change")
    if getattr(rig, "lens_map", None) is not None:
        feats.add("lens_map")
    if callable(getattr(rig.lens, "read_position", None)):
        feats.add("readback")
    return feats


@pytest.fixture(scope="session")
def hil_rig_spec(request) -> str:
    """The rig spec the ``rig`` fixture opens (the --hil value or the sim URL)."""
    return request.config.getoption("--hil") or request.config.getoption("--sim-rig")


@pytest.fixture(scope="session")
def _hil_session_rig(request):
    """The real rig, opened once for the whole session (None without --hil)."""
    spec = request.config.getoption("--hil")
    if not spec:
        yield None
        return
    from hil_af.drivers.registry import open_rig

    try:
        r = open_rig(spec, lens=request.config.getoption("--hil-lens"))
    except Exception as e:  # one clear error instead of one per test
        pytest.exit(f"--hil {spec}: cannot open the rig: {type(e).__name__}: {e} (try 'hil-af doctor {spec}')",
                    returncode=3)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rig(request, hil_rig_spec, _hil_session_rig):
    """An open ``Rig``: the real one with --hil (shared by the session), else a fresh simulator on a SimClock."""
    if _hil_session_rig is not None:
        r, owned = _hil_session_rig, False
    else:
        from hil_af.clock import SimClock
        from hil_af.drivers.registry import open_rig

        r, owned = open_rig(hil_rig_spec, clock=SimClock()), True
    try:
        feats = rig_features(r, real=not owned)
        for mark in request.node.iter_markers("rig_feature"):
            unknown = set(mark.args) - set(FEATURES)
            if unknown:
                raise pytest.UsageError(f"rig_feature: unknown feature(s) {sorted(unknown)}; known: {', '.join(FEATURES)}")
            missing = [f for f in mark.args if f not in feats]
            if missing:
                pytest.skip(f"rig {hil_rig_spec} lacks feature(s) {', '.join(missing)} (has: {', '.join(sorted(feats))})")
        yield r
    finally:
        if owned:
            r.close()


@pytest.fixture
def rig_clock(rig):
    """The rig's clock (SimClock on the simulator)."""
    return rig.clock
