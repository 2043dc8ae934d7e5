"""pytest plugin (entry point ``pytest11``): run the same tests on the sim or a real rig.

Options:
  --hil RIG      a rig URL or rig profile TOML: the ``rig`` fixture opens it,
                 and tests marked ``@pytest.mark.hil`` run.
Without ``--hil`` the ``rig`` fixture is the simulated rig (``sim://`` on a
virtual clock) and ``hil``-marked tests skip with the reason.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("hil-af", "hardware-in-the-loop autofocus")
    group.addoption("--hil", action="store", default=None, metavar="RIG",
                    help="run against a real rig: a rig URL or a rig profile TOML")
    group.addoption("--sim-rig", action="store", default="sim://?seed=1", metavar="URL",
                    help="the simulated rig used when --hil is not given (default: sim://?seed=1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: needs a real rig (run with --hil RIG_URL)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--hil"):
        return
    skip = pytest.mark.skip(reason="needs a real rig: run pytest with --hil RIG_URL (or a rig profile TOML)")
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def hil_rig_spec(request) -> str:
    """The rig spec the ``rig`` fixture opens (the --hil value or the sim URL)."""
    return request.config.getoption("--hil") or request.config.getoption("--sim-rig")


@pytest.fixture
def rig(request, hil_rig_spec):
    """An open ``Rig``: the real one with --hil, else the simulator on a virtual clock."""
    from hil_af.clock import SimClock
    from hil_af.drivers.registry import open_rig

    real = request.config.getoption("--hil") is not None
    r = open_rig(hil_rig_spec, clock=None if real else SimClock())
    try:
        yield r
    finally:
        r.close()
