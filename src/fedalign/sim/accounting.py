"""Time and bytes as a server operator sees them (the ``cross-device`` scenario).

A client given ``k >= 1`` experts this round fetches the shared part and its experts, trains
them, and returns them::

    download = k * latency + (shared + sum_j bytes_j) / (bandwidth_down * fading)
    train    = slowdown * samples * sum_j cost_j / compute
    upload   = (shared + sum_j bytes_j) / (bandwidth_up * fading)
    seconds  = jitter * (download + train + upload)

which is the scheduler's own prediction (``CapacityProfiler``: per expert ``latency +
bytes / bandwidth + samples * cost / compute``, plus the shared part once) when the hidden
``slowdown`` and the round's ``jitter`` are 1; the fading factor is the one the client
reported at check-in.

A round lasts the server's planning time (the solvers' measured runtime) plus the time until
every client sent a payload has answered or the deadline passed: the slowest client's
``seconds``, or the deadline itself as soon as one client is late or vanished (the server
cannot know that a late client will not answer before the deadline). A straggler is a
dropout: its download counts in the bytes, its upload never arrives, nothing is credited.

Bytes are those of the arrays the round driver sent and received
(:class:`fedalign.rounds.RoundSummary`). Everything here is plain numpy over the clients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ClientTimes", "RoundRecord", "client_times", "round_seconds"]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class ClientTimes:
    """Seconds of each client's round, in parts (``(m,)`` arrays; 0 for a client given nothing).

    ``total`` is ``jitter * (download + train + upload)``.
    """

    download: Floats
    train: Floats
    upload: Floats
    total: Floats


def client_times(
    assigned: ArrayLike,
    *,
    expert_bytes: ArrayLike,
    shared_bytes: float,
    expert_cost: ArrayLike,
    samples: ArrayLike,
    compute: ArrayLike,
    bandwidth_down: ArrayLike,
    bandwidth_up: ArrayLike,
    latency: ArrayLike,
    slowdown: ArrayLike = 1.0,
    jitter: ArrayLike = 1.0,
) -> ClientTimes:
    """The actual seconds each client spends on its round.

    Parameters
    ----------
    assigned : (m, E) bool
        Experts each client was given.
    expert_bytes, expert_cost : (E,) floats
        Bytes of each expert's arrays; training cost per sample relative to ``compute``.
    shared_bytes : float
        Bytes of the shared arrays, moved once each way by a client given any expert.
    samples : (m,) floats
        Samples each client trains every expert on (local data times epochs).
    compute, bandwidth_down, bandwidth_up, latency : (m,) floats
        Samples per second, bytes per second (this round's, fading included), seconds per
        expert exchanged.
    slowdown, jitter : (m,) floats or float
        Hidden factor on training, and this round's factor on the whole round.
    """
    x = np.asarray(assigned, dtype=bool)
    k = x.sum(axis=1)
    moved = np.where(k > 0, shared_bytes + x @ np.asarray(expert_bytes, dtype=np.float64), 0.0)
    work = np.asarray(samples, dtype=np.float64) * (x @ np.asarray(expert_cost, dtype=np.float64))
    download = k * np.asarray(latency, dtype=np.float64) + moved / np.asarray(bandwidth_down)
    train = np.asarray(slowdown, dtype=np.float64) * work / np.asarray(compute, dtype=np.float64)
    upload = moved / np.asarray(bandwidth_up, dtype=np.float64)
    total = np.asarray(jitter, dtype=np.float64) * (download + train + upload)
    return ClientTimes(
        *(np.broadcast_to(v, k.shape).astype(np.float64) for v in (download, train, upload, total))
    )


def round_seconds(
    planning: float, seconds: ArrayLike, answered: ArrayLike, deadline: float
) -> float:
    """Simulated length of a round: planning, then waiting for the clients sent a payload.

    Parameters
    ----------
    planning : float
        Seconds the server spent planning (the solvers' runtime).
    seconds : (s,) floats
        Actual seconds of each client that was sent a payload.
    answered : (s,) bool
        Whether it answered in time (False: late or vanished).
    deadline : float

    Returns
    -------
    float
        ``planning + min(deadline, max(seconds))`` when everyone answered, ``planning +
        deadline`` when someone did not, ``planning`` when nobody was sent anything.
    """
    t = np.asarray(seconds, dtype=np.float64)
    ok = np.asarray(answered, dtype=bool)
    if t.size == 0:
        return float(planning)
    wait = deadline if not ok.all() else min(float(t.max()), deadline)
    return float(planning) + float(wait)


@dataclass
class RoundRecord:
    """One round, as written to ``results.json`` (``rounds``: one list per seed).

    Attributes
    ----------
    round : int
        0-based.
    planning_seconds : float
        The solvers' measured runtime this round (every plan of the round).
    round_seconds : float
        Planning included (:func:`round_seconds`).
    bytes_down, bytes_up : int
        Arrays sent to clients (stragglers' included) and received from the completed ones.
    byte_budget : float or None
        The server's budget this round (None: none).
    online : int
        Clients online at check-in.
    trained_clients : int
        Clients whose update was averaged in.
    dropouts : int
        Clients sent a payload that did not answer in time (late or vanished).
    late, vanished : int
        The dropouts by cause.
    infeasible : bool
        The scheduler found no feasible plan: nobody trained this round.
    online_by_tier, trained_by_tier : list of int
        ``online`` and ``trained_clients`` per device tier.
    """

    round: int
    planning_seconds: float
    round_seconds: float
    bytes_down: int
    bytes_up: int
    byte_budget: float | None
    online: int
    trained_clients: int
    dropouts: int
    late: int = 0
    vanished: int = 0
    infeasible: bool = False
    online_by_tier: list[int] = field(default_factory=list)
    trained_by_tier: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)
