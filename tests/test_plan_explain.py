"""Plan.explain: still a list of dicts, and a table with units when printed."""

from __future__ import annotations

import json

import pytest

import fedalign as fa
from fedalign.plan import Explanation


def _plan() -> fa.Plan:
    s = fa.Scheduler(3, solver="greedy", expert_memory=[1.0, 5.0, 1.0], usage_weight=0.5, seed=0)
    s.register("small", fa.ClientProfile(memory=2.0))
    s.register("big", fa.ClientProfile(memory=10.0))
    plan = s.plan(["small", "big"])
    for c in ("small", "big"):
        rewards = {j: 0.6 for j in plan.assignment[c]}
        s.report(c, fa.Feedback(samples=1200, rewards=rewards), round=plan.round)
    s.end_round()
    return s.plan(["small", "big"])


def test_explain_is_still_a_list_of_dicts() -> None:
    why = _plan().explain("small")
    assert isinstance(why, list) and isinstance(why, Explanation)
    assert [r["expert"] for r in why] == [0, 1, 2]
    assert why == [dict(r) for r in why]
    assert json.loads(json.dumps(why)) == list(why)
    assert why.client == "small" and why.round == 1


def test_to_rows_has_a_header_with_units_and_one_row_per_expert() -> None:
    why = _plan().explain("small")
    rows = why.to_rows()
    assert rows[0] == [
        "expert",
        "chosen",
        "desirability",
        "fitness",
        "usage (samples)",
        "usage (norm.)",
        "exploration",
        "reason",
    ]  # no deadline policy: no train time or deadline column
    assert len(rows) == 4 and why.to_rows(header=False) == rows[1:]
    by_expert = {row[0]: row for row in rows[1:]}
    assert by_expert["1"][1] == "no" and by_expert["1"][-1] == "needs 5 memory, client has 2"
    assert sum(row[1] == "yes" for row in rows[1:]) == 1
    usage = rows[0].index("usage (samples)")
    assert by_expert["0"][usage] == f"{why[0]['usage']:,.1f}"


def test_str_is_a_table_titled_with_the_client_and_round() -> None:
    text = str(_plan().explain("big"))
    lines = text.splitlines()
    assert lines[0] == "client 'big', round 1"
    assert lines[1].split()[:3] == ["expert", "chosen", "desirability"]
    assert "usage (samples)" in lines[1]
    assert len(lines) == 5
    assert all(line.split()[0] in {"0", "1", "2"} for line in lines[2:])


def test_deadline_columns_appear_with_a_deadline_policy() -> None:
    s = fa.Scheduler(2, solver="greedy", deadline=10.0, expert_bytes=1.0, seed=0)
    s.register(0, fa.ClientProfile(compute=1.0, samples=1, bandwidth_up=1.0, bandwidth_down=1.0))
    rows = s.plan([0]).explain(0).to_rows()
    assert "train time (s)" in rows[0] and "deadline (s)" in rows[0]
    assert rows[1][rows[0].index("deadline (s)")] == "10"


def test_an_unknown_client_is_still_a_key_error() -> None:
    with pytest.raises(KeyError, match="cohort"):
        _plan().explain("nobody")


def test_docstring_example() -> None:
    import doctest

    import fedalign.plan

    results = doctest.testmod(fedalign.plan, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
