"""Per-expert federated averaging of partial models, framework-neutral.

A client returns the shared parameters and only the experts it trained. The new global value
of every tensor is the sample-weighted mean over the updates that *contain* it: each expert is
averaged over the clients that trained it, the shared parts over all of them, and an expert
nobody trained keeps its global value. Missing keys are never averaged in as zeros.

Works on dicts of numpy arrays or of torch tensors (anything with ``.detach()``); the result
has the type, dtype and device of ``global_state``'s values. torch is never imported here, so
the Flower strategy can use this module on plain numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .naming import expert_of_key

__all__ = ["aggregate_partial", "expert_update_counts"]


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _like(array: np.ndarray, reference: Any) -> Any:
    """``array`` converted back to the type, dtype and device of ``reference``."""
    if hasattr(reference, "detach"):
        return _tensor_like(array, reference)
    return array.astype(np.asarray(reference).dtype, copy=False)


def _tensor_like(array: np.ndarray, reference: Any) -> Any:
    import torch  # only reached when the caller already works with tensors

    return torch.as_tensor(np.ascontiguousarray(array)).to(
        device=reference.device, dtype=reference.dtype
    )


def aggregate_partial(
    global_state: Mapping[str, Any],
    updates: Sequence[tuple[Mapping[str, Any], float]],
) -> dict[str, Any]:
    """Average partial model updates key by key over the updates that hold each key.

    Parameters
    ----------
    global_state : mapping of str to array or Tensor
        The current global model (every key).
    updates : sequence of (partial_state, weight)
        Each client's returned tensors (a subset of ``global_state``'s keys) and its weight,
        usually the number of samples it trained on.

    Returns
    -------
    dict of str to array or Tensor
        New global state with the same keys, types and dtypes as ``global_state``. A key held
        by no update, or only by updates of total weight 0, keeps its global value. Integer
        tensors (counters) are rounded after averaging.

    Raises
    ------
    KeyError
        If an update holds a key ``global_state`` lacks.
    ValueError
        If a weight is negative or not finite, or a tensor's shape differs from the global one.

    Examples
    --------
    >>> g = {"gate": np.zeros(2), "experts.0.w": np.zeros(1), "experts.1.w": np.ones(1)}
    >>> u1 = ({"gate": np.ones(2), "experts.0.w": np.array([2.0])}, 1.0)
    >>> u2 = ({"gate": np.full(2, 3.0), "experts.0.w": np.array([4.0])}, 3.0)
    >>> out = aggregate_partial(g, [u1, u2])
    >>> out["gate"].tolist(), out["experts.0.w"].tolist(), out["experts.1.w"].tolist()
    ([2.5, 2.5], [3.5], [1.0])
    """
    weights = np.array([float(w) for _, w in updates], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if bad.size:
        raise ValueError(
            f"updates: weight at position {int(bad[0])} must be finite and >= 0, "
            f"got {weights[bad[0]]}"
        )
    holders: dict[str, list[int]] = {key: [] for key in global_state}
    for pos, (state, _) in enumerate(updates):
        for key in state:
            if key not in holders:
                raise KeyError(f"updates: position {pos} holds unknown key {key!r}")
            holders[key].append(pos)

    new_state: dict[str, Any] = {}
    for key, reference in global_state.items():
        who = holders[key]
        total = float(weights[who].sum()) if who else 0.0
        if total <= 0.0:
            new_state[key] = reference
            continue
        ref_np = _to_numpy(reference)
        stacked = np.stack([_to_numpy(updates[p][0][key]).astype(np.float64) for p in who])
        if stacked.shape[1:] != ref_np.shape:
            pos = next(p for p in who if _to_numpy(updates[p][0][key]).shape != ref_np.shape)
            raise ValueError(
                f"updates: position {pos} key {key!r} has shape "
                f"{_to_numpy(updates[pos][0][key]).shape}, global is {ref_np.shape}"
            )
        mean = np.tensordot(weights[who] / total, stacked, axes=1)
        if not np.issubdtype(ref_np.dtype, np.floating):
            mean = np.rint(mean)
        new_state[key] = _like(mean, reference)
    return new_state


def expert_update_counts(updates: Sequence[Mapping[str, Any]], n_experts: int) -> np.ndarray:
    """How many updates hold each expert: ``(n_experts,)`` int array.

    Parameters
    ----------
    updates : sequence of partial states
        Keys follow the ``experts.<j>.`` naming of :mod:`fedalign.sim.naming`.
    n_experts : int
    """
    counts = np.zeros(n_experts, dtype=np.int64)
    for state in updates:
        present = {j for j in map(expert_of_key, state) if j is not None}
        for j in present:
            counts[j] += 1
    return counts
