"""The composite desirability the scheduler maximises each round, and its terms.

For cohort client ``i`` and expert ``j``::

    d[i, j] =  fitness_weight     · F[i, j]                          # suits the client's data
             − usage_weight       · Ũ[j]                             # expert already busy
             − time_weight        · t[i, j] / deadline_i              # slow for this client
             + exploration_weight · sqrt(ln(R + 2) / (1 + n[i, j]))   # rarely tried pair

``Ũ`` is usage normalised across experts (setting ``usage_norm``), ``t`` the profiler's
expected seconds, ``R`` the number of closed rounds and ``n[i, j]`` how often the pair
trained. The terms are returned beside ``d`` for :meth:`fedalign.Plan.explain`.

Pure NumPy on the cohort's rows: O(cohort · E), no Python loop over pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .settings import SchedulerSettings

__all__ = ["desirability", "exploration_bonus"]


def exploration_bonus(times_trained: NDArray[Any], rounds_closed: int) -> NDArray[np.float64]:
    """UCB1-style bonus ``sqrt(ln(R + 2) / (1 + n[i, j]))``: largest for pairs never tried.

    Parameters
    ----------
    times_trained : (n, E) ints
        How often each pair trained.
    rounds_closed : int
        ``R``, the rounds closed so far.
    """
    count = np.asarray(times_trained).astype(np.float64)
    return np.sqrt(math.log(rounds_closed + 2) / (1.0 + count))


def desirability(
    settings: SchedulerSettings,
    *,
    fitness: NDArray[np.float64],
    usage: NDArray[np.float64],
    usage_norm: NDArray[np.float64],
    train_time: NDArray[np.float64] | None = None,
    deadline: NDArray[np.float64] | None = None,
    times_trained: NDArray[Any] | None = None,
    rounds_closed: int = 0,
) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """``d[i, j]`` for a cohort and the terms it is made of.

    Parameters
    ----------
    settings : SchedulerSettings
        The weights: ``fitness_weight``, ``usage_weight``, ``time_weight``,
        ``exploration_weight``.
    fitness : (n, E) floats
        ``F`` for the cohort's clients.
    usage, usage_norm : (E,) floats
        Raw usage ``U`` (reported as a term only) and normalised usage ``Ũ``.
    train_time, deadline : (n, E) and (n,) floats, optional
        Expected seconds and the round's deadline per client; given when the scheduler
        has a deadline policy, else the time term is NaN (unknown) and adds nothing.
    times_trained : (n, E) ints, optional
        How often each pair trained; needed when ``exploration_weight > 0``.
    rounds_closed : int
        Rounds closed so far (``R``).

    Returns
    -------
    d : (n, E) float64
    terms : dict
        ``fitness`` (n, E), ``usage`` (E,), ``usage_norm`` (E,), ``time`` (n, E, seconds or
        NaN) and ``exploration`` (n, E, the bonus before its weight), in that order.
    """
    s = settings
    n, e = fitness.shape
    d = s.fitness_weight * fitness - s.usage_weight * usage_norm[None, :]
    terms: dict[str, NDArray[np.float64]] = {
        "fitness": fitness,
        "usage": usage,
        "usage_norm": usage_norm,
    }

    if train_time is not None and deadline is not None:
        terms["time"] = train_time
        if s.time_weight > 0:
            d = d - s.time_weight * train_time / deadline[:, None]
    else:
        terms["time"] = np.full((n, e), np.nan)

    if s.exploration_weight > 0:
        if times_trained is None:
            raise ValueError("times_trained: needed when exploration_weight > 0")
        bonus = exploration_bonus(times_trained, rounds_closed)
        d = d + s.exploration_weight * bonus
    else:
        bonus = np.zeros((n, e))
    terms["exploration"] = bonus
    return d, terms
