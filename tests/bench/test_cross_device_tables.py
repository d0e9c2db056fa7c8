"""benchmarks/cross_device_tables.py: the goal table's crossings and ratios on hand-made runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "cross_device_tables.py"
_spec = importlib.util.spec_from_file_location("cross_device_tables", _PATH)
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)  # type: ignore[union-attr]

ROUND = 180.0  # seconds


def _entry(curves: list[list[float]]) -> dict:
    seconds = [[ROUND * (r + 1) for r in range(len(c))] for c in curves]
    first = [next((s[i] for i, a in enumerate(c) if a >= 0.2), None) for c, s in zip(curves, seconds, strict=True)]
    return {
        "accuracy": curves,
        "time_to_target": first,
        "per_seed": {"seed": list(range(len(curves))), "seconds": seconds,
                     "final_accuracy": [c[-1] for c in curves]},
    }  # fmt: skip


def test_sustained_crossing_needs_the_window_mean():
    acc = [0.1] * 5 + [0.3] * 15
    seconds = [ROUND * (r + 1) for r in range(len(acc))]
    # rounds 1-10 hold five rounds at 0.3: their mean is 0.2 at round 10
    assert tables.sustained_minutes(acc, seconds, 0.2) == pytest.approx(10 * ROUND / 60)
    assert tables.sustained_minutes([0.1, 0.9] * 10, seconds, 0.6) is None  # one lucky round in two
    assert tables.sustained_minutes([0.5] * 9, seconds[:9], 0.2) is None  # fewer rounds than the window


def test_goal_table_ratios_over_the_seeds_both_reach():
    slow = [0.1] * 19 + [0.3] * 11  # first at or above 0.2 in round 20
    fast = [0.1] * 9 + [0.3] * 21  # in round 10
    never = [0.1] * 30
    results = {
        "target_accuracy": 0.2,
        "strategies": {
            "load-balanced": _entry([slow, never]),
            "load-balanced/lp": _entry([fast, fast]),
            "greedy": _entry([fast, fast]),  # not a planner: not in the goal table
        },
    }
    rows = tables.goal_table(results).splitlines()
    assert len(rows) == 4 and "minutes to 20 %" in rows[0]
    ref, lp = rows[2], rows[3]
    assert ref.startswith("| load-balanced | 60 / never | 1.00× |")
    # seed 0 only (top-k never reaches it on seed 1): 30 min against 60 -> 0.50x
    assert lp.startswith("| load-balanced/lp | 30 / 30 | 0.50× |")
    # sustained: the 10-round mean reaches 0.2 once five of the last ten rounds are at 0.3,
    # four rounds after the first crossing: rounds 24 and 14, 72 and 42 min (0.58x)
    assert "| 72 / never | 1.00× |" in ref and "| 42 / 42 | 0.58× |" in lp
