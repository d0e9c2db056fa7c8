"""Seeds in worker processes: ``fedalign simulate --jobs N`` (:func:`run_seeds`).

A seed's runs share nothing with another seed's (each seed draws its own data, fleet and
luck, docs/experiments.md), so the seeds of an experiment can run side by side, one worker
process per seed at a time, and give the same results as one after another: every worker
builds its seed's setup and runs every strategy on it, exactly as the serial loop of
:func:`fedalign.sim.experiments.run_experiment` does. Workers are started with ``spawn``
(no fork of a process that already runs torch's thread pools); each sends a message per
finished round, which moves the parent's progress bar. Planning time is each worker's own
measured solver time, so with more workers than free cores the solvers' clocks (and the
``planning_seconds`` of the cross-device scenario) include the contention.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

from ..errors import HerdingWarning
from .config import SimConfig, Strategy
from .threats import ThreatConfig

__all__ = ["run_seeds", "scenario_runner"]


def scenario_runner(config: SimConfig) -> tuple[Callable[[SimConfig, int], Any], Callable[..., Any]]:
    """The setup maker and the in-process runner of ``config.scenario``."""
    if config.scenario == "cross-device":
        from .crossdevice import make_cross_device_setup, run_cross_device

        return make_cross_device_setup, run_cross_device
    from .server import make_setup, run_strategy

    return make_setup, run_strategy


def _one_seed(
    config: SimConfig,
    strategies: Sequence[Strategy],
    seed: int,
    threats: ThreatConfig | None,
    ticks: Any,
) -> tuple[list[int], list[Any]]:
    """Worker: every strategy under ``seed``; ``(client groups, one RunResult per strategy)``."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", HerdingWarning)
    make, run = scenario_runner(config)
    setup = make(config, seed)
    extra = {} if threats is None else {"threats": threats}
    runs = []
    for strategy in strategies:

        def tick(_round: int, accuracy: float, name: str = strategy.name) -> None:
            ticks.put((seed, name, float(accuracy)))

        runs.append(run(setup, strategy, on_round=tick, **extra))
    return setup.partition.client_group.tolist(), runs


def _drain(ticks: Any, bar: Any) -> None:
    """Move the progress bar by every round the workers reported since the last call."""
    while True:
        try:
            seed, name, accuracy = ticks.get_nowait()
        except queue_module.Empty:
            return
        bar.update(1)
        bar.set_description(f"seed {seed} {name}")
        bar.set_postfix(acc=f"{accuracy:.3f}")


def run_seeds(
    config: SimConfig,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    *,
    jobs: int,
    bar: Any,
    threats: ThreatConfig | None = None,
    on_seed: Callable[[int, list[int], list[Any]], None] | None = None,
) -> tuple[dict[str, list[Any]], list[list[int]]]:
    """Run every strategy under every seed in up to ``jobs`` worker processes.

    Parameters
    ----------
    config, strategies, seeds, threats
        As in :func:`fedalign.sim.experiments.run_experiment` (strategies parsed); the
        in-process runner of the scenario only.
    jobs : int >= 1
        Worker processes (at most one per seed).
    bar : tqdm
        Progress bar, moved by one per finished round.
    on_seed : callable, optional
        ``on_seed(seed, groups, runs)`` as each seed finishes, in the order they finish
        (``runs``: one result per strategy, in the order of ``strategies``).

    Returns
    -------
    runs : dict of str to list
        Per strategy name, its :class:`~fedalign.sim.server.RunResult` per seed, in the order
        of ``seeds``.
    groups : list of list of int
        Per seed, each client's data group.

    Raises
    ------
    Exception
        The first error a worker raised; seeds not started yet are cancelled.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(
        max_workers=max(1, min(int(jobs), len(seeds))), mp_context=ctx
    ) as pool:
        ticks = manager.Queue()
        futures = [pool.submit(_one_seed, config, list(strategies), s, threats, ticks) for s in seeds]
        seed_of = dict(zip(futures, seeds, strict=True))
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            _drain(ticks, bar)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                pool.shutdown(wait=False, cancel_futures=True)
                raise failed[0].exception()  # type: ignore[misc]
            if on_seed is not None:
                for f in sorted(done, key=futures.index):
                    on_seed(seed_of[f], *f.result())
        _drain(ticks, bar)
        per_seed = [f.result() for f in futures]
    runs = {s.name: [runs_of_seed[i] for _, runs_of_seed in per_seed] for i, s in enumerate(strategies)}
    return runs, [groups for groups, _ in per_seed]
