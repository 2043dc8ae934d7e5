"""Reading ``.npz`` files that may be hostile: headers first, memory bounded, never pickles.

``read_npz(path, ...)`` refuses, before any array is decompressed:

- anything that is not a regular file (a FIFO named ``x.npz`` would block
  ``open()`` forever; it is opened with ``O_NONBLOCK`` and checked with
  ``fstat``), and files larger than ``MAX_FILE_BYTES``;
- a file that is not a zip archive (including a bare ``.npy`` and text: the
  message says what the file is not, never numpy's ``allow_pickle=`` advice);
- a zip whose central directory is larger than ``MAX_DIRECTORY_BYTES`` or
  holds more than ``MAX_MEMBERS`` members;
- members whose npy header does not parse, whose dtype holds Python objects
  (that would need pickle), or is not a plain number/string dtype;
- a member whose uncompressed size in the zip directory does not match the
  size its npy header declares (a lying header cannot make a larger array);
- arrays whose sizes the caller's ``check`` rejects (it gets every
  ``(shape, dtype)`` before anything is read) and, whatever ``check`` says,
  more than ``max_bytes`` bytes of arrays in total.

Then it reads the members (memory: the declared array sizes plus one read
chunk) and converts non-native byte orders (big-endian uint16 views are
accepted and converted, not refused).  Every refusal is a ``FormatError``
whose one-line message names the file and the rule.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .errors import BadInput, FormatError

MAX_FILE_BYTES = 8 << 30  # 8 GiB: larger than any stack this project writes (full-res 49-slice sweeps ~ 2.4 GB)
MAX_DIRECTORY_BYTES = 1 << 20  # the zip's central directory: 1 MiB (a stack has 8 members, ~1 KiB)
MAX_MEMBERS = 4096  # weights files hold ~100 tensors; stacks 8
MAX_HEADER_BYTES = 10000  # numpy's own default limit for one npy header
DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB of arrays in one file, unless the caller says less

Header = tuple[tuple[int, ...], np.dtype]
Check = Callable[[Mapping[str, Header]], None]


def _fail(where: str, rule: str) -> FormatError:
    return FormatError(f"{where}: {rule}")


def open_regular(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_FILE_BYTES):
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    BadInput when missing, a folder, a FIFO/device/socket, or too large; never blocks.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadInput(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise BadInput(f"{p}: is a folder, not a {what}") from None
    except OSError as e:
        raise BadInput(f"{p}: cannot open {what}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{p}: is a folder, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{p}: is not a regular file (a FIFO, device or socket): refused as a {what}")
        if st.st_size > max_bytes:
            raise BadInput(f"{p}: {st.st_size} bytes is more than the {max_bytes} bytes allowed for a {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path: str | os.PathLike, what: str, max_bytes: int) -> str:
    """UTF-8 text of a regular file of at most ``max_bytes``; BadInput/FormatError naming it otherwise."""
    with open_regular(path, what, max_bytes) as f:
        data = f.read(max_bytes + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(str(path), f"not UTF-8 text (byte {e.start}): not a {what}") from None


def _directory_size(f, where: str) -> tuple[int, int]:
    """(central directory bytes, member count) from the end-of-central-directory record(s)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        head = tail[:6] if size <= tail_len else (f.seek(0), f.read(6))[1]
        if head.startswith(b"\x93NUMPY"):
            raise _fail(where, "not an .npz archive: a bare .npy array (save it with numpy.savez)")
        raise _fail(where, "not an .npz file (no zip archive structure: not a zip, truncated, or another format)")
    _, _, _, _, count, cd_size, _, _ = struct.unpack("<4sHHHHIIH", tail[i:i + 22])
    if (count == 0xFFFF or cd_size == 0xFFFFFFFF) and i >= 20 and tail[i - 20:i - 16] == b"PK\x06\x07":
        (rec_off,) = struct.unpack("<Q", tail[i - 12:i - 4])
        f.seek(rec_off)
        rec = f.read(56)
        if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
            count, cd_size = struct.unpack("<QQ", rec[32:48])
    f.seek(0)
    return int(cd_size), int(count)


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[Header, int]:
    """(shape, dtype) of one npy member and its header length in bytes, without reading its data."""
    key = info.filename[:-4]
    try:
        with zf.open(info) as m:
            version = np.lib.format.read_magic(m)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(m, max_header_size=MAX_HEADER_BYTES)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(m, max_header_size=MAX_HEADER_BYTES)
            else:
                raise ValueError(f"npy version {version}")
            hlen = m.tell()
    except Exception as e:  # ValueError, EOFError, zlib.error, BadZipFile, NotImplementedError ...
        msg = " ".join(str(e).split())[:160]
        raise _fail(where, f"member {key!r} is not a readable npy array ({type(e).__name__}: {msg})") from None
    if dtype.hasobject:
        raise _fail(where, f"member {key!r} holds Python objects (dtype {dtype}): refused, pickles are never loaded")
    if dtype.kind not in "biufcUS" or dtype.fields is not None or dtype.subdtype is not None:
        raise _fail(where, f"member {key!r} has an unsupported dtype {dtype} (plain numbers or strings only)")
    if any(s < 0 for s in shape):
        raise _fail(where, f"member {key!r} has a negative dimension {shape}")
    return (tuple(int(s) for s in shape), dtype), int(hlen)


def read_npz(path: str | os.PathLike, required: tuple[str, ...], optional: tuple[str, ...] = (), *,
             check: Check | None = None, max_bytes: int = DEFAULT_MAX_BYTES, what: str = ".npz file",
             prefix_ok: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``required`` (+ ``optional`` present) of the npz at ``path``, read safely (module docstring).

    check: called with {key: (shape, dtype)} of the keys to be read before any
    array data is read; it raises FormatError to refuse.  max_bytes: total array
    bytes allowed.  prefix_ok: also read every member whose key it accepts
    (weights files: ``step1/...``).
    """
    p = Path(path)
    where = str(p)
    with open_regular(p, what) as f:
        cd_size, count = _directory_size(f, where)
        if cd_size > MAX_DIRECTORY_BYTES or count > MAX_MEMBERS:
            raise _fail(where, f"zip directory of {count} members / {cd_size} bytes is larger than allowed "
                        f"({MAX_MEMBERS} members, {MAX_DIRECTORY_BYTES} bytes)")
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
            raise _fail(where, f"not an .npz file (a damaged or unsupported zip archive: {' '.join(str(e).split())})") from None
        with zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            missing = [k for k in required if k not in members]
            if missing:
                raise _fail(where, f"missing required key(s) {', '.join(missing)} (has: {', '.join(sorted(members)) or 'none'})")
            keys = [k for k in members if k in required or k in optional or (prefix_ok is not None and prefix_ok(k))]
            headers: dict[str, Header] = {}
            total = 0
            for k in keys:
                info = members[k]
                (shape, dtype), hlen = _header(zf, info, where)
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if info.file_size != hlen + nbytes:
                    raise _fail(where, f"member {k!r}: its npy header declares {shape} {dtype} ({nbytes} bytes) "
                                f"but the archive says {info.file_size - hlen} bytes of data (corrupt or forged)")
                total += nbytes
                headers[k] = (shape, dtype)
            if check is not None:
                check(headers)
            if total > max_bytes:
                raise _fail(where, f"arrays of {total} bytes in all: more than the {max_bytes} bytes allowed for a {what}")
            out: dict[str, np.ndarray] = {}
            for k in keys:
                try:
                    with zf.open(members[k]) as m:
                        a = np.lib.format.read_array(m, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)
                except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError, ValueError
                    msg = " ".join(str(e).split())[:160]
                    raise _fail(where, f"member {k!r} is damaged ({type(e).__name__}: {msg})") from None
                if a.dtype.byteorder not in ("=", "|") and a.dtype.kind in "biufc":
                    a = a.astype(a.dtype.newbyteorder("="))
                out[k] = a
            return out


def describe(headers: Mapping[str, Header], key: str) -> str:
    shape, dtype = headers[key]
    return f"{dtype} {list(shape)}"
