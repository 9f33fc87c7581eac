"""Argument types for the CLI's numbers: a value out of range is argparse's usage error
(exit 1, the option named), not a ValueError deep in a command (an "internal error",
exit 2) or, worse, a quietly wrong answer (a negative interval, a negative journal seq)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type[float] | type[int], low: float, low_ok: bool) -> Callable[[str], float]:
    word = "a whole number" if kind is int else "a number"
    bound = f"{'at least' if low_ok else 'above'} {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}") from None
        if not math.isfinite(value) or value < low or (value == low and not low_ok):
            raise argparse.ArgumentTypeError(f"{text!r}: give {word} {bound}")
        return value

    parse.__name__ = f"{kind.__name__}_{'from' if low_ok else 'above'}_{low:g}"
    return parse


seconds = _number(float, 0, True)  # 0 and up: "do not wait" is a choice
positive_seconds = _number(float, 0, False)  # a period or a length of time to measure
whole = _number(int, 0, True)  # 0 and up: a seq, a shard id, "0: never"
positive_whole = _number(int, 1, True)
