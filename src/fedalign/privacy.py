"""Privacy of the feedback loop: local differential privacy for rewards, a budget accountant,
and an audit of what assignments leak.

A reward says how well an expert suits a client's data, so the rewards a client reports, and
the assignments they lead to, say something about its data. Three tools, numpy only:

:func:`privatize_rewards` / :func:`privatize`
    The client's side of *local* differential privacy: each reward is clipped to [0, 1],
    then noised so that one report (all its rewards together) is ε-LDP, before it leaves
    the client. Two mechanisms: ``"laplace"`` (Laplace noise of scale ``k / ε`` for a
    report of ``k`` rewards, the L1 sensitivity of ``k`` values in [0, 1]) and ``"duchi"``
    (Duchi, Jordan and Wainwright's one-bit mechanism per reward with ``ε / k`` each: the
    reward becomes one of two values, lower variance than Laplace for ε below about 2).
    A third, ``"best-expert"``, reports instead which of the ``k`` experts of the report
    suits the client best, by k-ary randomized response: the index of its highest reward is
    kept with probability ``e^ε / (e^ε + k - 1)``, else replaced by another index drawn at
    random; the report becomes, for every expert ``j``, the unbiased estimate
    ``(1{reported = j} - q) / (p - q)`` of "``j`` is the best" (``p`` the keep probability,
    ``q = 1 / (e^ε + k - 1)``). One such report says something about every expert at the
    cost of one ε, where Laplace or Duchi split ε over the rewards; it needs rewards for
    every expert (``Feedback.survey`` carries those of experts the client did not train).
    All three are unbiased: the expected noisy reward is the clipped reward (for
    ``"best-expert"``: the indicator of the best expert), so a scheduler
    built with ``noisy_rewards=True`` keeps an unbiased fitness average. :func:`privatize`
    also states the noise's variance (:func:`noise_variance`), which the scheduler uses to
    weigh each report (a Kalman-style gain, :class:`fedalign.FitnessTracker`).
:class:`PrivacyAccountant`
    ε spent per client over rounds (pure ε-LDP composes by addition), with an optional
    budget: a report that would exceed it is refused, and the client should then report no
    rewards.
:func:`assignment_leakage`
    An observer who sees only which experts each client was given, round after round,
    guesses each client's group (its data domain) with a leave-one-out nearest-centroid
    classifier on how often it got each expert; its accuracy against chance says how much
    the assignments leak.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import Interval, Options, Table, short_repr, validate, validate_one
from .plan import Feedback

__all__ = [
    "MECHANISMS",
    "LeakageAudit",
    "PrivacyAccountant",
    "PrivacyBudgetError",
    "assignment_leakage",
    "noise_std",
    "noise_variance",
    "privatize",
    "privatize_rewards",
]

#: The LDP mechanisms :func:`privatize_rewards` offers.
MECHANISMS = ("laplace", "duchi", "best-expert")

_EPSILON = [Interval(float, 0.0, None, closed="neither")]


class PrivacyBudgetError(ValueError):
    """A report would take a client's ε spent beyond its budget; nothing was spent."""


def _checked(epsilon: Any, mechanism: Any) -> tuple[float, str]:
    eps = validate_one("epsilon", epsilon, _EPSILON)
    mech = validate_one("mechanism", mechanism, [Options(MECHANISMS)])
    return float(eps), str(mech)


def privatize_rewards(
    rewards: Mapping[Hashable, float],
    epsilon: float,
    *,
    rng: np.random.Generator,
    mechanism: str = "laplace",
) -> dict[Hashable, float]:
    """One report's rewards, clipped to [0, 1] and noised to be ε-LDP together.

    Parameters
    ----------
    rewards : mapping of expert id to float
        The exact rewards (each clipped to [0, 1] first; NaN is refused).
    epsilon : float > 0
        The privacy parameter of the whole report.
    rng : numpy.random.Generator
        The client's own random stream.
    mechanism : {"laplace", "duchi", "best-expert"}
        ``laplace``: add Laplace noise of scale ``k / ε`` to each of the ``k`` rewards.
        ``duchi``: replace each reward ``r`` by ``(1 ± C) / 2`` with
        ``C = (e^ε' + 1) / (e^ε' - 1)``, ``ε' = ε / k``, the sign ``+`` with probability
        ``1/2 + (2r - 1)(e^ε' - 1) / (2 (e^ε' + 1))``.
        ``best-expert``: k-ary randomized response on the index of the highest reward (ties
        broken at random): kept with probability ``p = e^ε / (e^ε + k - 1)``, else one of
        the other ``k - 1`` indices at random; expert ``j`` gets
        ``(1{reported = j} - q) / (p - q)``, ``q = 1 / (e^ε + k - 1)``.

    Returns
    -------
    dict
        The noisy rewards, same keys; unbiased estimates of the clipped ones (for
        ``best-expert``: of 1 for the best expert and 0 for the others).

    Raises
    ------
    ValueError
        ``epsilon`` not a float > 0, an unknown mechanism, or a reward that is not a finite
        number (the message names the expert).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = [privatize_rewards({0: 0.7}, 1.0, rng=rng)[0] for _ in range(20000)]
    >>> round(float(np.mean(noisy)), 1)
    0.7
    """
    eps, mech = _checked(epsilon, mechanism)
    keys = list(rewards)
    k = len(keys)
    if k == 0:
        return {}
    values = np.array(
        [validate_one(f"rewards[{short_repr(e)}]", rewards[e], [Interval(float)]) for e in keys]
    )
    values = np.clip(values, 0.0, 1.0)
    if mech == "laplace":
        noisy = values + rng.laplace(0.0, k / eps, size=k)
    elif mech == "best-expert":
        noisy = _best_expert(values, eps, rng)
    else:
        e = math.exp(eps / k)
        c = (e + 1.0) / (e - 1.0)
        p_up = 0.5 + (2.0 * values - 1.0) * (e - 1.0) / (2.0 * (e + 1.0))
        t = np.where(rng.random(k) < p_up, c, -c)
        noisy = (t + 1.0) / 2.0
    return {key: float(v) for key, v in zip(keys, noisy, strict=True)}


def _best_expert(values: NDArray[np.float64], eps: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """k-ary randomized response on the argmax of ``values``, debiased per expert."""
    k = values.size
    top = np.flatnonzero(values == values.max())
    best = int(top[rng.integers(top.size)]) if top.size > 1 else int(top[0])
    p, q = _krr(eps, k)
    reported = best
    if k > 1 and rng.random() >= p:  # one of the other k - 1 at random
        other = int(rng.integers(k - 1))
        reported = other + (other >= best)
    hit = np.zeros(k)
    hit[reported] = 1.0
    return (hit - q) / (p - q)


def _krr(eps: float, k: int) -> tuple[float, float]:
    """k-ary randomized response's ``(p, q)``: the probability that the true index is
    reported, and that one given other index is."""
    # e^ε overflows past ε ≈ 709: p = 1, q = 0 then (exactly what the limit is)
    e = math.exp(min(eps, 700.0))
    return e / (e + k - 1), 1.0 / (e + k - 1)


def privatize(
    feedback: Feedback,
    epsilon: float,
    *,
    rng: np.random.Generator,
    mechanism: str = "laplace",
) -> Feedback:
    """``feedback`` with its rewards privatized (:func:`privatize_rewards`), ``epsilon`` set and
    ``reward_variance`` the mechanism's :func:`noise_variance` for the report.

    The rewards and the survey rewards (``Feedback.survey``) form one report of ε: with
    ``"best-expert"`` the best of them all is reported, and each keeps its field. A dropout
    or a report without rewards is returned unchanged (nothing is disclosed, no ε is
    spent); so is a ``"best-expert"`` report of one expert, whose only possible answer
    (1, "the best") says nothing.

    Examples
    --------
    >>> fb = Feedback(samples=50, rewards={0: 0.4}, survey={1: 0.9, 2: 0.1, 3: 0.2})
    >>> out = privatize(fb, 1.0, rng=np.random.default_rng(0), mechanism="best-expert")
    >>> sorted(out.survey) == [1, 2, 3], out.epsilon, round(out.reward_variance, 2)
    (True, 1.0, 2.76)
    """
    eps, mech = _checked(epsilon, mechanism)
    report = {**feedback.rewards, **feedback.survey}
    if not report or (mech == "best-expert" and len(report) == 1):
        return feedback
    noisy = privatize_rewards(report, eps, rng=rng, mechanism=mech)
    var = noise_variance(eps, len(noisy), mech)
    return replace(
        feedback,
        rewards={e: noisy[e] for e in feedback.rewards},
        survey={e: noisy[e] for e in feedback.survey},
        epsilon=eps,
        reward_variance=var,
    )


def noise_variance(epsilon: float, k: int = 1, mechanism: str = "laplace") -> float:
    """Largest variance of one noisy reward of a report of ``k`` rewards (over rewards in
    [0, 1]): ``2 k² / ε²`` for ``laplace``; ``C² / 4`` for ``duchi`` (at a reward of 0.5; at
    ``r`` it is ``C² / 4 - (r - 1/2)²``); for ``best-expert``
    ``max(p (1 - p), q (1 - q)) / (p - q)²`` with ``p``, ``q`` as in
    :func:`privatize_rewards` (the best expert's variance, or another's), 0 for ``k = 1``.

    It depends only on the mechanism, ``ε`` and ``k``, never on the reward, so a weight
    built from it keeps an average of noisy rewards unbiased.

    Raises
    ------
    ValueError
        ``epsilon`` not a float > 0, ``k`` not an int >= 1, or an unknown mechanism.

    Examples
    --------
    >>> round(noise_variance(1.0), 3), round(noise_variance(1.0, mechanism="duchi"), 3)
    (2.0, 1.171)
    >>> round(noise_variance(1.0, 4, "best-expert"), 3)
    2.762
    """
    k = validate_one("k", k, [Interval(int, 1, None)])
    return noise_std(epsilon, k, mechanism) ** 2


def noise_std(epsilon: float, k: int = 1, mechanism: str = "laplace") -> float:
    """Largest standard deviation of one noisy reward of a report of ``k`` rewards.

    ``laplace``: ``sqrt(2) k / ε``; ``duchi``: ``C / 2`` with ``C`` as in
    :func:`privatize_rewards` (the variance at a reward of 0.5); ``best-expert``: the square
    root of :func:`noise_variance`'s.
    """
    eps, mech = _checked(epsilon, mechanism)
    if mech == "laplace":
        return math.sqrt(2.0) * k / eps
    if mech == "best-expert":
        if k == 1:
            return 0.0
        p, q = _krr(eps, k)
        return math.sqrt(max(p * (1.0 - p), q * (1.0 - q))) / (p - q)
    e = math.exp(eps / k)
    return (e + 1.0) / (e - 1.0) / 2.0


class PrivacyAccountant:
    """ε spent per client under pure ε-LDP sequential composition (the ε of every report add up).

    Parameters
    ----------
    budget : float > 0, optional
        Most ε a client may spend in total; None: unbounded (only counted).

    Examples
    --------
    >>> acc = PrivacyAccountant(budget=2.5)
    >>> acc.spend("a", 1.0); acc.spend("a", 1.0); acc.spend("b", 1.0)
    >>> acc.spent("a"), acc.max_spent, acc.can_spend("a", 1.0)
    (2.0, 2.0, False)
    """

    _parameter_constraints: ClassVar[Table] = {
        "budget": [Interval(float, 0.0, None, closed="neither"), None],
    }

    def __init__(self, budget: float | None = None) -> None:
        opts = validate(self._parameter_constraints, {"budget": budget}, owner="PrivacyAccountant")
        self.budget: float | None = opts["budget"]
        self._index: dict[Hashable, int] = {}
        self._spent = np.zeros(0, dtype=np.float64)

    def _rows(self, clients: Iterable[Hashable]) -> NDArray[np.int64]:
        rows = []
        for c in clients:
            row = self._index.get(c)
            if row is None:
                row = self._index[c] = len(self._index)
            rows.append(row)
        if len(self._index) > self._spent.size:
            grown = np.zeros(max(len(self._index), 2 * self._spent.size), dtype=np.float64)
            grown[: self._spent.size] = self._spent
            self._spent = grown
        return np.asarray(rows, dtype=np.int64)

    def can_spend(self, client: Hashable, epsilon: float) -> bool:
        """Whether ``client`` may spend ``epsilon`` more within the budget."""
        eps = validate_one("epsilon", epsilon, _EPSILON)
        if self.budget is None:
            return True
        return self.spent(client) + eps <= self.budget * (1 + 1e-12)

    def spend(self, client: Hashable, epsilon: float) -> None:
        """Record one report of ``epsilon`` by ``client``.

        Raises
        ------
        PrivacyBudgetError
            It would exceed the budget; nothing is recorded.
        """
        self.spend_many([client], epsilon)

    def spend_many(self, clients: Iterable[Hashable], epsilon: float) -> None:
        """Record one report of ``epsilon`` by each of ``clients`` (distinct), all or none.

        Raises
        ------
        PrivacyBudgetError
            One of them would exceed the budget (named); nothing is recorded.
        ValueError
            A client appears twice, or ``epsilon`` is not a float > 0.
        """
        eps = validate_one("epsilon", epsilon, _EPSILON)
        ids = list(clients)
        if len(set(ids)) != len(ids):
            raise ValueError("clients: a client appears twice")
        rows = self._rows(ids)
        after = self._spent[rows] + eps
        if self.budget is not None:
            over = np.flatnonzero(after > self.budget * (1 + 1e-12))
            if over.size:
                c = ids[int(over[0])]
                raise PrivacyBudgetError(
                    f"client {short_repr(c)}: spending epsilon={eps:g} would bring it to "
                    f"{after[over[0]]:g}, above its budget {self.budget:g}"
                )
        self._spent[rows] = after

    def spent(self, client: Hashable) -> float:
        """ε spent so far by ``client`` (0 for a client never seen)."""
        row = self._index.get(client)
        return 0.0 if row is None else float(self._spent[row])

    @property
    def max_spent(self) -> float:
        """The largest ε any client has spent (0 before any report)."""
        n = len(self._index)
        return float(self._spent[:n].max()) if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """``{"budget", "max_spent", "spent": {str(client): ε}}``, JSON-ready."""
        return {
            "budget": self.budget,
            "max_spent": self.max_spent,
            "spent": {str(c): float(self._spent[r]) for c, r in self._index.items()},
        }


@dataclass(frozen=True)
class LeakageAudit:
    """What :func:`assignment_leakage` found.

    Attributes
    ----------
    accuracy : float
        Share of clients whose group the observer guessed right (leave-one-out).
    chance : float
        Share of the largest group: what guessing it for everyone scores.
    n_clients, n_groups : int
    """

    accuracy: float
    chance: float
    n_clients: int
    n_groups: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "accuracy": self.accuracy,
            "chance": self.chance,
            "n_clients": self.n_clients,
            "n_groups": self.n_groups,
        }


def assignment_leakage(assignments: ArrayLike, groups: ArrayLike) -> LeakageAudit:
    """How well an observer of the assignments alone guesses each client's group.

    The observer sees, for each client, how often it was given each expert (all rounds it
    saw), as shares of the client's trainings; it knows the group of every other client and
    guesses the held-out one's as the group whose mean share vector is nearest (Euclidean;
    leave-one-out over clients, ties to the smaller group label). Clients never given an
    expert are left out.

    Parameters
    ----------
    assignments : (rounds, n, E) or (n, E) array of counts or booleans
        Per round and client, the experts given (or the counts summed over rounds).
    groups : (n,) ints
        Each client's group (e.g. its data domain), what the observer tries to guess.

    Returns
    -------
    LeakageAudit

    Raises
    ------
    ValueError
        Wrong shapes, negative counts, or fewer than two groups among the clients kept.

    Examples
    --------
    >>> counts = np.array([[9, 1], [8, 2], [1, 9], [2, 8]])
    >>> assignment_leakage(counts, [0, 0, 1, 1]).accuracy
    1.0
    """
    a = np.asarray(assignments, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(axis=0)
    g = np.asarray(groups)
    if a.ndim != 2 or g.shape != (a.shape[0],):
        raise ValueError(
            f"assignments: expected (rounds, n, E) or (n, E) with groups of shape (n,), "
            f"got {np.shape(assignments)} and {np.shape(groups)}"
        )
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("assignments: expected finite counts >= 0")
    total = a.sum(axis=1)
    keep = total > 0
    x = a[keep] / total[keep, None]
    labels, y = np.unique(g[keep], return_inverse=True)
    n, c = x.shape[0], labels.size
    if c < 2:
        raise ValueError("groups: need clients of at least two groups given experts")
    onehot = np.eye(c)[y]  # (n, c)
    sums = onehot.T @ x  # (c, E)
    sizes = onehot.sum(axis=0)  # (c,)
    # leave-one-out centroids: remove each client from its own group's sum
    loo_sums = sums[None, :, :] - onehot[:, :, None] * x[:, None, :]
    loo_sizes = sizes[None, :] - onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = loo_sums / loo_sizes[:, :, None]
    dist = ((centroids - x[:, None, :]) ** 2).sum(axis=2)
    dist = np.where(loo_sizes > 0, dist, np.inf)
    guess = dist.argmin(axis=1)
    return LeakageAudit(
        accuracy=float((guess == y).mean()),
        chance=float(sizes.max() / n),
        n_clients=int(n),
        n_groups=int(c),
    )
