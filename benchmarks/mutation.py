"""Mutation testing of hil-af's core modules with mutmut, one module at a time.

    python benchmarks/mutation.py [GROUP ...] [--budget-s S] [--list] [--tests T ...]
                                  [--mutants PATTERN ...] [--resume]

Needs the ``mutation`` extra (``pip install -e '.[mutation]'``: mutmut 3).
For each group (default: all, in the order below) the repository is copied
to a scratch folder (``$HIL_AF_MUTATION_DIR``, default /tmp/hil-af-mutation/GROUP),
the ``[tool.mutmut]`` section of its pyproject.toml is rewritten so that only
the group's modules are mutated and only the group's test files run, and
``mutmut run --max-children 1`` is started under a wall-clock budget (a group
cut short is reported as such).  mutmut itself picks, per mutant, the tests
that call the mutated function.  The last lines printed are one summary row
per group: mutants, killed, survived, other (timeouts, suspicious,
no tests), kill rate and minutes; the survivors are listed by name
(``mutmut show NAME`` in the scratch folder shows the diff).

mutmut mutates code inside functions only; the module-level chip tables in
hil_af/drivers/vcm_chips.py are covered by the extra group ``chip-tables``,
which changes every integer/bytes literal of each ``VcmChip(...)`` table
(and of the ``dw9714`` power steps) one at a time and runs the chip tests.

A group too slow for one sitting can be run in parts: ``--mutants`` passes
fnmatch patterns of mutant names to ``mutmut run`` (e.g.
``'hil_af.pdaf.x__parabola*'``; with patterns, mutmut re-tests those mutants
even if they have a result), and ``--resume`` keeps the scratch folder and its
earlier results instead of starting afresh, so that a run cut short by its
budget continues where it stopped (mutmut skips mutants that have a result).
Without ``--resume`` the scratch folder is copied anew and every mutant is run.

This does not run in CI: a full pass takes the better part of an hour on two
cores (docs/mutation.md has the figures and every surviving mutant).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# group -> (modules to mutate, test files that guard them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    # (the sim-stack tests of test_eval.py cost minutes per mutant under load: add them for a full run)
    # (test_eval_units: every rule of evaluation.py on a 13-slice stack with a stand-in model, seconds a mutant)
    "evaluation": (["hil_af/evaluation.py"], ["tests/test_eval_units.py", "tests/test_protocol_regressions.py"] + [
        f"tests/test_eval.py::{name}" for name in ("test_metrics_hand_computed", "test_metrics_without_samples_is_bad_input",
                                                  "test_cdaf_on_replayed_stacks_finds_the_truth",
                                                  "test_eval_command_json_keys")]),
    # the controller unit tests run on a rig double (seconds); the sim-driven ones (test_focus_methods,
    # test_protocol_regressions, test_contrast_af's scans, test_controller_rois, test_pe_structure_gate,
    # test_pdaf_thresholds) cost a minute or more per surviving mutant under load: re-check survivors with them
    "controller": (["hil_af/controller/*"],
                   ["tests/test_controller_units.py", "tests/test_controller_methods_units.py",
                    "tests/test_controller_edges_units.py", "tests/test_controller_thresholds_units.py",
                    "tests/test_controller_cycle_units.py",
                    "tests/test_controller.py",
                    "tests/test_pe_structure_gate.py::test_views_structure_is_high_on_a_shifted_texture_and_near_zero_on_noise",
                    "tests/test_focusfom.py::test_region_weights_are_libcamera_computeweights",
                    "tests/test_contrast_af.py::test_find_peak_is_libcamera_parabola",
                    "tests/test_contrast_af.py::test_libcamera_params_read_from_a_tuning_file"]),
    # test_pdaf_units(2): small hand-made patches, seconds per mutant; test_pdaf.py's statistical checks on
    # 64x64 patches took ~8 min a pass on the loaded machine (add them with --tests for a full run)
    "pdaf": (["hil_af/pdaf.py", "hil_af/pdaf_xcorr.py"], ["tests/test_pdaf_units.py", "tests/test_pdaf_units2.py", "tests/test_pdaf_xcorr.py", "tests/test_pdaf_structure.py"]),
    "rawdecode": (["hil_af/rawdecode.py"], ["tests/test_rawdecode.py", "tests/test_rawdecode_edges.py"]),
    "vcm": (["hil_af/drivers/vcm_chips.py", "hil_af/drivers/i2c_vcm.py"],
            ["tests/test_hw_i2c.py", "tests/test_chip_bytes.py"]),
    # test_calib_units: in_focus_positions, measure_stacks' columns and refusals, predict_patches with a
    # flat field and one_shot_errors on hand-made stacks (seconds); test_calib_units2: the predictor's second
    # look (windows, search, flat field), its defaults and messages, track_consensus' rules (seconds);
    # test_calib_fit_units: every CAL.json key of fit_calibration on exact lines (seconds);
    # test_calib_sim's statistical sim check is not listed
    "calibration": (["hil_af/calibration/fit.py", "hil_af/calibration/predict.py"],
                    ["tests/test_calib_units.py", "tests/test_calib_units2.py", "tests/test_calib_fit_units.py",
                     "tests/test_calib_fit.py", "tests/test_protocol_regressions.py"]),
    # the fast list: test_model_train.py's tiny training run (46 s, 231 s under load) and the slow T2 test of
    # test_protocol_regressions are replaced by tests/test_train_units.py (1-4 optimiser steps of a bias-only
    # stand-in) and tests/test_train_flow.py (train() twice on 16 px stacks, ~8 s); test_model_inference.py
    # (a torch export per test, 4-6 s each) is left out: encoding's rules are in test_model_encoding.py
    "model": (["hil_af/model/encoding.py", "hil_af/model/dataset.py", "hil_af/model/train.py"],
              ["tests/test_model_encoding.py", "tests/test_model_dataset_units.py", "tests/test_train_units.py",
               "tests/test_train_flow.py", "tests/test_any_sweep.py", "tests/test_defocus_readout.py",
               "tests/test_pe_confidence.py::test_training_fits_the_threshold_on_held_out_pairs",
               "tests/test_train_recipe.py::test_step2_starts_from_step1_at_half_temperature_on_step1_predictions"] + [
                  f"tests/test_model_train.py::{name}" for name in (
                      "test_patchset_batch_equals_the_inference_encoding", "test_jitter_moves_pixels_and_roi_pe_together",
                      "test_split_is_by_whole_stack_and_seeded", "test_init_rejects_a_mismatched_model",
                      "test_train_cli_bad_input")] + [
                  f"tests/test_protocol_regressions.py::{name}" for name in (
                      "test_lens_pe_reaching_onnxruntime_is_k_over_n_minus_1_for_both_steps",
                      "test_step2_pairs_are_at_the_step1_predictions",
                      "test_step2_pairs_take_the_controllers_decode_not_the_argmax",
                      "test_eval_scores_every_start_slice_and_rois_with_gt_at_both_ends",
                      "test_lens_shift_reads_the_lens_pe_channel_4")]),
}
CHIP_TABLES = "chip-tables"
COPY = ["hil_af", "tests", "calibration", "models", "drivers", "scripts", "systemd", "docs", "README.md", "pyproject.toml"]


def scratch_copy(group: str, resume: bool = False) -> Path:
    base = Path(os.environ.get("HIL_AF_MUTATION_DIR", "/tmp/hil-af-mutation"))
    dst = base / group
    if resume and (dst / "mutants").is_dir():
        return dst
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants", ".pytest_cache")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def mutmut_config(modules: list[str], tests: list[str], fast: bool = True) -> str:
    q = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    return (
        "[tool.mutmut]\n"
        'source_paths = ["hil_af"]\n'
        f"only_mutate = {q(modules)}\n"
        f"pytest_add_cli_args_test_selection = {q(tests)}\n"
        # --tb=no --assert=plain: a killed mutant's failure report is not formatted (tracebacks and assertion
        # diffs took ~15 s per killed calibration mutant under load, 0.3-0.5 s without; the exit code decides)
        f"pytest_add_cli_args = {q(['-p', 'no:cacheprovider', '-x', '-q'] + (['-m', 'not slow'] if fast else []) + ['--tb=no', '--assert=plain'])}\n"
        f"also_copy = {q([c for c in COPY if c not in ('hil_af', 'tests', 'pyproject.toml')])}\n"
        "use_git_change_detection = false\n"
    )


def write_config(dst: Path, modules: list[str], tests: list[str], fast: bool = True) -> None:
    p = dst / "pyproject.toml"
    text = p.read_text()
    text = re.split(r"^\[tool\.mutmut\]\s*$", text, flags=re.M)[0].rstrip() + "\n\n"
    p.write_text(text + mutmut_config(modules, [t for t in tests if (dst / t.split("::")[0]).exists()], fast))


def parse_results(dst: Path) -> dict:
    """Counts and survivors from mutmut's per-file ``.meta`` records (exit code per mutant;
    ``mutmut results`` reads the same files but took many minutes on a loaded machine)."""
    from mutmut.stats import status_by_exit_code

    status: dict[str, str] = {}
    for meta in sorted((dst / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            status[name] = status_by_exit_code[code]
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    return {"counts": counts, "survivors": sorted(k for k, v in status.items() if v == "survived"),
            "other": sorted(f"{k} ({v})" for k, v in status.items() if v not in ("killed", "survived", "not checked"))}


def run_group(group: str, budget_s: float, tests: list[str] | None = None, mutants: list[str] | None = None,
              resume: bool = False) -> dict:
    modules, default_tests = GROUPS[group]
    tests = tests or default_tests
    resumed = resume and (Path(os.environ.get("HIL_AF_MUTATION_DIR", "/tmp/hil-af-mutation")) / group / "mutants").is_dir()
    dst = scratch_copy(group, resume)
    if not resumed:
        write_config(dst, modules, tests)
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(dst), os.environ.get("PYTHONPATH", "")) if p))
    # one OpenMP thread: mutmut forks each mutant's test run from a process whose torch already started
    # its OpenMP team (the stats pass); GNU OpenMP is not fork-safe, and a child's first parallel torch op
    # waited forever at the team barrier (gdb: gomp_team_barrier_wait_end), scored as a CPU-time "timeout"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *(mutants or [])],
                              cwd=dst, env=env,
                              timeout=budget_s, capture_output=True, text=True)
        complete = proc.returncode == 0
        if not complete:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
    except subprocess.TimeoutExpired:
        complete = False
    res = parse_results(dst)
    res.update(group=group, minutes=(time.monotonic() - t0) / 60, complete=complete, scratch=str(dst))
    return res


# -- chip tables: module-level literals, which mutmut does not mutate ------
def _table_literals(src: str) -> list[tuple[int, int, int, str]]:
    """(start offset, end offset, line, text) of every int/bytes literal inside VcmChip(...) / Step(...) calls."""
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("VcmChip", "Step", "replace"):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and type(sub.value) in (int, float) and sub is not node:
                    a = starts[sub.lineno - 1] + sub.col_offset
                    b = starts[sub.end_lineno - 1] + sub.end_col_offset  # type: ignore[operator]
                    out.append((a, b, sub.lineno, src[a:b]))
    return sorted(set(out))


def _mutated_literal(text: str) -> str:
    v = ast.literal_eval(text)
    if isinstance(v, float):
        return repr(v * 2 if v else 0.5)
    return hex(v ^ 1) if text.lower().startswith("0x") else str(v + 1)


def run_chip_tables(budget_s: float) -> dict:
    dst = scratch_copy(CHIP_TABLES)
    path = dst / "hil_af/drivers/vcm_chips.py"
    src = path.read_text()
    t0 = time.monotonic()
    killed, survivors = 0, []
    lits = _table_literals(src)
    for a, b, line, text in lits:
        if time.monotonic() - t0 > budget_s:
            break
        new = _mutated_literal(text)
        path.write_text(src[:a] + new + src[b:])
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                "tests/test_chip_bytes.py", "tests/test_hw_i2c.py"], cwd=dst,
                               env=dict(os.environ, PYTHONPATH=str(dst)), capture_output=True, text=True,
                               timeout=max(60.0, budget_s / 4))
            passed = r.returncode == 0
        except subprocess.TimeoutExpired:  # a hang (e.g. a ramp that never ends) counts as caught, like mutmut's timeouts
            passed = False
        if passed:
            survivors.append(f"vcm_chips.py:{line} {text} -> {new}")
        else:
            killed += 1
    path.write_text(src)
    tested = killed + len(survivors)
    return {"group": CHIP_TABLES, "counts": {"killed": killed, "survived": len(survivors),
                                             "not run (budget)": len(lits) - tested},
            "survivors": survivors, "other": [], "minutes": (time.monotonic() - t0) / 60,
            "complete": tested == len(lits), "scratch": str(dst)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run (default all): {', '.join([*GROUPS, CHIP_TABLES])}")
    ap.add_argument("--budget-s", type=float, default=1800, help="wall-clock limit per group, seconds (default 1800)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--list", action="store_true", help="print the groups with their modules and tests, and exit")
    ap.add_argument("--report", action="store_true", help="only summarise the scratch folders of an earlier run")
    ap.add_argument("--tests", nargs="+", metavar="TEST",
                    help="test files / node ids to run instead of the group's list (e.g. fewer, faster ones)")
    ap.add_argument("--mutants", nargs="+", metavar="PATTERN",
                    help="only these mutants (fnmatch patterns of mutmut's names, e.g. 'hil_af.pdaf.x__parabola*')")
    ap.add_argument("--resume", action="store_true",
                    help="keep the scratch folder and its earlier results (continue a run cut short by its budget)")
    a = ap.parse_args(argv)
    if a.list:
        for g, (mods, tests) in GROUPS.items():
            print(f"{g:12} {' '.join(mods)}  <-  {' '.join(tests)}")
        print(f"{CHIP_TABLES:12} hil_af/drivers/vcm_chips.py (table literals)  <-  tests/test_chip_bytes.py tests/test_hw_i2c.py")
        return 0
    groups = a.groups or [*GROUPS, CHIP_TABLES]
    bad = [g for g in groups if g not in GROUPS and g != CHIP_TABLES]
    if bad:
        ap.error(f"unknown group(s) {bad}; known: {', '.join([*GROUPS, CHIP_TABLES])}")
    results = []
    for g in groups:
        if a.report and g != CHIP_TABLES:
            base = Path(os.environ.get("HIL_AF_MUTATION_DIR", "/tmp/hil-af-mutation")) / g
            if not base.exists():
                continue
            r = parse_results(base)
            r.update(group=g, minutes=float("nan"), complete=False, scratch=str(base))
        elif a.report:
            continue
        else:
            r = run_chip_tables(a.budget_s) if g == CHIP_TABLES else run_group(g, a.budget_s, a.tests, a.mutants, a.resume)
        results.append(r)
        c = r["counts"]
        tested = c.get("killed", 0) + c.get("survived", 0) + c.get("timeout", 0)
        rate = 100 * (c.get("killed", 0) + c.get("timeout", 0)) / tested if tested else 0.0
        r["kill_rate"] = rate
        print(f"{g:12} mutants {sum(c.values()):4d}  killed {c.get('killed', 0):4d}  survived {c.get('survived', 0):3d}  "
              f"not run {c.get('not checked', 0) + c.get('not run (budget)', 0):4d}  "
              f"other {sum(v for k, v in c.items() if k not in ('killed', 'survived', 'not checked', 'not run (budget)')):3d}  "
              f"kill rate {rate:5.1f} %  {r['minutes']:5.1f} min{'' if r['complete'] else '  (INCOMPLETE)'}", flush=True)
        for s in r["survivors"]:
            print(f"    survived: {s}")
        for s in r["other"]:
            print(f"    other:    {s}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
