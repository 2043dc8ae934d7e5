"""Edges of hil_af.rawdecode that mutation testing found unguarded (docs/mutation.md).

The rejected inputs are checked with their messages (the message is the user's only clue), the
packed row sizes come from the MIPI CSI-2 packings (RAW10: 4 pixels in 5 bytes, RAW12: 2 pixels
in 3 bytes) and the packers' bytes are written out by hand from the same definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.errors import BadInput
from hil_af.rawdecode import (
    FORMATS,
    cfa_reduce,
    decode_raw,
    pack_raw10,
    pack_raw12,
    packed_row_bytes,
    split_views,
    unpack,
    unpack_float,
    unpack_raw10,
    unpack_raw12,
    unpack_u16,
)


# ---------------------------------------------------------------- packed row sizes


@pytest.mark.parametrize("width,raw10,raw12,u16", [(1, 5, 3, 2), (2, 5, 3, 4), (3, 5, 6, 6), (4, 5, 6, 8),
                                                   (5, 10, 9, 10), (8, 10, 12, 16), (9, 15, 15, 18)])
def test_packed_row_bytes_of_the_csi2_packings(width, raw10, raw12, u16):
    assert packed_row_bytes(width, "RAW10") == raw10
    assert packed_row_bytes(width, "raw12") == raw12  # format names are case-insensitive
    assert packed_row_bytes(width, "U16") == u16


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("width", [1, 3, 4, 7])
def test_the_packed_row_is_the_shortest_row_each_unpacker_accepts(fmt, width):
    """A buffer of ``height`` packed rows (FLOAT: ``width`` values a row) unpacks; one unit less a row does not."""
    n, h = packed_row_bytes(width, fmt), 2
    if fmt == "FLOAT":
        full, short = np.zeros(h * n, np.float32), np.zeros(h * (n - 1), np.float32)
    else:
        full, short = bytes(h * n), bytes(h * (n - 1))
    assert unpack(full, width, h, fmt).shape == (h, width)
    with pytest.raises(BadInput):
        unpack(short, width, h, fmt)


# ---------------------------------------------------------------- packers (test/benchmark side): bounds and bytes


def test_pack_raw10_bytes_at_the_ends_of_the_range():
    # bytes 0..3: bits 9:2 of pixels 0..3; byte 4: bits 1:0 of pixel 0 in 1:0, 1 in 3:2, 2 in 5:4, 3 in 7:6
    img = np.array([[0, 1023, 0, 1023]], np.uint16)
    assert pack_raw10(img).tobytes() == bytes([0x00, 0xFF, 0x00, 0xFF, 0b11001100])
    assert pack_raw10(img, 5).tobytes() == bytes([0x00, 0xFF, 0x00, 0xFF, 0b11001100])  # stride = the packed row
    assert pack_raw10(img, 7).tobytes() == bytes([0x00, 0xFF, 0x00, 0xFF, 0b11001100, 0, 0])


def test_pack_raw12_bytes_at_the_ends_of_the_range():
    # bytes 0, 1: bits 11:4 of pixels 0, 1; byte 2: pixel 0's bits 3:0 in 3:0, pixel 1's in 7:4
    img = np.array([[0, 4095], [4095, 0]], np.uint16)
    assert pack_raw12(img).tobytes() == bytes([0x00, 0xFF, 0xF0, 0xFF, 0x00, 0x0F])
    assert pack_raw12(img, 3).shape == (2, 3)


@pytest.mark.parametrize("pack,top", [(pack_raw10, 1023), (pack_raw12, 4095)])
def test_packers_reject_what_is_not_a_2d_integer_image_in_range(pack, top):
    msg = rf"^{pack.__name__}: expected a 2-D integer image with values 0\.\.{top}"
    for bad in (np.zeros(4, np.uint16),                  # 1-D
                np.zeros((2, 4), np.float32),            # float, though in range
                np.full((2, 4), top + 1, np.uint16),     # one over the top
                np.array([[-1, 0, 0, 0]], np.int16)):    # negative
        with pytest.raises(BadInput, match=msg):
            pack(bad)


@pytest.mark.parametrize("pack,row", [(pack_raw10, 5), (pack_raw12, 6)])
def test_packers_reject_a_stride_shorter_than_the_packed_row(pack, row):
    img = np.zeros((2, 4), np.uint16)
    with pytest.raises(BadInput, match=rf"^{pack.__name__}: stride {row - 1} < packed row {row} bytes"):
        pack(img, row - 1)


# ---------------------------------------------------------------- FLOAT


def test_float_1d_buffers_with_and_without_row_padding():
    vals = np.arange(20, dtype=np.float32)
    np.testing.assert_array_equal(unpack_float(vals, 8, 2, stride=10), [list(range(0, 8)), list(range(10, 18))])
    np.testing.assert_array_equal(unpack_float(vals[:16], 8, 2), [list(range(0, 8)), list(range(8, 16))])
    with pytest.raises(BadInput, match=r"FLOAT 8x2: expected 2 rows x 8 pixels = 16 values, got 20"):
        unpack_float(vals, 8, 2)


def test_float_2d_buffers_take_the_stride_from_the_shape():
    vals = np.arange(20, dtype=np.float64).reshape(2, 10)
    out = unpack_float(vals, 8, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, vals[:, :8])
    with pytest.raises(BadInput, match=r"FLOAT 8x2: expected a \[2, 8\] array \(height, stride\), got \[3, 8\]"):
        unpack_float(np.zeros((3, 8)), 8, 2)


def test_float_rejections_name_the_format_and_what_was_given():
    with pytest.raises(BadInput, match=r"FLOAT 8x2: expected a float32/float64 array, got list"):
        unpack_float([0.0] * 16, 8, 2)
    with pytest.raises(BadInput, match=r"FLOAT 8x2: expected a float32/float64 array, got uint16"):
        unpack_float(np.zeros((2, 8), np.uint16), 8, 2)
    with pytest.raises(BadInput, match=r"FLOAT 0x2: width must be a positive integer, got 0"):
        unpack_float(np.zeros(16, np.float32), 0, 2)
    with pytest.raises(BadInput, match=r"FLOAT 8x2: stride must be a positive integer, got 0"):
        unpack_float(np.zeros(16, np.float32), 8, 2, stride=0)


# ---------------------------------------------------------------- split_views called directly


def test_split_views_rejections():
    with pytest.raises(BadInput, match=r"unknown dual-pixel layout 'diagonal' \(known: columns, rows, halves, planes\)"):
        split_views(np.zeros((4, 4)), "diagonal")
    for shape in ((2, 8), (3, 4, 4)):  # 2-D although its first side is 2; three planes
        with pytest.raises(BadInput, match=rf"layout 'planes': expected \[2, H, W\], got \[{', '.join(map(str, shape))}\]"):
            split_views(np.zeros(shape), "planes")
    with pytest.raises(BadInput, match=r"layout 'columns': expected a 2-D image, got \[2, 4, 4\]"):
        split_views(np.zeros((2, 4, 4)), "columns")


# ---------------------------------------------------------------- sizes, strides and buffers that are refused


@pytest.mark.parametrize("bad", [5.5, True, "5"])
def test_stride_must_be_a_positive_integer_not_a_float_bool_or_string(bad):
    with pytest.raises(BadInput, match=rf"RAW10 4x2: stride must be a positive integer, got {bad!r}"):
        unpack_raw10(bytes(10), 4, 2, stride=bad)


@pytest.mark.parametrize("w,h,name", [(4.0, 2, "width"), (True, 2, "width"), (4, 0, "height"), (4, 2.0, "height")])
def test_width_and_height_must_be_positive_integers(w, h, name):
    with pytest.raises(BadInput, match=rf"RAW10 {w}x{h}: {name} must be a positive integer, got {h if name == 'height' else w!r}"):
        unpack_raw10(bytes(10), w, h)


def test_byte_buffer_rejections_say_what_was_expected_and_what_came():
    with pytest.raises(BadInput, match=r"RAW10 4x2: expected a bytes-like buffer or numpy array, got str"):
        unpack_raw10("not bytes", 4, 2)
    with pytest.raises(BadInput, match=r"RAW10 4x2: expected a \[2, 5\] byte array \(height, stride\), got \[3, 5\]"):
        unpack_raw10(np.zeros((3, 5), np.uint8), 4, 2)
    with pytest.raises(BadInput, match=r"RAW10 4x2: expected a 1-D or 2-D buffer, got 3-D \[1, 2, 5\]"):
        unpack_raw10(np.zeros((1, 2, 5), np.uint8), 4, 2)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(BadInput, match=r"unknown raw format 'RAW14' \(known: RAW10, RAW12, U16, FLOAT\)"):
        unpack(bytes(10), 4, 2, "RAW14")
    with pytest.raises(BadInput, match=r"unknown dual-pixel layout 'diagonal' \(known: columns, rows, halves, planes\)"):
        decode_raw(bytes(10), 4, 2, layout="diagonal")
    with pytest.raises(BadInput, match=r"unknown colour filter 'RGBW' \(known: RGGB, GRBG, GBRG, BGGR, mono\)"):
        cfa_reduce(np.zeros((4, 4)), "RGBW")
    with pytest.raises(BadInput, match=r"unknown plane 'blue' \(known: luma, green\)"):
        cfa_reduce(np.zeros((4, 4)), "RGGB", "blue")


# ---------------------------------------------------------------- colour filter reduction, cell by cell

# where the two greens of a 2x2 cell sit, from each order's name (row 0 then row 1)
GREENS = {"RGGB": ((0, 1), (1, 0)), "BGGR": ((0, 1), (1, 0)), "GRBG": ((0, 0), (1, 1)), "GBRG": ((0, 0), (1, 1))}


@pytest.mark.parametrize("cfa", sorted(GREENS))
def test_cfa_reduce_cell_by_cell(cfa):
    view = np.random.default_rng(5).integers(0, 1024, (6, 8)).astype(np.uint16)
    luma, green = cfa_reduce(view, cfa, "luma"), cfa_reduce(view, cfa, "green")
    assert luma.dtype == green.dtype == np.float32 and luma.shape == green.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            cell = view[2 * i: 2 * i + 2, 2 * j: 2 * j + 2].astype(float)
            assert luma[i, j] == pytest.approx(cell.mean())
            (a, b), (c, d) = GREENS[cfa]
            assert green[i, j] == pytest.approx((cell[a, b] + cell[c, d]) / 2)


def test_cfa_mono_and_none_keep_the_view_as_float32():
    view = np.arange(12, dtype=np.uint16).reshape(3, 4)
    for cfa in (None, "mono"):
        out = cfa_reduce(view, cfa)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (3, 3)])
def test_cfa_needs_even_sides(shape):
    h, w = shape
    with pytest.raises(BadInput, match=rf"cfa RGGB: a Bayer view needs even sides, got {h}x{w}"):
        cfa_reduce(np.zeros(shape), "RGGB")


def test_decode_raw_reduces_both_views_with_the_plane_asked_for():
    raw = np.random.default_rng(2).integers(0, 1024, (8, 16)).astype(np.uint16)
    f = decode_raw(pack_raw10(raw), 16, 8, layout="columns", cfa="GRBG", plane="green")
    for got, view in ((f.left, raw[:, 0::2]), (f.right, raw[:, 1::2])):
        np.testing.assert_allclose(got, 0.5 * (view[0::2, 0::2] + view[1::2, 1::2].astype(np.float32)))


# ---------------------------------------------------------------- white level, black level, metadata


@pytest.mark.parametrize("where", ["left", "right"])
def test_float_white_level_defaults_to_the_brightest_pixel_of_either_view(where):
    img = np.full((2, 8), 10.0, np.float32)
    img[1, 2 if where == "left" else 5] = 250.0  # columns layout: even columns left, odd right
    f = decode_raw(img, 8, 2, fmt="FLOAT", black_level=10)
    assert f.white_level == pytest.approx(240.0)


def test_white_level_must_exceed_black_level_and_the_float_hint():
    with pytest.raises(BadInput, match=r"RAW10/columns: white_level 1023\.0 must exceed black_level 1023\.0$"):
        decode_raw(bytes(10), 4, 2, black_level=1023)  # equal is refused too
    with pytest.raises(BadInput, match=r"FLOAT/columns: white_level 0\.0 must exceed black_level 0\.0 \(FLOAT data: pass white_level=\)$"):
        decode_raw(np.zeros((2, 8), np.float32), 8, 2, fmt="FLOAT")
    with pytest.raises(BadInput, match=r"FLOAT/columns: white_level 1\.0 must exceed black_level 2\.0$"):
        decode_raw(np.zeros((2, 8), np.float32), 8, 2, fmt="FLOAT", white_level=1, black_level=2)
    with pytest.raises(BadInput, match=r"RAW10/rows: white_level must be a number, got 'high'"):
        decode_raw(bytes(10), 4, 2, layout="rows", white_level="high")
    with pytest.raises(BadInput, match=r"RAW10/columns: black_level must be a number, got 'dark'"):
        decode_raw(bytes(10), 4, 2, black_level="dark")


def test_decode_raw_metadata_names_format_layout_black_level_and_cfa():
    f = decode_raw(pack_raw12(np.zeros((4, 8), np.uint16)), 8, 4, fmt="raw12", layout="rows", black_level=64,
                   cfa="BGGR", metadata={"sensor": "x"})
    assert f.metadata == {"raw_format": "RAW12", "layout": "rows", "black_level": 64.0, "cfa": "BGGR", "sensor": "x"}
    g = decode_raw(pack_raw10(np.zeros((2, 4), np.uint16)), 4, 2)
    assert g.metadata == {"raw_format": "RAW10", "layout": "columns", "black_level": 0.0, "cfa": "mono"}


# ---------------------------------------------------------------- third batch (survivors of the 2026-11-30 full run)
# Every message is anchored at its start: the format and size prefix ("RAW10 0x2:") is what tells the
# user which buffer of a frame was refused.


def test_unpack_defaults_to_csi2_raw10():
    img = np.array([[1, 2, 1021, 1022], [512, 0, 1023, 3]], np.uint16)
    np.testing.assert_array_equal(unpack(pack_raw10(img), 4, 2), img)  # no fmt: RAW10, the documented default


@pytest.mark.parametrize("fmt,unpacker", [("RAW10", unpack_raw10), ("RAW12", unpack_raw12), ("U16", unpack_u16)])
def test_size_and_stride_messages_start_with_the_format_and_size(fmt, unpacker):
    with pytest.raises(BadInput, match=rf"^{fmt} 0x2: width must be a positive integer, got 0$"):
        unpacker(bytes(40), 0, 2)
    with pytest.raises(BadInput, match=rf"^{fmt} 4x2: stride must be a positive integer, got 0$"):
        unpacker(bytes(40), 4, 2, stride=0)


def test_u16_uint16_arrays_1d_with_and_without_padding():
    vals = np.arange(10, dtype=np.uint16)
    np.testing.assert_array_equal(unpack_u16(vals[:8], 4, 2), [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(unpack_u16(vals, 4, 2, stride=5), [[0, 1, 2, 3], [5, 6, 7, 8]])
    with pytest.raises(BadInput, match=r"^U16 4x2: expected 2 rows x 4 pixels = 8 uint16, got 7$"):
        unpack_u16(vals[:7], 4, 2)
    with pytest.raises(BadInput, match=r"^U16 4x2: expected a 1-D or 2-D buffer, got 3-D \[1, 2, 4\]$"):
        unpack_u16(np.zeros((1, 2, 4), np.uint16), 4, 2)


def test_u16_from_bytes_is_uint16_little_endian():
    out = unpack_u16(bytes([0x01, 0x02, 0xFF, 0xFF, 0x00, 0x80, 0x34, 0x12]), 2, 2)
    assert out.dtype == np.uint16  # the documented result type, whatever the buffer type
    assert out.tolist() == [[0x0201, 0xFFFF], [0x8000, 0x1234]]


def test_u16_uint8_rows_must_hold_whole_pixels_and_match_the_stride():
    # a 2-D uint8 buffer gives its row length in bytes; 5 bytes is two and a half 16-bit pixels
    with pytest.raises(BadInput, match=r"^U16 2x2: a uint8 row of 5 bytes is not a whole number of 16-bit pixels$"):
        unpack_u16(np.zeros((2, 5), np.uint8), 2, 2)
    # a stride given in pixels must agree with the array's row: 3 pixels = 6 bytes, the rows have 8
    with pytest.raises(BadInput, match=r"^U16 2x2: expected a \[2, 6\] byte array \(height, stride\), got \[2, 8\]$"):
        unpack_u16(np.zeros((2, 8), np.uint8), 2, 2, stride=3)
    with pytest.raises(BadInput, match=r"^U16 4x2: expected 2 rows x 8 bytes = 16 bytes, got 15$"):
        unpack_u16(bytes(15), 4, 2)


def test_float_3d_and_short_stride_rejections():
    with pytest.raises(BadInput, match=r"^FLOAT 8x2: expected a 1-D or 2-D array, got 3-D \[1, 2, 8\]$"):
        unpack_float(np.zeros((1, 2, 8), np.float32), 8, 2)
    with pytest.raises(BadInput, match=r"^FLOAT 8x2: stride 6 pixels is less than the width 8$"):
        unpack_float(np.zeros((2, 6), np.float32), 8, 2)


def test_negative_black_level_is_refused_by_name():
    with pytest.raises(BadInput, match=r"^RAW10/columns: black_level must be >= 0, got -1\.0$"):
        decode_raw(bytes(10), 4, 2, black_level=-1)


def test_planes_pair_of_padded_byte_buffers_uses_the_stride():
    # two views of 4x2 RAW10, each row padded from 5 to 7 bytes, passed as flat bytes with stride=7
    L = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.uint16)
    R = L + 100
    f = decode_raw((pack_raw10(L, 7).tobytes(), pack_raw10(R, 7).tobytes()), 4, 2, layout="planes", stride=7)
    np.testing.assert_array_equal(f.left, L)
    np.testing.assert_array_equal(f.right, R)


def test_planes_rejections_name_the_layout():
    with pytest.raises(BadInput, match=r"^RAW10/planes: width must be a positive integer, got 0$"):
        decode_raw(bytes(10), 0, 2, layout="planes")
    with pytest.raises(BadInput, match=r"^layout 'planes': expected an array \[2, H, stride\], got \[3, 2, 5\]$"):
        decode_raw(np.zeros((3, 2, 5), np.uint8), 4, 2, layout="planes")


def test_decode_raw_passes_the_timestamp_and_lens_position_through():
    buf = pack_raw10(np.zeros((2, 4), np.uint16))
    f = decode_raw(buf, 4, 2, timestamp_s=12.5, lens_position=300)
    assert f.timestamp_s == 12.5 and f.lens_position == 300.0
    assert decode_raw(buf, 4, 2).timestamp_s == 0.0  # no clock given: 0.0, DualPixelFrame's own default
