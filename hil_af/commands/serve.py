"""``hil-af serve RIG --socket PATH``: the AF daemon (systemd ``Type=notify``).

JSON lines over a Unix socket (protocol: docs/cli.md, docs/daemon.md and
``hil_af.daemon.protocol``).  Exit codes: 0 after a clean stop (SIGTERM),
2 on bad input (rig URL, socket path, mode, missing model/calibration),
1 when a device fails while opening.  Logs go to stderr (the journal).
"""

from __future__ import annotations

import logging
import sys

from ..daemon.protocol import METHODS, MODES


def add_arguments(p) -> None:
    p.add_argument("rig", metavar="RIG", help="rig URL or rig profile TOML (e.g. sim://?seed=1)")
    p.add_argument("--socket", required=True, metavar="PATH",
                   help="Unix socket to serve on (created 0660, removed on exit), e.g. /run/hil-af/af.sock")
    p.add_argument("--lens", metavar="URL", default=None, help="lens URL overriding the rig's lens")
    p.add_argument("--method", choices=METHODS, default="pe2", help="default AF method (default: pe2)")
    p.add_argument("--mode", choices=MODES, default="single",
                   help="AF mode at start: single (focus on request), continuous, manual (default: single)")
    p.add_argument("--calibration", metavar="CAL.json", default=None,
                   help="PDAF calibration from hil-af calibrate fit: a per-position one serves pdaf and hybrid, "
                        "one fitted with --global serves pdaf-global (the file says which it is)")
    p.add_argument("--flatfield", metavar="FLAT.npz", default=None, help="flat field applied before PDAF")
    p.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the shipped models/)")
    p.add_argument("--park", type=float, default=None, metavar="POS",
                   help="lens position (native units) to park at on stop (default: the driver's close())")
    p.add_argument("--hang-timeout", type=float, default=60.0, metavar="S",
                   help="withhold watchdog pings once one rig operation runs longer than S seconds (default: 60)")
    p.add_argument("--max-clients", type=int, default=32, metavar="N", help="concurrent clients at most (default: 32)")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                   help="disconnect a client that sends nothing (or reads no reply) for S seconds (default: 60)")
    p.add_argument("--tick", type=float, default=0.05, metavar="S",
                   help="continuous-AF loop period when frames come faster (default: 0.05 s)")
    p.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time), or sim (virtual time: simulated rigs in tests and soaks)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="least severe log messages written to stderr (default: info)")


def run(args) -> int:
    from ..daemon.sdnotify import Notifier
    from ..daemon.server import Daemon
    from ..daemon.service import AFService, ServiceConfig
    from ..errors import BadInput

    import math

    if not (1 <= args.max_clients <= 1024) or not all(math.isfinite(v) and v > 0 for v in
                                                       (args.tick, args.hang_timeout, args.idle_timeout)):
        raise BadInput("--max-clients must be in 1..1024; --tick, --hang-timeout and --idle-timeout finite and > 0")
    from .focus import resolve_calibrations

    resolve_calibrations(args)  # a global file given as --calibration serves pdaf-global, as in focus and eval
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    cfg = ServiceConfig(rig=args.rig, lens=args.lens, method=args.method, mode=args.mode,
                        calibration=args.calibration, global_calibration=getattr(args, "global_calibration", None),
                        model_dir=args.model, flatfield=args.flatfield,
                        park=args.park)
    clock = None
    if args.clock == "sim":
        from ..clock import SimClock

        clock = SimClock()
    daemon = Daemon(AFService(cfg, clock=clock), args.socket, Notifier(), tick_s=args.tick,
                    hang_s=args.hang_timeout, max_clients=args.max_clients, idle_timeout_s=args.idle_timeout)
    return daemon.run()
