"""Robust per-expert aggregation, the weight bound and the reply screen (fedalign.rounds.robust)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedalign as fa
from fedalign.rounds import (
    Reply,
    ReplyScreen,
    ReplyStatus,
    RobustAggregator,
    RoundDriver,
    cap_shares,
    coordinate_median,
    trimmed_mean,
    weighted_mean,
)

E, DIM = 3, 4


def _state() -> dict[str, np.ndarray]:
    out = {"gate.w": np.zeros(E, np.float32)}
    for j in range(E):
        out[f"experts.{j}.w"] = np.zeros(DIM, np.float32)
    return out


# --------------------------------------------------------------------------- weight cap


@given(
    st.lists(st.floats(0.0, 1e12, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.05, 1.0),
)
def test_cap_shares_bounds_every_share_and_keeps_small_weights(weights, share):
    w = np.array(weights)
    capped = cap_shares(w, share)
    assert capped.shape == w.shape and (capped <= w + 1e-9 * w).all() and (capped >= 0).all()
    assert ((capped > 0) == (w > 0)).all()
    n = int((w > 0).sum())
    if n and n * share > 1 and capped.sum() > 0:
        assert capped.max() / capped.sum() <= share * (1 + 1e-9)
        level = capped.max()
        assert np.allclose(capped[w < level * (1 - 1e-9)], w[w < level * (1 - 1e-9)])


def test_cap_shares_examples():
    assert cap_shares([1.0, 1.0, 1.0, 1e12], 0.5).tolist() == [1.0, 1.0, 1.0, 3.0]
    assert cap_shares([1.0, 2.0], 1.0).tolist() == [1.0, 2.0]
    assert cap_shares([1.0, 5.0], 0.5).tolist() == [1.0, 1.0]  # two replies, share 1/2: equal
    assert cap_shares([0.0, 0.0], 0.3).tolist() == [0.0, 0.0]
    assert cap_shares([4.0, 1.0, 0.0], 0.4).tolist() == [1.0, 1.0, 0.0]  # 2 x 0.4 < 1: equal


# --------------------------------------------------------------------------- rules


def _ups(values):
    return [{"w": np.array(v, dtype=np.float32)} for v in values]


def test_median_and_trimmed_mean_ignore_one_extreme_reply():
    ref = {"w": np.zeros(2, np.float32)}
    ups = _ups([[1, 1], [2, 2], [3, 3], [-1e6, 1e6]])
    w = np.array([1.0, 1.0, 1.0, 1e12])
    med = coordinate_median(ref, ups, w)["w"]
    assert med.dtype == np.float32 and med.tolist() == [1.5, 2.5]
    trimmed = trimmed_mean(ref, ups, w, trim=0.25)["w"]
    assert trimmed.tolist() == [1.5, 2.5]
    # zero weights never count
    assert coordinate_median(ref, ups, np.array([1.0, 1.0, 1.0, 0.0]))["w"].tolist() == [2.0, 2.0]


def test_trimmed_mean_keeps_at_least_one_value():
    ref = {"w": np.zeros(1)}
    ups = _ups([[1.0], [5.0]])
    assert trimmed_mean(ref, ups, np.ones(2), trim=0.49)["w"].tolist() == [3.0]


def test_integer_arrays_are_rounded():
    ref = {"n": np.zeros(1, np.int64)}
    ups = [{"n": np.array([1])}, {"n": np.array([2])}]
    out = RobustAggregator("median")(ref, ups, np.ones(2), expert=None)["n"]
    assert out.dtype == np.int64 and out.tolist() == [2]  # rint(1.5) = 2


def test_clipped_mean_bounds_each_change():
    ref = {"w": np.zeros(2)}
    ups = _ups([[1, 0], [0, 1], [1, 1], [-1000, -1000]])
    agg = RobustAggregator("clipped-mean", clip=1.0)
    out = agg(ref, ups, np.ones(4), expert=0)["w"]
    bound = (1 + np.sqrt(2)) / 2  # the median of the norms 1, 1, sqrt(2), 1000 sqrt(2)
    each = bound / np.sqrt(2)  # [1, 1] and [-1000, -1000] scaled to norm `bound`
    assert np.allclose(out, [(1 + 0 + each - each) / 4, (0 + 1 + each - each) / 4])
    fixed = RobustAggregator("clipped-mean", max_norm=0.5)(ref, ups, np.ones(4), expert=0)["w"]
    assert np.linalg.norm(fixed) <= 0.5 + 1e-12


def test_mean_rule_without_cap_is_weighted_mean_bit_for_bit():
    rng = np.random.default_rng(0)
    ref = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=4)}
    ups = [{k: v + rng.normal(size=v.shape).astype(v.dtype) for k, v in ref.items()} for _ in range(5)]
    w = rng.uniform(1, 100, 5)
    got = RobustAggregator("mean")(ref, ups, w, expert=1)
    want = weighted_mean(ref, ups, w, expert=1)
    for k in ref:
        assert np.array_equal(got[k], want[k])


def test_shared_false_averages_the_shared_group():
    ref = {"w": np.zeros(1)}
    ups = _ups([[1.0], [2.0], [30.0]])
    agg = RobustAggregator("median", shared=False)
    assert agg(ref, ups, np.ones(3), expert=None)["w"].tolist() == [11.0]
    assert agg(ref, ups, np.ones(3), expert=0)["w"].tolist() == [2.0]


def test_nothing_to_combine_keeps_the_reference():
    ref = {"w": np.zeros(1)}
    for rule in ("mean", "median", "trimmed-mean", "clipped-mean"):
        out = RobustAggregator(rule)(ref, _ups([[1.0]]), np.zeros(1), expert=0)
        assert out["w"] is ref["w"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rule": "mode"}, "RobustAggregator.rule"),
        ({"trim": 0.5}, "RobustAggregator.trim"),
        ({"clip": 0}, "RobustAggregator.clip"),
        ({"max_share": 0}, "RobustAggregator.max_share"),
        ({"max_share": 1.5}, "RobustAggregator.max_share"),
        ({"shared": 1}, "RobustAggregator.shared"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RobustAggregator(**kwargs)


def test_describe_names_the_active_defenses():
    assert RobustAggregator("mean").describe() == []
    assert RobustAggregator("median", max_share=0.5).describe() == ["median", "weight-cap 0.5"]


# --------------------------------------------------------------------------- screen


def test_screen_flags_scaled_flipped_and_unchanged_updates():
    ref = {"w": np.zeros(3)}
    honest = [[1.0, 1.0, 0.9], [1.1, 0.9, 1.0], [0.9, 1.0, 1.1], [1.0, 1.1, 1.0]]
    ups = _ups([*honest, [-10, -10, -10], [0, 0, 0], [-1.0, -1.0, -1.0]])
    verdict = ReplyScreen().screen_group(ref, ups)
    assert verdict.plausible.tolist() == [True] * 4 + [False] * 3
    assert "above 5" in verdict.reasons[4]
    assert "no change" in verdict.reasons[5]
    assert "against" in verdict.reasons[6]


def test_scaled_replies_do_not_steer_the_direction_honest_replies_are_judged_by():
    # two honest groups pulling the shared arrays apart, and two scaled, flipped replies:
    # with them, the coordinate-wise median of all changes is (-0.25, -0.25), against which
    # every honest change would look opposed; the norm test removes them first
    ref = {"w": np.zeros(2)}
    honest = [[1.0, -0.3], [1.0, -0.2], [-0.3, 1.0], [-0.2, 1.0]]
    verdict = ReplyScreen().screen_group(ref, _ups([*honest, [-10.0, -10.0], [-10.0, -10.0]]))
    assert verdict.plausible.tolist() == [True] * 4 + [False] * 2
    assert all("above 5" in why for why in verdict.reasons[4:])


def test_replies_suspect_elsewhere_do_not_set_the_yardstick():
    # an expert trained by two honest clients and two poisoners: the poisoners own the
    # median; once the shared arrays have found them out, the honest pair sets it
    ref = {"w": np.zeros(2)}
    ups = _ups([[1.0, 0.1], [0.9, 0.2], [-10.0, -1.0], [-9.0, -2.0]])
    blind = ReplyScreen().screen_group(ref, ups)
    assert blind.plausible.tolist() == [False, False, True, True]
    told = ReplyScreen().screen_group(ref, ups, suspect=[False, False, True, True])
    assert told.plausible.tolist() == [True, True, False, False]
    assert all("above 5" in why for why in told.reasons[2:])
    # every reply suspect: judged among themselves, as without the hint
    alone = ReplyScreen().screen_group(ref, ups, suspect=[True] * 4)
    assert alone.plausible.tolist() == blind.plausible.tolist()


def test_screen_needs_min_replies_for_the_relative_tests():
    ref = {"w": np.zeros(1)}
    verdict = ReplyScreen().screen_group(ref, _ups([[1.0], [-100.0]]))
    assert verdict.plausible.tolist() == [True, True]
    verdict = ReplyScreen().screen_group(ref, _ups([[1.0], [0.0]]))
    assert verdict.plausible.tolist() == [True, False]  # no change at all is always flagged


def test_screen_arguments_are_named():
    with pytest.raises(ValueError, match="ReplyScreen.norm_ratio"):
        ReplyScreen(norm_ratio=1.0)
    with pytest.raises(ValueError, match="ReplyScreen.validate"):
        ReplyScreen(validate=3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- in the driver


def _scheduler(n: int = 6, **kwargs) -> fa.Scheduler:
    sched = fa.Scheduler(E, solver="flow", seed=0, expert_max_clients=n, **kwargs)
    for c in range(n):
        sched.register(c, fa.ClientProfile(samples=100, max_experts=E))
    return sched


def _honest(c, experts, payload, rng):
    out = {k: v + np.float32(0.1) + rng.normal(0, 0.01, v.shape).astype(v.dtype) for k, v in payload.items()}
    return Reply(out, fa.Feedback(samples=100, rewards={j: 0.5 for j in experts}))


def _poisoned(c, experts, payload):
    out = {k: v - np.float32(10.0) for k, v in payload.items()}
    return Reply(out, fa.Feedback(samples=10**12, rewards={j: 1.0 for j in experts}))


def _run(driver, bad=(0,), kind=_poisoned, seed=0, state=None):
    rng = np.random.default_rng(seed)

    def train(c, experts, payload):
        return kind(c, experts, payload) if c in bad else _honest(c, experts, payload, rng)

    return driver.run_round(range(6), _state() if state is None else state, train)


def test_the_default_weight_bound_is_reported():
    state, summary = _run(RoundDriver(_scheduler()))
    assert summary.bounded == {0: 1000.0}  # credited 10 x the declared 100 samples
    # still FedAvg: the poisoned reply is 1000 / 1500 of each group
    assert float(state["gate.w"][0]) == pytest.approx((5 * 0.1 * 100 - 10 * 1000) / 1500, abs=0.01)


@pytest.mark.parametrize(
    "agg",
    [
        RobustAggregator("median"),
        RobustAggregator("trimmed-mean"),
        # the clipped mean reads weights: the bounded claim (10 x) still needs the cap
        RobustAggregator("clipped-mean", max_share=0.2),
        RobustAggregator("median", max_share=0.5),
    ],
)
def test_robust_rules_keep_the_model_from_one_poisoned_reply(agg):
    state, summary = _run(RoundDriver(_scheduler(), aggregate=agg))
    for k, v in state.items():
        assert np.all(v > 0.0), (k, v)  # the honest direction (+0.1) wins
    assert summary.completed == list(range(6))


def test_screen_excludes_the_poisoned_reply_and_judges_it():
    sched = _scheduler(trust_rate=0.5)
    driver = RoundDriver(sched, screen=ReplyScreen())
    state, summary = _run(driver)
    assert list(summary.screened) == [0]
    assert all(np.allclose(v, 0.1, atol=0.05) for v in state.values())
    assert sched.trust.tolist() == [0.5, 1, 1, 1, 1, 1]
    assert 0 not in summary.trained_by.get(summary.assignment[0][0], [])
    # its reward of 1 was not credited: fitness drifted, the honest ones moved to 0.5
    assert np.allclose(sched.fitness[0], 0.5)


def test_the_shared_verdict_marks_suspects_in_every_expert_group(monkeypatch):
    seen = []
    judge = ReplyScreen.screen_group

    def spy(self, reference, updates, suspect=None):
        seen.append(None if suspect is None else list(suspect))
        return judge(self, reference, updates, suspect)

    monkeypatch.setattr(ReplyScreen, "screen_group", spy)
    _, summary = _run(RoundDriver(_scheduler(), screen=ReplyScreen()))
    assert list(summary.screened) == [0]
    assert seen[0] is None  # the shared group is judged first, without hints
    holders = {e: sorted(c for c, es in summary.assignment.items() if e in es) for e in range(E)}
    groups = [h for h in holders.values() if h]
    # one hint per expert group, marking the poisoner where it is in the group
    assert sorted(seen[1:]) == sorted([c == 0 for c in who] for who in groups)


def test_screen_catches_a_free_rider():
    def lazy(c, experts, payload):
        return Reply(dict(payload), fa.Feedback(samples=100, rewards={j: 0.9 for j in experts}))

    sched = _scheduler(trust_rate=0.2)
    state, summary = _run(RoundDriver(sched, screen=ReplyScreen()), bad=(2,), kind=lazy)
    assert list(summary.screened) == [2] and "no change" in summary.screened[2]
    assert sched.trust[2] == pytest.approx(0.8)


def test_validation_callback_judges_experts_and_rewards():
    # the "validation score" of an expert: 1 - mean |w - 0.1|, clipped
    def validate(expert, state):
        return float(np.clip(1 - np.abs(state[f"experts.{expert}.w"] - 0.1).mean(), 0, 1))

    def liar(c, experts, payload):  # trains honestly, claims a reward no data gives
        reply = _honest(c, experts, payload, np.random.default_rng(c))
        return Reply(reply.state, fa.Feedback(samples=100, rewards={j: 1.0 for j in experts}))

    sched = _scheduler(trust_rate=0.5)
    screen = ReplyScreen(validate=validate, tolerance=0.05, norm_ratio=None, min_cosine=None)
    _, summary = _run(RoundDriver(sched, screen=screen), bad=(1,), kind=liar)
    # the sent experts score 0.9; a reward of 1.0 is above 0.9 + 0.05
    assert summary.implausible_rewards == {1: summary.assignment[1]}
    assert summary.screened == {}
    # a returned expert scoring worse than the one sent is left out
    sched = _scheduler()
    _, summary = _run(RoundDriver(sched, screen=screen), bad=(0,), kind=_poisoned)
    assert list(summary.screened) == [0] and "validation score" in summary.screened[0]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda p, e: ({k: np.full_like(v, np.nan) for k, v in p.items()}, 5.0), "non-finite"),
        (lambda p, e: ({k: np.zeros(v.size + 1, v.dtype) for k, v in p.items()}, 5.0), "expected"),
        (lambda p, e: ({**p, "experts.9.w": np.zeros(DIM, np.float32)}, 5.0), "unknown"),
        (lambda p, e: (dict(p), float("nan")), "weight"),
        (lambda p, e: (dict(p), 1e300), "weight"),
    ],
)
def test_hostile_replies_are_rejected_with_defenses_on(reply, reason):
    sched = _scheduler()
    driver = RoundDriver(sched, aggregate=RobustAggregator("median", max_share=0.5), screen=ReplyScreen())
    current = driver.open(range(6), _state())
    for c in current.sent:
        arrays, weight = reply(current.payload(c), current.experts(c))
        status = current.complete(c, arrays, fa.Feedback(samples=5), weight=weight)
        assert status is ReplyStatus.INVALID
    _, summary = current.close()
    assert all(reason in summary.dropouts[c] for c in current.sent)


def test_unassigned_expert_in_a_reply_is_invalid():
    sched = fa.Scheduler(E, solver="flow", seed=0)
    sched.register_many(range(6), fa.ClientProfile(max_experts=1))
    driver = RoundDriver(sched)
    current = driver.open(range(6), _state())
    c = current.sent[0]
    payload = dict(current.payload(c))
    other = next(j for j in range(E) if j not in current.experts(c))
    payload[f"experts.{other}.w"] = np.zeros(DIM, np.float32)
    assert current.complete(c, payload, fa.Feedback(samples=5)) is ReplyStatus.INVALID
    current.close()


def test_clean_rounds_are_identical_with_the_default_driver():
    """No attack, defenses off: the new driver averages exactly as FedAvg did."""
    rng = np.random.default_rng(1)
    sched_a, sched_b = _scheduler(), _scheduler()
    a = RoundDriver(sched_a)
    b = RoundDriver(sched_b, aggregate=RobustAggregator("mean"), screen=None)
    sa = sb = _state()
    for _ in range(3):
        seed = int(rng.integers(1 << 30))
        sa, _ = _run(a, bad=(), seed=seed, state=sa)
        sb, _ = _run(b, bad=(), seed=seed, state=sb)
        for k in sa:
            assert np.array_equal(sa[k], sb[k])
