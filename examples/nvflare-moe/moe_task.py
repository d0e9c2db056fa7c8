"""What the server and the sites share: the settings and the seeded world they describe.

Both sides rebuild the same world from the same settings with
:func:`fedalign.sim.server.make_setup` (the ``digits`` data split into domains, one partition
per site, the initial weights): a site takes its partition, the server the held-out test set
and the initial model.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fedalign.sim.config import SimConfig
from fedalign.sim.model import MoEModel
from fedalign.sim.server import Setup, make_setup

#: The world's settings and their defaults (``job.py`` sets them on both sides).
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "num-sites": 3,
    "n-domains": 3,
    "n-experts": 3,
    "expert-hidden": 16,
    "seed": 0,
}


def sim_config(settings: dict[str, Any]) -> SimConfig:
    """The :class:`~fedalign.sim.config.SimConfig` of the settings."""
    s = {**DEFAULTS, **settings}
    return SimConfig(
        dataset=str(s["dataset"]),
        n_clients=int(s["num-sites"]),
        n_domains=int(s["n-domains"]),
        n_experts=int(s["n-experts"]),
        expert_hidden=int(s["expert-hidden"]),
    )


@lru_cache(maxsize=2)
def _world(items: tuple[tuple[str, Any], ...]) -> Setup:
    settings = {**DEFAULTS, **dict(items)}
    return make_setup(sim_config(settings), int(settings["seed"]))


def world(settings: dict[str, Any]) -> Setup:
    """The seeded world (cached per process and settings)."""
    return _world(tuple(sorted({**DEFAULTS, **settings}.items())))


def new_model(setup: Setup) -> MoEModel:
    """A model of the run's architecture holding the initial weights."""
    cfg = setup.config
    model = MoEModel(
        setup.data.n_features,
        setup.data.n_classes,
        cfg.n_experts,
        expert_hidden=cfg.expert_hidden,
        trunk_hidden=cfg.trunk_hidden,
        top_k=cfg.top_k,
    )
    model.load_state_dict(setup.initial_state)
    return model
