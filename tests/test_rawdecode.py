"""Raw decoders: every layout x packing against reference packers written here, strides, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil_af.errors import BadInput
from hil_af.frames import DualPixelFrame
from hil_af.rawdecode import (
    LAYOUTS,
    decode_raw,
    pack_raw10,
    pack_raw12,
    packed_row_bytes,
    unpack_raw10,
    unpack_raw12,
    unpack_u16,
)

BITS = {"RAW10": 10, "RAW12": 12, "U16": 16}


# ---------------------------------------------------------------- reference packers: plain loops, straight from the CSI-2 spec


def ref_pack_raw10(img: np.ndarray, stride: int) -> bytes:
    H, W = img.shape
    out = bytearray(stride * H)
    for y in range(H):
        for g in range((W + 3) // 4):
            px = [int(img[y, 4 * g + i]) if 4 * g + i < W else 0 for i in range(4)]
            base = y * stride + 5 * g
            for i in range(4):
                out[base + i] = px[i] >> 2
            out[base + 4] = sum((px[i] & 3) << (2 * i) for i in range(4))
    return bytes(out)


def ref_pack_raw12(img: np.ndarray, stride: int) -> bytes:
    H, W = img.shape
    out = bytearray(stride * H)
    for y in range(H):
        for g in range((W + 1) // 2):
            px = [int(img[y, 2 * g + i]) if 2 * g + i < W else 0 for i in range(2)]
            base = y * stride + 3 * g
            out[base] = px[0] >> 4
            out[base + 1] = px[1] >> 4
            out[base + 2] = (px[0] & 0xF) | ((px[1] & 0xF) << 4)
    return bytes(out)


def ref_pack_u16(img: np.ndarray, stride_px: int) -> bytes:
    H, W = img.shape
    out = bytearray(2 * stride_px * H)
    for y in range(H):
        for x in range(W):
            v = int(img[y, x])
            out[2 * (y * stride_px + x)] = v & 0xFF
            out[2 * (y * stride_px + x) + 1] = v >> 8
    return bytes(out)


def ref_pack(img, fmt, stride):
    return {"RAW10": ref_pack_raw10, "RAW12": ref_pack_raw12, "U16": ref_pack_u16}[fmt](img, stride)


def ref_interleave(L: np.ndarray, R: np.ndarray, layout: str) -> np.ndarray:
    """The raw image a sensor with ``layout`` would give for views L, R (pixel by pixel)."""
    h, w = L.shape
    if layout == "columns":
        raw = np.zeros((h, 2 * w), L.dtype)
        for y in range(h):
            for x in range(w):
                raw[y, 2 * x], raw[y, 2 * x + 1] = L[y, x], R[y, x]
    elif layout == "rows":
        raw = np.zeros((2 * h, w), L.dtype)
        for y in range(h):
            raw[2 * y], raw[2 * y + 1] = L[y], R[y]
    elif layout == "halves":
        raw = np.zeros((h, 2 * w), L.dtype)
        for y in range(h):
            for x in range(w):
                raw[y, x], raw[y, w + x] = L[y, x], R[y, x]
    else:  # planes: left plane on top of the right plane
        raw = np.zeros((2 * h, w), L.dtype)
        raw[:h], raw[h:] = L, R
    return raw


# ---------------------------------------------------------------- known bytes from the spec


def test_raw10_known_bytes():
    buf = bytes([0xFF, 0x00, 0x80, 0x01, 0b11_10_01_00])
    assert unpack_raw10(buf, 4, 1).tolist() == [[(0xFF << 2) | 0, (0x00 << 2) | 1, (0x80 << 2) | 2, (0x01 << 2) | 3]]


def test_raw12_known_bytes():
    buf = bytes([0xAB, 0xCD, 0x21])
    assert unpack_raw12(buf, 2, 1).tolist() == [[0xAB1, 0xCD2]]


def test_u16_is_little_endian():
    assert unpack_u16(bytes([0x34, 0x12, 0xFF, 0x00]), 2, 1).tolist() == [[0x1234, 0x00FF]]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["RAW10", "RAW12", "U16"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_and_packing_round_trips(fmt, layout):
    rng = np.random.default_rng(hash((fmt, layout)) % 2**32)
    h, w = 6, 10
    top = 2 ** BITS[fmt] - 1
    black = 64
    L = rng.integers(black, top + 1, (h, w)).astype(np.uint16)
    R = rng.integers(black, top + 1, (h, w)).astype(np.uint16)
    raw = ref_interleave(L, R, layout)
    rh, rw = raw.shape
    pad = 7  # stride padding: bytes (RAW10/RAW12) or pixels (U16) that must be ignored
    stride = (rw if fmt == "U16" else packed_row_bytes(rw, fmt)) + pad
    unit = 2 if fmt == "U16" else 1  # bytes per stride unit
    buf = bytearray(ref_pack(raw, fmt, stride))
    for y in range(rh):  # fill the padding with junk
        end = (y + 1) * stride * unit
        buf[end - pad * unit : end] = b"\xa5" * (pad * unit)
    width, height = (w, h) if layout == "planes" else (rw, rh)
    f = decode_raw(bytes(buf), width, height, fmt=fmt, stride=stride, layout=layout, black_level=black)
    assert isinstance(f, DualPixelFrame)
    assert f.left.dtype == np.float32 and f.shape == (h, w)
    np.testing.assert_array_equal(f.left, L.astype(np.float32) - black)
    np.testing.assert_array_equal(f.right, R.astype(np.float32) - black)
    assert f.white_level == top - black
    assert f.sensor_hw == (h, w) and f.origin == (0, 0)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 13])
def test_vectorised_packers_match_reference_and_odd_widths_unpack(width):
    rng = np.random.default_rng(width)
    img10 = rng.integers(0, 1024, (3, width)).astype(np.uint16)
    img12 = rng.integers(0, 4096, (3, width)).astype(np.uint16)
    s10, s12 = packed_row_bytes(width, "RAW10") + 3, packed_row_bytes(width, "RAW12") + 2
    assert pack_raw10(img10, s10).tobytes() == ref_pack_raw10(img10, s10)
    assert pack_raw12(img12, s12).tobytes() == ref_pack_raw12(img12, s12)
    np.testing.assert_array_equal(unpack_raw10(ref_pack_raw10(img10, s10), width, 3, s10), img10)
    np.testing.assert_array_equal(unpack_raw12(ref_pack_raw12(img12, s12), width, 3, s12), img12)


def test_buffer_kinds_2d_arrays_and_plane_pairs():
    rng = np.random.default_rng(3)
    L = rng.integers(0, 1024, (4, 8)).astype(np.uint16)
    R = rng.integers(0, 1024, (4, 8)).astype(np.uint16)
    raw = ref_interleave(L, R, "columns")
    packed = np.frombuffer(ref_pack_raw10(raw, 32), np.uint8).reshape(4, 32)  # [H, stride]: stride taken from the shape
    f = decode_raw(packed, 16, 4, fmt="RAW10")
    np.testing.assert_array_equal(f.left, L)
    # planes given as two buffers, and as one [2, H, W] uint16 array
    f = decode_raw((L, R), 8, 4, fmt="U16", layout="planes")
    np.testing.assert_array_equal(f.right, R)
    f = decode_raw(np.stack([L, R]), 8, 4, fmt="U16", layout="planes")
    np.testing.assert_array_equal(f.left, L)
    # Picamera2-style uint8 rows of an unpacked 16-bit image
    rows = np.frombuffer(ref_pack_u16(raw, 20), np.uint8).reshape(4, 40)
    f = decode_raw(rows, 16, 4, fmt="U16")
    np.testing.assert_array_equal(f.right, R)


def test_float_input_and_metadata_passthrough():
    img = np.arange(32, dtype=np.float64).reshape(2, 16) + 10
    f = decode_raw(img, 16, 2, fmt="FLOAT", layout="halves", black_level=10, white_level=100,
                   sensor_hw=(10, 20), origin=(3, 4), lens_position=512)
    np.testing.assert_array_equal(f.left, img[:, :8] - 10)
    assert f.white_level == 90 and f.sensor_hw == (10, 20) and f.origin == (3, 4) and f.lens_position == 512


# ---------------------------------------------------------------- errors


def _msg(excinfo) -> str:
    return str(excinfo.value)


def test_wrong_size_names_format_and_numbers():
    with pytest.raises(BadInput) as e:
        decode_raw(bytes(9), 4, 2, fmt="RAW10", layout="columns")
    assert "RAW10" in _msg(e) and "10" in _msg(e) and "9" in _msg(e)
    with pytest.raises(BadInput) as e:
        decode_raw(bytes(20), 4, 2, fmt="RAW12", stride=12)
    assert "RAW12" in _msg(e) and "24" in _msg(e) and "20" in _msg(e)
    with pytest.raises(BadInput) as e:
        decode_raw(np.zeros((3, 8), np.uint16), 8, 2, fmt="U16")
    assert "[2, 8]" in _msg(e) and "[3, 8]" in _msg(e)


def test_short_stride_and_bad_stride():
    with pytest.raises(BadInput, match="stride 4 bytes is less than the packed row of 5"):
        decode_raw(bytes(8), 4, 2, fmt="RAW10", stride=4)
    with pytest.raises(BadInput, match="stride 6 pixels is less than the width 8"):
        decode_raw(np.zeros(12, np.uint16), 8, 2, fmt="U16", stride=6)
    with pytest.raises(BadInput, match="stride must be a positive integer"):
        decode_raw(bytes(10), 4, 2, fmt="RAW10", stride=0)


def test_wrong_dtypes():
    with pytest.raises(BadInput, match="RAW10.*uint8.*uint16"):
        decode_raw(np.zeros(10, np.uint16), 4, 2, fmt="RAW10")
    with pytest.raises(BadInput, match="U16.*int32"):
        decode_raw(np.zeros((2, 4), np.int32), 4, 2, fmt="U16")
    with pytest.raises(BadInput, match="FLOAT.*float"):
        decode_raw(np.zeros((2, 4), np.uint16), 4, 2, fmt="FLOAT")
    with pytest.raises(BadInput, match="bytes-like"):
        decode_raw("not bytes", 4, 2, fmt="RAW10")


@pytest.mark.parametrize("layout,w,h,what", [("columns", 5, 2, "even width, got 5"), ("halves", 7, 2, "even width, got 7"),
                                             ("rows", 4, 3, "even height, got 3")])
def test_odd_sizes_for_interleaving(layout, w, h, what):
    with pytest.raises(BadInput, match=f"{layout}.*{what}"):
        decode_raw(np.zeros((h, w), np.uint16), w, h, fmt="U16", layout=layout)


def test_nan_inf_unknown_names_and_levels():
    img = np.ones((2, 8), np.float32)
    img[1, 3] = np.nan
    with pytest.raises(BadInput, match="FLOAT 8x2: 1 pixel value"):
        decode_raw(img, 8, 2, fmt="FLOAT")
    img[1, 3] = np.inf
    with pytest.raises(BadInput, match="NaN or infinite"):
        decode_raw(img, 8, 2, fmt="FLOAT")
    with pytest.raises(BadInput, match="unknown raw format 'RAW14'"):
        decode_raw(bytes(16), 4, 2, fmt="RAW14")
    with pytest.raises(BadInput, match="unknown dual-pixel layout 'diagonal'"):
        decode_raw(bytes(10), 4, 2, layout="diagonal")
    with pytest.raises(BadInput, match="white_level 1023.0 must exceed black_level 2000"):
        decode_raw(bytes(10), 4, 2, black_level=2000)
    with pytest.raises(BadInput, match="black_level must be finite"):
        decode_raw(bytes(10), 4, 2, black_level=float("nan"))
    with pytest.raises(BadInput, match="width must be a positive integer"):
        decode_raw(bytes(10), 0, 2)
    with pytest.raises(BadInput, match="two buffers"):
        decode_raw((bytes(10),) * 3, 4, 2, layout="planes")
    with pytest.raises(BadInput, match="does not fit in sensor_hw"):
        decode_raw(bytes(10), 4, 2, sensor_hw=(2, 2), origin=(1, 0))


# ---------------------------------------------------------------- property: a result or BadInput, never anything else


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=256),
    width=st.integers(-2, 24),
    height=st.integers(-1, 12),
    fmt=st.sampled_from(["RAW10", "RAW12", "U16", "raw10", "FLOAT", "bad"]),
    layout=st.sampled_from(list(LAYOUTS) + ["x"]),
    stride=st.one_of(st.none(), st.integers(-1, 64)),
    black=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5000)),
    as_array=st.sampled_from(["bytes", "u8", "u16", "f32"]),
)
def test_random_input_gives_frame_or_badinput(data, width, height, fmt, layout, stride, black, as_array):
    buf: object = data
    if as_array == "u8":
        buf = np.frombuffer(data, np.uint8)
    elif as_array == "u16":
        buf = np.frombuffer(data[: len(data) // 2 * 2], "<u2")
    elif as_array == "f32":
        buf = np.frombuffer(data[: len(data) // 4 * 4], "<f4")
    try:
        f = decode_raw(buf, width, height, fmt=fmt, stride=stride, layout=layout, black_level=black)
    except BadInput:
        return
    assert isinstance(f, DualPixelFrame)
    assert f.left.dtype == np.float32 and f.left.shape == f.right.shape
    assert np.isfinite(f.left).all() and np.isfinite(f.right).all()


@settings(max_examples=150, deadline=None)
@given(
    fmt=st.sampled_from(["RAW10", "RAW12", "U16"]),
    layout=st.sampled_from(list(LAYOUTS)),
    h=st.integers(1, 6),
    w=st.integers(1, 9),
    pad=st.integers(0, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_views_round_trip_through_the_reference_packer(fmt, layout, h, w, pad, seed):
    rng = np.random.default_rng(seed)
    top = 2 ** BITS[fmt] - 1
    L = rng.integers(0, top + 1, (h, w)).astype(np.uint16)
    R = rng.integers(0, top + 1, (h, w)).astype(np.uint16)
    raw = ref_interleave(L, R, layout)
    rh, rw = raw.shape
    stride = (rw if fmt == "U16" else packed_row_bytes(rw, fmt)) + pad
    width, height = (w, h) if layout == "planes" else (rw, rh)
    f = decode_raw(ref_pack(raw, fmt, stride), width, height, fmt=fmt, stride=stride, layout=layout)
    np.testing.assert_array_equal(f.left, L)
    np.testing.assert_array_equal(f.right, R)


# ---------------------------------------------------------------- colour filters and RoI-only decoding
from hil_af.pdaf import crop_patches  # noqa: E402
from hil_af.rawdecode import cfa_reduce  # noqa: E402
from hil_af.rawroi import decode_rois  # noqa: E402


def _dual_pixel_bayer(hp: int, wp: int, shift: int, seed: int = 0):
    """A 2PD sensor's raw (columns layout): photosite (r, c) has colour RGGB[r % 2][c % 2] for both of its
    sub-pixels; the right sub-pixels see the scene ``shift`` photosites (of the same colour) further left."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(50, 900, (hp, wp + 8)).astype(np.uint16)
    left = scene[:, 4: 4 + wp]
    right = scene[:, 4 - shift: 4 - shift + wp]
    raw = np.empty((hp, 2 * wp), np.uint16)
    raw[:, 0::2], raw[:, 1::2] = left, right
    return raw, left, right


def test_cfa_views_are_split_per_photosite_then_reduced_per_cell():
    raw, left, right = _dual_pixel_bayer(8, 16, shift=2)
    f = decode_raw(pack_raw10(raw), 32, 8, fmt="RAW10", layout="columns", cfa="RGGB")
    assert f.shape == (4, 8)
    want = 0.25 * (left[0::2, 0::2] + left[0::2, 1::2].astype(np.float32) + left[1::2, 0::2] + left[1::2, 1::2])
    np.testing.assert_allclose(f.left, want)
    g = decode_raw(pack_raw10(raw), 32, 8, fmt="RAW10", layout="columns", cfa="RGGB", plane="green")
    np.testing.assert_allclose(g.right, 0.5 * (right[0::2, 1::2] + right[1::2, 0::2].astype(np.float32)))
    # a 2-photosite shift of the same colour is a 1-cell shift of the reduced views
    np.testing.assert_allclose(f.left[:, 1:-1], cfa_reduce(right, "RGGB")[:, 2:])


def test_plain_bayer_columns_are_colours_not_views():
    """What the issue found: even/odd columns of an ordinary RGGB mosaic are R/G and G/B, not L/R."""
    rng = np.random.default_rng(3)
    scene = rng.integers(100, 500, (8, 16)).astype(np.float32)
    bayer = scene.copy()
    bayer[0::2, 0::2] *= 1.8  # red gain
    bayer[1::2, 1::2] *= 0.5  # blue gain
    f = decode_raw(pack_raw10(bayer.astype(np.uint16)), 16, 8, fmt="RAW10", layout="columns")
    assert abs(float(f.left[0::2].mean()) / float(f.right[0::2].mean()) - 1.0) > 0.3  # R vs G rows


@pytest.mark.parametrize("fmt", ["RAW10", "RAW12", "U16"])
@pytest.mark.parametrize("layout", ["columns", "rows", "halves", "planes"])
@pytest.mark.parametrize("cfa", [None, "GRBG"])
def test_decode_rois_equals_whole_frame_decode_then_crop(fmt, layout, cfa):
    W, H = (48, 32)
    top = {"RAW10": 1023, "RAW12": 4095, "U16": 65535}[fmt]
    rng = np.random.default_rng(7)
    img = rng.integers(0, top + 1, ((2 * H) if layout == "planes" else H, W), dtype=np.uint16)
    if fmt == "RAW10":
        buf, stride = pack_raw10(img, 64), 64
    elif fmt == "RAW12":
        buf, stride = pack_raw12(img, 96), 96
    else:
        buf, stride = img.view(np.uint8).copy(), None
    whole = decode_raw(buf, W, H, fmt=fmt, stride=stride, layout=layout, cfa=cfa, black_level=16)
    vh, vw = whole.shape
    rois = np.array([[0, 0, 3, 2], [vw - 3, vh - 2, 3, 2], [1, 1, 3, 2]])
    L, R = decode_rois(buf, W, H, rois, fmt=fmt, stride=stride, layout=layout, cfa=cfa, black_level=16)
    wl, wr = crop_patches(whole.left, whole.right, rois)
    np.testing.assert_array_equal(L, wl)
    np.testing.assert_array_equal(R, wr)


def test_decode_rois_rejects_rois_outside_the_views():
    buf = pack_raw10(np.zeros((8, 16), np.uint16))
    with pytest.raises(BadInput, match="outside the 8x8 views"):
        decode_rois(buf, 16, 8, [[6, 0, 4, 4]], fmt="RAW10", layout="columns")
