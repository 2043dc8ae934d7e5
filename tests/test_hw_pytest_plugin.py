"""The pytest plugin (--hil, the rig fixture, @pytest.mark.hil, rig_feature) run through pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


TESTS = """
import pytest

SEEN = []

def test_rig_moves(rig):
    lo, hi = rig.lens.range
    rig.lens.move_to((lo + hi) / 2)
    assert rig.lens.position == pytest.approx((lo + hi) / 2, abs=1)
    assert rig.source.capture().shape[0] > 0
    SEEN.append(id(rig))

def test_rig_again(rig):
    SEEN.append(id(rig))
    print("REAL" if "real" in __import__("hil_af.pytest_plugin", fromlist=["x"]).rig_features(rig, rig_is_real(rig)) else "SIM")

def rig_is_real(rig):
    from hil_af.clock import SimClock
    return not isinstance(rig.clock, SimClock)

def test_same_rig_object_in_session():
    print("SHARED" if len(SEEN) == 2 and SEEN[0] == SEEN[1] else "FRESH")

@pytest.mark.hil
def test_only_on_hardware(rig):
    assert rig is not None

@pytest.mark.rig_feature("truth")
def test_needs_truth(rig):
    assert rig.truth is not None

@pytest.mark.rig_feature("real")
def test_needs_real(rig):
    pass
"""


def test_without_hil_uses_sim_and_skips_hardware_tests(pytester):
    pytester.makepyfile(test_tiny=TESTS)
    res = pytester.runpytest("-rs", "-s", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=4, skipped=2)
    res.stdout.fnmatch_lines([
        "hil-af rig: sim://?seed=1 (simulated*",
        "*SIM",
        "*FRESH",
        "SKIPPED*needs a real rig: run pytest with --hil RIG_URL*",
        "SKIPPED*lacks feature(s) real (has: *sim*",
    ])


def test_with_hil_runs_hardware_tests_on_one_shared_rig(pytester):
    pytester.makepyfile(test_tiny=TESTS)
    # a second sim instance stands in for the hardware: opened through the same --hil path
    res = pytester.runpytest("-rs", "-s", "-p", "no:cacheprovider", "--hil", "sim://?seed=2")
    res.assert_outcomes(passed=6)
    res.stdout.fnmatch_lines(["hil-af rig: sim://?seed=2 (real hardware)", "*REAL", "*SHARED"])


def test_hil_profile_name_and_feature_skip(pytester, tmp_path):
    prof = tmp_path / "bench.toml"
    prof.write_text('[rig]\nname = "bench"\nsource = "sim://?seed=3"\n')
    pytester.makepyfile(test_tiny="""
import pytest

@pytest.mark.hil
def test_named(rig):
    assert rig.name

@pytest.mark.rig_feature("truth", "lens_map")
def test_truth(rig):
    assert rig.truth is not None
""")
    res = pytester.runpytest("-p", "no:cacheprovider", "--hil", str(prof))
    res.assert_outcomes(passed=2)


def test_unopenable_rig_stops_the_session_with_one_clear_error(pytester):
    pytester.makepyfile(test_tiny="def test_a(rig):\n    pass\n\ndef test_b(rig):\n    pass\n")
    res = pytester.runpytest("-p", "no:cacheprovider", "--hil", "nosuch://0")
    assert res.ret == 3
    res.stdout.fnmatch_lines(["*--hil nosuch://0: cannot open the rig: UnknownScheme*hil-af doctor*"])


def test_unknown_feature_name_is_a_usage_error(pytester):
    pytester.makepyfile(test_tiny="import pytest\n\n@pytest.mark.rig_feature('teleport')\ndef test_x(rig):\n    pass\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*UsageError: rig_feature: unknown feature(s)*teleport*"])
