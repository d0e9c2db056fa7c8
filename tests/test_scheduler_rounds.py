"""Per-round inputs of the Scheduler: conditions measured at check-in, the byte budget row."""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa


def _sched(**kw: object) -> fa.Scheduler:
    s = fa.Scheduler(3, solver="greedy", expert_bytes=[1e6, 2e6, 4e6], deadline=10.0, seed=0, **kw)
    for c in "abc":
        s.register(c, fa.ClientProfile(bandwidth_down=1e6, bandwidth_up=1e6, compute=100.0, samples=10))
    return s


def test_conditions_override_the_profile_for_one_round_only() -> None:
    s = _sched()
    before, _ = s.build_problem(list("abc"))
    faded = {"b": fa.ClientProfile(bandwidth_down=1e5)}  # this round's channel: 10x slower down
    problem, _ = s.build_problem(list("abc"), conditions=faded)
    t0, t1 = before.train_time, problem.train_time
    assert t0 is not None and t1 is not None
    np.testing.assert_allclose(t1[[0, 2]], t0[[0, 2]])
    np.testing.assert_allclose(t1[1] - t0[1], np.array([1e6, 2e6, 4e6]) * (1 / 1e5 - 1 / 1e6))
    plan = s.plan(list("abc"), conditions=faded)
    assert plan.problem.train_time is not None
    np.testing.assert_allclose(plan.problem.train_time, t1)
    assert s.profile("b").bandwidth_down == 1e6  # the registered profile is back
    after, _ = s.build_problem(list("abc"))
    np.testing.assert_allclose(after.train_time, t0)  # type: ignore[arg-type]


def test_conditions_are_checked_before_anything_changes() -> None:
    s = _sched()
    s.plan(list("ab"))
    with pytest.raises(KeyError, match="not in this round's cohort"):
        s.plan(list("ab"), conditions={"c": fa.ClientProfile(bandwidth_down=1.0)})
    with pytest.raises(TypeError, match=r"conditions\['a'\]: expected a ClientProfile"):
        s.plan(list("ab"), conditions={"a": {"bandwidth_down": 1.0}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="conditions: expected a mapping"):
        s.plan(list("ab"), conditions=[("a", fa.ClientProfile())])  # type: ignore[arg-type]
    assert s.round == 0  # the open round stayed open


def test_round_bytes_needs_expert_bytes() -> None:
    with pytest.raises(ValueError, match="round_bytes: needs expert_bytes"):
        fa.Scheduler(3, round_bytes=1e6)
    with pytest.raises(ValueError, match="round_bytes"):
        fa.Scheduler(3, expert_bytes=1.0, round_bytes=0.0)


def test_round_bytes_adds_a_total_row_counting_shared_bytes_with_every_expert() -> None:
    s = _sched(round_bytes=1e7, shared_bytes=5e5)
    problem, _ = s.build_problem(list("abc"))
    row = problem.row("server bytes")
    assert row.over == "total" and row.upper is not None and row.upper.tolist() == [1e7]
    np.testing.assert_allclose(row.dense[0], 2 * (np.array([1e6, 2e6, 4e6]) + 5e5))
