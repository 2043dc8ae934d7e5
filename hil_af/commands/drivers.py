"""``hil-af drivers [--json]``: the URL schemes this install can open."""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..drivers.registry import schemes


def add_arguments(p) -> None:
    add_json_option(p)


def run(args) -> int:
    table = schemes()
    if args.json:
        emit_json({"schemes": table}, args.json)
    if args.json != "-":
        width = max(len(s) for s in table)
        for s, d in table.items():
            print(f"{s + '://':<{width + 3}}  {d}")
    return 0
