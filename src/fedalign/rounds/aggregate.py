"""Per-expert federated averaging of partial models (numpy only).

A client returns the shared parameters and only the experts it trained. The new global value
of every tensor is the sample-weighted mean over the updates that *contain* it: each expert is
averaged over the clients that trained it, the shared parts over all of them, and an expert
nobody trained keeps its global value. Missing keys are never averaged in as zeros.

Two entry points share one piece of arithmetic (:func:`weighted_mean_array`), so every caller
gets bit-identical results:

* :func:`weighted_mean`, an :class:`Aggregator`: the round driver calls one per *group* (the
  shared arrays, or one expert's arrays) with the replies that carry that group. Robust rules
  (median, trimmed mean, weight caps) are other aggregators with the same signature.
* :func:`aggregate_partial`: a whole round's updates at once, key by key, for callers outside
  the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .naming import expert_of_key as default_expert_of_key

__all__ = [
    "Aggregator",
    "aggregate_partial",
    "expert_update_counts",
    "weighted_mean",
    "weighted_mean_array",
]


class Aggregator(Protocol):
    """Combines the replies that carry one group of arrays into the group's new value.

    The round driver calls it once per group: the shared arrays (``expert=None``, every
    completed reply) and each expert that at least one completed reply carries (the replies
    of the clients that trained it). Every reply has been checked: it holds exactly the
    group's keys, with the reference's shapes and dtypes, and finite values.
    """

    def __call__(
        self,
        reference: Mapping[str, NDArray[Any]],
        updates: Sequence[Mapping[str, NDArray[Any]]],
        weights: NDArray[np.float64],
        *,
        expert: int | None,
    ) -> Mapping[str, NDArray[Any]]:
        """Combine the replies carrying one group into the group's new arrays.

        Parameters
        ----------
        reference : mapping of str to ndarray
            The group's current global arrays.
        updates : sequence of mapping of str to ndarray
            Each carrying reply's arrays for the group, in the order the replies completed.
        weights : (len(updates),) float64 array
            Each reply's weight (its samples, usually), finite and >= 0.
        expert : int or None
            The expert the group belongs to; None for the shared arrays.

        Returns
        -------
        mapping of str to ndarray
            New arrays for exactly the group's keys, with the reference's shapes and dtypes.
            Returning a reference array itself (the same object) means "unchanged".
        """
        ...


def weighted_mean_array(
    reference: NDArray[Any], values: Sequence[ArrayLike], weights: NDArray[np.float64]
) -> NDArray[Any]:
    """Weighted mean of same-shape arrays, computed in float64, in ``reference``'s dtype.

    Parameters
    ----------
    reference : ndarray
        Gives the result's dtype; integer arrays (counters) are rounded after averaging.
    values : sequence of array-like
        One array per update, each of ``reference``'s shape.
    weights : float64 array
        One weight per value, with a positive sum.
    """
    total = float(weights.sum())
    stacked = np.stack([np.asarray(v).astype(np.float64) for v in values])
    mean = np.tensordot(weights / total, stacked, axes=1)
    if not np.issubdtype(reference.dtype, np.floating):
        mean = np.rint(mean)
    # asarray: for 0-d arrays (counters) tensordot and rint return numpy scalars
    return np.asarray(mean.astype(reference.dtype, copy=False))


def weighted_mean(
    reference: Mapping[str, NDArray[Any]],
    updates: Sequence[Mapping[str, NDArray[Any]]],
    weights: NDArray[np.float64],
    *,
    expert: int | None = None,
) -> dict[str, NDArray[Any]]:
    """The default :class:`Aggregator`: the sample-weighted mean (FedAvg) of each array.

    A group whose updates weigh 0 in total keeps its reference arrays (the same objects).

    Examples
    --------
    >>> ref = {"experts.0.w": np.zeros(2, np.float32)}
    >>> ups = [{"experts.0.w": np.ones(2, np.float32)}, {"experts.0.w": np.full(2, 3, np.float32)}]
    >>> weighted_mean(ref, ups, np.array([1.0, 3.0]), expert=0)["experts.0.w"].tolist()
    [2.5, 2.5]
    """
    if not updates or float(weights.sum()) <= 0.0:
        return dict(reference)
    return {
        key: weighted_mean_array(ref, [u[key] for u in updates], weights)
        for key, ref in reference.items()
    }


def aggregate_partial(
    global_state: Mapping[str, ArrayLike],
    updates: Sequence[tuple[Mapping[str, ArrayLike], float]],
) -> dict[str, Any]:
    """Average partial model updates key by key over the updates that hold each key.

    Parameters
    ----------
    global_state : mapping of str to array
        The current global model (every key).
    updates : sequence of (partial_state, weight)
        Each client's returned arrays (a subset of ``global_state``'s keys) and its weight,
        usually the number of samples it trained on.

    Returns
    -------
    dict of str to array
        New global state with the same keys and dtypes as ``global_state``. A key held by no
        update, or only by updates of total weight 0, keeps its global value (the same
        object). Integer arrays (counters) are rounded after averaging.

    Raises
    ------
    KeyError
        If an update holds a key ``global_state`` lacks.
    ValueError
        If a weight is negative or not finite, or an array's shape differs from the global one.

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
        if not who or float(weights[who].sum()) <= 0.0:
            new_state[key] = reference
            continue
        ref = np.asarray(reference)
        values = [np.asarray(updates[p][0][key]) for p in who]
        wrong = next((p for p, v in zip(who, values, strict=True) if v.shape != ref.shape), None)
        if wrong is not None:
            raise ValueError(
                f"updates: position {wrong} key {key!r} has shape "
                f"{np.shape(updates[wrong][0][key])}, global is {ref.shape}"
            )
        new_state[key] = weighted_mean_array(ref, values, weights[who])
    return new_state


def expert_update_counts(
    updates: Sequence[Mapping[str, Any]],
    n_experts: int,
    expert_of_key: Callable[[str], int | None] = default_expert_of_key,
) -> NDArray[np.int64]:
    """How many updates hold each expert: ``(n_experts,)`` int array.

    Parameters
    ----------
    updates : sequence of partial states
        Keys follow ``expert_of_key``'s naming (default ``experts.<j>.``).
    n_experts : int
    expert_of_key : callable, optional
    """
    counts = np.zeros(n_experts, dtype=np.int64)
    for state in updates:
        present = {j for j in map(expert_of_key, state) if j is not None}
        counts[list(present)] += 1
    return counts
