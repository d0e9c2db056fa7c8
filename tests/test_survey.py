"""The best-expert report: k-ary randomized response on which expert suits a client best,
and ``Feedback.survey``, which carries rewards of experts a client evaluated without
training them (docs/trust.md, "Privacy").
"""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa
from fedalign.errors import InvalidFeedbackError
from fedalign.privacy import noise_std, noise_variance, privatize_rewards
from fedalign.scores import FitnessTracker

# --------------------------------------------------------------------------- the mechanism


@pytest.mark.parametrize(("k", "eps"), [(2, 1.0), (4, 1.0), (4, 0.5), (8, 2.0)])
def test_best_expert_estimates_are_unbiased_with_the_stated_spread(k: int, eps: float) -> None:
    rng = np.random.default_rng(k)
    truth = {j: 0.1 * j for j in range(k)}
    truth[1] = 0.95  # the best
    draws = np.array(
        [list(privatize_rewards(truth, eps, rng=rng, mechanism="best-expert").values()) for _ in range(20000)]
    )
    indicator = np.zeros(k)
    indicator[1] = 1.0
    std = noise_std(eps, k, "best-expert")
    assert np.allclose(draws.mean(axis=0), indicator, atol=4 * std / np.sqrt(len(draws)))
    assert draws.std(axis=0).max() <= std * 1.03
    # the largest spread is reached: the stated variance is not loose
    assert draws.std(axis=0).max() >= std * 0.97


def test_best_expert_outputs_one_hit_and_breaks_ties_at_random() -> None:
    rng = np.random.default_rng(0)
    high = set()
    for _ in range(400):
        out = privatize_rewards({0: 0.5, 1: 0.5, 2: 0.1}, 50.0, rng=rng, mechanism="best-expert")
        values = np.array(list(out.values()))
        assert np.sum(values == values.max()) == 1  # one index reported
        high.add(int(np.argmax(values)))
    assert high == {0, 1}  # ε = 50 keeps the truth; the tie goes either way


def test_best_expert_variance_by_hand() -> None:
    e = np.exp(1.0)
    p, q = e / (e + 3), 1 / (e + 3)
    assert noise_variance(1.0, 4, "best-expert") == pytest.approx(p * (1 - p) / (p - q) ** 2)
    assert noise_std(1.0, 1, "best-expert") == 0.0  # one expert: nothing random
    # one best-expert report about 4 experts against Laplace's ε split over 4 rewards
    assert noise_variance(1.0, 4, "best-expert") < noise_variance(1.0, 4, "laplace") / 10


def test_privatize_reports_over_rewards_and_survey_and_keeps_the_fields() -> None:
    rng = np.random.default_rng(0)
    fb = fa.Feedback(samples=5, rewards={2: 0.3}, survey={0: 0.9, 1: 0.1, 3: 0.2})
    out = fa.privatize(fb, 1.0, rng=rng, mechanism="best-expert")
    assert set(out.rewards) == {2} and set(out.survey) == {0, 1, 3}
    assert out.epsilon == 1.0
    assert out.reward_variance == pytest.approx(noise_variance(1.0, 4, "best-expert"))
    values = sorted([*out.rewards.values(), *out.survey.values()])
    e = np.exp(1.0)
    p, q = e / (e + 3), 1 / (e + 3)
    assert values == pytest.approx([-q / (p - q)] * 3 + [(1 - q) / (p - q)])
    # one expert in all: the only answer says nothing, the report goes out unchanged
    single = fa.Feedback(samples=5, rewards={2: 0.3})
    assert fa.privatize(single, 1.0, rng=rng, mechanism="best-expert") is single
    # the survey is privatized by the other mechanisms too, with the report's k
    lap = fa.privatize(fb, 1.0, rng=rng)
    assert set(lap.survey) == {0, 1, 3} and lap.reward_variance == pytest.approx(2 * 16)


# --------------------------------------------------------------------------- Feedback


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": {0: 0.5}, "survey": {0: 0.5}}, r"survey\[0\].*in rewards too"),
        ({"survey": {1: float("nan")}}, r"Feedback.survey\[1\]"),
        ({"survey": {1: 1.5}}, r"Feedback.survey\[1\]"),
        ({"survey": [0.5]}, "Feedback.survey"),
        ({"survey": {1: 1e7}, "epsilon": 1.0}, r"Feedback.survey\[1\]"),
    ],
)
def test_feedback_checks_the_survey(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidFeedbackError, match=match):
        fa.Feedback(samples=1, **kwargs)


def test_a_noisy_survey_makes_the_feedback_noisy() -> None:
    assert fa.Feedback(samples=1, survey={1: -0.4}, epsilon=1.0).noisy
    assert not fa.Feedback(samples=1, survey={1: 0.4}).noisy


# --------------------------------------------------------------------------- scheduler


def _scheduler(**kw: object) -> fa.Scheduler:
    sched = fa.Scheduler(4, solver="flow", seed=0, **kw)
    sched.register_many(range(4), fa.ClientProfile(max_experts=1))
    return sched


def test_survey_rewards_move_fitness_but_not_usage_or_times_trained() -> None:
    sched = _scheduler()
    plan = sched.plan(range(4))
    given = plan.assignment[0][0]
    others = [j for j in range(4) if j != given]
    sched.report(0, fa.Feedback(samples=10, rewards={given: 0.5}, survey={j: 1.0 for j in others}))
    sched.end_round()
    f = sched.fitness[0]
    assert f[given] == pytest.approx(0.5)
    assert f[others] == pytest.approx(0.5 + 0.3 * 0.5)  # the fixed rate toward 1
    assert sched._fit.times_trained([0])[0].tolist() == [int(j == given) for j in range(4)]
    usage = sched.usage
    assert usage[given] > 0 and not usage[others].any()


def test_the_scheduler_refuses_a_survey_of_an_unknown_expert_and_keeps_no_state() -> None:
    sched = _scheduler()
    plan = sched.plan(range(4))
    given = plan.assignment[0][0]
    before = sched.state_dict()
    with pytest.raises(InvalidFeedbackError, match=r"feedback.survey: 9 is not an expert id"):
        sched.report(0, fa.Feedback(samples=1, rewards={given: 0.5}, survey={9: 0.5}))
    after = sched.state_dict()
    np.testing.assert_array_equal(before["arrays"]["open.reported"], after["arrays"]["open.reported"])
    sched.report(0, fa.Feedback(samples=1, rewards={given: 0.5}))  # the client may still report


def test_noisy_survey_rewards_need_noisy_rewards_and_move_by_the_gain() -> None:
    plain = _scheduler()
    plain.plan(range(4))
    noisy = fa.Feedback(samples=1, survey={1: -0.5}, epsilon=1.0, reward_variance=2.0)
    with pytest.raises(InvalidFeedbackError, match="noisy_rewards=True"):
        plain.report(0, noisy)
    sched = _scheduler(noisy_rewards=True)
    sched.plan(range(4))
    sched.report(0, noisy)
    sched.end_round()
    r0 = FitnessTracker(4).intrinsic_variance
    assert sched.fitness[0, 1] == pytest.approx(0.5 + 0.25 / (0.25 + 2.0 + r0) * (-1.0))


def test_a_saved_round_with_a_survey_continues_exactly(tmp_path) -> None:
    def run(save: bool) -> np.ndarray:
        sched = _scheduler(noisy_rewards=True)
        rng = np.random.default_rng(1)
        for r in range(4):
            plan = sched.plan(range(4))
            for c, experts in plan.assignment.items():
                survey = {j: 0.2 * j for j in range(4) if j not in experts}
                fb = fa.Feedback(samples=4, rewards={j: 0.3 for j in experts}, survey=survey)
                sched.report(c, fa.privatize(fb, 1.0, rng=rng, mechanism="best-expert"))
                if save and r == 2 and c == 1:
                    sched.save(tmp_path / "s.fas")
                    sched = fa.Scheduler.load(tmp_path / "s.fas")
            sched.end_round()
        return sched.fitness

    np.testing.assert_array_equal(run(False), run(True))


def test_a_saved_survey_must_not_overlap_trained_pairs() -> None:
    sched = _scheduler()
    plan = sched.plan(range(4))
    given = plan.assignment[0][0]
    sched.report(0, fa.Feedback(samples=1, rewards={given: 0.5}, survey={(given + 1) % 4: 0.5}))
    state = sched.state_dict()
    survey = state["arrays"]["open.survey"].copy()
    survey[0, given] = 0.5
    state["arrays"]["open.survey"] = survey
    with pytest.raises(fa.InvalidStateError, match="open.survey"):
        _scheduler().load_state_dict(state)
