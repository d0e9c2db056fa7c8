"""Per-client trust scores and idle streaks: :class:`ClientLedger`.

Two small per-client records the scheduler keeps only when a setting asks for them:

* **trust** (setting ``trust_rate``): an exponential average of the plausibility of the
  client's reports, in [0, 1], starting at 1; it weights the client's fitness updates;
* **idle streak** (setting ``max_idle_rounds``): the number of offered rounds in a row in
  which the client could fit an expert but received none; at ``max_idle_rounds`` it is given
  a minimum of one expert. The ledger also counts *idle violations*, client-rounds in which
  the floor was due and the round could not take it.

Arrays grow by doubling like the trackers' (:func:`fedalign._arrays.grow_rows`); updates are
vectorised over a cohort's rows. Saved as ``trust.score`` and ``trust.idle`` (only the
records a scheduler keeps, so a state without them is exactly the format-1 layout).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._arrays import checked_array, grow_rows

__all__ = ["ClientLedger", "IDLE_MAX"]

#: Largest idle streak stored (an int32 per client).
IDLE_MAX = 2**31 - 1


class ClientLedger:
    """Trust scores and idle streaks of every registered client.

    Parameters
    ----------
    trust : bool
        Keep trust scores.
    idle : bool
        Keep idle streaks.
    """

    def __init__(self, *, trust: bool, idle: bool) -> None:
        self.keeps_trust = bool(trust)
        self.keeps_idle = bool(idle)
        self.violations = 0
        self._n = 0
        self._trust = np.empty(0, dtype=np.float32)
        self._idle = np.empty(0, dtype=np.int32)

    @property
    def n_clients(self) -> int:
        """Number of rows (registered clients)."""
        return self._n

    def add(self, k: int) -> None:
        """Append ``k`` rows: trust 1, no idle round."""
        s = self._n
        self._trust = grow_rows(self._trust, s, s + k)
        self._idle = grow_rows(self._idle, s, s + k)
        self._trust[s : s + k] = 1.0
        self._idle[s : s + k] = 0
        self._n = s + k

    # ------------------------------------------------------------------ trust
    def trust(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Trust of ``rows`` in [0, 1] (1 when trust is not kept)."""
        r = np.asarray(rows, dtype=np.int64)
        if not self.keeps_trust:
            return np.ones(r.shape, dtype=np.float64)
        return self._trust[r].astype(np.float64)

    def update_trust(self, rows: ArrayLike, plausibility: ArrayLike, rate: float) -> None:
        """``trust ← (1 - rate)·trust + rate·plausibility`` where the plausibility is known.

        Parameters
        ----------
        rows : (m,) ints, distinct
        plausibility : (m,) floats in [0, 1]; NaN leaves the row unchanged (no report judged)
        rate : float in [0, 1]
        """
        if not self.keeps_trust:
            return
        r = np.asarray(rows, dtype=np.int64)
        p = np.asarray(plausibility, dtype=np.float64)
        known = ~np.isnan(p)
        rk = r[known]
        new = (1.0 - rate) * self._trust[rk].astype(np.float64) + rate * np.clip(p[known], 0.0, 1.0)
        self._trust[rk] = new.astype(np.float32)

    def all_trust(self) -> NDArray[np.float64]:
        """Trust of every row, registration order (ones when trust is not kept)."""
        if not self.keeps_trust:
            return np.ones(self._n, dtype=np.float64)
        return self._trust[: self._n].astype(np.float64)

    # ------------------------------------------------------------------ idle streaks
    def idle(self, rows: ArrayLike) -> NDArray[np.int64]:
        """Idle streak of ``rows`` (0 when streaks are not kept)."""
        r = np.asarray(rows, dtype=np.int64)
        if not self.keeps_idle:
            return np.zeros(r.shape, dtype=np.int64)
        return self._idle[r].astype(np.int64)

    def record_round(
        self,
        rows: ArrayLike,
        got: ArrayLike,
        could: ArrayLike,
        due: ArrayLike,
    ) -> int:
        """Fold one planned round into the idle streaks; return its idle violations.

        Parameters
        ----------
        rows : (m,) ints, distinct
            The cohort.
        got : (m,) bool
            Given at least one expert.
        could : (m,) bool
            Could fit an expert on its own this round.
        due : (m,) bool
            Was due the floor (streak at ``max_idle_rounds``).

        A client given an expert starts over at 0; one that could fit an expert but got
        none counts one more round; one that could fit none is left as it was (the round
        was not offered to it). A violation is a client due the floor that could fit an
        expert and got none.
        """
        if not self.keeps_idle:
            return 0
        r = np.asarray(rows, dtype=np.int64)
        g = np.asarray(got, dtype=bool)
        c = np.asarray(could, dtype=bool)
        cur = self._idle[r].astype(np.int64)
        new = np.where(g, 0, np.where(c, np.minimum(cur + 1, IDLE_MAX), cur))
        self._idle[r] = new.astype(np.int32)
        missed = int((np.asarray(due, dtype=bool) & c & ~g).sum())
        self.violations += missed
        return missed

    # ------------------------------------------------------------------ undo
    def snapshot(self, rows: ArrayLike) -> dict[str, Any]:
        """What :meth:`restore` needs to undo later updates of ``rows`` (O(len(rows)))."""
        r = np.array(rows, dtype=np.int64)
        return {
            "rows": r,
            "trust": self._trust[r],
            "idle": self._idle[r],
            "violations": self.violations,
            "n": self._n,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Undo every update since :meth:`snapshot` (no rows added in between)."""
        if snap["n"] != self._n:
            raise ValueError("snapshot: rows were added since it was taken")
        r = snap["rows"]
        self._trust[r] = snap["trust"]
        self._idle[r] = snap["idle"]
        self.violations = snap["violations"]

    # ------------------------------------------------------------------ persistence
    def state_dict(self, *, copy: bool = True) -> dict[str, NDArray[Any]]:
        """The records kept: ``score`` (trust) and/or ``idle`` (views if ``copy=False``)."""
        n = self._n
        out: dict[str, NDArray[Any]] = {}
        if self.keeps_trust:
            out["score"] = self._trust[:n]
        if self.keeps_idle:
            out["idle"] = self._idle[:n]
        return {k: v.copy() for k, v in out.items()} if copy else out

    def load_state_dict(
        self, state: dict[str, Any], n: int, *, violations: int = 0, copy: bool = True
    ) -> None:
        """Replace the records with ``state`` for ``n`` clients (validated first).

        A record the ledger keeps but ``state`` lacks (a state saved before the setting was
        on) starts fresh: trust 1, no idle round.

        Raises
        ------
        ValueError
            A record of the wrong shape or kind, a trust outside [0, 1], a negative streak.
        """
        trust = np.ones(n, dtype=np.float32)
        idle = np.zeros(n, dtype=np.int32)
        if self.keeps_trust and "score" in state:
            a = checked_array("trust.score", state["score"], shape=(n,), kind="float", low=0.0, high=1.0)
            trust = a.astype(np.float32, copy=copy)
        if self.keeps_idle and "idle" in state:
            a = checked_array("trust.idle", state["idle"], shape=(n,), kind="int", low=0, high=IDLE_MAX)
            idle = a.astype(np.int32, copy=copy)
        if type(violations) is not int or violations < 0:
            raise ValueError(f"idle_violations: expected an int >= 0, got {violations!r}")
        self._trust, self._idle, self._n = trust, idle, n
        self.violations = violations
