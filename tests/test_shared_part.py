"""The shared part in the time model, idle clients' sample counts, conditions through the driver."""

from __future__ import annotations

import numpy as np

import fedalign as fa
from fedalign.rounds import RoundDriver

EXPERT_BYTES = np.array([1e6, 2e6, 4e6])
SHARED = 3e6


def _sched(**kw: object) -> fa.Scheduler:
    s = fa.Scheduler(
        3,
        solver="greedy",
        expert_bytes=EXPERT_BYTES,
        shared_bytes=SHARED,
        deadline=100.0,
        max_experts=3,
        min_experts=0,
        seed=0,
        **kw,
    )
    for c in "abc":
        s.register(
            c,
            fa.ClientProfile(bandwidth_down=1e6, bandwidth_up=5e5, compute=10.0, samples=20),
        )
    return s


def test_the_shared_transfer_comes_off_each_clients_deadline() -> None:
    s = _sched()
    problem, _ = s.build_problem(list("abc"))
    shared_seconds = SHARED / 1e6 + SHARED / 5e5  # fetched and returned once: 9 s
    assert problem.deadline is not None and problem.train_time is not None
    np.testing.assert_allclose(problem.deadline, 100.0 - shared_seconds)
    # the per-expert times stay what they were: transfer of the expert and its training
    per_expert = EXPERT_BYTES / 1e6 + EXPERT_BYTES / 5e5 + 20 / 10.0
    np.testing.assert_allclose(problem.train_time, np.tile(per_expert, (3, 1)))
    # a faded channel reported at check-in lengthens the shared transfer for that round
    faded, _ = s.build_problem(list("abc"), conditions={"b": fa.ClientProfile(bandwidth_up=1e5)})
    assert faded.deadline is not None
    assert faded.deadline[1] == 100.0 - (SHARED / 1e6 + SHARED / 1e5)


def test_the_shared_transfer_enters_the_percentile_deadline() -> None:
    s = fa.Scheduler(
        3, solver="greedy", expert_bytes=EXPERT_BYTES, shared_bytes=SHARED,
        deadline_percentile=100, max_experts=1, seed=0,
    )  # fmt: skip
    for c, bw in zip("abc", (1e6, 2e6, 4e6), strict=True):
        s.register(c, fa.ClientProfile(bandwidth_down=bw, bandwidth_up=bw, compute=1e9))
    problem, _ = s.build_problem(list("abc"))
    need = 2 * (EXPERT_BYTES[0] + SHARED) / np.array([1e6, 2e6, 4e6])  # one expert, with shared
    assert problem.deadline is not None
    np.testing.assert_allclose(problem.deadline + 2 * SHARED / np.array([1e6, 2e6, 4e6]), need.max())


def test_a_duration_that_matches_the_prediction_teaches_no_slowdown() -> None:
    s = _sched()
    plan = s.plan(list("abc"))
    for c, experts in plan.assignment.items():
        k = np.isin(np.arange(3), experts)
        seconds = SHARED / 1e6 + SHARED / 5e5 + float(
            (EXPERT_BYTES[k] / 1e6 + EXPERT_BYTES[k] / 5e5 + 2.0).sum()
        )
        s.report(c, fa.Feedback(samples=20, rewards={j: 0.5 for j in experts}, duration=seconds))
    s.end_round()
    for c in "abc":
        assert s.estimates(c)["slowdown"] == 1.0


def test_an_idle_report_keeps_the_clients_sample_count() -> None:
    s = _sched()
    plan = s.plan(list("abc"), allowed=np.array([[True] * 3, [False] * 3, [True] * 3]))
    assert plan.assignment["b"] == []
    s.report("b", fa.Feedback(samples=0, rewards={}, duration=0.0))  # given nothing: idle
    s.end_round()
    assert s.estimates("b")["samples"] == 20.0  # still its declared size, not 0


def test_the_driver_passes_conditions_to_the_scheduler() -> None:
    s = _sched()
    driver = RoundDriver(s)
    state = {"gate": np.zeros(2, dtype=np.float32)}
    for j in range(3):
        state[f"experts.{j}.w"] = np.zeros(1, dtype=np.float32)
    slow = {"a": fa.ClientProfile(bandwidth_down=1.0)}  # 1 byte/s this round: nothing fits
    current = driver.open(list("abc"), state, conditions=slow)
    assert current.experts("a") == []
    assert current.plan.problem.deadline[0] == 1e-6
    current.close()


def test_a_round_is_learned_against_its_conditions() -> None:
    """A client on a faded channel took longer, as its check-in report said: no slowdown."""
    s = _sched()
    faded = fa.ClientProfile(bandwidth_down=2.5e5, bandwidth_up=1.25e5)  # a quarter
    plan = s.plan(list("abc"), conditions={"a": faded})
    for c, experts in plan.assignment.items():
        k = np.isin(np.arange(3), experts)
        down, up = (2.5e5, 1.25e5) if c == "a" else (1e6, 5e5)
        moved = SHARED + float(EXPERT_BYTES[k].sum())
        seconds = moved / down + moved / up + 2.0 * int(k.sum())
        s.report(c, fa.Feedback(samples=20, rewards={j: 0.5 for j in experts}, duration=seconds))
    s.end_round()
    assert [s.estimates(c)["slowdown"] for c in "abc"] == [1.0, 1.0, 1.0]
    assert s.profile("a").bandwidth_down == 1e6  # the registered profile is back


def test_a_failed_plan_keeps_the_open_rounds_conditions() -> None:
    s = _sched()
    s.plan(list("abc"), conditions={"a": fa.ClientProfile(bandwidth_up=1e5)})
    kept = dict(s._open_conditions)
    try:
        s.plan(list("abc"), allowed=np.ones((2, 3), dtype=bool))  # wrong shape: fails
    except ValueError:
        pass
    assert s.round == 0 and s._open_conditions == kept
