"""The price phases on random samples of the clients (large cohorts).

From 1,000 clients up, prices are first found on random samples of the clients (250-1,000,
then four times larger up to ``sample_clients``), with the expert rows scaled to the
sample's share; each phase warm-starts the next, and only the last works on every client.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from ._common import SAMPLE_MAX


def sample_stages(n: int, largest: int | None) -> list[int]:
    """Sample sizes of the price phases: 250-1,000 clients, then x4 up to ``largest``."""
    if largest is None:
        largest = SAMPLE_MAX
    if largest <= 0 or n < 1000:
        return []
    size = min(max(250, n // 4), 1000, largest)
    stages = []
    while size <= largest and size <= n // 4:
        stages.append(size)
        size *= 4
    return stages or [min(largest, n // 4)]


def sample_problem(
    problem: AlignmentProblem, size: int, rng: np.random.Generator
) -> tuple[AlignmentProblem, NDArray[np.float64], NDArray[np.float64]]:
    """The problem restricted to ``size`` random clients, and its expert rows scaled.

    Returns the sample (its own expert rows left loose: only its client rows are used)
    and the fractional expert maximums and minimums that match its share of the clients.
    """
    n = problem.n_clients
    rows = np.sort(rng.choice(n, size=size, replace=False))
    share = size / n
    fields: dict[str, Any] = {
        "max_experts": problem.max_experts[rows],
        "min_experts": problem.min_experts[rows],
        "allowed": problem.allowed[rows],
    }
    if problem.expert_memory is not None and problem.client_memory is not None:
        fields["expert_memory"] = problem.expert_memory
        fields["client_memory"] = problem.client_memory[rows]
    if problem.train_time is not None and problem.deadline is not None:
        fields["train_time"] = problem.train_time[rows]
        fields["deadline"] = problem.deadline[rows]
    sample = AlignmentProblem(problem.desirability[rows], **fields)
    hi = problem.expert_max_clients * share
    lo = problem.expert_min_clients * share
    return sample, hi.astype(np.float64), lo.astype(np.float64)
