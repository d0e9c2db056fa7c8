"""Per-expert aggregation against hand-computed averages (numpy and torch)."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign.sim.aggregate import aggregate_partial, expert_update_counts


def _global():
    return {
        "gate.w": np.array([0.0, 0.0]),
        "experts.0.w": np.array([10.0]),
        "experts.1.w": np.array([20.0]),
        "experts.2.w": np.array([30.0]),
        "steps": np.array(5, dtype=np.int64),
    }


def test_hand_computed_average():
    updates = [
        (
            {"gate.w": np.array([1.0, 2.0]), "experts.0.w": np.array([1.0]), "steps": np.array(1)},
            10,
        ),
        (
            {
                "gate.w": np.array([3.0, 6.0]),
                "experts.0.w": np.array([5.0]),
                "experts.1.w": np.array([7.0]),
                "steps": np.array(2),
            },
            30,
        ),
        (
            {"gate.w": np.array([5.0, 0.0]), "experts.1.w": np.array([1.0]), "steps": np.array(4)},
            20,
        ),
    ]
    out = aggregate_partial(_global(), updates)
    # shared: over all three, weights 10/30/20
    np.testing.assert_allclose(
        out["gate.w"], [(10 * 1 + 30 * 3 + 20 * 5) / 60, (10 * 2 + 30 * 6) / 60]
    )
    # expert 0: clients 0 and 1 only (never averaged with the missing third)
    np.testing.assert_allclose(out["experts.0.w"], [(10 * 1 + 30 * 5) / 40])
    # expert 1: clients 1 and 2 only
    np.testing.assert_allclose(out["experts.1.w"], [(30 * 7 + 20 * 1) / 50])
    # expert 2: nobody trained it, keeps the global value
    np.testing.assert_array_equal(out["experts.2.w"], [30.0])
    # integer buffers are rounded and keep their dtype
    assert out["steps"].dtype == np.int64 and int(out["steps"]) == round((10 + 60 + 80) / 60)
    np.testing.assert_array_equal(expert_update_counts([u for u, _ in updates], 3), [2, 2, 0])


def test_no_updates_and_zero_weight_keep_global():
    g = _global()
    assert all(np.array_equal(aggregate_partial(g, [])[k], g[k]) for k in g)
    out = aggregate_partial(g, [({"experts.2.w": np.array([0.0])}, 0.0)])
    np.testing.assert_array_equal(out["experts.2.w"], [30.0])


def test_errors_name_position():
    g = _global()
    with pytest.raises(KeyError, match="position 1"):
        aggregate_partial(g, [({"gate.w": np.zeros(2)}, 1), ({"bogus": np.zeros(1)}, 1)])
    with pytest.raises(ValueError, match="position 0"):
        aggregate_partial(g, [({"gate.w": np.zeros(2)}, -1)])
    with pytest.raises(ValueError, match="shape"):
        aggregate_partial(g, [({"gate.w": np.zeros(3)}, 1)])


def test_torch_tensors_keep_type_and_dtype():
    torch = pytest.importorskip("torch")
    g = {"gate.w": torch.zeros(2), "experts.0.w": torch.ones(2, dtype=torch.float64)}
    ups = [
        ({"gate.w": torch.tensor([2.0, 4.0])}, 1),
        (
            {
                "gate.w": torch.tensor([4.0, 8.0]),
                "experts.0.w": torch.tensor([3.0, 3.0], dtype=torch.float64),
            },
            3,
        ),
    ]
    out = aggregate_partial(g, ups)
    assert isinstance(out["gate.w"], torch.Tensor) and out["gate.w"].dtype == torch.float32
    assert torch.allclose(out["gate.w"], torch.tensor([3.5, 7.0]))
    assert out["experts.0.w"].dtype == torch.float64
    assert torch.equal(out["experts.0.w"], torch.tensor([3.0, 3.0], dtype=torch.float64))
