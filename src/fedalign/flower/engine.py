"""``fedalign simulate --engine flower``: the harness's experiment on Flower's simulation engine.

:func:`run_strategy` is the Flower twin of :func:`fedalign.sim.server.run_strategy`: same
inputs (a seed's :class:`~fedalign.sim.server.Setup` and a
:class:`~fedalign.sim.config.Strategy`), same output (a
:class:`~fedalign.sim.server.RunResult`), but every round goes through Flower: a
:class:`~fedalign.flower.FedAlign` strategy in a ServerApp plans with the same scheduler and
sends each simulated node (one SuperNode per client, ``partition-id`` = client index) its own
Message; the ClientApp (:func:`fedalign.flower.client.train_moe`) trains in Ray actors; replies
are validated and averaged per expert by the strategy.

To make the two engines comparable under a seed, the server side replays the local runner's
random streams: the cohort of each round and the device luck (slowdowns, nodes that vanish or
miss the deadline) are drawn from the same generator in the same order, the scheduler is built
and pre-registered identically (:func:`fedalign.sim.server.make_scheduler`), and clients train
with the same seeds. A node the simulated fleet drops is told so in its instruction and
answers with an error reply, which the strategy records as a dropout.

:func:`run_flower_experiment` runs a whole comparison (strategies x seeds) this way and
returns ``results.json``'s content with ``config.engine == "flower"``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid

from . import records as rec
from .client import SIMULATE_DROPOUT, SIMULATED_SECONDS, MoENode, make_moe_client_app
from .strategy import FedAlign

__all__ = ["compare_engines", "default_backend_config", "run_flower_experiment", "run_strategy"]


def default_backend_config() -> dict[str, Any]:
    """Ray settings: one CPU per ClientApp actor, as many actors as cores (at most 4)."""
    cores = max(1, min(4, os.cpu_count() or 1))
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cores, "num_gpus": 0},
    }


# One world per Ray worker process and (config, seed): rebuilt from the seed instead of being
# pickled into every message.
_WORLDS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _moe_node(config: Any, seed: int, context: Context) -> MoENode:
    """The node of ``context``'s partition in the seed's world (cached per process)."""
    from ..sim.server import make_setup

    key = (json.dumps(config.to_dict(), sort_keys=True, default=str), int(seed))
    if key not in _WORLDS:
        _WORLDS.clear()
        world = make_setup(config, int(seed))
        _WORLDS[key] = (world, _new_model(world))
    world, model = _WORLDS[key]
    part = int(context.node_config["partition-id"])
    return MoENode(model=model, train_data=world.partition.clients[part], client_index=part)


def _new_model(world: Any) -> Any:
    from ..sim.model import MoEModel

    cfg = world.config
    model = MoEModel(
        world.data.n_features,
        world.data.n_classes,
        cfg.n_experts,
        expert_hidden=cfg.expert_hidden,
        trunk_hidden=cfg.trunk_hidden,
        top_k=cfg.top_k,
    )
    model.load_state_dict(world.initial_state)
    return model


def _index(client: Any) -> int:
    """A client id of the simulated fleet: its index (the node's ``partition-id``)."""
    return int(client)


class _FleetFedAlign(FedAlign):
    """FedAlign whose cohorts and device luck replay :func:`fedalign.sim.server.run_strategy`."""

    def __init__(self, scheduler: Any, setup: Any, result: Any, **kwargs: Any) -> None:
        cfg = setup.config
        super().__init__(
            scheduler,
            min_train_nodes=cfg.cohort_size or cfg.n_clients,
            min_available_nodes=cfg.n_clients,
            fraction_evaluate=0.0,
            client_key="partition-id",
            dropout_duration=setup.deadline,
            seed=setup.seed,
            # simulated nodes always answer; on a loaded machine Ray may need minutes to
            # start the actors that do (60 s, the default, failed a CI run)
            query_timeout=600.0,
            **kwargs,
        )
        self.setup = setup
        self.result = result
        # cohorts and device luck: the local runner's stream, drawn in the same order
        self.world = np.random.default_rng([setup.seed, 7919])
        self.up = 0
        self.down = 0
        self.clock = 0.0
        self._cohort = np.zeros(0, dtype=np.int64)
        self._dropped = 0

    def sample_cohort(self, server_round: int, nodes: list[int], grid: Grid) -> list[int]:
        n = self.setup.config.n_clients
        ids = self.identify(nodes, grid, server_round)
        node_of = {_index(c): node for node, c in ids.items()}
        missing = sorted(set(range(n)) - set(node_of))
        if missing:
            raise RuntimeError(f"simulated client {missing[0]} did not answer the profile query")
        size = self.setup.config.cohort_size or n
        self._cohort = np.sort(self.world.choice(n, size=size, replace=False))
        return [node_of[int(c)] for c in self._cohort]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        state = self._open
        assert state is not None  # a cohort always plans (every client is registered)
        current = state.current
        self.result.solver_seconds.append(float(current.solver_seconds or 0.0))
        cohort = self._cohort
        node_by_index = {_index(c): n for n, c in state.client_of.items()}
        nodes = [node_by_index[int(c)] for c in cohort]
        clients = [state.client_of[n] for n in nodes]
        n_assigned = np.array([len(current.experts(c)) for c in clients], dtype=np.int64)
        samples = self.setup.samples
        seconds, vanished = self.setup.fleet.round_seconds(
            cohort, n_assigned, samples[cohort], self.world
        )
        late = ~vanished & (seconds > self.setup.deadline)
        pos_of = {n: k for k, n in enumerate(nodes)}
        for msg in messages:
            pos = pos_of[msg.metadata.dst_node_id]
            cfg = msg.content.config_records[self.configrecord_key]
            if vanished[pos] or late[pos]:
                cfg[SIMULATE_DROPOUT] = True
            else:
                cfg[SIMULATED_SECONDS] = float(seconds[pos])
            self.result.expert_load[int(cohort[pos]), current.experts(clients[pos])] += 1
        self._dropped = int(vanished.sum() + late.sum())
        self.clock += self.setup.deadline if self._dropped else float(np.max(seconds, initial=0.0))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Any
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        closed_before = len(self.history)
        out = super().aggregate_train(server_round, replies)
        if len(self.history) == closed_before:  # the round was not configured
            return out
        record = self.history[-1]
        load = np.zeros(self.setup.config.n_experts, dtype=np.int64)
        for node in record.completed:
            experts = record.assignment[node]
            self.result.trained_load[_index(record.clients[node]), experts] += 1
            load[experts] += 1
        self.up += record.bytes_received
        self.down += record.bytes_sent
        self.result.round_load.append(load.tolist())
        self.result.dropouts.append(self._dropped)
        self.result.bytes_up.append(int(self.up))
        self.result.bytes_down.append(int(self.down))
        self.result.seconds.append(float(self.clock))
        return out


def run_strategy(
    setup: Any,
    strategy: Any,
    *,
    on_round: Callable[[int, float], None] | None = None,
    backend_config: dict[str, Any] | None = None,
    round_timeout: float = 3600.0,
    verbose: bool = False,
) -> Any:
    """Run one strategy for ``config.rounds`` rounds on Flower's simulation engine (Ray).

    Parameters
    ----------
    setup : fedalign.sim.server.Setup
        The seed's world (:func:`fedalign.sim.server.make_setup`); not modified.
    strategy : fedalign.sim.config.Strategy
    on_round : callable(round, accuracy), optional
        Called after each round's central evaluation (round from 0).
    backend_config : dict, optional
        Flower's Ray backend settings (default :func:`default_backend_config`).
    round_timeout : float
        Seconds the server waits for a round's replies.
    verbose : bool
        Keep Flower's INFO logs (default: errors only).

    Returns
    -------
    fedalign.sim.server.RunResult
        The same measurements as the local runner.
    """
    import torch
    from flwr.simulation import run_simulation

    from ..sim.server import RunResult

    cfg = setup.config
    n, e = cfg.n_clients, cfg.n_experts
    result = RunResult(strategy.name, setup.seed)
    result.expert_load = np.zeros((n, e), dtype=np.int64)
    result.trained_load = np.zeros((n, e), dtype=np.int64)
    failure: list[BaseException] = []
    server_app = _server_app(setup, strategy, result, on_round, round_timeout, failure)
    client_app = make_moe_client_app(
        partial(_moe_node, cfg, setup.seed),
        epochs=cfg.local_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=setup.seed,
        reward=cfg.reward,
    )
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    if not verbose:
        # run_simulation is deprecated (warned on every call); keep errors only
        flwr_logger.setLevel(logging.ERROR)
        # opt in to Ray's future behaviour now instead of printing its tip on every start
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    threads = torch.get_num_threads()
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=n,
            backend_name="ray",
            backend_config=backend_config or default_backend_config(),  # type: ignore[arg-type]
            verbose_logging=False,
        )
    finally:
        flwr_logger.setLevel(level)
        torch.set_num_threads(threads)
    if failure:
        raise RuntimeError(
            f"the Flower run of {strategy.name!r} failed: {failure[0]!r}"
        ) from failure[0]
    if len(result.accuracy) != cfg.rounds:
        raise RuntimeError(
            f"the Flower run of {strategy.name!r} finished {len(result.accuracy)} of {cfg.rounds} rounds"
        )
    return result


def _server_app(
    setup: Any,
    strategy: Any,
    result: Any,
    on_round: Callable[[int, float], None] | None,
    round_timeout: float,
    failure: list[BaseException],
) -> Any:
    """The ServerApp of one run: the fleet strategy over the seed's scheduler, with the central
    evaluation recorded in ``result`` and any exception appended to ``failure``."""
    from flwr.serverapp import ServerApp

    from ..sim.server import evaluate, make_scheduler

    cfg = setup.config
    scheduler = make_scheduler(setup, strategy, seed=setup.seed)
    worker = _new_model(setup)
    initial = rec.numpy_to_arrays(setup.initial_state)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:  # the local runner does not evaluate the initial model either
            return None
        from ..sim.model import load_partial_state

        load_partial_state(worker, rec.arrays_to_numpy(arrays))
        accuracy, per_domain = evaluate(worker, setup.partition)
        result.accuracy.append(accuracy)
        result.domain_accuracy.append(per_domain)
        if on_round is not None:
            on_round(server_round - 1, accuracy)
        return MetricRecord({"accuracy": accuracy})

    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            fleet_strategy = _FleetFedAlign(scheduler, setup, result)
            fleet_strategy.start(
                grid,
                initial,
                num_rounds=cfg.rounds,
                timeout=round_timeout,
                train_config=ConfigRecord(
                    {
                        "local-epochs": int(cfg.local_epochs),
                        "lr": float(cfg.lr),
                        "batch-size": int(cfg.batch_size),
                        "reward": str(cfg.reward),
                    }
                ),
                evaluate_fn=evaluate_fn,
            )
        except BaseException as exc:  # surfaced below: the engine only logs ServerApp errors
            failure.append(exc)
            raise

    return server_app


def run_flower_experiment(
    config: Any,
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1),
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run a comparison through Flower: :func:`fedalign.sim.experiments.run_experiment` with
    ``engine="flower"`` and :func:`run_strategy` as its ``runner``.

    Parameters
    ----------
    config : fedalign.sim.config.SimConfig
    strategies : sequence of str, optional
        Default :data:`fedalign.sim.config.DEFAULT_STRATEGIES`.
    seeds : sequence of int
    out_dir : str or Path, optional
        Where ``results.json`` (with ``config.engine == "flower"``), the summary and the plots
        go.
    progress, plots : bool

    Returns
    -------
    dict
        ``results.json``'s content.
    """
    from ..sim.config import DEFAULT_STRATEGIES
    from ..sim.experiments import run_experiment

    return run_experiment(
        config,
        list(strategies) if strategies else DEFAULT_STRATEGIES,
        seeds,
        out_dir=out_dir,
        engine="flower",
        runner=run_strategy,
        progress=progress,
        plots=plots,
    )


def compare_engines(config: Any, strategies: Sequence[str], seed: int = 0) -> list[dict[str, Any]]:
    """Run each strategy under ``seed`` locally and through Flower; one row per strategy.

    Rows: ``strategy``, ``local`` and ``flower`` final accuracy, ``max_round_diff`` (largest
    per-round accuracy difference), ``same_expert_load``, and the wall-clock seconds of each
    (:func:`fedalign.sim.experiments.compare_engines`).
    """
    from ..sim.experiments import compare_engines as compare

    return compare(config, strategies, seed, engine="flower", runner=run_strategy)


def _main(argv: Sequence[str] | None = None) -> None:
    """``python -m fedalign.flower.engine``: compare the local and the Flower engine."""
    from ..sim.experiments import compare_engines_main

    compare_engines_main("flower", compare_engines, argv)


if __name__ == "__main__":
    _main()
