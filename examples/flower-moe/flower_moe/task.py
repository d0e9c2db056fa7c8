"""What the ServerApp and the ClientApp share: settings, data partition and model.

Both sides rebuild the same seeded world from the run config with
:func:`fedalign.sim.server.make_setup`: a node takes its partition, the server the test set and
the initial weights.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fedalign.sim.config import SimConfig
from fedalign.sim.model import MoEModel
from fedalign.sim.server import Setup, make_setup


def sim_config(run_config: dict[str, Any], num_partitions: int) -> SimConfig:
    """The :class:`~fedalign.sim.config.SimConfig` the run config describes."""
    return SimConfig(
        dataset=str(run_config["dataset"]),
        n_clients=int(num_partitions),
        n_domains=int(run_config["n-domains"]),
        n_experts=int(run_config["n-experts"]),
        expert_hidden=int(run_config["expert-hidden"]),
        rounds=int(run_config["num-server-rounds"]),
        local_epochs=int(run_config["local-epochs"]),
        lr=float(run_config["lr"]),
        batch_size=int(run_config["batch-size"]),
        reward=str(run_config["reward"]),
    )


@lru_cache(maxsize=4)
def _setup(items: tuple[tuple[str, Any], ...], num_partitions: int) -> Setup:
    run_config = dict(items)
    return make_setup(sim_config(run_config, num_partitions), int(run_config["seed"]))


def setup(run_config: dict[str, Any], num_partitions: int) -> Setup:
    """The seeded world (cached per process and run config)."""
    return _setup(tuple(sorted(dict(run_config).items())), int(num_partitions))


def new_model(world: Setup) -> MoEModel:
    """A model of the run's architecture holding the initial weights."""
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
