"""Atomic writes: whole file or nothing, usual permissions, stale temp cleanup."""

import os
import stat

import pytest

from hil_af.atomic import atomic_open, atomic_write_text, remove_stale_temps


def test_write_replaces_whole_file_with_umask_mode(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("old")
    old = os.umask(0o022)
    try:
        atomic_write_text(p, "new")
    finally:
        os.umask(old)
    assert p.read_text() == "new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert list(tmp_path.iterdir()) == [p]


def test_failure_mid_write_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"partial")
            raise RuntimeError("killed")
    assert p.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [p]


def test_remove_stale_temps(tmp_path):
    (tmp_path / ".x.npz.tmp-abc").write_bytes(b"junk")
    (tmp_path / "x.npz").write_bytes(b"keep")
    removed = remove_stale_temps(tmp_path)
    assert [r.name for r in removed] == [".x.npz.tmp-abc"]
    assert [q.name for q in tmp_path.iterdir()] == ["x.npz"]
