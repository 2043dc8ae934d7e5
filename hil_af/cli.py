"""``hil-af``: the command line (docs/cli.md).

Each command lives in ``hil_af.commands.<module>`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only
when used, so ``hil-af drivers`` does not load onnxruntime or matplotlib.
Exit codes: 0 success, 1 the job ran but failed, 2 bad input or usage (one
line on stderr naming what was wrong).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from . import __version__
from .errors import BadInput, DeviceError, FocusFailed, HilAfError

# command -> (module in hil_af.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "drivers": ("drivers", "list the driver URL schemes"),
    "focus": ("focus", "run one autofocus cycle on a rig"),
    "capture-stack": ("capture_stack", "sweep the lens and write one focal stack"),
    "capture-frame": ("capture_frame", "capture one dual-pixel frame into a frame file"),
    "disparity": ("disparity", "classical PDAF disparity per grid cell of a frame file (or one slice of a stack)"),
    "calibrate": ("calibrate", "capture sweeps, fit and report disparity calibrations, flat fields"),
    "train": ("train", "train the step-1/step-2 position-encoded AF models (needs [train])"),
    "eval": ("evaluate", "the paper's evaluation protocol over focal stacks"),
    "import-l2af": ("import_l2af", "convert a Learning-to-Autofocus dataset tree into focal stacks"),
    "import-xin": ("import_xin", "convert the Xin et al. real Pixel 4 dual-pixel captures into frame files"),
    "serve": ("serve", "the AF daemon: JSON lines over a Unix socket"),
    "doctor": ("doctor", "check devices, permissions, extras, models and calibrations"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line naming the (sub)command, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hil-af", description="Dual-pixel autofocus for camera rigs.")
    parser.add_argument("--version", action="version", version=f"hil-af {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (mod, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=mod)
        try:
            module = importlib.import_module(f"hil_af.commands.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"hil_af.commands.{mod}":
                raise
            p.set_defaults(_missing=True)
            continue
        module.add_arguments(p)
    return parser


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json`` prints one JSON object to stdout; ``--json PATH`` writes it to PATH.

    With ``--json PATH`` a command still prints its human-readable output (``args.json != "-"``);
    with ``--json`` alone stdout holds the JSON object and nothing else.
    """
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="print one JSON object (or write it to PATH)")


def emit_json(obj: Any, dest: str | None) -> None:
    """Write ``obj`` as JSON to stdout (dest '-') or atomically to the file ``dest``."""
    text = json.dumps(obj, indent=None if dest == "-" else 2, sort_keys=False, default=_json_default)
    if dest == "-" or dest is None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    from .atomic import atomic_write_text

    atomic_write_text(dest, text + "\n")


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)  # no command: the usage and the command list, as a usage error
        return 2
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"hil-af: error: command {args.command!r} is not available in this build", file=sys.stderr)
        return 2
    module = importlib.import_module(f"hil_af.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except BadInput as e:
        print(f"hil-af {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FocusFailed as e:
        print(f"hil-af {args.command}: focus failed: {e.reason}", file=sys.stderr)
        return 1
    except (DeviceError, HilAfError) as e:
        print(f"hil-af {args.command}: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"hil-af {args.command}: error: file not found: {e.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "_interrupt_hint", None)
        print(f"hil-af {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
