"""Who trains when the server's byte budget is short: admission, and Oort's participant selection.

The strategies without the byte-budget row (``random``, ``greedy``, ``load-balanced``,
``oort``) plan their clients' experts one client at a time; the server then meets its budget
by *admission* (:func:`admit`): it walks the clients in an order -- check-in order, or
Oort's -- and admits each whose payload, down and up (:func:`client_bytes`: the shared part
once, its experts), still fits. That is exactly what it will move, so the budget holds for
the bytes actually sent; the byte *row* of the other strategies must count the shared part
with every pair instead (:func:`pair_bytes`), a linear over-count that costs them room
whenever a client takes several experts.

:class:`OortSelector` is Oort's guided participant selection (Lai et al., "Oort: Efficient
Federated Learning via Guided Participant Selection", OSDI 2021, §4 and Algorithm 1), written
from the paper's description:

* a client's *statistical utility* is ``|B_i| * sqrt(mean_k loss_k^2)`` over the samples
  ``B_i`` it trained on in its last round;
* its *score* adds a staleness bonus ``sqrt(0.1 * ln(R) / L_i)`` (``R`` the current round,
  ``L_i`` the last round it took part in, both counted from 1) to the utility normalised
  over the explored clients (outliers clipped at the 95th percentile), and is multiplied by
  ``(T / t_i) ** alpha`` when its last duration ``t_i`` exceeds the preferred round
  duration ``T`` (a penalty on stragglers);
* of ``K`` participants, ``(1 - epsilon) K`` are *exploited*: sampled, with probability
  proportional to the score, among the explored clients whose score is at least
  ``cutoff`` times the ``(1 - epsilon) K``-th best; ``epsilon K`` *explore* clients never
  tried, faster ones more likely. ``epsilon`` decays each round to a minimum;
* the *pacer* lengthens ``T`` by a step when the utility gathered over the last ``W`` rounds
  falls below that of the ``W`` rounds before.

Not modelled: Oort's over-commitment (selecting 1.3 K and closing the round at K replies)
and its blacklist of over-selected clients. Here ``K`` is what the byte budget admits.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["OortSelector", "admit", "client_bytes", "pair_bytes"]

Floats = NDArray[np.float64]


def pair_bytes(expert_bytes: ArrayLike, shared_bytes: float) -> Floats:
    """Bytes the scheduler's byte row counts per (client, expert) pair: down and up, the
    shared part with every pair (``Scheduler(round_bytes=..., shared_bytes=...)``)."""
    return 2.0 * (np.asarray(expert_bytes, dtype=np.float64) + float(shared_bytes))


def client_bytes(assigned: ArrayLike, expert_bytes: ArrayLike, shared_bytes: float) -> Floats:
    """Bytes each client's payload moves down and up: the shared part once, its experts
    (0 for a client planned nothing), ``(m,)``."""
    x = np.asarray(assigned, dtype=bool)
    moved = float(shared_bytes) + x @ np.asarray(expert_bytes, dtype=np.float64)
    return np.where(x.any(axis=1), 2.0 * moved, 0.0)


def admit(need: ArrayLike, order: ArrayLike, budget: float | None) -> NDArray[np.bool_]:
    """Which clients the server admits under its byte budget, walking them in ``order``.

    Parameters
    ----------
    need : (m,) floats
        Bytes each client would move (:func:`client_bytes`); 0: planned nothing.
    order : (m,) ints
        Positions into ``need``, first admitted first.
    budget : float or None
        None admits everyone.

    Returns
    -------
    (m,) bool
        Admitted clients: each, in turn, whose bytes fit in what the earlier ones left; a
        client that does not fit is skipped and the walk goes on (a smaller one may fit).
        Clients planned nothing are never admitted.
    """
    need = np.asarray(need, dtype=np.float64)
    out = np.zeros(need.shape[0], dtype=bool)
    wanted = need > 0
    if budget is None:
        return wanted
    left = float(budget)
    for pos in np.asarray(order, dtype=np.int64):  # sequential by nature: each uses what is left
        if wanted[pos] and need[pos] <= left:
            out[pos] = True
            left -= need[pos]
    return out


class OortSelector:
    """Oort's participant selection over a registered fleet (see the module docstring).

    Parameters
    ----------
    n_clients : int
        Registered clients (ids ``0 .. n_clients - 1``).
    preferred : float
        The preferred round duration ``T`` to start from, seconds.
    pacer_step : float
        Seconds added to ``T`` by the pacer.
    pacer_window : int
        ``W``, rounds per pacer window.
    alpha : float
        Straggler penalty exponent.
    exploration : (float, float)
        ``epsilon`` at the start, and its minimum.
    decay : float
        Factor on ``epsilon`` per round.
    cutoff : float
        ``c``: exploited clients are drawn among scores >= c times the cut-off score.
    seed : int or sequence of int
    """

    def __init__(
        self,
        n_clients: int,
        *,
        preferred: float,
        pacer_step: float,
        pacer_window: int = 20,
        alpha: float = 2.0,
        exploration: tuple[float, float] = (0.9, 0.2),
        decay: float = 0.98,
        cutoff: float = 0.95,
        seed: int | list[int] = 0,
    ) -> None:
        self.preferred = float(preferred)
        self.pacer_step = float(pacer_step)
        self.window = int(pacer_window)
        self.alpha = float(alpha)
        self.epsilon, self.epsilon_min = (float(v) for v in exploration)
        self.decay = float(decay)
        self.cutoff = float(cutoff)
        self.rng = np.random.default_rng(seed)
        self.utility = np.full(n_clients, np.nan)  # NaN: never explored
        self.last_round = np.zeros(n_clients)  # 1-based round of its last participation
        self.duration = np.zeros(n_clients)
        self.round = 0  # rounds selected so far
        self.gathered: list[float] = []  # utility reported per round (the pacer's signal)
        self._paced_at = 0

    def scores(self, clients: ArrayLike) -> Floats:
        """Scores of explored ``clients`` this round (NaN for unexplored ones)."""
        c = np.asarray(clients, dtype=np.int64)
        u = self.utility[c]
        seen = ~np.isnan(u)
        out = np.full(c.size, np.nan)
        if not seen.any():
            return out
        known = self.utility[~np.isnan(self.utility)]
        clip = float(np.quantile(known, 0.95))
        low = float(known.min())
        norm = (np.minimum(u[seen], clip) - low) / max(clip - low, 1e-4)
        r = max(self.round + 1, 1)  # this round, 1-based
        stale = np.sqrt(0.1 * math.log(r) / np.maximum(self.last_round[c[seen]], 1.0))
        score = norm + stale
        t = self.duration[c[seen]]
        slow = t > self.preferred
        score[slow] *= (self.preferred / t[slow]) ** self.alpha
        out[seen] = np.maximum(score, 0.0)
        return out

    def rank(self, clients: ArrayLike, k: int, speed: ArrayLike) -> NDArray[np.int64]:
        """This round's order over ``clients``: Oort's ``k`` picks first, then the rest.

        Parameters
        ----------
        clients : (m,) ints
            The online clients.
        k : int
            Participants wanted.
        speed : (m,) floats
            Higher is faster (e.g. 1 / predicted seconds): unexplored clients are explored
            with probability proportional to it.

        Returns
        -------
        (m,) int
            Positions into ``clients``: exploited picks (best score first), explored picks,
            then everyone else by score (unexplored last, fastest first).
        """
        c = np.asarray(clients, dtype=np.int64)
        fast = np.asarray(speed, dtype=np.float64)
        score = self.scores(c)
        seen = np.flatnonzero(~np.isnan(score))
        fresh = np.flatnonzero(np.isnan(score))
        k = int(min(max(k, 0), c.size))
        n_exploit = min(int(round((1.0 - self.epsilon) * k)), seen.size)
        n_explore = min(k - n_exploit, fresh.size)
        n_exploit = min(k - n_explore, seen.size)  # too few unexplored: exploit more
        exploit = self._exploit(seen, score, n_exploit)
        explore = self._sample(fresh, fast[fresh], n_explore)
        picked = np.concatenate([exploit, explore]).astype(np.int64)
        rest = np.setdiff1d(np.arange(c.size), picked)
        key = np.where(np.isnan(score[rest]), -1.0 + fast[rest] / (1.0 + fast[rest]), score[rest])
        self.epsilon = max(self.epsilon * self.decay, self.epsilon_min)
        self.round += 1
        return np.concatenate([picked, rest[np.argsort(-key, kind="stable")]])

    def _exploit(self, seen: NDArray[np.int64], score: Floats, n: int) -> NDArray[np.int64]:
        """``n`` explored positions, drawn by score among those above the cut-off."""
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        by_score = seen[np.argsort(-score[seen], kind="stable")]
        bar = self.cutoff * score[by_score[n - 1]]
        pool = by_score[score[by_score] >= bar]
        chosen = self._sample(pool, score[pool], n)
        return chosen[np.argsort(-score[chosen], kind="stable")]

    def _sample(self, pool: NDArray[np.int64], weight: Floats, n: int) -> NDArray[np.int64]:
        """``n`` of ``pool`` without replacement, with probability proportional to ``weight``."""
        if n <= 0 or pool.size == 0:
            return np.zeros(0, dtype=np.int64)
        w = np.maximum(np.nan_to_num(weight, nan=0.0), 0.0)
        p = w / w.sum() if w.sum() > 0 and np.count_nonzero(w) >= n else None
        return self.rng.choice(pool, size=min(n, pool.size), replace=False, p=p)

    def update(
        self,
        clients: ArrayLike,
        utility: ArrayLike,
        duration: ArrayLike,
        completed: ArrayLike,
    ) -> None:
        """Learn from the round just run (call once per :meth:`rank`).

        Parameters
        ----------
        clients : (s,) ints
            The participants (sent a payload).
        utility : (s,) floats
            Statistical utility ``|B_i| sqrt(mean loss^2)`` of those that completed.
        duration : (s,) floats
            Their round seconds (for a dropout: how long the server waited for it).
        completed : (s,) bool
        """
        c = np.asarray(clients, dtype=np.int64)
        done = np.asarray(completed, dtype=bool)
        u = np.asarray(utility, dtype=np.float64)
        self.utility[c[done]] = u[done]
        self.last_round[c] = self.round
        self.duration[c] = np.asarray(duration, dtype=np.float64)
        self.gathered.append(float(u[done].sum()))
        self._pace()

    def _pace(self) -> None:
        """Lengthen ``T`` when the last window gathered less utility than the one before."""
        w = self.window
        if len(self.gathered) < 2 * w or len(self.gathered) - self._paced_at < w:
            return
        recent, before = sum(self.gathered[-w:]), sum(self.gathered[-2 * w : -w])
        if recent < before:
            self.preferred += self.pacer_step
            self._paced_at = len(self.gathered)
