"""Noise-aware fitness: the Kalman-style gain for privatized rewards (docs/trust.md, "Privacy").

The gain of a noisy reward depends on the stated noise variance and the pair's history,
never on the reported value: the estimate stays an unbiased weighted average of the exact
rewards, and averages the noise away far better than the fixed rate ``fitness_ema``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa
from fedalign.errors import InvalidFeedbackError
from fedalign.privacy import noise_variance, privatize_rewards
from fedalign.scores import PRIOR_VARIANCE, FitnessTracker


def _noisy_run(
    n: int, rounds: int, truth: float, mechanism: str, *, noise_aware: bool, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows, one expert, trained every round with privatized rewards (ε = 1) of
    ``truth``: the final fitness of every row, and of a twin fed the exact rewards with the
    same stated noise (its value is the noisy estimate's expectation)."""
    rng = np.random.default_rng(seed)
    var = noise_variance(1.0, 1, mechanism)
    noisy, twin = FitnessTracker(1), FitnessTracker(1)
    noisy.add(n)
    twin.add(n)
    rows, trained = np.arange(n), np.ones((n, 1), dtype=bool)
    stated = np.full((n, 1), var) if noise_aware else None
    for _ in range(rounds):
        draws = [privatize_rewards({0: truth}, 1.0, rng=rng, mechanism=mechanism)[0] for _ in range(n)]
        noisy.record(rows, trained, np.array(draws)[:, None], noise=stated)
        twin.record(rows, trained, np.full((n, 1), truth), noise=stated)
        noisy.close_round()
        twin.close_round()
    return noisy.get(rows)[:, 0], twin.get(rows)[:, 0]


@pytest.mark.parametrize("mechanism", ["laplace", "duchi"])
def test_the_noise_aware_estimate_is_unbiased(mechanism: str) -> None:
    f, twin = _noisy_run(3000, 20, 0.8, mechanism, noise_aware=True)
    assert np.allclose(twin, twin[0])  # the gain is the same for every row: one expectation
    se = f.std() / np.sqrt(f.size)
    assert abs(f.mean() - twin[0]) < 4 * se
    # after 20 reports the prior keeps some weight (shrinkage, not bias: the expectation is
    # the twin's value, a fixed average of the prior and the exact rewards)
    assert 0.6 < twin[0] < 0.8


@pytest.mark.parametrize("mechanism", ["laplace", "duchi"])
def test_the_noise_aware_estimate_varies_far_less_than_the_fixed_rate(mechanism: str) -> None:
    aware, _ = _noisy_run(2000, 20, 0.6, mechanism, noise_aware=True)
    fixed, _ = _noisy_run(2000, 20, 0.6, mechanism, noise_aware=False)
    # the fixed rate 0.3 keeps a variance of about 0.3 / 1.7 V; the gain, far below it
    v = noise_variance(1.0, 1, mechanism)
    assert fixed.var() == pytest.approx(0.3 / 1.7 * v, rel=0.15)
    assert aware.var() < 0.25 * fixed.var()  # measured: 0.14 (laplace), 0.19 (duchi)


def test_the_intrinsic_variance_makes_the_fixed_rate_the_steady_gain() -> None:
    a, d = 0.3, 0.1
    ft = FitnessTracker(1, ema=a, decay=d)
    r0 = ft.intrinsic_variance
    # by hand: steady predicted variance Pp = P0 (1 - phi) / (1 - phi (1 - a)), R0 = Pp (1 - a) / a
    phi = (1 - d) ** 2
    pp = 0.25 * (1 - phi) / (1 - phi * (1 - a))
    assert r0 == pytest.approx(pp * (1 - a) / a)
    assert FitnessTracker(1, ema=0.0).intrinsic_variance == np.inf
    assert FitnessTracker(1, decay=0.0).intrinsic_variance == 0.0
    # a pair reported every round with (almost) no noise settles at the fixed rate's gain
    ft.add(1)
    for _ in range(60):
        ft.record([0], [[True]], [[0.5]], noise=[[1e-12]])
        ft.close_round()
    before = ft.get([0])[0, 0]
    ft.record([0], [[True]], [[1.5]], noise=[[1e-12]])
    pred = 0.5 + (1 - d) * (before - 0.5)
    assert (ft.get([0])[0, 0] - pred) / (1.5 - pred) == pytest.approx(a, rel=1e-4)


def test_noise_makes_the_gain_smaller_and_ema_zero_ignores_noisy_rewards() -> None:
    gains = []
    for v in (0.01, 0.5, 2.0):
        ft = FitnessTracker(1)
        ft.add(1)
        ft.record([0], [[True]], [[1.5]], noise=[[v]])
        gains.append(ft.get([0])[0, 0] - 0.5)
    assert gains[0] > gains[1] > gains[2] > 0
    frozen = FitnessTracker(1, ema=0.0)
    frozen.add(1)
    frozen.record([0], [[True]], [[1.5]], noise=[[2.0]])
    assert frozen.get([0])[0, 0] == pytest.approx(0.5) and np.isfinite(frozen.variance([0])).all()


def test_the_gain_by_hand() -> None:
    ft = FitnessTracker(2, ema=0.3, decay=0.1, prior=0.5)
    ft.add(1)
    p0, v = PRIOR_VARIANCE, 1.0 + ft.intrinsic_variance
    ft.record([0], [[True, False]], [[2.0, 0.0]], noise=[[1.0, np.nan]])
    # predict: the prior stays the prior (mean and variance); K = P0 / (P0 + R0 + V)
    k = p0 / (p0 + v)
    np.testing.assert_allclose(ft.get([0])[0], [0.5 + k * 1.5, 0.5])
    p1 = (1 - k) ** 2 * p0 + k**2 * v
    np.testing.assert_allclose(ft.variance([0])[0], [p1, p0], rtol=1e-6)
    ft.close_round()
    ft.close_round()  # a round without a report: the variance grows back toward P0
    p2 = p0 + 0.9**2 * (p1 - p0)
    np.testing.assert_allclose(ft.variance([0])[0, 0], p2, rtol=1e-6)
    # the next report predicts one more round, then moves by K = w P / (P + V)
    f = ft.get([0])[0, 0]
    pred_f, pred_p = 0.5 + 0.9 * (f - 0.5), p0 + 0.81 * (p2 - p0)
    ft.record([0], [[True, False]], [[-1.0, 0.0]], weight=[[0.5, 1.0]], noise=[[1.0, np.nan]])
    k2 = 0.5 * pred_p / (pred_p + v)
    np.testing.assert_allclose(ft.get([0])[0, 0], pred_f + k2 * (-1.0 - pred_f), rtol=1e-6)
    assert ft.times_trained([0]).tolist() == [[2, 0]]


def test_exact_rewards_are_unchanged_and_keep_no_variance() -> None:
    a, b = FitnessTracker(3), FitnessTracker(3)
    a.add(4)
    b.add(4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.random((4, 3)) < 0.5
        r = rng.random((4, 3))
        a.record(range(4), t, r)
        b.record(range(4), t, r, noise=np.full((4, 3), np.nan))  # stated: no noise
        a.close_round()
        b.close_round()
    np.testing.assert_array_equal(a.values(), b.values())
    assert "variance" not in a.state_dict() and "variance" not in b.state_dict()


def test_exact_and_noisy_pairs_in_one_round() -> None:
    ft = FitnessTracker(2, ema=0.3, decay=0.0)
    ft.add(2)
    ft.record([0, 1], [[True, True], [True, False]], [[1.0, 3.0], [1.0, 0.0]], noise=[[np.nan, 2.0], [0.0, 0.0]])
    f = ft.get([0, 1])
    # exact pairs at the fixed rate, the noisy one by its gain 0.25 / 2.25 (decay 0: R0 = 0)
    np.testing.assert_allclose(f[:, 0], [0.65, 0.65])
    np.testing.assert_allclose(f[0, 1], 0.5 + (0.25 / 2.25) * 2.5)
    np.testing.assert_allclose(f[1, 1], 0.5)
    # the exact pairs' variance shrinks by the fixed rate's weight on the old estimate
    np.testing.assert_allclose(ft.variance([0, 1])[:, 0], [0.7 * 0.25, 0.7 * 0.25], rtol=1e-6)


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        (np.ones((1, 3)), r"noise: expected shape \(1, 2\)"),
        ([[-1.0, 0.0]], r"noise\[0, 0\]"),
        ([[0.0, np.inf]], r"noise\[0, 1\]"),
    ],
)
def test_bad_noise_is_named(noise: object, match: str) -> None:
    ft = FitnessTracker(2)
    ft.add(1)
    with pytest.raises(ValueError, match=match):
        ft.record([0], [[True, True]], [[0.5, 0.5]], noise=noise)


def test_variance_survives_state_snapshot_and_restore() -> None:
    ft = FitnessTracker(2)
    ft.add(3)
    ft.record([0, 1], [[True, False], [False, True]], [[1.5, 0], [0, -0.2]], noise=np.full((2, 2), 2.0))
    ft.close_round()
    state = ft.state_dict()
    assert state["variance"].dtype == np.float32
    copy = FitnessTracker(2)
    copy.load_state_dict(state)
    np.testing.assert_array_equal(copy.variance(range(3)), ft.variance(range(3)))
    snap = copy.snapshot([2])
    copy.record([2], [[True, True]], [[0.9, 0.9]], noise=np.full((1, 2), 1.0))
    copy.close_round()
    copy.restore(snap)
    np.testing.assert_array_equal(copy.variance(range(3)), ft.variance(range(3)))
    np.testing.assert_array_equal(copy.values(), ft.values())
    bad = {**state, "variance": np.full((3, 2), 2.0)}
    with pytest.raises(ValueError, match="variance"):
        copy.load_state_dict(bad)


# --------------------------------------------------------------------------- the API


def test_noise_variance_by_mechanism() -> None:
    assert noise_variance(1.0) == pytest.approx(2.0)
    assert noise_variance(2.0, 3) == pytest.approx(2 * 9 / 4)
    e = np.exp(1.0)
    assert noise_variance(1.0, 1, "duchi") == pytest.approx(((e + 1) / (e - 1)) ** 2 / 4)
    with pytest.raises(ValueError, match="k"):
        noise_variance(1.0, 0)
    with pytest.raises(ValueError, match="epsilon"):
        noise_variance(-1.0)


def test_privatize_states_the_variance_and_feedback_checks_it() -> None:
    rng = np.random.default_rng(0)
    fb = fa.privatize(fa.Feedback(samples=2, rewards={0: 0.4, 1: 0.6}), 1.0, rng=rng, mechanism="duchi")
    assert fb.reward_variance == pytest.approx(noise_variance(1.0, 2, "duchi"))
    with pytest.raises(InvalidFeedbackError, match="reward_variance.*without epsilon"):
        fa.Feedback(samples=1, rewards={0: 0.5}, reward_variance=1.0)
    with pytest.raises(InvalidFeedbackError, match="Feedback.reward_variance"):
        fa.Feedback(samples=1, rewards={0: 0.5}, epsilon=1.0, reward_variance=0.0)


def _one_round(sched: fa.Scheduler, feedback: fa.Feedback) -> None:
    sched.plan([0])
    sched.report(0, feedback)
    sched.end_round()


def test_the_scheduler_weighs_noisy_rewards_by_their_stated_variance() -> None:
    stated = fa.Scheduler(1, solver="flow", seed=0, noisy_rewards=True)
    implied = fa.Scheduler(1, solver="flow", seed=0, noisy_rewards=True)
    for s in (stated, implied):
        s.register(0, fa.ClientProfile(max_experts=1))
    _one_round(stated, fa.Feedback(samples=1, rewards={0: 1.7}, epsilon=0.5, reward_variance=1.0))
    # no variance stated: the Laplace mechanism's for ε = 0.5 and one reward, 2 / 0.25 = 8
    _one_round(implied, fa.Feedback(samples=1, rewards={0: 1.7}, epsilon=0.5))
    r0 = FitnessTracker(1, ema=0.3, decay=0.02).intrinsic_variance  # the defaults
    assert stated.fitness[0, 0] == pytest.approx(0.5 + 0.25 / (1.25 + r0) * 1.2)
    assert implied.fitness[0, 0] == pytest.approx(0.5 + 0.25 / (8.25 + r0) * 1.2)


def test_exact_rewards_of_a_noisy_rewards_scheduler_keep_fitness_ema() -> None:
    sched = fa.Scheduler(1, solver="flow", seed=0, noisy_rewards=True, fitness_ema=0.3)
    sched.register(0, fa.ClientProfile(max_experts=1))
    _one_round(sched, fa.Feedback(samples=1, rewards={0: 1.0}))
    assert sched.fitness[0, 0] == pytest.approx(0.65)
    assert "fit.variance" not in sched.state_dict()["arrays"]


def test_a_saved_noisy_scheduler_continues_exactly(tmp_path) -> None:
    def run(save_at: int | None) -> np.ndarray:
        sched = fa.Scheduler(2, solver="flow", seed=0, noisy_rewards=True)
        sched.register_many(range(6), fa.ClientProfile(max_experts=1))
        rng = np.random.default_rng(3)
        for r in range(6):
            plan = sched.plan(range(6))
            for c, experts in plan.assignment.items():
                fb = fa.privatize(fa.Feedback(samples=4, rewards={j: 0.3 + 0.1 * c for j in experts}), 1.0, rng=rng)
                sched.report(c, fb, round=plan.round)
                if r == save_at and c == 2:  # mid-round: noisy rewards in the open round
                    sched.save(tmp_path / "s.fas")
                    sched = fa.Scheduler.load(tmp_path / "s.fas")
            sched.end_round()
        assert "fit.variance" in sched.state_dict()["arrays"]
        return sched.fitness

    np.testing.assert_array_equal(run(None), run(3))
