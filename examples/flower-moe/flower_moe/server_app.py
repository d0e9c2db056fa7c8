"""ServerApp: the FedAlign strategy trains each expert on the nodes the scheduler picks.

Nodes are registered with the scheduler from their answer to a profile query (their
``node_config``: ``partition-id`` as the client id, capacity such as ``max-experts``), the
global model is evaluated centrally on the held-out test set after every round, and an
optional JSON summary records, per round, who was sent which experts, who completed, who
dropped out and which experts changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

import fedalign as fa
from fedalign.flower import FedAlign
from fedalign.flower.records import arrays_to_numpy, expert_of_key, numpy_to_arrays
from fedalign.rounds import ReplyScreen, RobustAggregator
from fedalign.sim.model import load_partial_state
from fedalign.sim.server import evaluate

from . import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds of FedAlign."""
    cfg = context.run_config
    seed = int(cfg["seed"])
    world = task.setup(cfg, int(cfg["num-partitions"]))
    model = task.new_model(world)
    scheduler = fa.Scheduler(
        world.config.n_experts,
        solver=str(cfg["solver"]),
        usage_weight=float(cfg["usage-weight"]),
        max_experts=int(cfg["max-experts"]),
        expert_max_clients=int(cfg["expert-max-clients"]) or None,
        seed=seed,
    )
    # defenses (docs/trust.md): "median", "trimmed-mean" or "clipped-mean", and the screen
    rule = str(cfg.get("aggregation", "mean"))
    defenses: dict[str, Any] = {}
    if rule != "mean":
        defenses["aggregate"] = RobustAggregator(rule)
    if bool(cfg.get("screen", False)):
        defenses["screen"] = ReplyScreen()
    strategy = FedAlign(
        scheduler,
        **defenses,
        fraction_train=float(cfg["fraction-train"]),
        min_train_nodes=int(cfg["min-nodes"]),
        min_available_nodes=int(cfg["min-nodes"]),
        fraction_evaluate=0.0,
        client_key="partition-id",
        seed=seed,
    )
    initial = {k: v.numpy() for k, v in world.initial_state.items()}
    rounds: list[dict[str, Any]] = []
    previous = dict(initial)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = arrays_to_numpy(arrays)
        load_partial_state(model, state)
        accuracy, _ = evaluate(model, world.partition)
        if server_round > 0:
            changed = sorted(
                {
                    e
                    for k, v in state.items()
                    if (e := expert_of_key(k)) is not None and not np.array_equal(v, previous[k])
                }
            )
            rounds.append({"round": server_round, "accuracy": accuracy, "experts_changed": changed})
        previous.update(state)
        return MetricRecord({"accuracy": accuracy})

    strategy.start(
        grid,
        numpy_to_arrays(initial),
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        train_config=ConfigRecord(
            {
                "local-epochs": int(cfg["local-epochs"]),
                "lr": float(cfg["lr"]),
                "batch-size": int(cfg["batch-size"]),
                "reward": str(cfg["reward"]),
            }
        ),
        evaluate_fn=evaluate_fn,
    )

    path = str(cfg["summary-path"])
    if path:
        summary = {
            "rounds": [
                {**r.to_dict(), **extra} for r, extra in zip(strategy.history, rounds, strict=False)
            ],
            "node_info": {str(n): info for n, info in strategy.node_info.items()},
            "fitness": scheduler.fitness.tolist(),
            "client_ids": [str(c) for c in scheduler.client_ids],
        }
        Path(path).write_text(json.dumps(summary, indent=1, default=str))
