"""Client profiles, plausible bounds and the capacity profiler (fedalign.profiles)."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign.profiles import CapacityProfiler, ClientProfile, ProfileBounds


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"memory": -1}, ValueError, "ClientProfile.memory"),
        ({"compute": 0}, ValueError, "ClientProfile.compute"),
        ({"bandwidth_up": float("nan")}, ValueError, "ClientProfile.bandwidth_up"),
        ({"latency": float("inf")}, ValueError, "ClientProfile.latency"),
        ({"availability": 1.5}, ValueError, "ClientProfile.availability"),
        ({"max_experts": -1}, ValueError, "ClientProfile.max_experts"),
        ({"max_experts": 1.5}, ValueError, "ClientProfile.max_experts"),
        ({"memory": "lots"}, TypeError, "ClientProfile.memory"),
        ({"memory": True}, TypeError, "ClientProfile.memory"),
    ],
)
def test_profile_validation(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        ClientProfile(**kwargs)


def test_profile_defaults_unknown() -> None:
    p = ClientProfile()
    assert all(v is None for v in vars(p).values())


def test_bounds_clip_implausible_claims() -> None:
    b = ProfileBounds(memory=(0.0, 1e12), compute=(1.0, 1e4))
    p = b.clip(ClientProfile(memory=1e21, compute=1e9, latency=2.0))
    assert p.memory == 1e12 and p.compute == 1e4 and p.latency == 2.0
    assert b.clip(ClientProfile(memory=5.0)) == ClientProfile(memory=5.0)
    with pytest.raises(ValueError, match="ProfileBounds.memory"):
        ProfileBounds(memory=(2.0, 1.0))


def _profiler(**kw) -> CapacityProfiler:
    kw.setdefault("samples_per_round", 10)
    return CapacityProfiler([100.0, 200.0], [1.0, 2.0], **kw)


def test_base_time_by_hand() -> None:
    prof = _profiler()
    prof.add(2)
    prof.set_profile(
        0,
        ClientProfile(compute=10, bandwidth_down=100, bandwidth_up=50, latency=1, samples=20),
    )
    # expert 0: 1 + 100/100 + 20*1/10 + 100/50 = 6; expert 1: 1 + 2 + 4 + 4 = 11
    np.testing.assert_allclose(prof.train_time([0])[0], [6.0, 11.0])
    # an all-unknown profile is unlimited: no time at all
    np.testing.assert_allclose(prof.train_time([1])[0], [0.0, 0.0])


def test_samples_precedence() -> None:
    prof = _profiler(samples_per_round=7)
    prof.add(3)
    prof.set_profile(1, ClientProfile(samples=30))
    np.testing.assert_array_equal(prof.samples([0, 1]), [7.0, 30.0])
    prof.observe([1], [[True, False]], [55.0], [np.nan], [True], [np.nan])
    assert prof.samples([1])[0] == 55.0


def test_slowdown_is_median_and_robust_to_outliers() -> None:
    prof = _profiler(window=5)
    prof.add(1)
    prof.set_profile(0, ClientProfile(compute=10.0, samples=10))  # predicted 1 s for expert 0
    for d in (2.0, 2.1, 1.9, 500.0):  # one huge stall
        prof.observe([0], [[True, False]], [10.0], [d], [True], [np.nan])
    assert prof.slowdown([0])[0] == pytest.approx(2.05)
    est = prof.estimates(0)
    assert est["compute"] == pytest.approx(10.0 / 2.05)
    # the window forgets: five more normal rounds push the stall out
    for _ in range(5):
        prof.observe([0], [[True, False]], [10.0], [3.0], [True], [np.nan])
    assert prof.slowdown([0])[0] == pytest.approx(3.0)
    np.testing.assert_allclose(prof.train_time([0])[0], [3.0, 6.0])


def test_dropout_is_censored_and_lowers_reliability() -> None:
    prof = _profiler(dropout_inflation=1.5)
    prof.add(2)
    prof.set_profile(0, ClientProfile(compute=10.0, samples=10, availability=0.9))
    prof.set_profile(1, ClientProfile(compute=10.0, samples=10))
    # a silent dropout with a 4 s deadline on a 1 s prediction: it needed more than 4x
    prof.observe([0, 1], [[True, False], [True, False]], [np.nan, np.nan], [np.nan, 1.0],
                 [False, False], [4.0, np.nan])
    assert prof.slowdown([0])[0] == pytest.approx(6.0)
    # a dropout after 1 s with no deadline: at least the current estimate (1), inflated
    assert prof.slowdown([1])[0] == pytest.approx(1.5)
    np.testing.assert_allclose(prof.reliability([0, 1]), [0.72, 0.8], rtol=1e-6)


def test_undeclared_compute_is_learned_from_durations() -> None:
    prof = _profiler(dropout_inflation=1.25)
    prof.add(3)
    assert np.isnan(prof.learned_compute([0])[0])
    np.testing.assert_array_equal(prof.train_time([0])[0], [0.0, 0.0])  # unknown: unlimited
    # work = 10 samples x (cost 1 + cost 2) = 30 per round
    for d in (5.0, 5.0, 50.0):
        prof.observe([0], [[True, True]], [10.0], [d], [True], [np.nan])
    assert prof.slowdown([0])[0] == 1.0
    assert prof.learned_compute([0])[0] == pytest.approx(6.0)  # median of 6, 6, 0.6
    assert prof.estimates(0)["compute"] == pytest.approx(6.0)
    # samples = 10 (last reported): 10 * 1 / 6 and 10 * 2 / 6 seconds
    np.testing.assert_allclose(prof.train_time([0])[0], [10 / 6, 20 / 6], rtol=1e-6)
    # known network, unknown compute: transfer (100/100 + 100/100 = 2 s) is taken out first
    prof.set_profile(1, ClientProfile(bandwidth_down=100.0, bandwidth_up=100.0))
    prof.observe([1], [[True, False]], [10.0], [4.0], [True], [np.nan])
    assert prof.learned_compute([1])[0] == pytest.approx(5.0)
    # a dropout (sample count 0: never said) with a 4 s deadline; it was expected to train
    # 10 samples (samples_per_round), so it is slower than 10 / 4 per second, inflated
    prof.observe([2], [[True, False]], [0.0], [np.nan], [False], [4.0])
    assert prof.learned_compute([2])[0] == pytest.approx(2.0)
    # declaring compute later switches the window's meaning: it starts afresh
    prof.set_profile(0, ClientProfile(compute=100.0))
    assert prof.slowdown([0])[0] == 1.0 and np.isnan(prof.learned_compute([0])[0])


def test_profiler_state_round_trip() -> None:
    prof = _profiler()
    prof.add(2)
    prof.set_profile(0, ClientProfile(compute=3.0, memory=4.0, max_experts=2))
    prof.observe([0], [[True, False]], [6.0], [9.0], [True], [np.nan])
    other = _profiler()
    other.load_state_dict(prof.state_dict())
    assert other.profile(0) == prof.profile(0)
    np.testing.assert_array_equal(other.train_time([0, 1]), prof.train_time([0, 1]))
    assert other.max_experts([0, 1]).tolist() == [2, -1]


def test_deadline_policies_by_hand() -> None:
    t = np.array([[1.0, 3.0, 2.0], [4.0, 4.0, 9.0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(CapacityProfiler.deadline(t, [2, 2, 2], fixed=7.0), [7.0] * 3)
    # needs for the 2 fastest experts: 3, 8, 1 -> the median is 3
    np.testing.assert_allclose(CapacityProfiler.deadline(t, [2, 2, 2], percentile=50), 3.0)
    # max_experts 0 still counts one expert: needs 1, 4, 0.5 -> the maximum is 4
    np.testing.assert_allclose(CapacityProfiler.deadline(t, [0, 1, 0], percentile=100), 4.0)
    prof = _profiler()
    prof.add(2)
    prof.set_profile(0, ClientProfile(memory=3.0))
    np.testing.assert_array_equal(prof.client_memory([0, 1], [1.0, 2.0]), [3.0, 4.0])


def test_profiler_snapshot_restore_undoes_observe() -> None:
    prof = _profiler()
    prof.add(3)
    prof.set_profile(0, ClientProfile(compute=10.0, samples=10))
    prof.observe([0, 1, 2], [[True, False]] * 3, [10, 10, 10], [2.0, 3.0, 1.0],
                 [True, True, False], [np.nan] * 3)
    before = prof.state_dict()
    snap = prof.snapshot([0, 2])
    prof.observe([0, 2], [[True, True]] * 2, [20, 5], [9.0, 4.0], [True, False], [np.nan] * 2)
    assert not np.array_equal(prof.state_dict()["reliability"], before["reliability"])
    prof.restore(snap)
    for k, v in prof.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


HOSTILE = [
    (10**400, ValueError, "an integer of 401 digits"),
    (-(10**400), ValueError, "an integer of 401 digits"),
    (1e400, ValueError, "inf"),
    (1 + 2j, TypeError, r"\(1\+2j\)"),
    ("5", TypeError, "'5'"),
    (np.array(5.0), TypeError, r"array\(5\.\)"),
    (np.array([5.0]), TypeError, r"array\(\[5\.\]\)"),
    ([5.0], TypeError, r"\[5\.0\]"),
    (np.bool_(True), TypeError, r"(np\.)?True"),
]


@pytest.mark.parametrize("field", ["memory", "compute", "bandwidth_up", "latency", "availability",
                                   "samples", "max_experts"])
@pytest.mark.parametrize(("value", "exc", "shown"), HOSTILE)
def test_hostile_profile_values_are_named_errors(field: str, value: object, exc: type,
                                                 shown: str) -> None:
    with pytest.raises(exc, match=rf"^ClientProfile\.{field}: expected .*, got {shown}"):
        ClientProfile(**{field: value})


def test_profile_fields_are_converted() -> None:
    p = ClientProfile(memory=np.int64(3), max_experts=np.int8(2), availability=1, samples=7)
    assert p == ClientProfile(memory=3.0, max_experts=2, availability=1.0, samples=7.0)
    assert type(p.memory) is float and type(p.max_experts) is int


@pytest.mark.parametrize(
    "value", [(2.0, 1.0), (-1.0, 1.0), (0.0, float("inf")), (0, 10**400), 5.0, "ab", (1, 2, 3),
              (1j, 2)],
)
def test_bad_bounds_name_the_field(value: object) -> None:
    with pytest.raises(ValueError, match=r"^ProfileBounds\.latency: expected a pair \(low, high\)"):
        ProfileBounds(latency=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expert_bytes": [1.0, -1.0]}, r"^expert_bytes\[1\]: expected a float >= 0, got -1\.0"),
        ({"expert_bytes": 5.0}, r"^expert_bytes: expected one number per expert"),
        ({"expert_cost": [1.0]}, r"^expert_cost: expected a number or 2 values, got shape \(1,\)"),
        ({"expert_cost": [1.0, 10**400]}, r"^expert_cost\[1\]: expected a float >= 0, got an"),
        ({"window": 0}, r"^window: expected an int in \[1, 255\], got 0"),
        ({"window": 256}, r"^window: expected an int in \[1, 255\], got 256"),
        ({"dropout_inflation": 0.5}, r"^dropout_inflation: expected a float >= 1, got 0\.5"),
        ({"samples_per_round": -1}, r"^samples_per_round: expected a float >= 0 or None"),
        ({"reliability_rate": 2}, r"^reliability_rate: expected a float in \[0, 1\]"),
        ({"ratio_bounds": (0.0, 1.0)}, r"^ratio_bounds: expected a pair \(low, high\)"),
        ({"bounds": {"memory": (0, 1)}}, r"^bounds: expected a ProfileBounds or None"),
    ],
)
def test_profiler_arguments_are_validated(kwargs: dict, match: str) -> None:
    args = {"expert_bytes": [1.0, 2.0], "expert_cost": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        CapacityProfiler(args.pop("expert_bytes"), args.pop("expert_cost"), **args)
