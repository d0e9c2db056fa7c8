"""Per-expert averaging on torch tensors: :func:`fedalign.rounds.aggregate.aggregate_partial`
with tensors converted at the boundary.

The arithmetic lives in the core (:mod:`fedalign.rounds.aggregate`, numpy only); this module
keeps the old ``fedalign.sim.aggregate`` names working on dicts of numpy arrays *or* torch
tensors: the result has the type, dtype and device of ``global_state``'s values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..rounds.aggregate import aggregate_partial as _aggregate_numpy
from ..rounds.aggregate import expert_update_counts

__all__ = ["aggregate_partial", "expert_update_counts"]


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _tensor_like(array: np.ndarray, reference: Any) -> Any:
    import torch  # only reached when the caller already works with tensors

    return torch.as_tensor(np.ascontiguousarray(array)).to(
        device=reference.device, dtype=reference.dtype
    )


def aggregate_partial(
    global_state: Mapping[str, Any],
    updates: Sequence[tuple[Mapping[str, Any], float]],
) -> dict[str, Any]:
    """:func:`fedalign.rounds.aggregate.aggregate_partial` for numpy arrays or torch tensors.

    Parameters
    ----------
    global_state : mapping of str to array or Tensor
    updates : sequence of (partial_state, weight)

    Returns
    -------
    dict of str to array or Tensor
        New global state with the same keys, types, dtypes and devices as ``global_state``.

    Raises
    ------
    KeyError, ValueError
        As the core function.
    """
    ref_np = {key: _to_numpy(value) for key, value in global_state.items()}
    ups_np = [({k: _to_numpy(v) for k, v in state.items()}, w) for state, w in updates]
    mean = _aggregate_numpy(ref_np, ups_np)
    out: dict[str, Any] = {}
    for key, reference in global_state.items():
        if mean[key] is ref_np[key]:  # not averaged: keep the caller's object
            out[key] = reference
        elif hasattr(reference, "detach"):
            out[key] = _tensor_like(mean[key], reference)
        else:
            out[key] = mean[key]
    return out
