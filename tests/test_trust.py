"""The scheduler's trust score, verdicts, reward plausibility, idle floor and noisy rewards."""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa
from fedalign.errors import InvalidFeedbackError


def _sched(n: int = 5, e: int = 2, **kwargs) -> fa.Scheduler:
    kwargs.setdefault("solver", "flow")
    sched = fa.Scheduler(e, seed=0, **kwargs)
    sched.register_many(range(n), fa.ClientProfile(max_experts=1))
    return sched


def _report_all(sched, plan, reward=0.5, rewards=None):
    for c, experts in plan.assignment.items():
        r = (rewards or {}).get(c, reward)
        sched.report(c, fa.Feedback(samples=10, rewards={j: r for j in experts}), round=plan.round)


# --------------------------------------------------------------------------- judge


def test_a_verdict_of_zero_leaves_the_reward_uncredited():
    sched = _sched()
    plan = sched.plan(range(5))
    _report_all(sched, plan, reward=1.0)
    sched.judge(0, 0.0)
    sched.end_round()
    j0 = plan.assignment[0][0]
    assert sched.fitness[0, j0] == pytest.approx(0.5)  # drifted from the prior: still the prior
    assert sched.fitness[1, plan.assignment[1][0]] == pytest.approx(0.65)  # 0.7 x 0.5 + 0.3
    assert sched.trust.tolist() == [1.0] * 5  # no trust score without trust_rate


def test_a_judged_report_counts_toward_usage_by_its_verdict():
    """A report left out of the averages trained nothing: its samples are not usage."""
    usage = []
    for verdict in (None, 0.0, 0.5):
        sched = _sched(n=2, e=1, usage_decay=0.0)
        plan = sched.plan(range(2))
        _report_all(sched, plan)
        if verdict is not None:
            sched.judge(0, verdict)
        sched.end_round()
        usage.append(float(sched.usage[0]))
    assert usage == pytest.approx([20.0, 10.0, 15.0])


def test_trust_falls_with_implausible_reports_and_weights_fitness():
    sched = _sched(trust_rate=0.5)
    plan = sched.plan(range(5))
    _report_all(sched, plan, reward=1.0)
    sched.judge(0, {plan.assignment[0][0]: 0.0})
    sched.end_round()
    assert sched.trust.tolist() == [0.5, 1, 1, 1, 1]
    plan = sched.plan(range(5))
    j = plan.assignment[0][0]
    before = float(sched.fitness[0, j])
    _report_all(sched, plan, reward=1.0)
    sched.end_round()
    # trust 0.5 -> 0.75 after a plausible round; the update moves at 0.3 x 0.75
    assert sched.trust[0] == pytest.approx(0.75)
    assert sched.fitness[0, j] == pytest.approx(before + 0.3 * 0.75 * (1.0 - before), abs=1e-6)


def test_judge_refuses_what_a_report_would_refuse():
    sched = _sched()
    with pytest.raises(InvalidFeedbackError, match="no round"):
        sched.judge(0, 0.0)
    plan = sched.plan(range(3))
    other = next(j for j in range(2) if j not in plan.assignment[0])
    for args, match in [
        ((9, 0.0), "not registered"),
        ((4, 0.0), "not in round 0's cohort"),
        ((0, 1.5), "verdict: expected a float in \\[0, 1\\]"),
        ((0, {other: 0.0}), "was not assigned"),
        ((0, {"x": 0.0}), "not an expert id"),
    ]:
        with pytest.raises(InvalidFeedbackError, match=match):
            sched.judge(*args)
    with pytest.raises(InvalidFeedbackError, match="future round"):
        sched.judge(0, 0.0, round=7)


def test_two_verdicts_keep_the_lower():
    sched = _sched()
    plan = sched.plan(range(5))
    j = plan.assignment[0][0]
    sched.judge(0, {j: 0.2})
    sched.judge(0, 0.9)
    assert sched.state_dict()["arrays"]["open.verdict"][0, j] == pytest.approx(0.2)


# --------------------------------------------------------------------------- reward_z


def test_population_check_refuses_an_outlying_reward():
    sched = _sched(n=6, e=1, reward_z=3.5, trust_rate=0.2)
    plan = sched.plan(range(6))
    _report_all(sched, plan, reward=0.2, rewards={5: 1.0})
    sched.end_round()
    f = sched.fitness[:, 0]
    assert f[0] == pytest.approx(0.41) and f[5] == pytest.approx(0.5)
    assert sched.trust[5] == pytest.approx(0.8) and sched.trust[0] == 1.0


def test_population_check_needs_three_rewards():
    sched = _sched(n=2, e=1, reward_z=1.0)
    plan = sched.plan(range(2))
    _report_all(sched, plan, reward=0.0, rewards={1: 1.0})
    sched.end_round()
    assert sched.fitness[1, 0] == pytest.approx(0.65)


def test_explain_shows_trust_only_when_kept():
    plain = _sched().plan(range(5))
    assert "trust" not in plain.explain(0)[0]
    assert "trust" not in str(plain.explain(0))
    sched = _sched(trust_rate=0.5)
    plan = sched.plan(range(5))
    _report_all(sched, plan)
    sched.judge(2, 0.0)
    plan = sched.plan(range(5))
    why = plan.explain(2)
    assert why[0]["trust"] == pytest.approx(0.5)
    assert "trust" in str(why).splitlines()[1] and " 0.50 " in str(why)


# --------------------------------------------------------------------------- persistence


def test_trust_idle_and_verdicts_survive_save_and_load(tmp_path):
    sched = _sched(n=4, e=2, trust_rate=0.5, max_idle_rounds=2, min_experts=0, expert_max_clients=1,
                   usage_weight=0.0)
    plan = sched.plan(range(4))
    _report_all(sched, plan)
    given = [c for c, e in plan.assignment.items() if e]
    sched.judge(given[0], 0.0)
    sched.end_round()
    plan = sched.plan(range(4))
    sched.judge(next(c for c, e in plan.assignment.items() if e), 0.0)  # mid-round verdict
    state = sched.state_dict()
    assert {"trust.score", "trust.idle", "open.verdict"} <= set(state["arrays"])
    assert state["scalars"]["idle_violations"] == sched.idle_violations
    sched.save(tmp_path / "s.fas")
    again = fa.Scheduler.load(tmp_path / "s.fas")
    assert again.trust.tolist() == sched.trust.tolist()
    assert [again.idle_rounds(c) for c in range(4)] == [sched.idle_rounds(c) for c in range(4)]
    sched.end_round()
    again.end_round()
    assert np.array_equal(again.fitness, sched.fitness) and again.trust.tolist() == sched.trust.tolist()


def test_a_state_without_the_features_is_the_old_layout():
    sched = _sched()
    plan = sched.plan(range(5))
    _report_all(sched, plan)
    state = sched.state_dict()
    assert not [k for k in state["arrays"] if k.startswith("trust.") or k == "open.verdict"]
    assert set(state["scalars"]) == {"rounds_closed", "last_round", "open_round"}


def test_an_old_state_loads_into_trust_settings_with_fresh_records():
    sched = _sched()
    plan = sched.plan(range(5))
    _report_all(sched, plan)
    state = sched.state_dict()
    state["settings"] = {**state["settings"], "trust_rate": 0.3, "max_idle_rounds": 3}
    again = fa.Scheduler.from_state_dict(state)
    assert again.trust.tolist() == [1.0] * 5 and again.idle_violations == 0


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("trust.score", np.full(5, 2.0, np.float32), "trust.score"),
        ("trust.idle", np.full(5, -1, np.int32), "trust.idle"),
        ("trust.score", np.ones(4, np.float32), "trust.score"),
    ],
)
def test_hostile_ledger_arrays_are_refused(key, value, match):
    sched = _sched(trust_rate=0.2, max_idle_rounds=2)
    state = sched.state_dict()
    state["arrays"][key] = value
    with pytest.raises(fa.InvalidStateError, match=match):
        fa.Scheduler.from_state_dict(state)
    state = sched.state_dict()
    state["scalars"]["idle_violations"] = -3
    with pytest.raises(fa.InvalidStateError, match="idle_violations"):
        fa.Scheduler.from_state_dict(state)


def test_a_failed_plan_leaves_trust_and_streaks_unchanged():
    sched = _sched(n=3, e=2, trust_rate=0.5, max_idle_rounds=1, min_experts=0, expert_max_clients=1)
    plan = sched.plan(range(3))
    _report_all(sched, plan)
    sched.judge(next(c for c, e in plan.assignment.items() if e), 0.0)
    trust, idle = sched.trust.tolist(), [sched.idle_rounds(c) for c in range(3)]
    with pytest.raises(ValueError, match="allowed"):  # fails after the open round was folded in
        sched.plan(range(3), allowed=np.full((3, 2), 2))
    assert sched.trust.tolist() == trust and [sched.idle_rounds(c) for c in range(3)] == idle
    assert sched.round == plan.round


# --------------------------------------------------------------------------- idle floor


def test_the_floor_gives_every_idle_client_an_expert_within_w_rounds():
    # 3 clients, 2 seats a round, desirability favouring clients 0 and 1 for ever
    sched = fa.Scheduler(2, solver="flow", seed=0, min_experts=0, expert_max_clients=1,
                         max_idle_rounds=2, usage_weight=0.0)
    sched.register_many(range(3), fa.ClientProfile(max_experts=1))
    streak = np.zeros(3, int)
    for _ in range(12):
        plan = sched.plan(range(3))
        for c, experts in plan.assignment.items():
            streak[c] = 0 if experts else streak[c] + 1
            assert streak[c] <= 2
            reward = 0.9 if c < 2 else 0.1
            sched.report(c, fa.Feedback(samples=10, rewards={j: reward for j in experts}))
        if plan.floored:
            assert all(plan.assignment[c] for c in plan.floored)
    assert sched.idle_violations == 0


def test_without_the_floor_the_same_client_starves():
    sched = fa.Scheduler(2, solver="flow", seed=0, min_experts=0, expert_max_clients=1, usage_weight=0.0)
    sched.register_many(range(3), fa.ClientProfile(max_experts=1))
    idle = 0
    for _ in range(12):
        plan = sched.plan(range(3))
        for c, experts in plan.assignment.items():
            sched.report(c, fa.Feedback(samples=10, rewards={j: 0.9 if c < 2 else 0.1 for j in experts}))
        idle += not plan.assignment[2]
    assert idle >= 10 and sched.idle_violations == 0  # nothing is counted without the setting


def test_violations_are_counted_when_the_round_cannot_take_the_floors():
    sched = fa.Scheduler(1, solver="flow", seed=0, min_experts=0, expert_max_clients=1, max_idle_rounds=1)
    sched.register_many(range(4), fa.ClientProfile(max_experts=1))
    sched.plan(range(4))  # one trains, three idle
    plan = sched.plan(range(4))  # three due, one seat: planned without floors
    assert plan.floored == [] and len(plan.idle_violations) >= 2
    assert sched.idle_violations == len(plan.idle_violations)


def test_a_client_that_fits_nothing_is_not_counted():
    sched = fa.Scheduler(1, solver="flow", seed=0, min_experts=0, expert_memory=2.0, max_idle_rounds=1)
    sched.register(0, fa.ClientProfile(memory=1.0))  # too small for the expert
    sched.register(1, fa.ClientProfile(memory=4.0))
    for _ in range(4):
        plan = sched.plan([0, 1])
        assert plan.assignment[0] == [] and plan.idle_violations == []
    assert sched.idle_rounds(0) == 0 and sched.idle_violations == 0


# --------------------------------------------------------------------------- noisy rewards


def test_noisy_rewards_need_the_setting():
    fb = fa.Feedback(samples=1, rewards={0: 1.7}, epsilon=1.0)
    assert fb.noisy
    sched = _sched(e=1)
    sched.plan(range(5))
    with pytest.raises(InvalidFeedbackError, match="noisy_rewards=True"):
        sched.report(0, fb)
    sched.report(1, fa.Feedback(samples=1, rewards={0: 0.7}, epsilon=1.0))  # in range: fine


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": {0: 1.7}}, r"Feedback.rewards\[0\]: expected a float in \[0, 1\]"),
        ({"rewards": {0: 2e6}, "epsilon": 1.0}, r"Feedback.rewards\[0\]"),
        ({"rewards": {0: float("nan")}, "epsilon": 1.0}, r"Feedback.rewards\[0\]"),
        ({"epsilon": 0.0}, "Feedback.epsilon"),
        ({"epsilon": True}, "Feedback.epsilon"),
    ],
)
def test_feedback_refuses_bad_noisy_rewards(kwargs, match):
    with pytest.raises(InvalidFeedbackError, match=match):
        fa.Feedback(samples=1, **kwargs)


def test_the_fitness_average_stays_unbiased_under_ldp_noise(tmp_path):
    n, rounds = 400, 30
    sched = fa.Scheduler(1, solver="flow", seed=0, noisy_rewards=True)
    sched.register_many(range(n), fa.ClientProfile(max_experts=1))
    rng = np.random.default_rng(1)
    for r in range(rounds):
        plan = sched.plan(range(n))
        for c in range(n):
            fb = fa.privatize(fa.Feedback(samples=5, rewards={0: 0.3}), 1.0, rng=rng)
            sched.report(c, fb, round=plan.round)
        if r == rounds // 2:  # noisy fitness and an open round full of noisy rewards save
            sched.save(tmp_path / "noisy.fas")
            sched = fa.Scheduler.load(tmp_path / "noisy.fas")
    sched.end_round()
    f = sched.fitness[:, 0]
    assert (f < 0).any() or (f > 1).any()  # unclipped
    # E[F] = 0.3 + 0.7^30 (0.5 - 0.3); the standard error of the mean of 400 is ~0.04
    assert float(f.mean()) == pytest.approx(0.3, abs=0.1)
