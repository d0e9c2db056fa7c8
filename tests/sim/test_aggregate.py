"""``fedalign.sim.aggregate``: the core's per-expert averaging on torch tensors.

The arithmetic and its hand-computed checks live with the core (``tests/test_rounds.py``);
here: the torch boundary (types, dtypes, untouched objects) and the old import paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import fedalign.rounds.aggregate as core
import fedalign.rounds.naming as core_naming
from fedalign.sim import expert_of_key
from fedalign.sim.aggregate import aggregate_partial, expert_update_counts
from fedalign.sim.naming import EXPERT_PREFIX, expert_keys, shared_keys


def test_old_import_paths_are_the_core_objects():
    assert expert_of_key is core_naming.expert_of_key
    assert (EXPERT_PREFIX, expert_keys, shared_keys) == (
        core_naming.EXPERT_PREFIX,
        core_naming.expert_keys,
        core_naming.shared_keys,
    )
    assert expert_update_counts is core.expert_update_counts


def test_numpy_states_give_the_core_result():
    g = {"gate.w": np.zeros(2), "experts.0.w": np.ones(1), "experts.1.w": np.ones(1)}
    ups = [({"gate.w": np.array([1.0, 2.0]), "experts.0.w": np.array([3.0])}, 2.0)]
    out = aggregate_partial(g, ups)
    want = core.aggregate_partial(g, ups)
    assert all(np.array_equal(out[k], want[k]) for k in g)
    assert out["experts.1.w"] is g["experts.1.w"]


def test_torch_tensors_keep_type_and_dtype():
    torch = pytest.importorskip("torch")
    g = {
        "gate.w": torch.zeros(2),
        "experts.0.w": torch.ones(2, dtype=torch.float64),
        "experts.1.w": torch.ones(1),
    }
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
    assert out["experts.1.w"] is g["experts.1.w"]  # nobody trained it: the caller's tensor
