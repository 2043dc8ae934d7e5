#!/usr/bin/env python3
"""Soak test of ``hil-af serve``: several clients for N minutes on the sim with faults injected.

Starts the daemon as a subprocess (its own NOTIFY_SOCKET and WATCHDOG_USEC),
runs ``--clients`` client threads that send focus requests (random RoIs,
sometimes another method), with status / mode / move / malformed requests
mixed in and connections re-opened now and then, and samples the daemon's
RSS (VmRSS from /proc/PID/status) and open file descriptors.  At the end it
stops the daemon with SIGTERM and reports: requests served, outcomes,
failures by reason, reply latency, RSS growth, fd count, watchdog gaps, exit code.

    python benchmarks/soak_daemon.py                 # 3 minutes, 4 clients
    python benchmarks/soak_daemon.py --minutes 0.5 --json out/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RIG = "sim://?seed=7&fault_frame=timeout&fault_p=0.1&fault_stall=0.005"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def n_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Notify(threading.Thread):
    """Receives the daemon's sd_notify datagrams; records watchdog ping times."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.ready = threading.Event()
        self.statuses: Counter[str] = Counter()
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                msg = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            now = time.monotonic()
            for ln in msg.split("\n"):
                if ln == "WATCHDOG=1":
                    self.pings.append(now)
                elif ln == "READY=1":
                    self.ready.set()
                elif ln.startswith("STATUS="):
                    self.statuses[ln.split()[0][7:]] += 1


def normalise(reason: str) -> str:
    """A failure reason without its numbers, so equal causes group together."""
    return re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)[:90]


class Client(threading.Thread):
    def __init__(self, k: int, path: str, until: float, seed: int, stats: dict, lock: threading.Lock):
        super().__init__(daemon=True)
        self.k, self.path, self.until, self.rng = k, path, until, random.Random(seed)
        self.stats, self.lock = stats, lock

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(self.path)
        return s, s.makefile("rb")

    def run(self) -> None:
        s, f = self.connect()
        rng = self.rng
        while time.monotonic() < self.until:
            x = rng.randrange(0, 384 - 64 + 1, 8)
            y = rng.randrange(0, 256 - 64 + 1, 8)
            roll = rng.random()
            if roll < 0.80:
                req = {"cmd": "focus", "roi": [x, y, 64, 64]}
            elif roll < 0.88:
                req = {"cmd": "status"}
            elif roll < 0.92:
                req = {"cmd": "move", "position": rng.uniform(100, 900)}
            elif roll < 0.96:
                req = {"cmd": "mode", "mode": "single"}
            else:
                req = b'{"cmd":"focus","roi":"bad"' if rng.random() < 0.5 else os.urandom(rng.randrange(1, 200)).replace(b"\n", b" ")
            data = req if isinstance(req, bytes) else json.dumps(req).encode()
            t = time.monotonic()
            try:
                s.sendall(data + b"\n")
                line = f.readline()
            except OSError as e:
                with self.lock:
                    self.stats["transport_errors"][type(e).__name__] += 1
                break
            dt = time.monotonic() - t
            if not line:
                with self.lock:
                    self.stats["transport_errors"]["eof"] += 1
                break
            r = json.loads(line)
            kind = req["cmd"] if isinstance(req, dict) else "malformed"
            with self.lock:
                st = self.stats
                st["requests"] += 1
                st["by_cmd"][kind] += 1
                if kind == "focus":
                    st["latency_focus_s"].append(dt)
                    st["focus_outcomes"][r.get("state", "error")] += 1
                    if r.get("state") == "Failed":
                        st["failures_by_reason"][normalise(r.get("reason", "?"))] += 1
                    elif not r["ok"]:
                        st["focus_errors"][normalise(r.get("error", "?"))] += 1
                elif kind == "malformed":
                    st["malformed_rejected"] += (not r["ok"])
                elif not r["ok"]:
                    st["other_errors"][normalise(r.get("error", "?"))] += 1
                if "internal error" in r.get("error", ""):
                    st["internal_errors"] += 1
            if rng.random() < 0.02:  # connection churn
                f.close()
                s.close()
                s, f = self.connect()
        f.close()
        s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rig", default=DEFAULT_RIG)
    ap.add_argument("--method", default="cdaf")
    ap.add_argument("--clock", choices=("sim", "system"), default="sim")
    ap.add_argument("--watchdog-s", type=float, default=4.0, help="WATCHDOG_USEC given to the daemon, seconds")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    ap.add_argument("--json", default=None, metavar="PATH")
    a = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="hilaf-soak-")
    sock_path, notify_path = os.path.join(work, "af.sock"), os.path.join(work, "notify.sock")
    notify = Notify(notify_path)
    notify.start()
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": str(int(a.watchdog_s * 1e6))}
    log_path = os.path.join(work, "daemon.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hil_af.cli", "serve", a.rig, "--socket", sock_path,
                                 "--method", a.method, "--clock", a.clock, "--log-level", "error"],
                                stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=REPO)
        if not notify.ready.wait(120):
            proc.kill()
            print(Path(log_path).read_text(), file=sys.stderr)
            return 1
        t0 = time.monotonic()
        until = t0 + a.minutes * 60
        stats = {"requests": 0, "by_cmd": Counter(), "focus_outcomes": Counter(), "failures_by_reason": Counter(),
                 "focus_errors": Counter(), "other_errors": Counter(), "transport_errors": Counter(),
                 "latency_focus_s": [], "malformed_rejected": 0, "internal_errors": 0}
        lock = threading.Lock()
        clients = [Client(k, sock_path, until, 1000 + k, stats, lock) for k in range(a.clients)]
        samples = [(0.0, rss_kib(proc.pid), n_fds(proc.pid))]
        for c in clients:
            c.start()
        while time.monotonic() < until:
            time.sleep(min(a.sample_s, max(0.0, until - time.monotonic())))
            samples.append((round(time.monotonic() - t0, 1), rss_kib(proc.pid), n_fds(proc.pid)))
        for c in clients:
            c.join(180)
        alive_before_stop = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    notify.stop = True
    pings = notify.pings
    gaps = [b - a_ for a_, b in zip(pings, pings[1:])]
    lat = sorted(stats["latency_focus_s"])
    # RSS after warm-up (the first ~10 % of the run): the medians of its first and second halves, and the
    # least-squares slope -- single samples swing by ~20 MB with numpy's temporaries, a leak shows as a trend
    after = samples[max(1, len(samples) // 10):] if len(samples) > 3 else samples
    half = len(after) // 2
    rss_a = statistics.median(x[1] for x in after[:max(half, 1)])
    rss_b = statistics.median(x[1] for x in after[half:])
    third = max(len(after) // 3, 1)
    floor_a, floor_b = min(x[1] for x in after[:third]), min(x[1] for x in after[-third:])  # baseline without temporaries
    ts, rs = [x[0] / 60 for x in after], [x[1] for x in after]
    slope = 0.0
    if len(after) > 2 and max(ts) > min(ts):
        mt, mr = statistics.fmean(ts), statistics.fmean(rs)
        slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / sum((t - mt) ** 2 for t in ts)
    report = {
        "rig": a.rig, "method": a.method, "clock": a.clock, "clients": a.clients,
        "duration_s": round(a.minutes * 60, 1),
        "requests_served": stats["requests"],
        "requests_per_s": round(stats["requests"] / (a.minutes * 60), 2),
        "by_cmd": dict(stats["by_cmd"]),
        "focus_outcomes": dict(stats["focus_outcomes"]),
        "failures_by_reason": dict(stats["failures_by_reason"].most_common()),
        "focus_errors": dict(stats["focus_errors"]),
        "other_errors": dict(stats["other_errors"]),
        "malformed_rejected": stats["malformed_rejected"],
        "internal_errors": stats["internal_errors"],
        "transport_errors": dict(stats["transport_errors"]),
        "focus_latency_s": {"p50": round(lat[len(lat) // 2], 3) if lat else None,
                            "p95": round(lat[int(len(lat) * 0.95)], 3) if lat else None,
                            "max": round(lat[-1], 3) if lat else None,
                            "mean": round(statistics.fmean(lat), 3) if lat else None},
        "rss_kib": {"start": samples[0][1], "end": samples[-1][1], "max": max(s[1] for s in samples),
                    "median_first_half": rss_a, "median_second_half": rss_b,
                    "growth_median": rss_b - rss_a, "slope_kib_per_min": round(slope, 1),
                    "floor_first_third": floor_a, "floor_last_third": floor_b, "growth_floor": floor_b - floor_a},
        "fds": {"start": samples[0][2], "end": samples[-1][2]},
        "watchdog": {"period_s": a.watchdog_s, "pings": len(pings),
                     "max_gap_s": round(max(gaps), 3) if gaps else None},
        "daemon_alive_until_stop": alive_before_stop,
        "exit_code": rc,
        "socket_removed": not os.path.exists(sock_path),
        "samples": samples,
    }
    text = json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2)
    full = json.dumps(report, indent=2)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(full + "\n")
    print(text)
    if rc != 0:
        print(Path(log_path).read_text(errors="replace")[-4000:], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    ok = rc == 0 and alive_before_stop and stats["internal_errors"] == 0 and not stats["transport_errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
