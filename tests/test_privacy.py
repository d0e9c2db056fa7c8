"""Local differential privacy for rewards, the budget accountant and the leakage audit."""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa
from fedalign.privacy import (
    PrivacyAccountant,
    PrivacyBudgetError,
    assignment_leakage,
    noise_std,
    privatize_rewards,
)


@pytest.mark.parametrize("mechanism", ["laplace", "duchi"])
@pytest.mark.parametrize("k", [1, 3])
def test_privatized_rewards_are_unbiased_with_the_stated_spread(mechanism, k):
    rng = np.random.default_rng(0)
    truth = {j: v for j, v in zip(range(k), (0.2, 0.9, 1.4), strict=False)}  # 1.4 is clipped to 1
    draws = np.array(
        [list(privatize_rewards(truth, 1.0, rng=rng, mechanism=mechanism).values()) for _ in range(8000)]
    )
    clipped = np.clip(list(truth.values()), 0, 1)
    std = noise_std(1.0, k, mechanism)
    assert np.allclose(draws.mean(axis=0), clipped, atol=4 * std / np.sqrt(len(draws)))
    assert draws.std(axis=0).max() <= std * 1.05


def test_duchi_outputs_two_values_and_beats_laplace_at_small_epsilon():
    rng = np.random.default_rng(0)
    values = {privatize_rewards({0: 0.3}, 0.5, rng=rng, mechanism="duchi")[0] for _ in range(200)}
    assert len(values) == 2
    assert noise_std(1.0, 1, "duchi") < noise_std(1.0, 1, "laplace")


def test_privatize_sets_epsilon_and_skips_reports_without_rewards():
    rng = np.random.default_rng(0)
    fb = fa.privatize(fa.Feedback(samples=3, rewards={0: 0.5, 1: 0.25}), 2.0, rng=rng)
    assert fb.epsilon == 2.0 and set(fb.rewards) == {0, 1} and fb.samples == 3
    dropout = fa.Feedback(samples=0, completed=False)
    assert fa.privatize(dropout, 1.0, rng=rng) is dropout


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (({0: 0.5}, 0.0), "epsilon"),
        (({0: 0.5}, -1), "epsilon"),
        (({0: float("nan")}, 1.0), r"rewards\[0\]"),
        (({0: "x"}, 1.0), r"rewards\[0\]"),
    ],
)
def test_privatize_rewards_names_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        privatize_rewards(*args, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="mechanism"):
        privatize_rewards({0: 0.5}, 1.0, rng=np.random.default_rng(0), mechanism="gauss")


def test_accountant_adds_up_and_enforces_the_budget():
    acc = PrivacyAccountant(budget=2.0)
    acc.spend_many(["a", "b"], 1.0)
    acc.spend("a", 1.0)
    assert acc.spent("a") == 2.0 and acc.spent("b") == 1.0 and acc.spent("zz") == 0.0
    assert acc.max_spent == 2.0 and not acc.can_spend("a", 0.5) and acc.can_spend("b", 1.0)
    with pytest.raises(PrivacyBudgetError, match="client 'a'"):
        acc.spend_many(["b", "a"], 0.5)
    assert acc.spent("b") == 1.0  # all or nothing
    with pytest.raises(ValueError, match="twice"):
        acc.spend_many(["b", "b"], 0.1)
    with pytest.raises(ValueError, match="budget"):
        PrivacyAccountant(budget=0)
    unbounded = PrivacyAccountant()
    for _ in range(1000):
        unbounded.spend(7, 1.0)
    assert unbounded.to_dict()["spent"] == {"7": 1000.0}


def test_leakage_audit_against_chance():
    groups = np.repeat(np.arange(4), 5)
    rng = np.random.default_rng(0)
    # each group trains "its" expert 80 % of the time: the observer guesses every client
    rounds = np.zeros((40, 20, 4), dtype=bool)
    for r in range(40):
        pick = np.where(rng.random(20) < 0.8, groups, rng.integers(0, 4, 20))
        rounds[r, np.arange(20), pick] = True
    audit = assignment_leakage(rounds, groups)
    assert audit.accuracy == 1.0 and audit.chance == 0.25 and audit.n_groups == 4
    # assignments independent of the group: about chance
    noise = rng.random((40, 20, 4)) < 0.25
    accs = [assignment_leakage(rng.permutation(noise, axis=1), groups).accuracy for _ in range(20)]
    assert 0.05 < float(np.mean(accs)) < 0.45


def test_leakage_audit_leaves_out_clients_never_given_an_expert_and_checks_shapes():
    counts = np.array([[3, 0], [0, 0], [0, 3], [2, 1]])
    audit = assignment_leakage(counts, [0, 0, 1, 0])
    assert audit.n_clients == 3
    with pytest.raises(ValueError, match="assignments"):
        assignment_leakage(counts, [0, 1])
    with pytest.raises(ValueError, match="two groups"):
        assignment_leakage(counts, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="counts"):
        assignment_leakage(-counts, [0, 0, 1, 0])
