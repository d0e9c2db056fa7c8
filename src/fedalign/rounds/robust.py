"""Defenses of the average: robust per-expert aggregation and the plausibility of replies.

Each expert of a Mixture-of-Experts round is averaged over the few clients that trained it,
so one hostile reply is a large share of that average: a client that returns a scaled,
sign-flipped update and claims 10^12 samples replaces the expert with its own copy under
FedAvg. Two layers, both numpy only and shared by every transport (the PyTorch harness, the
Flower strategy, the NVIDIA FLARE controller), both off unless asked for:

:class:`RobustAggregator`
    An :class:`~fedalign.rounds.aggregate.Aggregator` applied per *group* (the shared arrays,
    or one expert's arrays over the replies that carry it): the weighted mean
    (``"mean"``, FedAvg), the coordinate-wise median, the trimmed mean, or the norm-clipped
    mean, each optionally with a cap on any single reply's share of the group's weight
    (``max_share``: no claimed sample count can dominate). Rule names follow Flower's
    ``FedMedian`` / ``FedTrimmedAvg`` and the clipped mean of DP-FedAvg, applied to one
    expert at a time instead of the whole model.
:class:`ReplyScreen`
    Judges each completed reply before it is averaged: an update whose change is far larger
    than the group's median change, points against the group's median change, or is no
    change at all (a free-rider) is *implausible*; with a server-side validation callback,
    so is a returned expert that scores worse than the expert it was sent, and a reward
    above what the expert as sent can score anywhere on the server's validation data. An
    implausible reply is left out of every average, and the verdicts go to the scheduler
    (:meth:`fedalign.Scheduler.judge`): rewards judged implausible are not credited, and the
    client's trust score falls.

Every statistic is computed over the stacked updates of a group (an ``(n, size)`` matrix of
float64 changes), vectorised over clients.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import Boolean, InstanceOf, Interval, Options, Table, validate
from .aggregate import weighted_mean, weighted_mean_array

__all__ = [
    "AGGREGATION_RULES",
    "GroupVerdict",
    "ReplyScreen",
    "RobustAggregator",
    "ScreenReport",
    "Validator",
    "cap_shares",
    "coordinate_median",
    "trimmed_mean",
]

#: The rules :class:`RobustAggregator` applies to a group.
AGGREGATION_RULES = ("mean", "median", "trimmed-mean", "clipped-mean")

Validator = Callable[[int, Mapping[str, NDArray[Any]]], float]
"""``validate(expert, state) -> score in [0, 1]``: the server's own evaluation of expert
``expert`` within the full model ``state`` (the global arrays, with that expert's arrays
replaced by the ones judged), on a validation set the server holds. It should be the highest
reward a client could honestly report for the expert (e.g. its accuracy on the validation
slice where it does best), so that a reward above it is implausible."""


def cap_shares(weights: ArrayLike, max_share: float) -> NDArray[np.float64]:
    """Weights lowered so that none is more than ``max_share`` of their sum.

    The largest weights are cut to one common level ``t`` (water-filling): the largest
    ``t`` for which every share is at most ``max_share``; weights below ``t`` are unchanged.
    When ``max_share`` times the number of positive weights is at most 1 the cap cannot
    hold for unequal weights, and every positive weight becomes the smallest of them (equal
    shares).

    Parameters
    ----------
    weights : (n,) floats >= 0
    max_share : float in (0, 1]

    Returns
    -------
    (n,) float64
        The capped weights (zeros stay zero).

    Examples
    --------
    >>> cap_shares([1.0, 1.0, 1.0, 1e12], 0.5).tolist()
    [1.0, 1.0, 1.0, 3.0]
    """
    w = np.asarray(weights, dtype=np.float64)
    positive = w > 0
    n = int(positive.sum())
    total = float(w.sum())
    if n == 0 or max_share >= 1.0 or float(w.max()) <= max_share * total:
        return w.copy()
    if n * max_share <= 1.0:
        return np.where(positive, float(w[positive].min()), 0.0)
    desc = np.sort(w[positive])[::-1]
    # capping the k largest at t: t * (1 - s * k) = s * (sum of the others)
    rest = np.concatenate([np.cumsum(desc[::-1])[::-1], [0.0]])  # rest[k] = sum of desc[k:]
    k = np.arange(desc.size + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = max_share * rest / (1.0 - max_share * k)
    nxt = np.concatenate([desc, [0.0]])
    ok = (1.0 - max_share * k > 0) & (nxt <= level + 1e-12 * level)
    first = int(np.flatnonzero(ok)[0])
    return np.minimum(w, level[first])


def _stacked(updates: Sequence[Mapping[str, NDArray[Any]]], key: str) -> NDArray[np.float64]:
    return np.stack([np.asarray(u[key], dtype=np.float64) for u in updates])


def _as_reference(value: NDArray[np.float64], ref: NDArray[Any]) -> NDArray[Any]:
    """A float64 result in the reference's dtype (integer arrays rounded)."""
    if not np.issubdtype(ref.dtype, np.floating):
        value = np.rint(value)
    return np.asarray(value.astype(ref.dtype, copy=False))


def coordinate_median(
    reference: Mapping[str, NDArray[Any]],
    updates: Sequence[Mapping[str, NDArray[Any]]],
    weights: NDArray[np.float64],
    *,
    expert: int | None = None,
) -> dict[str, NDArray[Any]]:
    """The coordinate-wise median of the replies of positive weight (weights otherwise unused).

    Examples
    --------
    >>> ref = {"w": np.zeros(1)}
    >>> ups = [{"w": np.array([v])} for v in (1.0, 2.0, -1e9)]
    >>> coordinate_median(ref, ups, np.ones(3))["w"].tolist()
    [1.0]
    """
    keep = [u for u, w in zip(updates, weights, strict=True) if w > 0]
    if not keep:
        return dict(reference)
    return {key: _as_reference(np.median(_stacked(keep, key), axis=0), ref) for key, ref in reference.items()}


def trimmed_mean(
    reference: Mapping[str, NDArray[Any]],
    updates: Sequence[Mapping[str, NDArray[Any]]],
    weights: NDArray[np.float64],
    *,
    expert: int | None = None,
    trim: float = 0.2,
) -> dict[str, NDArray[Any]]:
    """Per coordinate, the mean after dropping the ``floor(trim * n)`` largest and smallest
    values of the ``n`` replies of positive weight (at least one value is kept)."""
    keep = [u for u, w in zip(updates, weights, strict=True) if w > 0]
    if not keep:
        return dict(reference)
    n = len(keep)
    k = min(int(np.floor(trim * n)), (n - 1) // 2)
    out: dict[str, NDArray[Any]] = {}
    for key, ref in reference.items():
        values = np.sort(_stacked(keep, key), axis=0)
        out[key] = _as_reference(values[k : n - k].mean(axis=0), ref)
    return out


def _deltas(
    reference: Mapping[str, NDArray[Any]], updates: Sequence[Mapping[str, NDArray[Any]]]
) -> NDArray[np.float64]:
    """Each update's change from the reference over the group's keys, flattened: (n, size)."""
    parts = [
        (_stacked(updates, key) - np.asarray(ref, dtype=np.float64)).reshape(len(updates), -1)
        for key, ref in reference.items()
    ]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(updates), 0))


class RobustAggregator:
    """An :class:`~fedalign.rounds.aggregate.Aggregator` with a robust rule and a weight cap.

    Called once per group (the shared arrays, then each expert over the replies carrying
    it). Replies of weight 0 never count.

    Parameters
    ----------
    rule : {"mean", "median", "trimmed-mean", "clipped-mean"}, default "median"
        ``mean``: the weighted mean (FedAvg); with ``max_share`` it is a capped FedAvg.
        ``median``: the coordinate-wise median (weights ignored). ``trimmed-mean``: per
        coordinate, the mean of the values left after dropping the ``trim`` share at each
        end (weights ignored). ``clipped-mean``: each reply's change from the current
        arrays is scaled down to at most ``clip`` times the median change of the group (or
        ``max_norm``), then the weighted mean of the changes is added.
    trim : float in [0, 0.5), default 0.2
        Share of the values dropped at each end by ``trimmed-mean``.
    clip : float > 0, default 2.0
        ``clipped-mean``'s bound on a change's L2 norm, as a multiple of the median norm of
        the group's changes (over all of the group's arrays together).
    max_norm : float > 0, optional
        ``clipped-mean``'s bound as an absolute L2 norm instead (overrides ``clip``).
    max_share : float in (0, 1], optional
        Cap on any single reply's share of the group's weight (:func:`cap_shares`), for
        the rules that read weights (``mean``, ``clipped-mean``). None: no cap.
    shared : bool, default True
        Apply the rule to the shared arrays as well; False averages them by weighted mean
        (with the cap).

    Raises
    ------
    ValueError
        An argument out of range; the message names it.

    Examples
    --------
    >>> agg = RobustAggregator("mean", max_share=0.5)
    >>> ref = {"experts.0.w": np.zeros(1)}
    >>> ups = [{"experts.0.w": np.array([v])} for v in (1.0, 1.0, -100.0)]
    >>> float(agg(ref, ups, np.array([10.0, 10.0, 1e12]), expert=0)["experts.0.w"][0])
    -49.5
    >>> float(RobustAggregator("median")(ref, ups, np.ones(3), expert=0)["experts.0.w"][0])
    1.0
    """

    _parameter_constraints: ClassVar[Table] = {
        "rule": [Options(AGGREGATION_RULES)],
        "trim": [Interval(float, 0.0, 0.5, closed="left")],
        "clip": [Interval(float, 0.0, None, closed="neither")],
        "max_norm": [Interval(float, 0.0, None, closed="neither"), None],
        "max_share": [Interval(float, 0.0, 1.0, closed="right"), None],
        "shared": [Boolean()],
    }

    def __init__(
        self,
        rule: str = "median",
        *,
        trim: float = 0.2,
        clip: float = 2.0,
        max_norm: float | None = None,
        max_share: float | None = None,
        shared: bool = True,
    ) -> None:
        opts = validate(
            self._parameter_constraints,
            {
                "rule": rule,
                "trim": trim,
                "clip": clip,
                "max_norm": max_norm,
                "max_share": max_share,
                "shared": shared,
            },
            owner="RobustAggregator",
            prefix="RobustAggregator.",
        )
        self.rule: str = opts["rule"]
        self.trim: float = opts["trim"]
        self.clip: float = opts["clip"]
        self.max_norm: float | None = opts["max_norm"]
        self.max_share: float | None = opts["max_share"]
        self.shared: bool = opts["shared"]

    def __repr__(self) -> str:
        return (
            f"RobustAggregator({self.rule!r}, trim={self.trim}, clip={self.clip}, "
            f"max_norm={self.max_norm}, max_share={self.max_share}, shared={self.shared})"
        )

    def describe(self) -> list[str]:
        """The active defenses, for reports: e.g. ``["median", "weight-cap 0.5"]``."""
        out = [] if self.rule == "mean" else [self.rule]
        if self.max_share is not None:
            out.append(f"weight-cap {self.max_share:g}")
        return out

    def __call__(
        self,
        reference: Mapping[str, NDArray[Any]],
        updates: Sequence[Mapping[str, NDArray[Any]]],
        weights: NDArray[np.float64],
        *,
        expert: int | None = None,
    ) -> Mapping[str, NDArray[Any]]:
        """Combine the replies carrying one group (see :class:`~fedalign.rounds.Aggregator`)."""
        w = np.asarray(weights, dtype=np.float64)
        if not updates or float(w.sum()) <= 0.0:
            return dict(reference)
        if self.max_share is not None:
            w = cap_shares(w, self.max_share)
        rule = self.rule if (expert is not None or self.shared) else "mean"
        if rule == "median":
            return coordinate_median(reference, updates, w, expert=expert)
        if rule == "trimmed-mean":
            return trimmed_mean(reference, updates, w, expert=expert, trim=self.trim)
        if rule == "clipped-mean":
            return self._clipped_mean(reference, updates, w)
        return weighted_mean(reference, updates, w, expert=expert)

    def _clipped_mean(
        self,
        reference: Mapping[str, NDArray[Any]],
        updates: Sequence[Mapping[str, NDArray[Any]]],
        weights: NDArray[np.float64],
    ) -> dict[str, NDArray[Any]]:
        delta = _deltas(reference, updates)
        norms = np.linalg.norm(delta, axis=1)
        positive = weights > 0
        bound = self.max_norm
        if bound is None:
            bound = self.clip * float(np.median(norms[positive]))
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(norms > bound, bound / norms, 1.0)
        out: dict[str, NDArray[Any]] = {}
        for key, ref in reference.items():
            base = np.asarray(ref, dtype=np.float64)
            clipped = [base + s * (np.asarray(u[key], dtype=np.float64) - base) for u, s in zip(updates, scale, strict=True)]
            out[key] = weighted_mean_array(ref, clipped, weights)
        return out


# --------------------------------------------------------------------------- screening


@dataclass
class GroupVerdict:
    """What :meth:`ReplyScreen.screen_group` found about the replies carrying one group.

    Attributes
    ----------
    plausible : (n,) bool
        Whether each reply's update of the group is plausible.
    reasons : list of str
        Why each implausible reply is (``""`` for plausible ones).
    """

    plausible: NDArray[np.bool_]
    reasons: list[str] = field(default_factory=list)


class ReplyScreen:
    """Judges each completed reply's update, and its rewards, before anything is averaged.

    Per group (the shared arrays, and each expert over the replies carrying it), with the
    change of reply ``i`` written ``Δ_i`` (its arrays minus the group's current ones, all of
    the group's arrays together) and ``m`` the median of the group's ``‖Δ‖``:

    * **no change** (a free-rider): ``‖Δ_i‖`` is 0, or below ``lazy_ratio · m``;
    * **too large**: ``‖Δ_i‖ > norm_ratio · m`` (a scaled update);
    * **opposed**: the cosine of ``Δ_i`` and the coordinate-wise median of the changes that
      passed the two tests above (all of them when none did) is below ``min_cosine`` (a
      sign-flipped update).

    Replies already found implausible in the shared arrays' group (which every reply
    carries, so its honest majority is the cohort's) are left out of ``m`` and of the
    median direction of each expert's group (``suspect`` of :meth:`screen_group`).

    The relative tests need ``min_replies`` replies in the group (a median of two is no
    majority); the test for no change at all always applies. With ``validate`` (the
    server's own evaluation of an expert, see :data:`Validator`), two more tests per expert:
    the returned expert scores more than ``tolerance`` below the expert as sent (a
    poisoned expert), and a reward more than ``tolerance`` above the sent expert's score
    (a reward no client's data can give).

    Parameters
    ----------
    norm_ratio : float > 1, optional, default 5.0
        None turns the test off.
    min_cosine : float in [-1, 1], optional, default 0.0
        None turns the test off.
    lazy_ratio : float in [0, 1), default 0.01
        0 flags only updates with no change at all.
    min_replies : int >= 2, default 3
    validate : callable, optional
        ``validate(expert, state) -> float in [0, 1]``.
    tolerance : float >= 0, default 0.1
        Slack of the two validation tests.
    screen_shared : bool, default True
        Judge the shared arrays' updates as well as the experts'.

    Raises
    ------
    ValueError
        An argument out of range; the message names it.
    """

    _parameter_constraints: ClassVar[Table] = {
        "norm_ratio": [Interval(float, 1.0, None, closed="neither"), None],
        "min_cosine": [Interval(float, -1.0, 1.0), None],
        "lazy_ratio": [Interval(float, 0.0, 1.0, closed="left")],
        "min_replies": [Interval(int, 2, None)],
        "validate": [InstanceOf(Callable, "callable"), None],  # type: ignore[arg-type]
        "tolerance": [Interval(float, 0.0, None)],
        "screen_shared": [Boolean()],
    }

    def __init__(
        self,
        *,
        norm_ratio: float | None = 5.0,
        min_cosine: float | None = 0.0,
        lazy_ratio: float = 0.01,
        min_replies: int = 3,
        validate: Validator | None = None,
        tolerance: float = 0.1,
        screen_shared: bool = True,
    ) -> None:
        opts = _validate_table(
            self._parameter_constraints,
            {
                "norm_ratio": norm_ratio,
                "min_cosine": min_cosine,
                "lazy_ratio": lazy_ratio,
                "min_replies": min_replies,
                "validate": validate,
                "tolerance": tolerance,
                "screen_shared": screen_shared,
            },
        )
        self.norm_ratio: float | None = opts["norm_ratio"]
        self.min_cosine: float | None = opts["min_cosine"]
        self.lazy_ratio: float = opts["lazy_ratio"]
        self.min_replies: int = opts["min_replies"]
        self.validate: Validator | None = opts["validate"]
        self.tolerance: float = opts["tolerance"]
        self.screen_shared: bool = opts["screen_shared"]

    def __repr__(self) -> str:
        return (
            f"ReplyScreen(norm_ratio={self.norm_ratio}, min_cosine={self.min_cosine}, "
            f"lazy_ratio={self.lazy_ratio}, min_replies={self.min_replies}, "
            f"validate={'set' if self.validate else None}, tolerance={self.tolerance})"
        )

    def screen_group(
        self,
        reference: Mapping[str, NDArray[Any]],
        updates: Sequence[Mapping[str, NDArray[Any]]],
        suspect: ArrayLike | None = None,
    ) -> GroupVerdict:
        """Judge the updates of one group (the relative and no-change tests).

        Parameters
        ----------
        reference : mapping of str to ndarray
            The group's current arrays.
        updates : sequence of mapping of str to ndarray
            Each carrying reply's arrays for the group (already checked by the driver).
        suspect : (len(updates),) bool, optional
            Replies already found implausible in another group (the driver passes the
            shared arrays' verdicts to every expert's group). They are judged too, but the
            median and the direction the others are judged by leave them out while any
            reply is left: a few clients train an expert, and poisoners half of them would
            otherwise set the yardstick.
        """
        n = len(updates)
        ok = np.ones(n, dtype=bool)
        reasons = [""] * n
        if n == 0 or not reference:
            return GroupVerdict(ok, reasons)
        delta = _deltas(reference, updates)
        norms = np.linalg.norm(delta, axis=1)
        trusted = np.ones(n, dtype=bool) if suspect is None else ~np.asarray(suspect, dtype=bool)
        if not trusted.any():
            trusted[:] = True

        def flag(mask: NDArray[np.bool_], why: str) -> None:
            for i in np.flatnonzero(mask & ok):
                reasons[int(i)] = why
            ok[mask] = False

        flag(norms == 0.0, "no change (returned as sent)")
        if n >= self.min_replies:
            m = float(np.median(norms[trusted]))
            if m > 0:
                if self.lazy_ratio > 0:
                    flag(norms < self.lazy_ratio * m, f"change below {self.lazy_ratio:g} x the median")
                if self.norm_ratio is not None:
                    flag(norms > self.norm_ratio * m, f"change above {self.norm_ratio:g} x the median")
                if self.min_cosine is not None:
                    # the direction of the trusted replies the norm tests kept: scaled
                    # replies (a poisoner's) would pull the coordinate-wise median toward
                    # their own direction and make honest replies look opposed
                    kept = ok & trusted
                    direction = np.median(delta[kept] if kept.any() else delta, axis=0)
                    d_norm = float(np.linalg.norm(direction))
                    if d_norm > 0:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            cos = (delta @ direction) / (norms * d_norm)
                        flag(
                            np.nan_to_num(cos, nan=1.0) < self.min_cosine,
                            f"change points against the median (cosine < {self.min_cosine:g})",
                        )
        return GroupVerdict(ok, reasons)


def _validate_table(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    return validate(table, values, owner="ReplyScreen", prefix="ReplyScreen.")


@dataclass
class ScreenReport:
    """The screen's findings for one round (kept in :attr:`RoundSummary.screened`).

    Attributes
    ----------
    excluded : dict of client id to str
        Replies left out of every average, with the first reason found.
    implausible_rewards : dict of client id to list of int
        Experts whose reward a client reported above what the validation allows.
    verdicts : dict of client id to dict of int to float
        The plausibility (0 or 1) of each (client, expert) handed to the scheduler.
    """

    excluded: dict[Hashable, str] = field(default_factory=dict)
    implausible_rewards: dict[Hashable, list[int]] = field(default_factory=dict)
    verdicts: dict[Hashable, dict[int, float]] = field(default_factory=dict)
