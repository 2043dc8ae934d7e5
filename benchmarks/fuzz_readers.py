"""Hostile inputs for every reader: each must refuse with ONE line naming the file and the rule.

Readers: focal stack (``load_stack``), frame file (``hil-af disparity``
through ``hil_af.cli.main``: exit 2 and one stderr line), flat field,
CAL.json, model card.json, sweep manifest, rig profile TOML and the daemon's
request lines.  Inputs, from a seeded generator: special files (missing,
empty, folder, FIFO, a sparse 9 GiB file), text and random bytes,
truncations and byte flips of a valid file, forged npy headers (a view of
16384 x 16384 or 10^9 slices, a 400 MB meta string), a real deflate bomb
(1 GiB of zeros in a ~1 MB file), pickled members, big-endian views, JSON
nested 100,000 deep, 5000-digit integers, ``true``/``Infinity``/``NaN``/
huge/ill-typed values put into every key of a valid object, and TOML with
oversized or non-finite sizes.

Outcome per case: ``refused`` (BadInput/FormatError or exit 2 with one line
that names the file; ProtocolError for requests), ``accepted`` (a damaged
file that is still valid, e.g. a flipped pixel), or ``FAIL`` (any other
exception, a multi-line or anonymous message, exit code not 2, or longer
than ``--case-timeout``).  The whole run is in one process under
``RLIMIT_AS`` = ``--mem-mib``; the peak RSS is reported.

    python benchmarks/fuzz_readers.py --seed 14 --random 40 --json
    python benchmarks/fuzz_readers.py --seed 1 --random 2000     # the longer hunt

Exit 0 when no case failed.  tests/test_fuzz_readers.py runs the short form in CI.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import sys
import tempfile
import time
import zlib
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOSTILE_VALUES = [None, True, False, -1, 0, 2**64, "__BIGINT__", float("inf"), float("nan"), -1e308, "x", "",
                  [], {}, [True, True], [0, 0], [[[[]]]], "\udcff"]


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def _npy_header(shape, descr: str) -> bytes:
    """An npy v1.0 header (magic, length, dict) for ``shape``/``descr``, padded to 64 bytes."""
    d = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(d) + 1) % 64
    d = d + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d


def _zip(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip of raw-deflated members: name -> (deflate data, uncompressed size, crc); sizes < 4 GiB."""
    out, cd = io.BytesIO(), io.BytesIO()
    for name, (data, usize, crc) in members.items():
        nb = name.encode()
        off = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), usize, len(nb), 0) + nb + data)
        cd.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), usize,
                             len(nb), 0, 0, 0, 0, 0, off) + nb)
    cdb = cd.getvalue()
    n = len(members)
    return out.getvalue() + cdb + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(cdb), out.tell(), 0)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zero_bomb(header: bytes, nbytes: int) -> tuple[bytes, int, int]:
    """A member: ``header`` then ``nbytes`` zeros, deflated cheaply (one 1 MiB block, repeated after full flushes)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    data = head + block * (nbytes >> 20) + c.flush()
    return data, len(header) + (nbytes >> 20 << 20), 0  # crc left 0: the reader must refuse before reading


def _member(arr) -> tuple[bytes, int, int]:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    return _deflate(raw), len(raw), zlib.crc32(raw)


def _npz(arrays: dict, extra: dict | None = None) -> bytes:
    members = {f"{k}.npy": _member(v) for k, v in arrays.items()}
    members.update(extra or {})
    return _zip(members)


# --------------------------------------------------------------------------- valid seeds


def seeds(tmp: Path) -> dict[str, object]:
    """A valid instance of every file format (arrays dicts for npz formats, objects for JSON, text for TOML)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, H, W = 4, 32, 48
    stack = {"left": rng.integers(64, 1000, (n, H, W)).astype(np.uint16),
             "right": rng.integers(64, 1000, (n, H, W)).astype(np.uint16),
             "lens_positions": np.linspace(100, 400, n), "rois": np.array([[0, 0, 16, 16], [8, 8, 16, 16]], np.int32),
             "gt_index": np.array([1, -1], np.int16), "sensor_hw": np.array([H, W], np.int32),
             "origin": np.array([0, 0], np.int32),
             "meta": np.array(json.dumps({"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023,
                                          "lens_units": "vcm-code"}))}
    frame = {"left": stack["left"][0], "right": stack["right"][0],
             "meta": np.array(json.dumps({"format": "frame", "version": 1, "black_level": 64, "white_level": 1023}))}
    ex = REPO / "calibration" / "examples" / "sim-default"
    with np.load(ex / "flat.npz", allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    return {"stack": stack, "frame": frame, "flatfield": flat,
            "calibration": json.loads((ex / "cal.json").read_text()),
            "card": json.loads((REPO / "models" / "card.json").read_text()),
            "manifest": {"format": "hil-af-calibration-sweeps", "version": 1, "rig": "sim", "slices": 49, "scenes": 2,
                         "created_utc": "2026-01-01T00:00:00+00:00", "done": {}},
            "profile": (REPO / "calibration" / "rigs" / "sim-default.toml").read_text()}


# --------------------------------------------------------------------------- cases

NPZ = ("stack", "frame", "flatfield")
JSONS = ("calibration", "card", "manifest")
FILE_NAME = {"stack": "x.npz", "frame": "x.npz", "flatfield": "x.npz", "calibration": "cal.json",
             "card": "card.json", "manifest": "manifest.json", "profile": "rig.toml"}


def _encode(reader: str, seed) -> bytes:
    if reader in NPZ:
        return _npz(seed)
    if reader in JSONS:
        return json.dumps(seed).encode()
    return seed.encode()


def cases(seed_objs: dict, rng, n_random: int) -> list[tuple[str, str, object]]:
    """(reader, label, payload): payload bytes for the file, or "missing"/"dir"/"fifo"/"sparse"."""
    import numpy as np

    out: list[tuple[str, str, object]] = []
    for reader in FILE_NAME:
        valid = _encode(reader, seed_objs[reader])
        out += [(reader, "valid", valid), (reader, "missing", "missing"), (reader, "folder", "dir"),
                (reader, "fifo", "fifo"), (reader, "sparse 9 GiB", "sparse"), (reader, "empty", b""),
                (reader, "text", b"hi\n"), (reader, "non-UTF-8", b"\xff\xfe\xfa" * 50),
                (reader, "random bytes", rng.bytes(2048)), (reader, "bare npy", _npy_header((3,), "<f8") + bytes(24))]
        for i in range(max(2, n_random // 8)):
            cut = int(rng.integers(1, len(valid)))
            out.append((reader, f"truncated at {cut}", valid[:cut]))
            b = bytearray(valid)
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
            out.append((reader, "bytes flipped", bytes(b)))
    for reader in NPZ:
        base = {k: v for k, v in seed_objs[reader].items()}
        view = "left" if reader != "flatfield" else "gain_left"
        bomb_shape = {"stack": (16, 8192, 4096), "frame": (16384, 16384), "flatfield": (16384, 16384)}[reader]
        dt = "<u2" if reader != "flatfield" else "<f8"
        nbytes = int(np.prod(bomb_shape)) * np.dtype(dt).itemsize
        rest = {f"{k}.npy": _member(v) for k, v in base.items() if k != view}
        out.append((reader, f"deflate bomb {view} {bomb_shape}", _zip({f"{view}.npy": _zero_bomb(_npy_header(bomb_shape, dt), min(nbytes, 1 << 30)), **rest})))
        forged = _npy_header(bomb_shape, dt)
        out.append((reader, f"forged header {view} {bomb_shape}", _zip({f"{view}.npy": (_deflate(forged), len(forged) + nbytes, 0), **rest})))
        meta_h = _npy_header((), "<U100000000")
        rest_m = {f"{k}.npy": _member(v) for k, v in base.items() if k != "meta"}
        out.append((reader, "meta of 400 MB", _zip({"meta.npy": (_deflate(meta_h), len(meta_h) + 400_000_000, 0), **rest_m})))
        pickled = _npy_header((2,), "|O") + b"\x80\x04\x95\x05\x00N."  # an object array: its data would be a pickle
        out.append((reader, "pickled member", _zip({f"{view}.npy": (_deflate(pickled), len(pickled), zlib.crc32(pickled)), **rest})))
        for label, meta in (("meta nested 100k", _deep()), ("meta 5000-digit int", '{"version": ' + "9" * 5000 + "}"),
                            ("meta version true", json.dumps({**json.loads(str(base["meta"])), "version": True})),
                            ("meta NaN white level", '{"format": "frame", "version": 1, "black_level": 0, "white_level": NaN}')):
            out.append((reader, label, _npz({**base, "meta": np.array(meta)})))
        if reader != "flatfield":
            out.append((reader, "big-endian uint16 views", _npz({**base, "left": base["left"].astype(">u2"),
                                                                 "right": base["right"].astype(">u2")})))
            h = _npy_header((2000, 8, 8) if reader == "stack" else (8, 8, 8), "<u2")
            out.append((reader, "2000 slices / 3-D frame", _zip({"left.npy": (_deflate(h + bytes(len(h) and 2000 * 128 if reader == "stack" else 1024)),
                                                                            len(h) + (2000 * 128 if reader == "stack" else 1024), 0), **rest})))
    for reader in JSONS:
        obj = seed_objs[reader]
        out += [(reader, "nested 100k", _deep().encode()), (reader, "5000-digit int", ("9" * 5000).encode())]
        keys = list(obj)
        for i in range(max(len(keys), n_random)):
            k = keys[i % len(keys)]
            v = HOSTILE_VALUES[int(rng.integers(0, len(HOSTILE_VALUES)))]
            text = json.dumps({**obj, k: v}).replace('"__BIGINT__"', "9" * 5000)
            if v == "\udcff":  # a raw non-UTF-8 byte instead of the escape
                text = text.replace("\\udcff", "\udcff")
            out.append((reader, f"{k} = {str(v)[:20]}", text.encode("utf-8", "surrogateescape")))
    out += [("calibration", "grid [true, true]", json.dumps({**seed_objs["calibration"], "grid": [True, True]}).encode()),
            ("calibration", "version true", json.dumps({**seed_objs["calibration"], "version": True}).encode()),
            ("card", "n_slices Infinity", json.dumps({**seed_objs["card"], "n_slices": float("inf")}).encode())]
    prof = seed_objs["profile"]
    for label, edit in (("[af] slices = 10^9", ("slices = 49", "slices = 1000000000")),
                        ("[af] slices = true", ("slices = 49", "slices = true")),
                        ("[sim] height = 10^6", ("[sim]", "[sim]\nheight = 1000000")),
                        ("[sim] width = inf", ("[sim]", "[sim]\nwidth = inf")),
                        ("frame_time_s = inf", ("[sim]", "[sim]\nframe_time_s = inf")),
                        ("vcm_tau_s = nan", ("[sim]", "[sim]\nvcm_tau_s = nan")),
                        ("[af] range inf", ("[af]", "[af_]")),
                        ("[calibration] = 5", ("[rig]", "calibration = 5\n[rig]"))):
        text = prof.replace(*edit, 1)
        if label == "[af] range inf":
            text += "\n[af]\nrange = [0, inf]\n"
        if label == "[calibration] = 5":
            text = text.replace("[calibration]", "[calibration_old]")
        out.append(("profile", label, text.encode()))
    out.append(("profile", "deep array", ("x = " + "[" * 50000 + "]" * 50000 + "\n" + prof).encode()))
    reqs = [b'{"cmd": "status"}', _deep().encode(), b'{"cmd": "move", "position": ' + b"9" * 5000 + b"}",
            b'{"cmd": "move", "position": Infinity}', b'{"cmd": "move", "position": NaN}', b"\xff\xfe",
            b'{"cmd": "focus", "roi": [true, true, true, true]}', b'{"cmd": "focus", "roi": [0, 0, 1e9, 1]}',
            b'{"cmd": "focus", "id": ' + b"1" * 400 + b"}", b"[]", b"null", b'{"cmd": "x" }', b" " * 70000]
    for _ in range(n_random):
        b = bytearray(reqs[int(rng.integers(0, 3))][:200])
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        reqs.append(bytes(b))
    out += [("request", r[:30].decode("latin-1"), r) for r in reqs]
    return out


# --------------------------------------------------------------------------- running


def _reader(name: str, tmp: Path):
    """A callable(path or bytes) -> None for reader ``name``; raises what the reader raises."""
    from hil_af import cli
    from hil_af.calibration.capture import read_manifest
    from hil_af.calibration.flatfield import load_flatfield
    from hil_af.calibration.store import load_calibration
    from hil_af.daemon.protocol import parse_request
    from hil_af.errors import BadInput
    from hil_af.model.inference import read_card
    from hil_af.profiles import load_profile
    from hil_af.stacks import load_stack

    def frame(p):
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            rc = cli.main(["disparity", str(p), "--json"])
        if rc != 0:
            raise _Exit(rc, err.getvalue())

    return {"stack": load_stack, "frame": frame, "flatfield": load_flatfield, "calibration": load_calibration,
            "card": lambda p: read_card(Path(p).parent), "manifest": lambda p: read_manifest(Path(p).parent),
            "profile": lambda p: load_profile(str(p)), "request": parse_request}[name], BadInput


class _Exit(Exception):
    def __init__(self, rc: int, stderr: str):
        super().__init__(stderr)
        self.rc, self.stderr = rc, stderr


def _place(reader: str, payload, d: Path) -> Path:
    p = d / FILE_NAME[reader]
    if payload == "missing":
        return p
    if payload == "dir":
        p.mkdir()
    elif payload == "fifo":
        os.mkfifo(p)
    elif payload == "sparse":
        with open(p, "wb") as f:
            f.truncate(9 << 30)
    else:
        p.write_bytes(payload)  # type: ignore[arg-type]
    return p


def run(seed: int, n_random: int, case_timeout_s: float, verbose: bool = False) -> dict:
    import numpy as np
    import signal

    rng = np.random.default_rng(seed)
    results = {"tried": 0, "refused": 0, "accepted": 0, "failures": [], "by_reader": {}}
    with tempfile.TemporaryDirectory(prefix="hil-af-fuzz-") as t:
        tmp = Path(t)
        all_cases = cases(seeds(tmp), rng, n_random)

        def alarm(*_):
            raise TimeoutError(f"longer than {case_timeout_s} s")

        signal.signal(signal.SIGALRM, alarm)
        for i, (reader, label, payload) in enumerate(all_cases):
            fn, BadInput = _reader(reader, tmp)
            d = tmp / f"c{i}"
            d.mkdir()
            target = payload if reader == "request" else _place(reader, payload, d)
            outcome, msg = "accepted", ""
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, case_timeout_s)
            try:
                fn(target)
            except _Exit as e:
                lines = e.stderr.strip().splitlines()
                ok = e.rc == 2 and len(lines) == 1 and str(target) in lines[0] and "Traceback" not in e.stderr
                outcome, msg = ("refused" if ok else "FAIL"), f"exit {e.rc}: {e.stderr.strip()[:300]}"
            except BadInput as e:
                msg = str(e)
                named = reader == "request" or str(target) in msg
                outcome = "refused" if ("\n" not in msg and named and "allow_pickle" not in msg) else "FAIL"
            except BaseException as e:  # noqa: BLE001 - anything else is what this hunts
                outcome, msg = "FAIL", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            r = results["by_reader"].setdefault(reader, {"tried": 0, "refused": 0, "accepted": 0, "failed": 0})
            r["tried"] += 1
            results["tried"] += 1
            if outcome == "FAIL":
                r["failed"] += 1
                results["failures"].append({"reader": reader, "case": label, "error": msg})
            else:
                r[outcome] += 1
                results[outcome] += 1
            if verbose:
                print(f"{outcome:8s} {reader:11s} {label[:40]:40s} {time.monotonic() - t0:6.2f} s  {msg[:120]}", file=sys.stderr)
            if payload == "fifo":
                os.unlink(target)  # type: ignore[arg-type]
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--random", type=int, default=40, help="random mutations per reader (default 40)")
    ap.add_argument("--mem-mib", type=int, default=2048, help="RLIMIT_AS of this process, MiB (default 2048)")
    ap.add_argument("--case-timeout", type=float, default=60.0, help="seconds one case may take (default 60)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case on stderr")
    a = ap.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (a.mem_mib << 20, a.mem_mib << 20))
    res = run(a.seed, a.random, a.case_timeout, a.verbose)
    res.update(seed=a.seed, random=a.random, mem_mib=a.mem_mib)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{res['tried']} hostile inputs: {res['refused']} refused cleanly, {res['accepted']} accepted as valid, "
              f"{len(res['failures'])} failed; peak RSS {res['peak_rss_mib']} MiB under RLIMIT_AS {a.mem_mib} MiB")
        for f in res["failures"]:
            print(f"FAIL {f['reader']} [{f['case']}]: {f['error']}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(REPO))
    sys.exit(main())
