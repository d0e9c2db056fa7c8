"""Instance families for the solver benchmark (``fedalign bench``) and the target scripts.

Every generator takes ``(n_clients, n_experts, seed)`` and returns an
:class:`~fedalign.AlignmentProblem`; the same arguments always give the same problem. The
families cover the structures of docs/problem.md (and docs/benchmarks.md lists them):

``uniform``
    Desirability uniform in [0, 1); memory knapsack (experts of 1–3 units, clients with
    2–6 units); 1–4 experts per client; per-expert caps at about 1.15x the average load.
    Calibrated to issue 3's targets B and C: naive per-client greedy (``topk``) reaches
    about 88 % of the optimum here (87.7 % of the proven bound at 1,000 x 64, seed 0).
``clustered``
    The paper's scenario: each client's data suit one "home" expert (clusters of unequal
    size), so fitness alone herds clients onto popular experts; per-expert caps force
    balancing. Memory knapsack, 1–4 experts per client.
``tight-memory``
    Like ``uniform`` but clients hold only 1–2 experts' worth of memory, so the knapsack
    rather than the count decides.
``deadline``
    Deadline knapsack: ``train_time[i, j] = (fetch + train) / speed_i + latency_i`` with
    heterogeneous client speeds, expert sizes and latencies; 1–4 experts; per-expert caps.
``balanced``
    Per-expert minimums and maximums (hard load balance) with a memory knapsack.
``no-knapsack``
    No knapsack rows; ~10 % forbidden pairs; 1–4 experts; per-expert caps. Min-cost flow is
    exact here (issue 3's target A).

All families keep ``min_experts = 1`` feasible by construction (every client fits its
smallest allowed expert) and leave per-expert capacity above the total demand, so every
instance is feasible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ..problem import AlignmentProblem

__all__ = ["FAMILIES", "make_instance"]

Generator = Callable[[int, int, int], AlignmentProblem]


def _caps(n: int, e: int, mean_k: float, slack: float) -> NDArray[np.int64]:
    """Equal per-expert caps ``ceil(slack * n * mean_k / e)`` (at least 1)."""
    return np.full(e, max(1, int(np.ceil(slack * n * mean_k / e))), dtype=np.int64)


def _memory(
    rng: np.random.Generator, n: int, e: int, client_lo: float, client_hi: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    expert_memory = rng.uniform(1.0, 3.0, size=e)
    client_memory = rng.uniform(client_lo, client_hi, size=n)
    # Every client must hold at least its smallest expert (min_experts = 1).
    client_memory = np.maximum(client_memory, expert_memory.min())
    return expert_memory, client_memory


def uniform(n: int, e: int, seed: int) -> AlignmentProblem:
    """Uniform desirability, memory knapsack, 1–4 experts, caps 1.15x the mean load."""
    rng = np.random.default_rng([seed, 1])
    d = rng.random((n, e))
    em, cm = _memory(rng, n, e, 2.0, 6.0)
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        expert_memory=em,
        client_memory=cm,
        expert_max_clients=_caps(n, e, 2.5, 1.15),
    )


def clustered(n: int, e: int, seed: int) -> AlignmentProblem:
    """Each client suits one home expert (Zipf-like cluster sizes); caps force balance."""
    rng = np.random.default_rng([seed, 2])
    popularity = 1.0 / np.arange(1, e + 1) ** 0.8
    home = rng.choice(e, size=n, p=popularity / popularity.sum())
    d = 0.3 * rng.random((n, e))
    d[np.arange(n), home] += 0.7
    em, cm = _memory(rng, n, e, 2.0, 8.0)
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        expert_memory=em,
        client_memory=cm,
        expert_max_clients=_caps(n, e, 2.5, 1.15),
    )


def tight_memory(n: int, e: int, seed: int) -> AlignmentProblem:
    """Clients hold 1–2 experts' worth of memory; the knapsack decides, not the count."""
    rng = np.random.default_rng([seed, 3])
    d = rng.random((n, e))
    em, cm = _memory(rng, n, e, 1.5, 4.5)
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        expert_memory=em,
        client_memory=cm,
        expert_max_clients=_caps(n, e, 1.6, 1.2),
    )


def deadline(n: int, e: int, seed: int) -> AlignmentProblem:
    """Deadline knapsack from client speed, expert size and latency; 1–4 experts; caps."""
    rng = np.random.default_rng([seed, 4])
    d = rng.random((n, e))
    size = rng.uniform(1.0, 3.0, size=e)  # fetch + train + return work of each expert
    speed = rng.lognormal(0.0, 0.5, size=n)
    latency = rng.uniform(0.0, 0.5, size=n)
    t = size[None, :] / speed[:, None] + latency[:, None]
    dl = rng.uniform(2.0, 8.0, size=n)
    dl = np.maximum(dl, t.min(axis=1) * 1.01)
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        train_time=t,
        deadline=dl,
        expert_max_clients=_caps(n, e, 2.5, 1.15),
    )


def balanced(n: int, e: int, seed: int) -> AlignmentProblem:
    """Per-expert minimums (hard load balance) and caps, memory knapsack, 1–4 experts."""
    rng = np.random.default_rng([seed, 5])
    popularity = rng.uniform(0.0, 0.5, size=e)
    d = 0.5 * rng.random((n, e)) + popularity[None, :]
    em, cm = _memory(rng, n, e, 2.0, 8.0)
    # Minimums well below what the clients that fit can supply.
    fits = em[None, :] <= cm[:, None]
    low = np.floor(0.5 * fits.sum(axis=0) * 1.0 / e).astype(np.int64)
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        expert_memory=em,
        client_memory=cm,
        expert_min_clients=np.minimum(low, max(1, n // (2 * e))),
        expert_max_clients=_caps(n, e, 2.5, 1.15),
    )


def no_knapsack(n: int, e: int, seed: int) -> AlignmentProblem:
    """No knapsack rows, ~10 % forbidden pairs, 1–4 experts, per-expert caps."""
    rng = np.random.default_rng([seed, 6])
    d = rng.random((n, e))
    allowed = rng.random((n, e)) >= 0.1
    # Keep one allowed expert per client so min_experts = 1 stays feasible.
    allowed[np.arange(n), rng.integers(0, e, size=n)] = True
    return AlignmentProblem(
        d,
        min_experts=1,
        max_experts=4,
        allowed=allowed,
        expert_max_clients=_caps(n, e, 2.5, 1.15),
    )


#: Family name -> generator ``(n_clients, n_experts, seed) -> AlignmentProblem``.
FAMILIES: dict[str, Generator] = {
    "uniform": uniform,
    "clustered": clustered,
    "tight-memory": tight_memory,
    "deadline": deadline,
    "balanced": balanced,
    "no-knapsack": no_knapsack,
}


def make_instance(family: str, n_clients: int, n_experts: int, seed: int) -> AlignmentProblem:
    """Build one instance of a named family.

    Parameters
    ----------
    family : str
        A key of :data:`FAMILIES`.
    n_clients, n_experts : int
        Size (both >= 1).
    seed : int
        The same seed gives the same instance.

    Raises
    ------
    ValueError
        Unknown family or a size below 1.
    """
    if family not in FAMILIES:
        raise ValueError(f"family: unknown family {family!r}; choose from {sorted(FAMILIES)}")
    for name, value in (("n_clients", n_clients), ("n_experts", n_experts)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return FAMILIES[family](int(n_clients), int(n_experts), int(seed))
