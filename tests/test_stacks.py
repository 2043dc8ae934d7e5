"""Focal-stack and frame files: every reader rule, round trips, numpy-made files, corrupt files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil_af.errors import BadInput, FormatError
from hil_af.frames import DualPixelFrame
from hil_af.stacks import FocalStack, load_frame, load_stack, save_frame, save_stack

from _data import REALDP

DROP = object()  # marks a key to leave out


def spec_arrays(n=5, H=16, W=24, dtype=np.uint16, seed=0) -> dict:
    """A valid focal stack, built with plain numpy straight from the spec."""
    rng = np.random.default_rng(seed)
    left = rng.integers(64, 1023, (n, H, W)).astype(dtype)
    right = rng.integers(64, 1023, (n, H, W)).astype(dtype)
    meta = {"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023, "lens_units": "vcm_code",
            "lens_dioptres": [float(10 - k) for k in range(n)], "scene": "bars", "my_key": {"kept": [1, 2]}}
    return {
        "left": left, "right": right,
        "lens_positions": np.linspace(100.0, 900.0, n),
        "rois": np.array([[0, 0, 8, 8], [W - 8, H - 8, 8, 8]], np.int32),
        "gt_index": np.array([1, -1], np.int16),
        "sensor_hw": np.array([H + 10, W + 20], np.int32),
        "origin": np.array([5, 10], np.int32),
        "meta": meta,
    }


def write(path: Path, arrays: dict, **over) -> Path:
    a = {**arrays, **over}
    a = {k: v for k, v in a.items() if v is not DROP}
    if isinstance(a.get("meta"), dict):
        a["meta"] = np.array(json.dumps(a["meta"]))
    np.savez(path, **a)
    return path


def meta_with(**kv):
    m = dict(spec_arrays()["meta"])
    for k, v in kv.items():
        if v is DROP:
            m.pop(k)
        else:
            m[k] = v
    return m


def test_numpy_made_stack_loads(tmp_path):
    a = spec_arrays()
    s = load_stack(write(tmp_path / "s.npz", a))
    assert s.n == 5 and s.view_hw == (16, 24) and s.sensor_hw == (26, 44) and s.origin == (5, 10)
    np.testing.assert_array_equal(s.left, a["left"])
    assert s.left.dtype == np.uint16
    assert s.meta["my_key"] == {"kept": [1, 2]}  # unknown keys kept
    f = s.frame(2)
    assert isinstance(f, DualPixelFrame) and f.left.dtype == np.float32
    np.testing.assert_array_equal(f.left, a["left"][2].astype(np.float32) - 64)
    assert f.lens_position == 500.0 and f.white_level == 1023 - 64 and f.origin == (5, 10) and f.sensor_hw == (26, 44)
    np.testing.assert_array_equal(s.dioptres(), [10, 9, 8, 7, 6])
    assert s.nearest_slice(290) == 1 and s.nearest_slice(-1e9) == 0
    with pytest.raises(BadInput, match="slice index 5"):
        s.frame(5)


# ---------------------------------------------------------------- each rule, violated by a numpy-made file


def _rules():
    a = spec_arrays()
    n, H, W = a["left"].shape
    return [
        ("left/right dtype", dict(right=a["right"].astype(np.float32)), "same dtype and shape"),
        ("left/right shape", dict(right=a["right"][:, :, :-1]), "same dtype and shape"),
        ("n >= 2", dict(left=a["left"][:1], right=a["right"][:1], lens_positions=a["lens_positions"][:1]), "n >= 2"),
        ("H >= 8", dict(left=a["left"][:, :7], right=a["right"][:, :7]), "H, W >= 8"),
        ("W >= 8", dict(left=a["left"][:, :, :7], right=a["right"][:, :, :7]), "H, W >= 8"),
        ("view dtype", dict(left=a["left"].astype(np.int32), right=a["right"].astype(np.int32)), "uint16 or float32"),
        ("view ndim", dict(left=a["left"][0], right=a["right"][0]), "[n, H, W]"),
        ("float views finite", dict(left=np.full((n, H, W), np.nan, np.float32), right=np.zeros((n, H, W), np.float32)), "finite"),
        ("roi inside", dict(rois=np.array([[0, 0, 8, 8], [W - 7, 0, 8, 8]], np.int32)), "rois[1]"),
        ("roi negative", dict(rois=np.array([[-1, 0, 8, 8], [0, 0, 8, 8]], np.int32)), "every RoI must lie inside"),
        ("roi zero size", dict(rois=np.array([[0, 0, 0, 8], [0, 0, 8, 8]], np.int32)), "every RoI must lie inside"),
        ("rois dtype", dict(rois=a["rois"].astype(np.int64)), "'rois' must be int32"),
        ("rois shape", dict(rois=a["rois"][:, :3]), "[P, 4]"),
        ("gt >= n", dict(gt_index=np.array([n, -1], np.int16)), "gt_index[0] = 5"),
        ("gt < -1", dict(gt_index=np.array([0, -2], np.int16)), "gt_index[1] = -2"),
        ("gt dtype", dict(gt_index=a["gt_index"].astype(np.int32)), "'gt_index' must be int16"),
        ("gt shape", dict(gt_index=np.array([0], np.int16)), "'gt_index' must have shape [P]"),
        ("origin inside", dict(origin=np.array([11, 10], np.int32)), "origin + (H, W) must lie inside sensor_hw"),
        ("origin negative", dict(origin=np.array([-1, 0], np.int32)), "origin + (H, W) must lie inside sensor_hw"),
        ("sensor_hw dtype", dict(sensor_hw=a["sensor_hw"].astype(np.int64)), "'sensor_hw' must be int32 [2]"),
        ("origin shape", dict(origin=np.array([0, 0, 0], np.int32)), "'origin' must be int32 [2]"),
        ("lens finite", dict(lens_positions=np.array([1, 2, np.inf, 4, 5.0])), "'lens_positions' must be finite"),
        ("lens increasing", dict(lens_positions=np.array([1, 2, 2, 4, 5.0])), "strictly increasing"),
        ("lens decreasing", dict(lens_positions=np.array([5, 4, 3, 2, 1.0])), "strictly increasing"),
        ("lens dtype", dict(lens_positions=a["lens_positions"].astype(np.float32)), "'lens_positions' must be float64"),
        ("lens length", dict(lens_positions=np.arange(4.0)), "'lens_positions' must have shape [n]"),
        ("meta json", dict(meta=np.array("{not json")), "does not parse as JSON"),
        ("meta object", dict(meta=np.array("[1, 2]")), "must be a JSON object"),
        ("meta 0-d str", dict(meta=np.array([json.dumps(a["meta"])])), "0-d str array"),
        ("meta format", dict(meta=meta_with(format="frame")), "'format' must be 'focal-stack'"),
        ("meta version", dict(meta=meta_with(version=2)), "'version' 2 is not a known version"),
        ("meta version missing", dict(meta=meta_with(version=DROP)), "'version' None is not a known version"),
        ("meta black", dict(meta=meta_with(black_level=DROP)), "lacks required key 'black_level'"),
        ("meta white type", dict(meta=meta_with(white_level="high")), "'white_level' must be a finite number"),
        ("meta white <= black", dict(meta=meta_with(white_level=10)), "must exceed black_level"),
        ("meta lens_units", dict(meta=meta_with(lens_units=DROP)), "'lens_units' must be a non-empty string"),
        ("meta dioptres", dict(meta=meta_with(lens_dioptres=[1, 2])), "'lens_dioptres' must be a list of 5"),
        ("meta scene", dict(meta=meta_with(scene=3)), "'scene' must be a string"),
        ("missing key", dict(gt_index=DROP), "missing required key(s) gt_index"),
        ("pickled object", dict(rois=np.array([None, 1], dtype=object)), "holds Python objects"),
    ]


@pytest.mark.parametrize("name,over,rule", _rules(), ids=[r[0] for r in _rules()])
def test_each_rule_violation_names_file_and_rule(tmp_path, name, over, rule):
    path = write(tmp_path / "bad.npz", spec_arrays(), **over)
    with pytest.raises(FormatError) as e:
        load_stack(path)
    assert str(path) in str(e.value)
    assert rule in str(e.value)


def test_corrupt_truncated_and_foreign_files(tmp_path):
    good = write(tmp_path / "good.npz", spec_arrays())
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError, match=str(p)):
            load_stack(p)
    # a compressed zip whose member data is damaged: zlib or CRC error -> FormatError
    a = spec_arrays()
    a["meta"] = np.array(json.dumps(a["meta"]))
    np.savez_compressed(tmp_path / "z.npz", **a)
    b = bytearray((tmp_path / "z.npz").read_bytes())
    for i in range(200, 264):
        b[i] ^= 0xFF
    p = tmp_path / "flipped.npz"
    p.write_bytes(bytes(b))
    with pytest.raises(FormatError, match="is damaged|not a readable npy array"):
        load_stack(p)
    p = tmp_path / "text.npz"
    p.write_text("hello")
    with pytest.raises(FormatError, match="not an .npz file") as e:
        load_stack(p)
    assert "allow_pickle" not in str(e.value) and "\n" not in str(e.value)
    p = tmp_path / "bare.npy"
    np.save(p, np.zeros(3))
    with pytest.raises(FormatError, match="not an .npz"):
        load_stack(p)
    with pytest.raises(BadInput, match="nothere.npz: no such focal stack"):
        load_stack(tmp_path / "nothere.npz")


# ---------------------------------------------------------------- writer


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("compressed", [True, False])
def test_save_load_round_trip(tmp_path, dtype, compressed):
    src = load_stack(write(tmp_path / "src.npz", spec_arrays(dtype=dtype)))
    out = save_stack(tmp_path / "out.npz", src, compressed=compressed)
    back = load_stack(out)
    for key in ("left", "right", "lens_positions", "rois", "gt_index"):
        np.testing.assert_array_equal(getattr(back, key), getattr(src, key))
        assert getattr(back, key).dtype == getattr(src, key).dtype
    assert back.left.dtype == np.dtype(dtype)
    assert back.meta == src.meta and back.sensor_hw == src.sensor_hw and back.origin == src.origin
    # and numpy alone reads what the writer wrote, per the spec
    with np.load(out, allow_pickle=False) as z:
        assert z["rois"].dtype == np.int32 and z["gt_index"].dtype == np.int16 and z["meta"].ndim == 0
        assert json.loads(str(z["meta"]))["format"] == "focal-stack"


def test_writer_casts_convenient_inputs_and_fills_format(tmp_path):
    a = spec_arrays()
    meta = {k: v for k, v in a["meta"].items() if k not in ("format", "version")}
    s = FocalStack(left=a["left"].astype(np.int64), right=a["right"].astype(np.int64), lens_positions=[1, 2, 3, 4, 5],
                   rois=[[0, 0, 8, 8]], gt_index=[2], sensor_hw=(16, 24), meta=meta)
    back = load_stack(save_stack(tmp_path / "c.npz", s))
    assert back.left.dtype == np.uint16 and back.rois.dtype == np.int32 and back.meta["version"] == 1
    assert back.lens_positions.dtype == np.float64


def test_writer_validates_before_writing_and_keeps_old_file(tmp_path):
    path = write(tmp_path / "s.npz", spec_arrays())
    before = path.read_bytes()
    s = load_stack(path)
    s.gt_index = np.array([7, -1], np.int16)
    with pytest.raises(FormatError, match=r"s.npz \(writing\).*gt_index\[0\] = 7"):
        save_stack(path, s)
    s.gt_index = np.array([1, -1], np.int16)
    s.left = s.left.astype(np.int64) - 100000
    with pytest.raises(FormatError, match="must fit uint16"):
        save_stack(path, s)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temp file left behind


# ---------------------------------------------------------------- frame files


def frame_arrays(**over):
    rng = np.random.default_rng(1)
    a = {"left": rng.integers(100, 4000, (12, 20)).astype(np.uint16), "right": rng.integers(100, 4000, (12, 20)).astype(np.uint16),
         "meta": {"format": "frame", "version": 1, "black_level": 100, "white_level": 4095, "lens_position": 321.5}}
    a.update(over)
    return a


def test_numpy_made_frame_defaults_and_round_trip(tmp_path):
    a = frame_arrays()
    f = load_frame(write(tmp_path / "f.npz", a))
    assert f.sensor_hw == (12, 20) and f.origin == (0, 0) and f.lens_position == 321.5 and f.white_level == 3995
    np.testing.assert_array_equal(f.right, a["right"].astype(np.float32) - 100)
    out = save_frame(tmp_path / "g.npz", f, black_level=100)
    with np.load(out, allow_pickle=False) as z:
        assert z["left"].dtype == np.uint16
        np.testing.assert_array_equal(z["left"], a["left"])
    g = load_frame(out)
    np.testing.assert_array_equal(g.left, f.left)
    assert g.white_level == f.white_level and g.lens_position == 321.5
    # non-integer values are stored as float32
    h = DualPixelFrame(left=f.left + 0.25, right=f.right, white_level=10.0, sensor_hw=(30, 40), origin=(2, 3))
    k = load_frame(save_frame(tmp_path / "h.npz", h))
    np.testing.assert_array_equal(k.left, h.left)
    assert k.sensor_hw == (30, 40) and k.origin == (2, 3) and np.isnan(k.lens_position)


@pytest.mark.parametrize("over,rule", [
    (dict(meta={"format": "focal-stack", "version": 1, "black_level": 0, "white_level": 1}), "'format' must be 'frame'"),
    (dict(right=np.zeros((12, 21), np.uint16)), "same dtype and shape"),
    (dict(origin=np.array([1, 0], np.int32)), "origin + (H, W) must lie inside sensor_hw"),
    (dict(left=np.zeros((4, 20), np.uint16), right=np.zeros((4, 20), np.uint16)), "H, W >= 8"),
    (dict(meta={"format": "frame", "version": 1, "black_level": 0, "white_level": 9, "lens_position": "far"}), "'lens_position'"),
    (dict(meta=DROP), "missing required key(s) meta"),
])
def test_frame_rules(tmp_path, over, rule):
    path = write(tmp_path / "bad_frame.npz", frame_arrays(), **over)
    with pytest.raises(FormatError) as e:
        load_frame(path)
    assert str(path) in str(e.value) and rule in str(e.value)


def test_real_pixel4_frame_loads():
    path = REALDP / "001.npz"
    if not path.exists():
        pytest.skip(f"real dual-pixel captures not found at {REALDP} (set HIL_AF_REALDP to their folder)")
    f = load_frame(path)
    assert f.shape == (1008, 1344) and f.sensor_hw == (1512, 2016) and f.origin == (252, 336)
    assert f.white_level == 16383 - 1024


# ---------------------------------------------------------------- property: mutated files -> a stack or FormatError

_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64]


@st.composite
def mutations(draw):
    key = draw(st.sampled_from(["left", "right", "lens_positions", "rois", "gt_index", "sensor_hw", "origin", "meta", "meta_key"]))
    if key == "meta":
        return key, draw(st.one_of(st.text(max_size=30), st.just("{}"), st.just('{"format": "focal-stack"}')))
    if key == "meta_key":
        k = draw(st.sampled_from(["format", "version", "black_level", "white_level", "lens_units", "lens_dioptres", "rig"]))
        v = draw(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), st.text(max_size=5),
                           st.lists(st.floats(), max_size=6)))
        return key, (k, v)
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(_DTYPES))
    values = draw(st.one_of(st.integers(-3, 20), st.floats(allow_nan=True, allow_infinity=True, width=32)))
    arr = np.full(shape, values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        arr = arr.astype(dtype) if np.dtype(dtype).kind == "f" else np.nan_to_num(arr).clip(-100, 100).astype(dtype)
    return key, arr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=st.lists(mutations(), min_size=1, max_size=3))
def test_mutated_stacks_load_or_raise_format_error(muts):
    a = spec_arrays(n=3, H=8, W=8)
    a["rois"] = np.array([[0, 0, 8, 8]], np.int32)
    a["gt_index"] = np.array([1], np.int16)
    a["meta"]["lens_dioptres"] = [1.0, 2.0, 3.0]
    for key, val in muts:
        if key == "meta_key":
            if isinstance(a["meta"], dict):
                a["meta"][val[0]] = val[1]
        else:
            a[key] = np.array(val) if key == "meta" else val
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.npz"
        if isinstance(a["meta"], dict):
            try:
                a["meta"] = np.array(json.dumps(a["meta"]))
            except ValueError:
                return
        np.savez(path, **a)
        try:
            s = load_stack(path)
        except FormatError as e:
            assert str(path) in str(e)
            return
        assert isinstance(s, FocalStack) and s.n >= 2
        s.frame(0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=st.lists(mutations(), min_size=1, max_size=2))
def test_mutated_frame_files_load_or_raise_format_error(muts):
    a = frame_arrays(sensor_hw=np.array([12, 20], np.int32), origin=np.array([0, 0], np.int32))
    for key, val in muts:
        if key == "meta_key":
            if isinstance(a["meta"], dict):
                a["meta"][val[0]] = val[1]
        elif key in ("left", "right", "sensor_hw", "origin"):
            a[key] = val
        elif key == "meta":
            a["meta"] = np.array(val)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.npz"
        if isinstance(a["meta"], dict):
            try:
                a["meta"] = np.array(json.dumps(a["meta"]))
            except ValueError:
                return
        np.savez(path, **a)
        try:
            f = load_frame(path)
        except FormatError as e:
            assert str(path) in str(e)
            return
        assert isinstance(f, DualPixelFrame) and f.left.dtype == np.float32


def test_frame_reader_survives_mutation(tmp_path):
    # a quick deterministic sweep of dtype swaps on the frame reader
    for dtype in _DTYPES:
        p = write(tmp_path / f"f_{np.dtype(dtype).name}.npz", frame_arrays(), left=np.zeros((12, 20), dtype))
        if np.dtype(dtype) == np.uint16:
            assert load_frame(p).shape == (12, 20)
        else:
            with pytest.raises(FormatError, match="same dtype|uint16 or float32"):
                load_frame(p)
