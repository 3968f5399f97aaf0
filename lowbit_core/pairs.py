"""The (weight bits, activation bits) pair, written ``w4a8`` (weight bits first): its parser and its one formatter."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lowbit_core.errors import InputError

__all__ = ["Pair", "parse_pair", "parse_pairs", "format_pair", "MIN_BITS", "MAX_BITS", "DEFAULT_MAX_BITS"]

MIN_BITS = 2
#: Widest operand a fixed or bit-serial PE models (16-bit baselines: Eyeriss, Stripes, DaDianNao).
MAX_BITS = 16
#: Widest operand of a chip's default pair set (lowbit's quantizers stop at 8 bits).
DEFAULT_MAX_BITS = 8

Pair = tuple[int, int]
_PAIR_RE = re.compile(r"^\s*w(\d+)a(\d+)\s*$", re.IGNORECASE)


def parse_pair(text: str | Pair, max_bits: int = MAX_BITS) -> Pair:
    """Parse ``'w4a8'`` into ``(4, 8)``; tuples pass through after range checks (widths 2..``max_bits``)."""
    if isinstance(text, tuple):
        w, a = text
    else:
        m = _PAIR_RE.match(str(text))
        if not m:
            raise InputError(f"bad bit pair {text!r}: write it as w<bits>a<bits>, e.g. w4a8")
        w, a = int(m.group(1)), int(m.group(2))
    for label, bits in (("weight", w), ("activation", a)):
        if not MIN_BITS <= int(bits) <= max_bits:
            raise InputError(f"bad bit pair {format_pair((w, a))}: {label} bits must be in {MIN_BITS}..{max_bits}")
    return int(w), int(a)


def parse_pairs(items: str | Iterable[str | Pair], max_bits: int = MAX_BITS) -> list[Pair]:
    """Parse ``'w8a8,w4a4'`` or a list of pairs; keeps order, drops duplicates."""
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    out: list[Pair] = []
    for item in items:
        pair = parse_pair(item, max_bits)
        if pair not in out:
            out.append(pair)
    if not out:
        raise InputError("no bit pairs given: pass e.g. --pairs w8a8,w4a4")
    return out


def format_pair(pair: tuple[Any, Any]) -> str:
    """``(4, 8)`` -> ``'w4a8'``: the one way lowbit writes a pair (numpy and float widths print as integers)."""
    return f"w{int(pair[0])}a{int(pair[1])}"
