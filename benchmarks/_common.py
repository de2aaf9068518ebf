"""Shared helpers for the benchmarks: percentiles and table printing."""

from __future__ import annotations

import statistics
from typing import Dict, List, Sequence


def pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def stats_us(samples_s: Sequence[float]) -> Dict[str, float]:
    us = [x * 1e6 for x in samples_s]
    return {"p50": statistics.median(us), "p99": pct(us, 99), "n": len(us)}


def print_table(rows: List[Dict], columns: List[str]) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))
