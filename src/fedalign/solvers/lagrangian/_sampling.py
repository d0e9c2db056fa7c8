"""The price phases on random samples of the clients (large cohorts).

From 1,000 clients up, prices are first found on random samples of the clients (250-1,000,
then four times larger up to ``sample_clients``). A sample carries every row: its clients'
own client rows, and the expert and total rows with their bounds scaled to the sample's
share. Each phase warm-starts the next, and only the last works on every client.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...problem import BUILTIN_ROWS, AlignmentProblem
from ...rows import Row
from ._common import SAMPLE_MAX
from ._duals import Duals


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
) -> tuple[AlignmentProblem, Duals]:
    """The problem restricted to ``size`` random clients, and its priced rows scaled.

    The sample keeps the clients' own rows (every hard client row, restricted to them) and,
    as forbidden, the pairs that cannot fit the full problem; its expert and total rows are
    left out of it and priced by the returned :class:`Duals` instead, with weights restricted
    to the sample and bounds scaled to its share of the clients (fractional).
    """
    n = problem.n_clients
    rows = np.sort(rng.choice(n, size=size, replace=False))
    share = size / n
    fields: dict[str, Any] = {
        "max_experts": problem.max_experts[rows],
        "min_experts": problem.min_experts[rows],
        # the full problem's fits: the same as its allowed pairs when only keyword rows
        # rule pairs out (the sample checks memory and deadline itself)
        "allowed": problem.fits[rows],
    }
    if problem.expert_memory is not None and problem.client_memory is not None:
        fields["expert_memory"] = problem.expert_memory
        fields["client_memory"] = problem.client_memory[rows]
    if problem.train_time is not None and problem.deadline is not None:
        fields["train_time"] = problem.train_time[rows]
        fields["deadline"] = problem.deadline[rows]
    fields["rows"] = [
        _client_row_of(row, rows) for row in problem.client_rows if row.name not in BUILTIN_ROWS
    ]
    sample = AlignmentProblem(problem.desirability[rows], **fields)
    return sample, Duals(problem, sample, rows, share)


def _client_row_of(row: Row, clients: NDArray[np.intp]) -> Row:
    """A hard client row restricted to ``clients``."""
    w = row.weight if row.weight.shape[0] == 1 else row.weight[clients]
    lower = None if row.lower is None else row.lower[clients]
    upper = None if row.upper is None else row.upper[clients]
    return Row(row.name, "client", w, lower=lower, upper=upper)
