"""Every reader against hostile inputs (benchmarks/fuzz_readers.py, fixed seed), plus the rules it relies on.

The corpus run happens in a subprocess under RLIMIT_AS (set by the script
before numpy is imported), with a per-case alarm: a memory bomb that were
decompressed, or a FIFO that were opened blocking, fails the run instead of
hurting the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hil_af.calibration.fit import Samples, _tracks, track_consensus
from hil_af.errors import BadInput, FormatError

REPO = Path(__file__).resolve().parents[1]
MEM_MIB = 1024


def test_every_reader_refuses_hostile_inputs_with_one_line_under_a_memory_cap():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz_readers.py"), "--seed", "14", "--random", "16",
                        "--mem-mib", str(MEM_MIB), "--case-timeout", "120", "--json"],
                       capture_output=True, text=True, timeout=1500, env=env)
    assert p.stdout.strip(), f"no summary (rc {p.returncode}):\n{p.stderr[-3000:]}"
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["failures"] == [], json.dumps(res["failures"], indent=1)
    assert p.returncode == 0
    assert set(res["by_reader"]) == {"stack", "frame", "flatfield", "calibration", "card", "manifest", "profile", "request"}
    assert res["tried"] >= 200
    assert res["refused"] >= 0.75 * res["tried"]  # most inputs are hostile; the rest are still-valid files
    assert 0 < res["peak_rss_mib"] < MEM_MIB


def _write_stack(path: Path, dtype: str) -> dict:
    rng = np.random.default_rng(1)
    a = {"left": rng.integers(0, 1000, (3, 16, 16)).astype(dtype), "right": rng.integers(0, 1000, (3, 16, 16)).astype(dtype),
         "lens_positions": np.array([1.0, 2.0, 3.0]), "rois": np.array([[0, 0, 8, 8]], np.int32),
         "gt_index": np.array([1], np.int16), "sensor_hw": np.array([16, 16], np.int32), "origin": np.array([0, 0], np.int32),
         "meta": np.array(json.dumps({"format": "focal-stack", "version": 1, "black_level": 0, "white_level": 1023,
                                      "lens_units": "code"}))}
    np.savez(path, **a)
    return a


def test_big_endian_uint16_views_are_converted_not_refused(tmp_path):
    from hil_af.stacks import load_stack

    a = _write_stack(tmp_path / "be.npz", ">u2")
    st = load_stack(tmp_path / "be.npz")
    assert st.left.dtype == np.dtype(np.uint16) and st.left.dtype.isnative
    assert np.array_equal(st.left, a["left"].astype(np.uint16))


def test_fifo_is_refused_without_blocking(tmp_path):
    from hil_af.stacks import load_frame, load_stack

    f = tmp_path / "x.npz"
    os.mkfifo(f)
    for fn in (load_stack, load_frame):
        with pytest.raises(BadInput, match="not a regular file"):
            fn(f)


def test_non_npz_file_says_what_it_is_not(tmp_path):
    """issue 16 item 4: no numpy advice to load it unsafely."""
    from hil_af.cli import main

    t = tmp_path / "t.npz"
    t.write_text("hi\n")
    p = subprocess.run([sys.executable, "-m", "hil_af.cli", "disparity", str(t)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "not an .npz file" in p.stderr and "allow_pickle" not in p.stderr and str(t) in p.stderr
    assert main is not None


def test_deflate_bomb_is_refused_from_its_header(tmp_path):
    """A 1 MB file whose view inflates to 16384 x 16384 uint16 (512 MiB): refused from the npy header,
    with less than 16 MiB allocated (numpy's reader allocated the whole array first)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import fuzz_readers as F
    finally:
        sys.path.pop(0)
    from hil_af.stacks import load_frame

    h = F._npy_header((16384, 16384), "<u2")
    rest = {"right.npy": F._member(np.zeros((16, 16), np.uint16)),
            "meta.npy": F._member(np.array(json.dumps({"format": "frame", "version": 1, "black_level": 0, "white_level": 9})))}
    (tmp_path / "bomb.npz").write_bytes(F._zip({"left.npy": F._zero_bomb(h, 2 * 16384 ** 2), **rest}))
    assert (tmp_path / "bomb.npz").stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"16384x16384 = 268435456 pixels exceed the limit"):
            load_frame(tmp_path / "bomb.npz")
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


def _samples(n_stacks: int, n_rois: int, per_track: int = 6, roi_offset: int = 0) -> Samples:
    rng = np.random.default_rng(3)
    stack = np.repeat(np.arange(n_stacks), n_rois * per_track)
    roi = np.tile(np.repeat(np.arange(n_rois) + roi_offset, per_track), n_stacks)
    N = stack.size
    defocus = np.tile(np.linspace(-60, 60, per_track), n_stacks * n_rois)
    disparity = 0.02 * defocus + rng.normal(0, 0.01, N)
    z = np.zeros(N)
    return Samples(stack=stack, roi=roi, cx=z + 10, cy=z + 10, lens_position=defocus, defocus=defocus,
                   disparity=disparity, confidence=np.ones(N), sensor_hw=(100, 100), slice_spacing=10.0, lens_units="code")


def test_track_keys_do_not_collide_past_100000_rois():
    s = _samples(2, 1, roi_offset=0)
    s.roi[: s.roi.size // 2] = 100000  # stack 0 RoI 100000 vs stack 1 RoI 0: one key under stack*100000+roi
    groups = _tracks(s, np.ones(s.stack.size, bool), np.zeros(s.stack.size, np.int64))
    assert len(groups) == 2


def _consensus_peak(n_rois: int) -> int:
    s = _samples(1, n_rois)  # every track in one cell: a full-length mask per track and a T x T matrix before
    tracemalloc.start()
    try:
        keep = track_consensus(s, np.ones(s.stack.size, bool), np.zeros(s.stack.size, np.int64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert keep.all()  # every track lies on the one line
    return peak


def test_track_consensus_memory_is_linear_in_rois():
    small, large = _consensus_peak(300), _consensus_peak(1200)
    assert large < 8 * small, (small, large)  # 4x the RoIs: ~4x the memory (it was ~16x: quadratic)


@pytest.mark.parametrize("card", ['{"n_slices": Infinity, "encoding": {"size": 64}, "files": {}}',
                                  "[" * 100_000 + "]" * 100_000, '{"n_slices": ' + "9" * 5000 + "}"])
def test_serve_with_a_bad_model_card_exits_2_in_one_line(tmp_path, capsys, card):
    """Exit 1 with a traceback made systemd's Restart=on-failure loop; bad input is exit 2."""
    from hil_af.cli import main

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "card.json").write_text(card)
    rc = main(["serve", "sim://?seed=1", "--socket", str(tmp_path / "s.sock"), "--model", str(tmp_path / "m"),
               "--method", "pe2", "--clock", "sim", "--log-level", "error"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "card.json" in err, err


@pytest.mark.parametrize("value", ["inf", "nan", "1e9", "0"])
def test_disparity_max_shift_must_be_finite_and_in_range(tmp_path, capsys, value):
    from hil_af.cli import main
    from hil_af.frames import DualPixelFrame
    from hil_af.stacks import save_frame

    f = np.full((64, 96), 100, np.float32)
    save_frame(tmp_path / "f.npz", DualPixelFrame(left=f, right=f), black_level=64, white_level=1023)
    assert main(["disparity", str(tmp_path / "f.npz"), "--max-shift", value]) == 2
    assert "--max-shift must be a number in 1.." in capsys.readouterr().err
