"""benchmarks/heldout_tables.py: the README's held-out-camera and seed tables are arithmetic on the
results JSON; a slip there moves a published figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("heldout_tables", ROOT / "benchmarks" / "heldout_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _block(mae, le1):
    return {"mae": mae, "le1": le1, "exact": 0.1, "le2": 0.5, "le4": 0.9, "failed": 0.02, "captures_mean": 2.0}


RES = {
    "cam-a": {
        "pe2:a0:zero-shot": _block(2.0, 0.40), "pe2:a1:zero-shot": _block(2.6, 0.30), "pe2:a2:zero-shot": _block(2.3, 0.50),
        "pe2:a0:fine-tuned": _block(1.0, 0.80),
        "pe2:b0:zero-shot": _block(3.0, 0.20),
        "pdaf": _block(1.5, 0.70),
    },
}


def test_seed_table_gives_mean_min_max_and_says_when_seeds_are_missing(tables):
    out = tables.seed_table(RES, {"A": ["a0", "a1", "a2"]}, ["cam-a"]).splitlines()
    row = out[2]
    assert row.startswith("| A (3 seeds) | cam-a | ")
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert cells[0] == "2.30 (2.00..2.60)"  # (2.0 + 2.6 + 2.3) / 3
    assert cells[1] == "40.0 (30.0..50.0)"
    assert cells[2] == "1.00 (1.00..1.00, 1 of 3 seeds)"
    assert cells[3] == "80.0 (80.0..80.0, 1 of 3 seeds)"


def test_variants_table_marks_runs_that_are_missing_and_uses_labels(tables):
    out = tables.variants_table(RES, ["a0", "b0", "zz"], {"a0": "model A"}).splitlines()
    assert out[2] == "| `cam-a` | model A | 2.00 | 40.0 | 1.00 | 80.0 |"
    assert out[3] == "| `cam-a` | b0 | 3.00 | 20.0 | - | - |"
    assert len(out) == 4  # a model with no result at all gets no row


def test_camera_table_rows_are_percentages_and_the_classical_rows_follow(tables):
    out = tables.camera_table(RES, "cam-a", "a0").splitlines()
    assert out[2] == "| pe2, pretrained (zero-shot) | 10.0 | 40.0 | 50.0 | 90.0 | 2.00 | 2.0 | 2.0 |"
    assert out[3].startswith("| **pe2, fine-tuned on the 8 sweeps** | 10.0 | 80.0 |")
    assert out[4].startswith("| pdaf (per-position, fitted on the 8 sweeps) | 10.0 | 70.0 |")
