"""Re-run chosen mutmut mutants against chosen tests, forking per mutant from one warmed pytest process.

    python benchmarks/mutation_recheck.py SCRATCH/mutants OUT.json --names NAME[@NODE,NODE...] ... -- TESTS...

For a group whose full ``benchmarks/mutation.py`` run is too slow for the machine's load: after
tests are added, only the mutants that survived (and those of functions that changed) need
re-running, and each of them only against the tests meant to kill it.  ``SCRATCH/mutants`` is
mutmut's trampolined copy from an earlier ``benchmarks/mutation.py`` run (copy the new test files
into its ``tests/``); ``MUTANT_UNDER_TEST`` selects the mutant, as mutmut does.  ``NAME@NODES``
runs that mutant against those pytest node ids only (default: TESTS).  A mutant is killed when
pytest fails (or passes the ``--timeout``), survived when it passes.  Results are appended to
OUT.json, so an interrupted run continues where it stopped.  Set MUTATION_RECHECK_NO_CLEAN=1 to
only collect (not run) TESTS before the first mutant, when their clean pass is known.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    mdir, out = argv[0], argv[1]
    rest = argv[2:]
    sep = rest.index("--")
    opts, tests = rest[:sep], rest[sep + 1:]
    timeout = 60.0
    if "--timeout" in opts:
        i = opts.index("--timeout")
        timeout = float(opts[i + 1])
        del opts[i:i + 2]
    assert opts and opts[0] == "--names", "usage: see the module docstring"
    names = opts[1:]
    os.chdir(mdir)
    sys.path.insert(0, os.path.abspath("."))
    import pytest

    base = ["-p", "no:cacheprovider", "-x", "-q", "--no-header"]
    os.environ["MUTANT_UNDER_TEST"] = ""
    t0 = time.monotonic()
    rc0 = pytest.main(base + tests + (["--collect-only"] if os.environ.get("MUTATION_RECHECK_NO_CLEAN") else []))
    print(f"clean pass rc={rc0} in {time.monotonic() - t0:.0f} s", flush=True)
    if rc0 != 0:
        return 2
    res = json.load(open(out)) if os.path.exists(out) else {}
    for spec in names:
        name, _, nodes = spec.partition("@")
        if name in res:
            continue
        t = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.environ["MUTANT_UNDER_TEST"] = name
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            try:
                rc = pytest.main(base + (nodes.split(",") if nodes else tests))
            except BaseException:
                rc = 99
            os._exit(int(rc))
        while True:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                status = "survived" if os.waitstatus_to_exitcode(st) == 0 else "killed"
                break
            if time.monotonic() - t > timeout:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
                break
            time.sleep(0.05)
        res[name] = status
        print(f"{status:8} {name} {time.monotonic() - t:.1f} s", flush=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=0)
    counts: dict[str, int] = {}
    for v in res.values():
        counts[v] = counts.get(v, 0) + 1
    print(counts, f"{time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
