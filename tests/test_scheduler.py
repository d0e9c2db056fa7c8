"""The stateful Scheduler: planning, learning from feedback, faults, persistence."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign.solvers import registered_solvers


def _first(*names: str) -> str:
    """The first registered solver among ``names`` (skip the test if none has landed)."""
    for name in names:
        if name in registered_solvers():
            return name
    pytest.skip(f"none of the solvers {names} is registered yet")


def plain_solver() -> str:
    return _first("greedy", "flow", "topk", "lagrangian")


def knapsack_solver() -> str:
    return _first("greedy", "topk", "lagrangian")


def _state_arrays(s: fa.Scheduler) -> dict:
    st_ = s.state_dict()
    out = {k: v.copy() for k, v in st_["arrays"].items()}
    out["scalars"] = dict(st_["scalars"])
    out["rng"] = st_["rng"]
    return out


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def _sched(n_clients: int = 6, n_experts: int = 3, **kw) -> fa.Scheduler:
    kw.setdefault("solver", plain_solver())
    s = fa.Scheduler(n_experts, seed=0, **kw)
    for c in range(n_clients):
        s.register(f"c{c}", fa.ClientProfile())
    return s


# --------------------------------------------------------------------------- basics


def test_plan_report_end_round_updates_fitness_and_usage_by_hand() -> None:
    s = _sched(4, 2, fitness_ema=0.3, fitness_decay=0.1, fitness_prior=0.5, usage_decay=0.8)
    plan = s.plan(["c0", "c1"])
    assert plan.round == 0 and set(plan.assignment) == {"c0", "c1"}
    assert all(len(v) == 1 for v in plan.assignment.values())  # default max_experts=1
    (e0,) = plan.assignment["c0"]
    s.report("c0", fa.Feedback(samples=100, rewards={e0: 1.0}), round=plan.round)
    s.report("c1", fa.Feedback(samples=50, rewards={}, completed=False), round=plan.round)
    s.end_round()
    f = s.fitness
    assert f.shape == (4, 2) and f.dtype == np.float32
    assert f[0, e0] == pytest.approx(0.65)
    assert f[0, 1 - e0] == pytest.approx(0.5)
    np.testing.assert_allclose(f[1:], 0.5)  # the dropout earned nothing
    expected = np.zeros(2)
    expected[e0] = 0.2 * 100  # (1 - 0.8) * load; the dropout's samples count for nothing
    np.testing.assert_allclose(s.usage, expected)
    assert s.round is None and s.rounds_closed == 1
    assert s.plan(["c0"]).round == 1


def test_round_numbers_must_increase_and_plan_closes_open_round() -> None:
    s = _sched()
    p = s.plan(["c0", "c1"], round=5)
    assert p.round == 5 and s.round == 5
    with pytest.raises(ValueError, match="round"):
        s.plan(["c0"], round=5)
    p2 = s.plan(["c2"])
    assert p2.round == 6 and s.rounds_closed == 1
    # the silent clients of round 5 were recorded as dropouts
    assert s.estimates("c0")["reliability"] < 1.0


@pytest.mark.parametrize(
    ("cohort", "exc", "match"),
    [
        (["c0", "nobody"], KeyError, r"clients\[1\]"),
        (["c0", "c0"], ValueError, r"clients\[1\]"),
        ([], ValueError, "empty"),
    ],
)
def test_bad_cohorts_leave_open_round_alone(cohort: list, exc: type, match: str) -> None:
    s = _sched()
    p = s.plan(["c0"])
    with pytest.raises(exc, match=match):
        s.plan(cohort)
    assert s.round == p.round


def test_register_updates_profile_and_cold_start() -> None:
    s = fa.Scheduler(3, solver=plain_solver(), max_experts=None)
    stored = s.register("a", fa.ClientProfile(memory=1e30), routing_shares=[0.7, 0.2, 0.1])
    assert stored.memory == fa.ProfileBounds().memory[1]  # clipped
    np.testing.assert_allclose(s.fitness[0], [0.7, 0.2, 0.1], atol=1e-6)
    s.register("a", fa.ClientProfile(max_experts=2))
    assert s.profile("a").max_experts == 2 and s.n_clients == 1
    with pytest.raises(ValueError, match="routing_shares"):
        s.register("a", routing_shares=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="routing_shares"):
        s.register("b", routing_shares=[0.5, 0.5])
    assert s.client_ids == ["a"]
    p = s.plan(["a"])
    assert len(p.assignment["a"]) <= 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"usage_weight": -1}, "usage_weight"),
        ({"fitness_ema": 2}, "fitness_ema"),
        ({"time_weight": 1.0}, "time_weight"),
        ({"deadline": 5.0, "deadline_percentile": 90}, "deadline"),
        ({"deadline_percentile": 0}, "deadline_percentile"),
        ({"expert_max_clients": [1, 2]}, "expert_max_clients"),
        ({"expert_memory": [1.0, -1.0, 1.0]}, r"expert_memory\[1\]"),
        ({"expert_ids": ["a", "a", "b"]}, "expert_ids"),
        ({"usage_norm": "median"}, "usage_norm"),
        ({"min_experts": -1}, "min_experts"),
    ],
)
def test_settings_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fa.Scheduler(3, **kwargs)


def test_explain_shows_terms_and_reasons() -> None:
    s = fa.Scheduler(
        3, solver=knapsack_solver(), expert_memory=[1.0, 5.0, 1.0], usage_weight=0.5, seed=0
    )
    s.register("small", fa.ClientProfile(memory=2.0))
    s.register("big", fa.ClientProfile(memory=10.0))
    plan = s.plan(["small", "big"])
    rows = plan.explain("small")
    assert [r["expert"] for r in rows] == [0, 1, 2]
    assert rows[1]["chosen"] is False and "memory" in rows[1]["reason"]
    assert sum(r["chosen"] for r in rows) == 1
    for r in rows:
        assert r["desirability"] == pytest.approx(r["fitness"] - 0.5 * r["usage_norm"])
        assert r["reason"] == "chosen" if r["chosen"] else r["reason"] != "chosen"
    with pytest.raises(KeyError, match="cohort"):
        plan.explain("nobody")


def test_expert_ids_and_infeasible_minimum_is_explained() -> None:
    s = fa.Scheduler(2, solver=plain_solver(), expert_ids=["x", "y"], expert_min_clients=[0, 3])
    s.register(1)
    s.register(2)
    with pytest.raises(fa.InfeasibleError, match="expert_min_clients"):
        s.plan([1, 2])
    assert s.round is None
    s2 = fa.Scheduler(2, solver=plain_solver(), expert_ids=["x", "y"])
    s2.register(1)
    p = s2.plan([1])
    assert p.assignment[1][0] in ("x", "y")


# --------------------------------------------------------------------------- learning


def _run_popular(usage_weight: float, solver: str, rounds: int = 12) -> np.ndarray:
    """40 clients, 4 experts; expert 0 suits everyone a little better, and the gate's cold
    start shows it. Total load per expert."""
    rng = np.random.default_rng(3)
    true_fit = np.clip(0.6 + 0.05 * rng.standard_normal((40, 4)), 0, 0.8)
    true_fit[:, 0] += 0.2
    # balance_weight=0: the usage term alone (the in-round load row is tested below)
    s = fa.Scheduler(4, solver=solver, usage_weight=usage_weight, balance_weight=0.0, seed=1)
    ids = list(range(40))
    s.register_many(ids, routing_shares=true_fit)
    load = np.zeros(4)
    for _ in range(rounds):
        plan = s.plan(ids)
        for c, experts in plan.assignment.items():
            for e in experts:
                load[e] += 10
            s.report(c, fa.Feedback(samples=10, rewards={e: true_fit[c, e] for e in experts}))
        s.end_round()
    return load


@pytest.mark.parametrize("solver", ["topk", "greedy", "flow", "lagrangian"])
def test_usage_weight_spreads_load_of_a_popular_expert(solver: str) -> None:
    _first(solver)
    greedy_load = _run_popular(0.0, solver)
    balanced_load = _run_popular(1.0, solver)

    def cv(x: np.ndarray) -> float:
        return float(x.std() / x.mean())

    assert greedy_load.sum() == balanced_load.sum()
    assert cv(balanced_load) < 0.5 * cv(greedy_load)
    assert greedy_load.argmax() == 0  # herding onto the popular expert without usage


@pytest.mark.parametrize("solver", ["auto", "topk", "greedy", "flow", "lagrangian", "lp"])
def test_default_settings_spread_a_tied_cohort_within_the_round(solver: str) -> None:
    """Every desirability alike (the first round): the default load row spreads the cohort."""
    _first(solver)
    rng = np.random.default_rng(7)
    s = fa.Scheduler(6, solver=solver, seed=0)
    caps = rng.integers(1, 4, 30)
    for c, k in enumerate(caps):
        s.register(c, fa.ClientProfile(max_experts=int(k)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fa.HerdingWarning)
        plan = s.plan(range(30))
    load = plan.solution.assignment.sum(axis=0)
    assert load.sum() == caps.sum()  # every slot used: each pair is worth more than its cost
    # exact solvers spread the remainder one per expert; heuristics come close
    spread = {"auto": 1, "flow": 1, "lp": 1, "lagrangian": 2}.get(solver, 5)
    assert load.max() - load.min() <= spread, load


def test_without_the_load_row_a_tied_cohort_herds_and_is_warned() -> None:
    """balance_weight=0 (the paper's system): ties broken alike put everyone on one expert."""
    s = fa.Scheduler(6, solver="flow", seed=0, balance_weight=0.0)
    for c in range(30):
        s.register(c, fa.ClientProfile(max_experts=1))
    with pytest.warns(fa.HerdingWarning, match="30 of the round's 30 trainings"):
        plan = s.plan(range(30))
    assert plan.solution.assignment.sum(axis=0).max() == 30


def test_exploration_bonus_favours_untried_pairs() -> None:
    s = _sched(1, 2, usage_weight=0.0, exploration_weight=1.0)
    first = s.plan(["c0"]).assignment["c0"][0]
    s.report("c0", fa.Feedback(samples=1, rewards={first: 0.5}))
    plan = s.plan(["c0"])
    assert plan.assignment["c0"] == [1 - first]
    rows = plan.explain("c0")
    assert rows[first]["exploration"] < rows[1 - first]["exploration"]


def test_time_term_and_percentile_deadline_exclude_stragglers() -> None:
    s = fa.Scheduler(
        2, solver=knapsack_solver(), deadline_percentile=50, time_weight=0.1, samples_per_round=100,
        seed=0,
    )
    for c, speed in enumerate([100.0, 100.0, 50.0, 10.0]):
        s.register(c, fa.ClientProfile(compute=speed))
    plan = s.plan([0, 1, 2, 3])
    # needs: 1, 1, 2, 10 s; the median is 1.5 s: clients 2 and 3 cannot train anything
    np.testing.assert_allclose(plan.problem.deadline, 1.5)
    assert plan.assignment[2] == [] and plan.assignment[3] == []
    assert "deadline" in plan.explain(3)[0]["reason"]
    assert plan.explain(0)[0]["train_time"] == pytest.approx(1.0)
    assert len(plan.assignment[0]) == 1


def test_profiler_learns_slow_client_from_durations() -> None:
    s = fa.Scheduler(1, solver=knapsack_solver(), deadline=3.0, samples_per_round=10, seed=0)
    s.register("fast", fa.ClientProfile(compute=10.0))
    s.register("liar", fa.ClientProfile(compute=10.0))  # claims 1 s, really takes 5 s
    for _ in range(3):
        plan = s.plan(["fast", "liar"])
        assert plan.assignment["liar"] == [0] or _ > 0
        for c, d in (("fast", 1.0), ("liar", 5.0)):
            if plan.assignment[c]:
                s.report(c, fa.Feedback(samples=10, rewards={0: 0.5}, duration=d))
    assert s.estimates("liar")["slowdown"] == pytest.approx(5.0)
    assert s.plan(["fast", "liar"]).assignment == {"fast": [0], "liar": []}


# --------------------------------------------------------------------------- capacity


profiles = st.builds(
    fa.ClientProfile,
    memory=st.one_of(st.none(), st.floats(0.0, 12.0)),
    compute=st.one_of(st.none(), st.floats(0.5, 50.0)),
    bandwidth_up=st.one_of(st.none(), st.floats(10.0, 1000.0)),
    bandwidth_down=st.one_of(st.none(), st.floats(10.0, 1000.0)),
    latency=st.one_of(st.none(), st.floats(0.0, 2.0)),
    max_experts=st.one_of(st.none(), st.integers(0, 4)),
    samples=st.one_of(st.none(), st.integers(0, 50)),
)


@pytest.mark.parametrize("solver", ["topk", "greedy", "lagrangian"])
@settings(max_examples=30)
@given(
    cohort=st.lists(profiles, min_size=1, max_size=8),
    mem=st.lists(st.floats(0.5, 6.0), min_size=4, max_size=4),
    size=st.lists(st.floats(0.0, 500.0), min_size=4, max_size=4),
    deadline=st.floats(1.0, 30.0),
    weights=st.tuples(st.floats(0, 2), st.floats(0, 2), st.floats(0, 1)),
)
def test_capacity_never_exceeded(solver, cohort, mem, size, deadline, weights) -> None:
    s = fa.Scheduler(
        4,
        solver=_first(solver),
        expert_memory=mem,
        expert_bytes=size,
        deadline=deadline,
        fitness_weight=weights[0],
        usage_weight=weights[1],
        time_weight=weights[2],
        max_experts=None,
        samples_per_round=20,
        seed=0,
    )
    for c, p in enumerate(cohort):
        s.register(c, p)
    plan = s.plan(range(len(cohort)))
    x = plan.solution.assignment
    for c, p in enumerate(cohort):
        got = x[c]
        if p.max_experts is not None:
            assert got.sum() <= p.max_experts
        if p.memory is not None:
            assert np.dot(mem, got) <= p.memory + 1e-9
        samples = 20 if p.samples is None else p.samples
        t = np.zeros(4)
        t += p.latency or 0.0
        t += np.asarray(size) * ((1 / p.bandwidth_down if p.bandwidth_down else 0.0)
                                 + (1 / p.bandwidth_up if p.bandwidth_up else 0.0))
        t += samples / p.compute if p.compute else 0.0
        assert np.dot(t, got) <= deadline * (1 + 1e-9)
        # a client gets something whenever one expert fits it on its own
        fits = (np.asarray(mem) <= (p.memory if p.memory is not None else np.inf)) & (t <= deadline)
        if fits.any() and p.max_experts != 0:
            assert got.sum() >= 1


# --------------------------------------------------------------------------- faults


def _open_round() -> tuple[fa.Scheduler, fa.Plan]:
    s = _sched(4, 3, max_experts=1)
    plan = s.plan(["c0", "c1", "c2"])
    return s, plan


def _other_expert(plan: fa.Plan, cid: str) -> int:
    return next(e for e in range(3) if e not in plan.assignment[cid])


BAD = {
    "unknown client": lambda s, p: s.report("zz", fa.Feedback(samples=1), round=p.round),
    "client not in cohort": lambda s, p: s.report("c3", fa.Feedback(samples=1), round=p.round),
    "closed round": lambda s, p: s.report("c0", fa.Feedback(samples=1), round=p.round - 1),
    "future round": lambda s, p: s.report("c0", fa.Feedback(samples=1), round=p.round + 1),
    "unassigned expert": lambda s, p: s.report(
        "c0", fa.Feedback(samples=1, rewards={_other_expert(p, "c0"): 0.5}), round=p.round
    ),
    "unknown expert": lambda s, p: s.report(
        "c0", fa.Feedback(samples=1, rewards={"nope": 0.5}), round=p.round
    ),
    "duplicate report": lambda s, p: s.report(
        "c1", fa.Feedback(samples=1, rewards={p.assignment["c1"][0]: 0.5}), round=p.round
    ),
    "not a Feedback": lambda s, p: s.report("c0", {"samples": 1}, round=p.round),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_feedback_raises_and_changes_nothing(case: str) -> None:
    s, plan = _open_round()
    s.report("c1", fa.Feedback(samples=5, rewards={plan.assignment["c1"][0]: 0.9}), round=plan.round)
    if case in ("closed round",):
        s.end_round()
        plan = s.plan(["c0", "c1", "c2"])
        s.report("c1", fa.Feedback(samples=5, rewards={plan.assignment["c1"][0]: 0.9}))
    before = _state_arrays(s)
    with pytest.raises(fa.InvalidFeedbackError):
        BAD[case](s, plan)
    _assert_same_state(before, _state_arrays(s))
    # the scheduler still works: a correct report goes through
    s.report("c0", fa.Feedback(samples=1, rewards={plan.assignment["c0"][0]: 0.1}), round=plan.round)


def test_report_without_open_round() -> None:
    s = _sched()
    with pytest.raises(fa.InvalidFeedbackError, match="no round"):
        s.report("c0", fa.Feedback(samples=1))
    s.plan(["c0"])
    s.end_round()
    s.end_round()  # a no-op between rounds
    with pytest.raises(fa.InvalidFeedbackError, match="closed"):
        s.report("c0", fa.Feedback(samples=1), round=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 1, "rewards": {0: 1.5}}, "rewards"),
        ({"samples": 1, "rewards": {0: -0.1}}, "rewards"),
        ({"samples": 1, "rewards": {0: float("nan")}}, "rewards"),
        ({"samples": 1, "rewards": {0: float("inf")}}, "rewards"),
        ({"samples": 1, "rewards": {0: "high"}}, "rewards"),
        ({"samples": -1}, "samples"),
        ({"samples": 2.5}, "samples"),
        ({"samples": 1, "duration": -3.0}, "duration"),
        ({"samples": 1, "rewards": [0.5]}, "rewards"),
        ({"samples": 1, "completed": "yes"}, "completed"),
    ],
)
def test_bad_feedback_values(kwargs: dict, match: str) -> None:
    with pytest.raises(fa.InvalidFeedbackError, match=match):
        fa.Feedback(**kwargs)


def test_dropout_credits_nothing_and_silent_clients_are_dropouts() -> None:
    s = fa.Scheduler(2, solver=plain_solver(), seed=0, samples_per_round=10)
    s.register("a", fa.ClientProfile(compute=10.0))
    s.register("b", fa.ClientProfile(compute=10.0))
    plan = s.plan(["a", "b"])
    ea = plan.assignment["a"][0]
    s.report("a", fa.Feedback(samples=10, rewards={ea: 1.0}, duration=9.0, completed=False))
    s.end_round()  # "b" never reports
    np.testing.assert_allclose(s.fitness, 0.5)
    np.testing.assert_allclose(s.usage, 0.0)
    for c in ("a", "b"):
        est = s.estimates(c)
        assert est["reliability"] < 1.0 and est["slowdown"] > 1.0


# --------------------------------------------------------------------------- persistence


def _trained(seed: int = 0) -> fa.Scheduler:
    s = fa.Scheduler(
        3, solver=knapsack_solver(), seed=seed, exploration_weight=0.1, expert_ids=["a", "b", "c"],
        samples_per_round=10, deadline_percentile=90,
    )
    rng = np.random.default_rng(seed)
    for c in range(8):
        s.register(c if c % 2 else f"s{c}", fa.ClientProfile(compute=float(rng.uniform(5, 20))))
    ids = s.client_ids
    for _ in range(3):
        plan = s.plan(ids[: 6])
        for c, es in plan.assignment.items():
            if c != ids[0]:
                s.report(c, fa.Feedback(samples=10, rewards={e: float(rng.random()) for e in es},
                                        duration=float(rng.uniform(0.5, 3))))
        s.end_round()
    return s


def test_save_load_round_trip_plans_identically(tmp_path: Path) -> None:
    s = _trained()
    path = tmp_path / "sched.fas"
    s.save(path)
    t = fa.Scheduler.load(path)
    _assert_same_state(_state_arrays(s), _state_arrays(t))
    assert t.settings == s.settings and t.client_ids == s.client_ids
    np.testing.assert_array_equal(t.fitness, s.fitness)
    for _ in range(3):
        ps, pt = s.plan(s.client_ids[2:]), t.plan(t.client_ids[2:])
        assert ps.assignment == pt.assignment and ps.round == pt.round
    _assert_same_state(_state_arrays(s), _state_arrays(t))
    assert [p.name for p in tmp_path.iterdir()] == ["sched.fas"]  # no temp files left


def test_save_mid_round_then_continue(tmp_path: Path) -> None:
    s = _trained()
    plan = s.plan(s.client_ids[:4])
    first = s.client_ids[0]
    s.report(first, fa.Feedback(samples=3, rewards={e: 0.7 for e in plan.assignment[first]}))
    s.save(tmp_path / "mid")
    t = fa.Scheduler.load(tmp_path / "mid")
    assert t.round == plan.round
    for x in (s, t):
        second = x.client_ids[1]
        x.report(second, fa.Feedback(samples=4, rewards={e: 0.2 for e in plan.assignment[second]}),
                 round=plan.round)
        with pytest.raises(fa.InvalidFeedbackError, match="already"):
            x.report(first, fa.Feedback(samples=3), round=plan.round)
        x.end_round()
    _assert_same_state(_state_arrays(s), _state_arrays(t))


def test_load_state_dict_in_place_and_bad_state_untouched() -> None:
    s, t = _trained(0), _trained(1)
    before = _state_arrays(t)
    bad = s.state_dict()
    bad["arrays"]["fit.fitness"] = bad["arrays"]["fit.fitness"][:, :2]
    with pytest.raises(fa.InvalidStateError):
        t.load_state_dict(bad)
    _assert_same_state(before, _state_arrays(t))
    future = s.state_dict()
    future["format_version"] = 99
    with pytest.raises(fa.InvalidStateError, match="newer"):
        t.load_state_dict(future)
    t.load_state_dict(s.state_dict())
    _assert_same_state(_state_arrays(s), _state_arrays(t))


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":
        data[-100] ^= 0xFF
    elif how == "future":
        magic = b"FEDALIGN-SCHEDULER\n"
        data[len(magic) : len(magic) + 4] = (7).to_bytes(4, "little")
    elif how == "garbage":
        data = bytearray(b"not a scheduler at all")
    elif how == "header only":
        data = data[:25]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "match"),
    [("truncated", "truncated"), ("flipped", "checksum"), ("future", "newer"),
     ("garbage", "not a fedalign"), ("header only", "truncated")],
)
def test_load_rejects_damaged_files(tmp_path: Path, how: str, match: str) -> None:
    path = tmp_path / "s"
    _trained().save(path)
    _corrupt(path, how)
    with pytest.raises(fa.InvalidStateError, match=match):
        fa.Scheduler.load(path)


@pytest.mark.parametrize("fail", ["replace", "fsync", "savez"])
def test_interrupted_save_keeps_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str) -> None:
    path = tmp_path / "s"
    s = _trained()
    s.save(path)
    old = _state_arrays(s)
    s.plan(s.client_ids[:3])
    s.end_round()

    def boom(*args: object, **kwargs: object) -> None:
        if fail == "savez":  # half the payload is on disk when the write fails
            args[0].write(b"PK" + bytes(5000))  # type: ignore[attr-defined]
        raise OSError("disk pulled out")

    monkeypatch.setattr(np if fail == "savez" else os, fail, boom)
    with pytest.raises(OSError, match="disk pulled out"):
        s.save(path)
    monkeypatch.undo()
    _assert_same_state(old, _state_arrays(fa.Scheduler.load(path)))
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_load_rejects_valid_checksum_over_garbage(tmp_path: Path) -> None:
    import hashlib
    import struct

    payload = b"PK not really a zip file" * 10
    head = struct.pack("<IQ32s", 1, len(payload), hashlib.sha256(payload).digest())
    path = tmp_path / "g"
    path.write_bytes(b"FEDALIGN-SCHEDULER\n" + head + payload)
    with pytest.raises(fa.InvalidStateError, match="unreadable"):
        fa.Scheduler.load(path)


def test_unsavable_ids_fail_before_writing(tmp_path: Path) -> None:
    s = fa.Scheduler(2, solver=plain_solver())
    s.register((1, 2))
    with pytest.raises(TypeError, match="client_ids"):
        s.save(tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_register_many_matches_register() -> None:
    a = fa.Scheduler(2, solver=plain_solver(), expert_memory=[1.0, 2.0], seed=0)
    b = fa.Scheduler(2, solver=plain_solver(), expert_memory=[1.0, 2.0], seed=0)
    profs = [fa.ClientProfile(memory=float(m)) for m in (1, 3, 5)]
    for c, p in enumerate(profs):
        a.register(c, p)
    b.register_many(range(3), profs)
    b.register_many([3, 4], fa.ClientProfile(memory=2.0))
    a.register(3, fa.ClientProfile(memory=2.0))
    a.register(4, fa.ClientProfile(memory=2.0))
    _assert_same_state(_state_arrays(a), _state_arrays(b))
    assert b.client_ids == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"client_ids\[1\]"):
        b.register_many([9, 4])
    with pytest.raises(ValueError, match="profile"):
        b.register_many([9, 10], [fa.ClientProfile()])
    with pytest.raises(ValueError, match="routing_shares"):
        b.register_many([9, 10], routing_shares=[[0.5, 0.5]])
    assert b.n_clients == 5
    b.register_many([9, 10], routing_shares=[[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(b.fitness[-2:], [[0.9, 0.1], [0.2, 0.8]], atol=1e-6)


def test_report_round_must_be_an_int() -> None:
    s, plan = _open_round()
    with pytest.raises(fa.InvalidFeedbackError, match="round"):
        s.report("c0", fa.Feedback(samples=1), round="0")


def test_reregister_without_profile_keeps_it() -> None:
    s = _sched(0)
    s.register("a", fa.ClientProfile(memory=3.0))
    assert s.register("a").memory == 3.0
    assert "clients=1" in repr(s)


def test_docs_training_loop_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The plain-Python loop of docs/scheduler.md runs as written."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "scheduler.md"
    text = doc.read_text()
    start = text.index("```python\n", text.index("## A complete training loop")) + len("```python\n")
    code = text[start : text.index("```", start)]
    solver = re.search(r'solver="(\w+)"', code).group(1)
    if solver not in registered_solvers():
        pytest.skip(f"solver {solver!r} not registered yet")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(doc), "exec"), {"__name__": "docs_loop"})
    out = capsys.readouterr().out
    assert "mean best reward" in out and (tmp_path / "scheduler.fas").exists()


def test_client_with_no_expert_fitting_both_knapsacks_gets_none() -> None:
    # expert 0 fits the memory but is too slow; expert 1 is fast but too big
    s = fa.Scheduler(2, solver=knapsack_solver(), expert_memory=[1.0, 5.0], expert_cost=[10.0, 1.0],
                     deadline=2.0, samples_per_round=10, seed=0)
    s.register("a", fa.ClientProfile(memory=2.0, compute=10.0))
    s.register("b", fa.ClientProfile(memory=9.0, compute=10.0))
    plan = s.plan(["a", "b"])
    assert plan.assignment == {"a": [], "b": [1]}
    reasons = [r["reason"] for r in plan.explain("a")]
    assert "deadline" in reasons[0] and "memory" in reasons[1]


def test_usage_measure_compute_and_allowed_pairs() -> None:
    s = fa.Scheduler(2, solver=plain_solver(), expert_cost=[1.0, 3.0], usage_measure="compute",
                     usage_decay=0.5, seed=0)
    s.register("a")
    s.register("b")
    plan = s.plan(["a", "b"], allowed=[[True, False], [False, True]])
    assert plan.assignment == {"a": [0], "b": [1]}
    assert plan.explain("a")[1]["reason"] == "pair not allowed"
    s.report("a", fa.Feedback(samples=10, rewards={0: 0.5}))
    s.report("b", fa.Feedback(samples=10, rewards={1: 0.5}))
    s.end_round()
    np.testing.assert_allclose(s.usage, [5.0, 15.0])  # 0.5 * samples * cost
    with pytest.raises(ValueError, match="allowed"):
        s.plan(["a"], allowed=[[True, True], [True, True]])


def test_undeclared_client_is_timed_from_its_reports() -> None:
    s = fa.Scheduler(1, solver=knapsack_solver(), deadline=3.0, samples_per_round=10, seed=0)
    s.register("quiet")  # declares nothing: unlimited until seen
    plan = s.plan(["quiet"])
    assert plan.assignment == {"quiet": [0]}
    s.report("quiet", fa.Feedback(samples=10, rewards={0: 0.5}, duration=6.0))
    plan = s.plan(["quiet"])
    assert plan.assignment == {"quiet": []}
    assert plan.explain("quiet")[0]["train_time"] == pytest.approx(6.0)


def test_reloaded_scheduler_continues_the_random_stream(tmp_path: Path) -> None:
    solver = _first("random")
    s = fa.Scheduler(6, solver=solver, max_experts=2, seed=11)
    s.register_many(range(30))
    s.plan(range(30))
    s.save(tmp_path / "r")
    t = fa.Scheduler.load(tmp_path / "r")
    plans_s = [s.plan(range(30)).assignment for _ in range(4)]
    plans_t = [t.plan(range(30)).assignment for _ in range(4)]
    assert plans_s == plans_t
    assert len({str(p) for p in plans_s}) > 1  # the solver really draws from the stream


@settings(max_examples=25)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["c0", "c1", "c2", "c3", "zz"]),
            st.sampled_from([-1, 0, 1]),
            st.sampled_from(["assigned", "other", "none"]),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_any_report_sequence_accepts_exactly_the_valid_ones(ops) -> None:
    s = _sched(4, 3, max_experts=1)
    s.plan(["c0", "c1"])
    s.end_round()
    plan = s.plan(["c0", "c1", "c2"])
    reported: set[str] = set()
    for cid, offset, which, completed in ops:
        given_ = plan.assignment.get(cid, [])
        if which == "assigned" and given_:
            rewards = {given_[0]: 0.25}
        elif which == "other":
            rewards = {next(e for e in range(3) if e not in given_): 0.25}
        else:
            rewards = {}
        valid = (
            cid in plan.assignment
            and offset == 0
            and cid not in reported
            and all(e in given_ for e in rewards)
        )
        before = _state_arrays(s)
        fb = fa.Feedback(samples=3, rewards=rewards, duration=1.0, completed=completed)
        if valid:
            s.report(cid, fb, round=plan.round + offset)
            reported.add(cid)
        else:
            with pytest.raises(fa.InvalidFeedbackError):
                s.report(cid, fb, round=plan.round + offset)
            _assert_same_state(before, _state_arrays(s))
    s.end_round()
    assert s.rounds_closed == 2


# --------------------------------------------------------------------------- review fixes


@pytest.mark.parametrize("cohort", ["ab", b"ab", 5])
def test_string_or_scalar_cohort_is_refused_not_split(cohort: object) -> None:
    s = fa.Scheduler(2, solver=plain_solver(), seed=0)
    s.register_many(["a", "b"])
    p = s.plan(["a"])
    with pytest.raises(ValueError, match="clients"):
        s.plan(cohort)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clients"):
        s.build_problem(cohort)  # type: ignore[arg-type]
    assert s.round == p.round
    with pytest.raises(ValueError, match="client_ids"):
        s.register_many("cd")
    assert s.client_ids == ["a", "b"]


def test_unknown_solver_or_option_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        fa.Scheduler(2, solver="nosuch")
    with pytest.raises(ValueError, match=r"solver_options\['bogus'\]"):
        fa.Scheduler(2, solver=plain_solver(), solver_options={"bogus": 1})
    with pytest.raises(ValueError, match="solver_options"):
        fa.Scheduler(2, solver=plain_solver(), solver_options=5)  # type: ignore[arg-type]
    name = _first("lagrangian")
    s = fa.Scheduler(2, solver=name, solver_options={"max_iter": 5}, seed=0)
    s.register_many(range(3))
    assert set(s.plan(range(3)).assignment) == {0, 1, 2}
    assert s.settings["solver_options"] == {"max_iter": 5}


def test_unavailable_solver_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedalign.solvers.base import _REGISTRY

    cls = _REGISTRY[_first("cpsat", "milp", "lp")]
    monkeypatch.setattr(cls, "requires", ("surely_not_an_installed_module_xyz",))
    with pytest.raises(fa.SolverUnavailableError):
        fa.Scheduler(2, solver=cls.name)


def _open_round_with_reports() -> tuple[fa.Scheduler, fa.Plan]:
    s = fa.Scheduler(2, solver=plain_solver(), expert_min_clients=[0, 1], usage_decay=0.5, seed=3)
    s.register_many(["a", "b", "c"])
    s.plan(["a", "b"])
    s.end_round()
    p = s.plan(["a", "b", "c"])
    a_experts = p.assignment["a"]
    s.report("a", fa.Feedback(samples=7, rewards={e: 0.9 for e in a_experts}, duration=1.0))
    return s, p


@pytest.mark.parametrize("failure", ["infeasible", "allowed", "solver"])
def test_failed_plan_changes_nothing(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    s, p = _open_round_with_reports()
    ref, _ = _open_round_with_reports()
    before = _state_arrays(s)
    if failure == "infeasible":  # expert 1 needs a client, and c may not take it
        with pytest.raises(fa.InfeasibleError, match="round 2"):
            s.plan(["c"], allowed=[[True, False]])
    elif failure == "allowed":
        with pytest.raises(ValueError, match="allowed"):
            s.plan(["a"], allowed=[[True, True], [True, True]])
    else:
        import fedalign.scheduler.core as sched_mod

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("solver crashed")

        monkeypatch.setattr(sched_mod, "solve", broken)
        with pytest.raises(RuntimeError, match="crashed"):
            s.plan(["a", "b"])
        monkeypatch.undo()
    _assert_same_state(before, _state_arrays(s))
    assert s.round == p.round and s.rounds_closed == 1
    # the open round's report still counts, and planning continues as if nothing happened
    with pytest.raises(fa.InvalidFeedbackError, match="already"):
        s.report("a", fa.Feedback(samples=1))
    nxt, ref_next = s.plan(["a", "b"]), ref.plan(["a", "b"])
    assert nxt.round == ref_next.round == p.round + 1
    assert nxt.assignment == ref_next.assignment
    _assert_same_state(_state_arrays(ref), _state_arrays(s))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fitness_ema": "x"}, "fitness_ema"),
        ({"fitness_decay": "x"}, "fitness_decay"),
        ({"fitness_prior": None}, "fitness_prior"),
        ({"usage_decay": [0.5]}, "usage_decay"),
        ({"dropout_inflation": float("inf")}, "dropout_inflation"),
        ({"expert_memory": [1.0, "x", 1.0]}, r"expert_memory\[1\]"),
        ({"expert_cost": "cheap"}, "expert_cost"),
        ({"expert_ids": [[1], [2], [3]]}, r"expert_ids\[0\]"),
        ({"expert_ids": ["a", "b", "a"]}, r"expert_ids\[2\]"),
        ({"expert_ids": "abc"}, "expert_ids"),
        ({"expert_ids": 3}, "expert_ids"),
    ],
)
def test_bad_settings_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fa.Scheduler(3, solver=plain_solver(), **kwargs)


@pytest.mark.parametrize(
    ("shares", "match"),
    [
        ([2.0, -1, 0.5], r"routing_shares\[0\]: expected a value in \[0, 1\], got 2\.0"),
        ([0.5, np.nan, 0.5], r"routing_shares\[1\]"),
        ([0.5, "x", 0.5], r"routing_shares\[1\]: expected numbers, got 'x'"),
        ([0.5, 0.5], "routing_shares: expected 3"),
    ],
)
def test_register_bad_routing_shares_names_them(shares: list, match: str) -> None:
    s = fa.Scheduler(3, solver=plain_solver())
    with pytest.raises(ValueError, match=match):
        s.register("b", routing_shares=shares)
    with pytest.raises(ValueError, match=r"routing_shares\[1, 1\]"):
        s.register_many(["p", "q"], routing_shares=[[0.1, 0.2, 0.3], [0.1, 1.5, 0.3]])
    assert s.n_clients == 0 and s.fitness.shape == (0, 3)


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 10**400}, r"^Feedback\.samples: expected an int .*, got an integer of 401 digits"),
        ({"samples": 2**53 + 1}, r"^Feedback\.samples: expected an int in \[0, 9007199254740992\]"),
        ({"samples": 1e400}, r"^Feedback\.samples: .*, got inf"),
        ({"samples": 3 + 0j}, r"^Feedback\.samples: .*, got \(3\+0j\)"),
        ({"samples": "3"}, r"^Feedback\.samples: .*, got '3'"),
        ({"samples": np.array(3)}, r"^Feedback\.samples: .*, got array\(3\)"),
        ({"samples": np.array([3])}, r"^Feedback\.samples: .*, got array\(\[3\]\)"),
        ({"samples": 1, "duration": 10**400}, r"^Feedback\.duration: .*, got an integer of 401"),
        ({"samples": 1, "duration": 1j}, r"^Feedback\.duration: .*, got 1j"),
        ({"samples": 1, "duration": np.array([1.0])}, r"^Feedback\.duration: .*, got array"),
        ({"samples": 1, "rewards": {0: 10**400}}, r"^Feedback\.rewards\[0\]: .*, got an integer"),
        ({"samples": 1, "rewards": {"a": 0.5j}}, r"^Feedback\.rewards\['a'\]: .*, got 0\.5j"),
        ({"samples": 1, "rewards": {0: np.array(0.5)}}, r"^Feedback\.rewards\[0\]: .*, got array"),
        ({"samples": 1, "completed": np.array(True)}, r"^Feedback\.completed: expected a bool"),
    ],
)
def test_hostile_feedback_is_a_named_invalid_feedback_error(kwargs: dict, match: str) -> None:
    with pytest.raises(fa.InvalidFeedbackError, match=match):
        fa.Feedback(**kwargs)


def test_feedback_fields_are_converted() -> None:
    fb = fa.Feedback(samples=np.float64(4.0), rewards={1: np.float32(0.5), 2: 1},
                     duration=np.int64(3), completed=np.bool_(False))
    assert fb == fa.Feedback(samples=4, rewards={1: 0.5, 2: 1.0}, duration=3.0, completed=False)
    assert type(fb.samples) is int and type(fb.duration) is float and fb.completed is False
