"""The server's round loop: one federated run of one strategy under one seed.

Each round: sample a cohort and hand it to a :class:`fedalign.rounds.RoundDriver`, which
plans it with the :class:`fedalign.Scheduler` and tells each client's experts and payload
(the shared part and its experts); each client trains (or drops out: it vanished, or its
simulated time passed the deadline); the driver reports :class:`fedalign.Feedback`, closes
the round and averages each expert over the clients that returned it. Then the global model
is evaluated on the held-out test set. This module is the driver's in-process transport:
torch tensors become numpy arrays at the boundary. Bytes are counted from the arrays
actually sent; seconds come from the device profiles.

Everything random is seeded: the data split, the model's initial weights, the fleet, the
cohorts and the device luck (slowdowns, vanishing) are the same for every strategy under a
seed, so strategies differ only in their assignments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fedalign import Feedback, Scheduler

from ..rounds import ActiveRound, RoundDriver
from ..rounds.naming import expert_of_key
from .client import as_tensors, local_train
from .config import SimConfig, Strategy
from .data import Dataset, load_dataset
from .devices import DEFAULT_TIERS, UNIFORM_TIERS, Fleet, make_fleet
from .model import MoEModel, load_partial_state, model_for, state_nbytes
from .partition import Partition, make_partition
from .threats import ThreatConfig, ThreatRun, ThreatWorld

__all__ = [
    "RunResult",
    "Setup",
    "evaluate",
    "make_scheduler",
    "make_setup",
    "partial_state_of",
    "run_strategy",
]


@dataclass
class Setup:
    """What every strategy of one seed shares: data, partition, initial model, fleet."""

    config: SimConfig
    seed: int
    data: Dataset
    partition: Partition
    initial_state: dict[str, torch.Tensor]
    fleet: Fleet
    deadline: float

    @property
    def samples(self) -> NDArray[np.int64]:
        """Samples each client processes per expert and round (local data x epochs)."""
        return self.partition.sizes * self.config.local_epochs

    def threat_world(self) -> ThreatWorld:
        """What :class:`~fedalign.sim.threats.ThreatRun` needs of this seed: each device
        holds its tier's ``max_experts`` experts (memory in units of one expert) and trains
        in time as many as its nominal speed fits before the deadline."""
        cfg, fleet = self.config, self.fleet
        n = cfg.n_clients
        holds = fleet.max_experts
        caps = holds if cfg.max_experts is None else np.minimum(holds, cfg.max_experts)
        everyone = np.arange(n)
        base = fleet.nominal_seconds(everyone, np.zeros(n, np.int64), self.samples)
        per = fleet.nominal_seconds(everyone, np.ones(n, np.int64), self.samples) - base
        in_time = np.floor((self.deadline - base) / per).astype(np.int64)
        honest = np.maximum(np.minimum(caps, in_time), 0)
        most = int(caps.max())

        def beyond(clients: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.bool_]:
            return np.asarray(x.sum(axis=1) > honest[clients])

        return ThreatWorld(
            n_experts=cfg.n_experts,
            seed=self.seed,
            holds=holds.astype(np.float64),
            expert_memory=np.ones(cfg.n_experts),
            largest_memory=float(fleet.shared_bytes + (most + 0.5) * fleet.expert_bytes),
            most_experts=most,
            tier_of=np.asarray(fleet.tier_of, dtype=np.int64),
            tier_names=tuple(t.name for t in fleet.tiers),
            client_group=np.asarray(self.partition.client_group, dtype=np.int64),
            clients=self.partition.clients,
            beyond_device=beyond,
        )


def make_setup(config: SimConfig, seed: int, data: Dataset | None = None) -> Setup:
    """Build the seed's shared world.

    Parameters
    ----------
    config : SimConfig
    seed : int
    data : Dataset, optional
        Already loaded data (else loaded from ``config``).
    """
    if data is None:
        options: dict[str, Any] = {}
        if config.dataset == "mnist1d":
            options["num_samples"] = config.mnist1d_samples
        data = load_dataset(config.dataset, seed=seed, root=config.data_root, **options)
    partition = make_partition(
        data,
        config.n_clients,
        config.partition,
        seed=seed,
        n_domains=config.n_domains,
        classes_per_client=config.classes_per_client,
        alpha=config.alpha,
    )
    torch.manual_seed(seed)
    model = model_for(config, data)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    expert_bytes = state_nbytes({k: v for k, v in state.items() if expert_of_key(k) == 0})
    shared_bytes = state_nbytes({k: v for k, v in state.items() if expert_of_key(k) is None})
    tiers = DEFAULT_TIERS if config.device_tiers == "default" else UNIFORM_TIERS
    fleet = make_fleet(
        config.n_clients,
        expert_bytes=expert_bytes,
        shared_bytes=shared_bytes,
        seed=seed,
        tiers=tiers,
        slowdown_sigma=config.slowdown_sigma,
    )
    everyone = np.arange(config.n_clients)
    one = fleet.nominal_seconds(
        everyone, np.ones(config.n_clients, dtype=np.int64), partition.sizes * config.local_epochs
    )
    deadline = float(config.deadline_factor * one.max())
    return Setup(config, seed, data, partition, state, fleet, deadline)


@dataclass
class RunResult:
    """Everything measured in one run (one strategy, one seed).

    Attributes
    ----------
    strategy : str
    seed : int
    accuracy : list of float
        Global test accuracy after each round.
    domain_accuracy : list of list of float
        Per round, accuracy on each domain's test set (empty outside ``domain``).
    bytes_up, bytes_down : list of int
        Cumulative bytes after each round.
    seconds : list of float
        Cumulative simulated seconds after each round.
    expert_load : (n_clients, E) int array
        How often each client was assigned each expert.
    trained_load : (n_clients, E) int array
        How often each client returned each expert trained (dropouts excluded).
    round_load : (rounds, E) int array
        Completed trainings per expert in each round.
    dropouts : list of int
        Clients per round that vanished or missed the deadline.
    solver_seconds : list of float
        Wall-clock seconds the solver took each round (``cross-device``: every plan of the
        round, the planning time the clock counts).
    records : list of dict
        ``cross-device``: one :class:`~fedalign.sim.accounting.RoundRecord` per round.
    threats : dict
        The threat figures of :meth:`fedalign.sim.threats.ThreatRun.metrics` (participation,
        Jain's index, idle violations, leakage, ε spent; empty when the run had no
        :class:`~fedalign.sim.threats.ThreatConfig`).
    """

    strategy: str
    seed: int
    accuracy: list[float] = field(default_factory=list)
    domain_accuracy: list[list[float]] = field(default_factory=list)
    bytes_up: list[int] = field(default_factory=list)
    bytes_down: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    expert_load: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    trained_load: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    round_load: list[list[int]] = field(default_factory=list)
    dropouts: list[int] = field(default_factory=list)
    solver_seconds: list[float] = field(default_factory=list)
    threats: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


def make_scheduler(
    setup: Setup, strategy: Strategy, *, seed: int, threats: ThreatRun | None = None
) -> Scheduler:
    """The :class:`fedalign.Scheduler` a strategy runs with, every client registered.

    ``threats`` adds its scheduler settings (trust, reward test, idle floor, noisy rewards)
    and decides the profile each client registers (a lie under ``capacity-lie``).
    """
    cfg, fleet = setup.config, setup.fleet
    caps = (
        fleet.max_experts
        if cfg.max_experts is None
        else np.minimum(fleet.max_experts, cfg.max_experts)
    )
    expert_max_clients = None
    if strategy.balanced and not strategy.defaults and cfg.expert_capacity_slack is not None:
        cohort = cfg.cohort_size or cfg.n_clients
        slots = cohort * float(caps.mean())
        expert_max_clients = max(1, math.ceil(cfg.expert_capacity_slack * slots / cfg.n_experts))
    # `balanced` keeps the scheduler's own desirability settings and in-round load row
    # (its defaults); the others are the paper's algorithm
    weights: dict[str, Any] = {} if strategy.defaults else {
        "fitness_weight": cfg.fitness_weight,
        "usage_weight": strategy.usage_weight,
        "fitness_ema": cfg.fitness_ema,
        "fitness_decay": cfg.fitness_decay,
        "fitness_prior": cfg.fitness_prior,
        "usage_decay": cfg.usage_decay,
        "balance_weight": 0.0,  # the paper's system: usage moves load between rounds only
    }
    sched = Scheduler(
        cfg.n_experts,
        solver=strategy.solver,
        expert_memory=float(fleet.expert_bytes),
        seed=seed,
        **weights,
        time_limit=cfg.time_limit,
        min_experts=1,
        max_experts=None,
        expert_max_clients=expert_max_clients,
        expert_bytes=float(fleet.expert_bytes),
        deadline=setup.deadline,
        **({} if threats is None else threats.scheduler_settings()),
    )
    cold = None
    if cfg.cold_start == "routing":
        model = model_for(cfg, setup.data)
        model.load_state_dict(setup.initial_state)
        with torch.no_grad():
            cold = [
                torch.bincount(model.routing(as_tensors(c)[0]).argmax(1), minlength=cfg.n_experts)
                .double()
                .div(len(c[1]))
                .numpy()
                for c in setup.partition.clients
            ]
    samples = setup.samples
    for i in range(cfg.n_clients):
        profile = fleet.profile(i, samples=int(samples[i]))
        if cfg.max_experts is not None:
            profile = replace(profile, max_experts=int(caps[i]))
        if threats is not None:
            profile = threats.profile(i, profile)
        sched.register(i, profile, routing_shares=None if cold is None else cold[i])
    return sched


@torch.no_grad()
def evaluate(model: MoEModel, partition: Partition) -> tuple[float, list[float]]:
    """Global test accuracy and, for ``domain`` partitions, accuracy per domain."""
    x = torch.as_tensor(partition.x_test)
    y = torch.as_tensor(partition.y_test)
    correct = (model(x).argmax(1) == y).numpy()
    groups = partition.test_group
    per_domain = (
        [float(correct[groups == d].mean()) for d in range(int(groups.max()) + 1)]
        if groups.size and groups.max() >= 0
        else []
    )
    return float(correct.mean()), per_domain


def run_strategy(
    setup: Setup,
    strategy: Strategy,
    *,
    on_round: Callable[[int, float], None] | None = None,
    threats: ThreatConfig | None = None,
) -> RunResult:
    """Run one strategy for ``config.rounds`` rounds on a seed's :class:`Setup`.

    The round protocol (plan, payloads, feedback, closing, per-expert averaging) is
    :class:`fedalign.rounds.RoundDriver`'s; this function is its in-process transport:
    it decides which clients the simulated fleet drops, trains the others in PyTorch, and
    converts tensors to numpy arrays at the boundary.

    Parameters
    ----------
    setup : Setup
        From :func:`make_setup`; not modified.
    strategy : Strategy
    on_round : callable(round, accuracy), optional
        Called after each round (progress bars).
    threats : ThreatConfig, optional
        Attack, defenses, fairness floor, reward privacy and leakage audit
        (:mod:`fedalign.sim.threats`); its figures go to :attr:`RunResult.threats`.

    Returns
    -------
    RunResult
    """
    cfg, part = setup.config, setup.partition
    torch.set_num_threads(1)
    # cohorts and device luck: one stream per seed, identical for every strategy
    world = np.random.default_rng([setup.seed, 7919])
    run = None if threats is None else ThreatRun(threats, setup, lambda: model_for(cfg, setup.data))
    driver = RoundDriver(
        make_scheduler(setup, strategy, seed=setup.seed, threats=run),
        **({} if run is None else run.driver_options()),
    )
    worker = model_for(cfg, setup.data)
    global_state = {k: v.numpy().copy() for k, v in setup.initial_state.items()}
    n, e = cfg.n_clients, cfg.n_experts
    result = RunResult(strategy.name, setup.seed)
    result.expert_load = np.zeros((n, e), dtype=np.int64)
    result.trained_load = np.zeros((n, e), dtype=np.int64)
    up = down = 0
    clock = 0.0

    for rnd in range(cfg.rounds):
        cohort = np.sort(world.choice(n, size=cfg.cohort_size or n, replace=False))
        current = driver.open(cohort.tolist(), global_state)
        seconds, dropped = _train_cohort(
            setup, current, cohort, global_state, worker, world, rnd, run
        )
        global_state, summary = current.close()
        if run is not None:
            run.observe(cohort, summary)
        up += summary.bytes_received
        down += summary.bytes_sent + (0 if run is None else run.take_survey_bytes())
        load = np.zeros(e, dtype=np.int64)
        for client, experts in summary.assignment.items():
            result.expert_load[client, experts] += 1  # type: ignore[index]
        for client in summary.completed:
            experts = summary.assignment[client]
            result.trained_load[client, experts] += 1  # type: ignore[index]
            load[experts] += 1
        clock += setup.deadline if dropped else float(np.max(seconds, initial=0.0))
        load_partial_state(worker, global_state)
        acc, per_domain = evaluate(worker, part)
        result.solver_seconds.append(float(summary.solver_seconds or 0.0))
        result.accuracy.append(acc)
        result.domain_accuracy.append(per_domain)
        result.bytes_up.append(int(up))
        result.bytes_down.append(int(down))
        result.seconds.append(float(clock))
        result.round_load.append(load.tolist())
        result.dropouts.append(dropped)
        result.records.append(_record(rnd, summary, len(cohort), dropped, result))
        if on_round is not None:
            on_round(rnd, acc)
    if run is not None:
        result.threats = run.metrics(result.expert_load, driver.scheduler)
    return result


def _record(
    rnd: int, summary: Any, cohort: int, dropped: int, result: RunResult
) -> dict[str, Any]:
    """The round's record for ``results.json`` (``fig3``: the clock leaves planning out)."""
    before = result.seconds[-2] if len(result.seconds) > 1 else 0.0
    down = result.bytes_down[-1] - (result.bytes_down[-2] if len(result.bytes_down) > 1 else 0)
    return {
        "round": rnd,
        "planning_seconds": float(summary.solver_seconds or 0.0),
        "round_seconds": float(result.seconds[-1] - before),
        "bytes_down": int(down),  # the payloads, and experts downloaded only to evaluate
        "bytes_up": int(summary.bytes_received),
        "byte_budget": None,
        "online": int(cohort),
        "trained_clients": len(summary.completed),
        "dropouts": int(dropped),
    }


def _train_cohort(
    setup: Setup,
    current: ActiveRound,
    cohort: NDArray[np.int64],
    global_state: dict[str, NDArray[Any]],
    worker: MoEModel,
    world: np.random.Generator,
    rnd: int,
    threats: ThreatRun | None = None,
) -> tuple[NDArray[np.float64], int]:
    """Settle every client of ``current``: the fleet drops some, the others train.

    Returns the simulated seconds of each cohort client and how many the fleet dropped
    (vanished or past the deadline, idle clients included: device luck, not the protocol).
    """
    cfg, samples = setup.config, setup.samples
    # expert ids are the default 0..E-1, so ids are positions
    assigned = [sorted(current.experts(int(c))) for c in cohort]
    n_assigned = np.array([len(a) for a in assigned], dtype=np.int64)
    seconds, vanished = setup.fleet.round_seconds(cohort, n_assigned, samples[cohort], world)
    late = ~vanished & (seconds > setup.deadline)
    fits = np.ones(cohort.size, dtype=bool)
    if threats is not None:
        x = np.zeros((cohort.size, cfg.n_experts), dtype=bool)
        for pos, experts in enumerate(assigned):
            x[pos, experts] = True
        fits = threats.fits(cohort, x)
    for pos, client in enumerate(cohort.tolist()):
        if not assigned[pos]:  # nothing fits this client: the driver reported it idle
            continue
        if vanished[pos] or late[pos]:
            reason = "vanished" if vanished[pos] else "missed the deadline"
            current.drop(client, reason, duration=setup.deadline)
            continue
        if not fits[pos]:
            # a capacity liar given more experts than its memory holds: it crashes
            current.drop(client, "out of memory", duration=setup.deadline)
            continue
        # the simulated client starts from the global model; it trains only its experts
        load_partial_state(worker, global_state)
        survey: dict[int, float] = {}
        if threats is not None and threats.surveys(client):  # evaluates the others too
            data = as_tensors(setup.partition.clients[client])
            survey = threats.survey(worker, assigned[pos], *data, cfg.reward, current.layout)
        state, metrics = local_train(
            worker,
            assigned[pos],
            setup.partition.clients[client],
            epochs=cfg.local_epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            seed=setup.seed * 1_000_003 + rnd * 1009 + client,
            reward=cfg.reward,
        )
        feedback = Feedback(
            samples=int(samples[client]),
            rewards=metrics["rewards"],
            duration=float(seconds[pos]),
            survey=survey,
        )
        arrays = {k: v.numpy() for k, v in state.items()}
        weight = float(metrics["samples"])
        if threats is not None:
            arrays, feedback, weight = threats.reply(
                client, assigned[pos], current.payload(client), arrays, feedback, weight
            )
        current.complete(client, arrays, feedback, weight=weight)
    return seconds, int(vanished.sum() + late.sum())


def partial_state_of(state: dict[str, torch.Tensor], experts: list[int]) -> dict[str, torch.Tensor]:
    """The shared tensors of a full state dict plus those of ``experts`` (no copies).

    The dict-side twin of :func:`fedalign.sim.model.partial_state`: what the server sends.
    """
    wanted = set(experts)
    return {k: v for k, v in state.items() if (j := expert_of_key(k)) is None or j in wanted}
