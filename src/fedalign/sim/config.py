"""Experiment settings (:class:`SimConfig`) and the strategies compared (:class:`Strategy`).

Strategies are named after the paper's Fig. 3:

* ``random`` -- a uniformly random feasible assignment (solver ``random``);
* ``greedy`` -- desirability is fitness alone, solved by ``topk``;
* ``load-balanced`` -- fitness minus usage, solved by ``topk``: the paper's system, where
  balance comes only from the soft usage penalty;
* ``load-balanced/<solver>`` -- the same desirability plus the hard per-expert rows of
  DESIGN.md §1 (at most ``ceil(expert_capacity_slack * slots / E)`` clients per expert and
  round), solved by ``<solver>`` (``flow``, ``lagrangian``, ``cpsat``, ... and ``topk``
  itself, whose per-client choice is then repaired to meet the rows).

Why the hard rows: with the usage penalty alone, every client of a round sees the same
penalty, so when fitness cannot yet tell experts apart the whole cohort moves to the same
least-used expert (it flocks); a per-round cap is coordination only a global solver provides.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "DATASET_DEFAULTS",
    "DEFAULT_STRATEGIES",
    "REWARDS",
    "SimConfig",
    "Strategy",
    "parse_strategy",
    "preset",
]

REWARDS = ("accuracy", "routing", "loss-reduction")
"""Reward kinds a client can report (see :func:`fedalign.sim.client.local_train`)."""

DEFAULT_STRATEGIES = ("random", "greedy", "load-balanced", "load-balanced/flow")
"""What ``fedalign simulate`` compares unless told otherwise."""


@dataclass(frozen=True)
class Strategy:
    """How a strategy drives the :class:`fedalign.Scheduler`.

    Attributes
    ----------
    name : str
        As given (``"load-balanced/flow"``).
    solver : str
        Solver passed to the scheduler.
    usage_weight : float
        ``w_use`` (0 for ``random`` and ``greedy``).
    balanced : bool
        Whether the hard per-expert cap of :attr:`SimConfig.expert_capacity_slack` applies
        (the ``load-balanced/<solver>`` strategies).
    """

    name: str
    solver: str
    usage_weight: float
    balanced: bool


def parse_strategy(name: str, usage_weight: float) -> Strategy:
    """The :class:`Strategy` a name stands for.

    Parameters
    ----------
    name : str
        ``random``, ``greedy``, ``load-balanced`` or ``load-balanced/<solver>``.
    usage_weight : float
        ``w_use`` for the load-balanced strategies.

    Raises
    ------
    ValueError
        Unknown name, or a ``load-balanced/`` suffix naming no registered solver.
    """
    if name == "random":
        return Strategy(name, "random", 0.0, False)
    if name == "greedy":
        return Strategy(name, "topk", 0.0, False)
    if name == "load-balanced":
        return Strategy(name, "topk", usage_weight, False)
    if name.startswith("load-balanced/"):
        from fedalign.solvers import registered_solvers

        solver = name.split("/", 1)[1]
        if solver not in registered_solvers():
            raise ValueError(
                f"strategies: {name!r} names no solver; choose from {registered_solvers()}"
            )
        return Strategy(name, solver, usage_weight, True)
    raise ValueError(
        f"strategies: unknown strategy {name!r}; use random, greedy, load-balanced "
        "or load-balanced/<solver>"
    )


@dataclass(frozen=True)
class SimConfig:
    """Every setting of a simulation (all of it is written to ``results.json``).

    The defaults are the quick scenario on ``digits``; :func:`preset` gives the full runs.

    Attributes
    ----------
    dataset : {"digits", "mnist1d", "cifar10"}
    data_root : str or None
        Folder of CIFAR-10's python batches.
    mnist1d_samples : int
        Samples MNIST-1D generates.
    partition : {"domain", "label-skew", "dirichlet"}
    n_clients, n_domains, classes_per_client, alpha : partition settings
    n_experts, expert_hidden, trunk_hidden, top_k : model settings
    rounds : int
    cohort_size : int or None
        Clients sampled per round (None: all).
    local_epochs, lr, batch_size : local training
    reward : {"accuracy", "routing", "loss-reduction"}
        Reward reported per trained expert (see :func:`fedalign.sim.client.local_train`).
    cold_start : {"prior", "routing"}
        A new client's fitness: the prior, or its share of samples the initial gate routes
        to each expert (a cheap forward pass).
    fitness_weight, usage_weight, fitness_ema, fitness_decay, fitness_prior, usage_decay
        The scheduler's desirability and trackers (DESIGN.md §1).
    max_experts : int or None
        Cap on experts per client and round on top of the device's memory (None: memory only).
    expert_capacity_slack : float or None
        For the ``load-balanced/<solver>`` strategies, at most ``ceil(slack * slots / E)``
        clients per expert and round, ``slots`` being the cohort's expected expert slots
        (None: no hard cap).
    deadline_factor : float
        Round deadline = this times the nominal seconds of the slowest tier for one expert.
    slowdown_sigma : float
        Log-normal spread of actual against nominal device speed.
    device_tiers : {"default", "uniform"}
        Heterogeneous phone/laptop/workstation mix, or every client a laptop with one expert.
    target_accuracy : float or None
        Accuracy whose first crossing gives ``rounds_to_target`` (None: 0.9 x the best
        strategy's mean final accuracy, decided after the runs).
    time_limit : float or None
        Solver time limit per round.
    """

    dataset: str = "digits"
    data_root: str | None = None
    mnist1d_samples: int = 5000
    partition: str = "domain"
    n_clients: int = 20
    n_domains: int = 4
    classes_per_client: int = 2
    alpha: float = 0.5
    n_experts: int = 4
    expert_hidden: int = 8
    trunk_hidden: int | None = None
    top_k: int = 1
    rounds: int = 40
    cohort_size: int | None = None
    local_epochs: int = 2
    lr: float = 0.01
    batch_size: int = 32
    reward: str = "accuracy"
    cold_start: str = "prior"
    fitness_weight: float = 1.0
    usage_weight: float = 0.2
    fitness_ema: float = 0.3
    fitness_decay: float = 0.02
    fitness_prior: float = 0.5
    usage_decay: float = 0.8
    max_experts: int | None = 1
    expert_capacity_slack: float | None = 1.25
    deadline_factor: float = 1.5
    slowdown_sigma: float = 0.3
    device_tiers: str = "default"
    target_accuracy: float | None = None
    time_limit: float | None = None

    def __post_init__(self) -> None:
        positive = (
            "n_clients",
            "n_domains",
            "n_experts",
            "expert_hidden",
            "rounds",
            "local_epochs",
            "batch_size",
            "top_k",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if self.cohort_size is not None and not 1 <= self.cohort_size <= self.n_clients:
            raise ValueError(
                f"cohort_size: expected 1..n_clients={self.n_clients} or None, got {self.cohort_size!r}"
            )
        for name in ("lr", "deadline_factor", "alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a number > 0, got {value!r}")
        if self.expert_capacity_slack is not None and not self.expert_capacity_slack >= 1.0:
            raise ValueError(
                f"expert_capacity_slack: expected None or >= 1, got {self.expert_capacity_slack!r}"
            )
        if self.dataset not in ("digits", "mnist1d", "cifar10"):
            raise ValueError(
                f"dataset: expected 'digits', 'mnist1d' or 'cifar10', got {self.dataset!r}"
            )
        if self.partition not in ("domain", "label-skew", "dirichlet"):
            raise ValueError(
                f"partition: expected 'domain', 'label-skew' or 'dirichlet', got {self.partition!r}"
            )
        if self.max_experts is not None and not (
            isinstance(self.max_experts, int) and self.max_experts >= 1
        ):
            raise ValueError(f"max_experts: expected None or an int >= 1, got {self.max_experts!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward: expected one of {REWARDS}, got {self.reward!r}")
        if self.cold_start not in ("prior", "routing"):
            raise ValueError(f"cold_start: expected 'prior' or 'routing', got {self.cold_start!r}")
        if self.device_tiers not in ("default", "uniform"):
            raise ValueError(
                f"device_tiers: expected 'default' or 'uniform', got {self.device_tiers!r}"
            )
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(
                f"target_accuracy: expected a value in (0, 1], got {self.target_accuracy!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of every setting."""
        return asdict(self)

    def replace(self, **changes: Any) -> SimConfig:
        """A copy with some settings changed (validated)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a SimConfig setting")
        return replace(self, **changes)


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {},
    # MNIST-1D's per-position means are nearly equal, so a feature permutation is invisible
    # to a linear gate on raw inputs: a shared ReLU trunk lets the gate see the domain.
    "mnist1d": {"expert_hidden": 16, "trunk_hidden": 32},
    "cifar10": {"expert_hidden": 32, "trunk_hidden": 128},
}
"""Model sizes :func:`preset` uses per dataset unless told otherwise."""


def preset(name: str, **changes: Any) -> SimConfig:
    """A named scenario, optionally changed.

    Parameters
    ----------
    name : {"quick", "full", "tiny"}
        ``quick``: the default digits scenario (minutes on 2 cores); ``full``: more rounds,
        for docs/experiments.md; ``tiny``: a few rounds for tests.
    **changes
        Settings to override. The dataset's model sizes (:data:`DATASET_DEFAULTS`) apply
        first, so ``preset("quick", dataset="mnist1d")`` gets MNIST-1D's trunk.
    """
    base = SimConfig()
    if name == "quick":
        cfg = base
    elif name == "full":
        cfg = base.replace(rounds=80)
    elif name == "tiny":
        cfg = base.replace(rounds=2, n_clients=8, local_epochs=1)
    else:
        raise ValueError(f"name: unknown preset {name!r}; choose quick, full or tiny")
    dataset = changes.get("dataset", cfg.dataset)
    if dataset not in DATASET_DEFAULTS:
        raise ValueError(
            f"dataset: unknown dataset {dataset!r}; choose one of {tuple(DATASET_DEFAULTS)}"
        )
    return cfg.replace(**{**DATASET_DEFAULTS[dataset], **changes})
