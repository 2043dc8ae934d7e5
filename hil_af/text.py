"""Small helpers for the messages the command line prints."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``"1 stack"``, ``"2 stacks"``; ``many`` for irregular plurals (``plural(n, "match", "matches")``)."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"


def int_pair(text: object) -> tuple[int, int]:
    """``"448x672"`` -> (448, 672) (an ``AxB`` pair of integers, ``x`` or ``X``); ValueError otherwise,
    for the caller to word (a grid's rows x cols, a view's height x width)."""
    a, b = (int(v) for v in str(text).lower().split("x"))
    return a, b


def install_hint(extra: str) -> str:
    """How to install an optional extra: from a source checkout, and from the package index once published."""
    return f"pip install -e '.[{extra}]' in a source checkout (or pip install 'hil-af[{extra}]' once published)"
