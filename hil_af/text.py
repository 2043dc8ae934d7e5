"""Small helpers for the messages the command line prints."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``"1 stack"``, ``"2 stacks"``; ``many`` for irregular plurals (``plural(n, "match", "matches")``)."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"
