"""Fitness and usage arithmetic (fedalign.scores) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign.scores import FitnessTracker, UsageTracker


def test_fitness_ema_and_lazy_decay_by_hand() -> None:
    ft = FitnessTracker(3, ema=0.3, decay=0.1, prior=0.5)
    ft.add(2)
    ft.add(1, initial=[0.9, 0.1, 0.5])
    # round 0: client 0 trains expert 1 with reward 1.0
    ft.record([0], [[False, True, False]], [[0.0, 1.0, 0.0]])
    ft.close_round()
    # 0.7 * 0.5 + 0.3 * 1.0 = 0.65; untrained pairs at the prior stay there
    np.testing.assert_allclose(ft.get([0])[0], [0.5, 0.65, 0.5], atol=1e-6)
    # the cold-started row drifted one round: 0.5 + 0.9 * (0.9 - 0.5) = 0.86
    np.testing.assert_allclose(ft.get([2])[0], [0.86, 0.14, 0.5], atol=1e-6)
    ft.close_round()
    ft.close_round()
    # two more untrained rounds: 0.5 + 0.9^2 * 0.15 = 0.6215
    np.testing.assert_allclose(ft.get([0])[0, 1], 0.6215, atol=1e-6)
    # three rounds in all: 0.5 + 0.9^3 * 0.4 = 0.7916
    np.testing.assert_allclose(ft.get([2])[0, :2], [0.7916, 0.2084], atol=1e-6)
    # a row recorded in a round is current as of that round's end, not decayed twice
    ft.record([1], [[True, False, False]], [[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ft.get([1])[0, 0], 0.35, atol=1e-6)
    ft.close_round()
    np.testing.assert_allclose(ft.get([1])[0, 0], 0.35, atol=1e-6)
    ft.close_round()
    np.testing.assert_allclose(ft.get([1])[0, 0], 0.5 - 0.9 * 0.15, atol=1e-6)
    assert ft.times_trained([0, 1]).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_lazy_drift_equals_eager_update() -> None:
    rng = np.random.default_rng(0)
    n, e, a, d, prior = 30, 5, 0.25, 0.07, 0.4
    ft = FitnessTracker(e, ema=a, decay=d, prior=prior, dtype=np.float64)
    ft.add(n)
    eager = np.full((n, e), prior)
    for _ in range(25):
        rows = rng.choice(n, size=8, replace=False)
        trained = rng.random((8, e)) < 0.3
        rewards = rng.random((8, e))
        ft.record(rows, trained, rewards)
        t_all = np.zeros((n, e), dtype=bool)
        r_all = np.zeros((n, e))
        t_all[rows], r_all[rows] = trained, rewards
        eager = np.where(t_all, (1 - a) * eager + a * r_all, eager - d * (eager - prior))
        ft.close_round()
    np.testing.assert_allclose(ft.values(chunk=7), eager, atol=1e-12)


def test_fitness_storage_is_float32_and_values_is_a_copy() -> None:
    ft = FitnessTracker(4)
    ft.add(3)
    v = ft.values()
    assert v.dtype == np.float32 and v.shape == (3, 4)
    v[:] = 0
    assert ft.get([0])[0, 0] == pytest.approx(0.5)


def test_fitness_state_round_trip() -> None:
    ft = FitnessTracker(2, ema=0.5, decay=0.2)
    ft.add(2)
    ft.record([1], [[True, True]], [[1.0, 0.0]])
    ft.close_round()
    ft.close_round()
    other = FitnessTracker(2, ema=0.5, decay=0.2)
    other.load_state_dict(ft.state_dict())
    np.testing.assert_array_equal(other.values(), ft.values())
    assert other.rounds_closed == 2 and other.n_clients == 2


@pytest.mark.parametrize(
    ("initial", "match"),
    [([0.5, 1.5], r"initial\[0, 1\]"), ([0.5, np.nan], r"initial\[0, 1\]"), ([0.1, 0.2, 0.3], "shape")],
)
def test_fitness_bad_cold_start(initial: list[float], match: str) -> None:
    ft = FitnessTracker(2)
    with pytest.raises(ValueError, match=match):
        ft.add(1, initial=initial)
    assert ft.n_clients == 0


@pytest.mark.parametrize("name", ["ema", "decay", "prior"])
def test_fitness_rates_validated(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^FitnessTracker\.{name}: expected a float in \[0, 1\], got 1\.5$"):
        FitnessTracker(2, **{name: 1.5})


def test_usage_ema_and_norms_by_hand() -> None:
    ut = UsageTracker(2, decay=0.8)
    np.testing.assert_array_equal(ut.normalised(), [0.0, 0.0])
    ut.add_load([60.0, 0.0])
    ut.add_load([40.0, 0.0])
    ut.close_round()
    np.testing.assert_allclose(ut.usage, [20.0, 0.0])
    ut.add_load([0.0, 50.0])
    ut.close_round()
    np.testing.assert_allclose(ut.usage, [16.0, 10.0])
    np.testing.assert_allclose(ut.normalised(), [1.0, 0.625])
    ut.norm = "mean"
    np.testing.assert_allclose(ut.normalised(), [16 / 13, 10 / 13])
    ut.norm = "share"
    np.testing.assert_allclose(ut.normalised(), [16 / 26, 10 / 26])
    other = UsageTracker(2, decay=0.8)
    other.load_state_dict(ut.state_dict())
    np.testing.assert_array_equal(other.usage, ut.usage)


def test_usage_norm_validated() -> None:
    with pytest.raises(ValueError, match=r"^UsageTracker\.norm: expected one of"):
        UsageTracker(2, norm="median")


def test_fitness_and_usage_snapshot_restore_undo_a_round() -> None:
    ft = FitnessTracker(3, ema=0.3, decay=0.1, prior=0.5)
    ft.add(4, initial=[0.9, 0.1, 0.5])
    ft.record([0, 2], [[True, False, True], [False, True, False]], [[1.0, 0, 0.2], [0, 0.7, 0]])
    ft.close_round()
    ut = UsageTracker(3, decay=0.5)
    ut.add_load([4.0, 0.0, 2.0])
    before_f, before_u = ft.state_dict(), ut.state_dict()
    snap_f, snap_u = ft.snapshot([2, 3]), ut.snapshot()
    ft.record([2, 3], [[True, True, False], [False, False, True]], [[0.1, 0.2, 0], [0, 0, 0.9]])
    ft.close_round()
    ut.add_load([1.0, 1.0, 1.0])
    ut.close_round()
    assert ft.rounds_closed == 2 and not np.array_equal(ft.get([2, 3]), before_f["fitness"][2:])
    ft.restore(snap_f)
    ut.restore(snap_u)
    for k, v in ft.state_dict().items():
        np.testing.assert_array_equal(v, before_f[k], err_msg=k)
    for k, v in ut.state_dict().items():
        np.testing.assert_array_equal(v, before_u[k], err_msg=k)
    ft.add(1)
    with pytest.raises(ValueError, match="rows were added"):
        ft.restore(snap_f)


def test_fitness_cold_start_refuses_text_and_names_position() -> None:
    ft = FitnessTracker(2)
    with pytest.raises(ValueError, match=r"initial\[1\]: expected numbers, got 'x'"):
        ft.add(1, initial=[0.5, "x"])
    with pytest.raises(ValueError, match=r"initial\[0\]"):
        ft.add(1, initial=[True, False])
    assert ft.n_clients == 0
