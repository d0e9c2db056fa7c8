"""The ``cross-device`` scenario: a registered fleet, who is online, and rounds under budgets.

Each round (:func:`run_cross_device`): the clients online at check-in report their faded
bandwidth; the server plans, with the :class:`fedalign.Scheduler` behind a
:class:`fedalign.rounds.RoundDriver`, which experts each of them trains; each client given
experts downloads them with the shared part, trains and uploads, unless it is late (past the
deadline) or vanishes; the driver averages what came back. The simulated clock advances by
the server's planning time plus the wait for the clients (:mod:`fedalign.sim.accounting`).

How a strategy picks its clients (:class:`~fedalign.sim.config.Strategy`):

* ``selection="plan"`` (``load-balanced/<solver>``, ``balanced``): the whole online cohort
  is planned at once under every row -- memory, deadline, 0 to ``max_experts`` experts,
  per-expert minimum and maximum trainers, and the server byte budget;
* ``selection="arrival"`` (``random``, ``greedy``, ``load-balanced``) and ``"oort"``: each
  online client's experts are planned on their own (memory, deadline, 0 to ``max_experts``),
  then the server admits clients in check-in order -- or Oort's -- while their bytes fit
  the budget (:func:`fedalign.sim.selection.admit`) and plans the admitted ones for real,
  restricted to those pairs. Both plans' solver time is planning time.

Everything random about the world (data, fleet, availability, fading, jitter, vanishing,
check-in order) is drawn per seed before any strategy runs, so strategies differ only in
their decisions.

With a :class:`~fedalign.sim.threats.ThreatConfig` (``--attack``, ``--defense``,
``--max-idle-rounds``, ``--ldp-epsilon``, ``--audit``) the round loop calls the same
:class:`~fedalign.sim.threats.ThreatRun` hooks as ``fig3``'s: the profiles registered and the
bandwidth reported at check-in (a capacity liar overstates both), the driver's defenses,
each reply (an attacker's is tampered with, an honest one's rewards privatized), a client
given more experts than its real memory holds fails out of memory, and every round is
counted with its online clients as the ones offered it (docs/trust.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

import fedalign as fa

from ..errors import HerdingWarning
from ..rounds import ActiveRound, RoundDriver
from ..rounds.naming import ModelLayout
from .accounting import RoundRecord, client_times, round_seconds
from .client import as_tensors, local_train
from .config import SimConfig, Strategy
from .data import Dataset, load_dataset
from .gates import LocalGates, domain_accuracy, gate_keys
from .model import load_partial_state, model_for
from .partition import Partition, cross_device_partition
from .population import Population, Timeline, make_population, make_timeline
from .selection import OortSelector, admit, client_bytes, pair_bytes
from .threats import ThreatConfig, ThreatRun, ThreatWorld

__all__ = [
    "CrossDeviceSetup",
    "make_cross_device_scheduler",
    "make_cross_device_setup",
    "run_cross_device",
]

State = dict[str, NDArray[Any]]


@dataclass
class CrossDeviceSetup:
    """What every strategy of one seed shares in the ``cross-device`` scenario.

    Attributes
    ----------
    config : SimConfig
    seed : int
    data : Dataset
    partition : Partition
        ``client_group`` is each client's domain.
    initial_state : dict of str to Tensor
    population : Population
    timeline : Timeline
    expert_bytes : (E,) int
        Tensor bytes of each expert.
    shared_bytes : dict of str to int
        Tensor bytes of the shared part per gate placement (``"local"`` leaves the gate out).
    expert_cost : (E,) float
        Training cost per sample relative to the smallest expert (parameter ratio).
    expert_memory : (E,) float
        Training memory of each expert, tensor bytes times ``memory_factor``.
    samples : (n,) int
        Samples each client trains each expert on per round (local data times epochs).
    round_bytes : float or None
        The server's byte budget per round.
    panel : list of (k,) int arrays
        Per domain, the clients whose own model is scored with local gates.
    """

    config: SimConfig
    seed: int
    data: Dataset
    partition: Partition
    initial_state: dict[str, torch.Tensor]
    population: Population
    timeline: Timeline
    expert_bytes: NDArray[np.int64]
    shared_bytes: dict[str, int]
    expert_cost: NDArray[np.float64]
    expert_memory: NDArray[np.float64]
    samples: NDArray[np.int64]
    round_bytes: float | None
    panel: list[NDArray[np.int64]]

    @property
    def deadline(self) -> float:
        """The round's deadline, seconds."""
        return float(self.config.deadline_seconds)

    def threat_world(self, gate: str = "global") -> ThreatWorld:
        """What :class:`~fedalign.sim.threats.ThreatRun` needs of this seed: each device's
        real memory for experts and the experts' training memory (bytes), and whether a
        client's experts fit its memory and its nominal round time (registered figures, no
        fading, jitter or hidden slowdown, the shared part of ``gate``) the deadline."""
        cfg, pop = self.config, self.population
        kmax = cfg.n_experts if cfg.max_experts is None else min(cfg.max_experts, cfg.n_experts)

        def beyond(clients: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.bool_]:
            seconds = client_times(
                x,
                expert_bytes=self.expert_bytes,
                shared_bytes=float(self.shared_bytes[gate]),
                expert_cost=self.expert_cost,
                samples=self.samples[clients],
                compute=pop.compute[clients],
                bandwidth_down=pop.bandwidth_down[clients],
                bandwidth_up=pop.bandwidth_up[clients],
                latency=pop.latency[clients],
            ).total
            memory = x.astype(np.float64) @ self.expert_memory
            return np.asarray((memory > pop.memory[clients]) | (seconds > self.deadline))

        return ThreatWorld(
            n_experts=cfg.n_experts,
            seed=self.seed,
            holds=np.asarray(pop.memory, dtype=np.float64),
            expert_memory=np.asarray(self.expert_memory, dtype=np.float64),
            largest_memory=float(pop.memory.max()),
            most_experts=int(kmax),
            tier_of=np.asarray(pop.tier_of, dtype=np.int64),
            tier_names=tuple(pop.tier_names),
            client_group=np.asarray(self.partition.client_group, dtype=np.int64),
            clients=self.partition.clients,
            beyond_device=beyond,
        )


def make_cross_device_setup(
    config: SimConfig, seed: int, data: Dataset | None = None
) -> CrossDeviceSetup:
    """Build the seed's world: data and split, initial model, fleet, timeline, sizes, budget."""
    if data is None:
        options: dict[str, Any] = {}
        if config.dataset == "mnist1d":
            options["num_samples"] = config.mnist1d_samples
        data = load_dataset(config.dataset, seed=seed, **options)
    part = cross_device_partition(
        data,
        config.n_clients,
        n_domains=config.n_domains,
        sizes=config.client_samples,
        label_alpha=config.label_alpha,
        test_per_domain=config.test_per_domain,
        domain_offset=config.domain_offset,
        seed=seed,
    )
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in model_for(config, data).state_dict().items()}
    layout = ModelLayout.of({k: v.numpy() for k, v in state.items()})
    expert_bytes = np.array([layout.expert_nbytes[j] for j in range(config.n_experts)])
    gate = sum(int(state[k].numel() * state[k].element_size()) for k in gate_keys(state))
    shared = {"global": layout.shared_nbytes, "local": layout.shared_nbytes - gate}
    population = make_population(
        config, shared_memory=config.memory_factor * layout.shared_nbytes, seed=seed
    )
    round_bytes = None
    if config.byte_budget_pairs is not None:
        mean_pair = float(pair_bytes(expert_bytes, shared["global"]).mean())
        round_bytes = float(config.byte_budget_pairs) * mean_pair
    rng = np.random.default_rng([seed, 65537])
    panel = [
        rng.permutation(np.flatnonzero(part.client_group == d))[: config.eval_clients]
        for d in range(config.n_domains)
    ]
    return CrossDeviceSetup(
        config=config,
        seed=seed,
        data=data,
        partition=part,
        initial_state=state,
        population=population,
        timeline=make_timeline(config, population, seed=seed),
        expert_bytes=expert_bytes,
        shared_bytes=shared,
        expert_cost=expert_bytes / float(expert_bytes.min()),
        expert_memory=config.memory_factor * expert_bytes.astype(np.float64),
        samples=part.sizes * config.local_epochs,
        round_bytes=round_bytes,
        panel=panel,
    )


def make_cross_device_scheduler(
    setup: CrossDeviceSetup, strategy: Strategy, threats: ThreatRun | None = None
) -> fa.Scheduler:
    """The :class:`fedalign.Scheduler` a strategy runs with, the whole fleet registered.

    ``threats`` adds its scheduler settings (trust, reward test, idle floor, noisy rewards)
    and decides the profile each client registers (a lie under ``capacity-lie``).
    """
    cfg = setup.config
    kmax = cfg.n_experts if cfg.max_experts is None else min(cfg.max_experts, cfg.n_experts)
    kw: dict[str, Any] = {
        "solver": strategy.solver,
        "seed": setup.seed,
        "time_limit": cfg.time_limit,
        "expert_memory": setup.expert_memory,
        "expert_bytes": setup.expert_bytes.astype(np.float64),
        "expert_cost": setup.expert_cost,
        "shared_bytes": float(setup.shared_bytes[strategy.gate]),
        "deadline": setup.deadline,
        "min_experts": 0,
        "max_experts": kmax,
    }
    if not strategy.defaults:  # `balanced` keeps the scheduler's own desirability settings
        kw.update(
            fitness_weight=cfg.fitness_weight,
            usage_weight=strategy.usage_weight,
            time_weight=cfg.time_weight,
            fitness_ema=cfg.fitness_ema,
            fitness_decay=cfg.fitness_decay,
            fitness_prior=cfg.fitness_prior,
            usage_decay=cfg.usage_decay,
            # the paper's algorithm as published: no in-round load row (``balanced`` has it)
            balance_weight=0.0,
        )
    if strategy.balanced:
        kw.update(
            expert_min_clients=cfg.expert_min_trainers,
            expert_max_clients=cfg.expert_max_trainers,
            round_bytes=setup.round_bytes,
        )
    if threats is not None:
        kw.update(threats.scheduler_settings())
    sched = fa.Scheduler(cfg.n_experts, **kw)
    pop = setup.population
    profiles = [
        pop.profile(i, samples=float(setup.samples[i]), max_experts=kmax)
        for i in range(pop.n_clients)
    ]
    if threats is not None:
        profiles = [threats.profile(i, p) for i, p in enumerate(profiles)]
    shares = _routing_shares(setup) if cfg.cold_start == "routing" else None
    sched.register_many(range(pop.n_clients), profiles, routing_shares=shares)
    return sched


@torch.no_grad()
def _routing_shares(setup: CrossDeviceSetup) -> NDArray[np.float64]:
    """Per client, the share of its samples the initial gate routes to each expert (top-1):
    the cold-start fitness of ``cold_start="routing"`` (one forward pass over all clients)."""
    model = model_for(setup.config, setup.data)
    model.load_state_dict(setup.initial_state)
    clients = setup.partition.clients
    x = torch.as_tensor(np.concatenate([c[0] for c in clients]))
    owner = np.repeat(np.arange(len(clients)), [len(c[1]) for c in clients])
    top = model.routing(x).argmax(dim=1).numpy()
    counts = np.zeros((len(clients), setup.config.n_experts))
    np.add.at(counts, (owner, top), 1.0)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


@dataclass
class _Round:
    """One round in the making: who is online, what they reported, the plan, the outcome."""

    number: int
    online: NDArray[np.int64]
    conditions: dict[Hashable, fa.ClientProfile]
    planning: float = 0.0
    current: ActiveRound | None = None
    infeasible: bool = False


class _Run:
    """One strategy under one seed: the scheduler, the driver, the model and what is kept."""

    def __init__(
        self, setup: CrossDeviceSetup, strategy: Strategy, threats: ThreatConfig | None = None
    ) -> None:
        cfg = setup.config
        self.setup, self.strategy, self.cfg = setup, strategy, cfg
        self.threats: ThreatRun | None = None
        if threats is not None:
            self.threats = ThreatRun(
                threats,
                setup,
                lambda: model_for(cfg, setup.data),
                world=setup.threat_world(strategy.gate),
            )
        self.sched = make_cross_device_scheduler(setup, strategy, self.threats)
        options = {} if self.threats is None else self.threats.driver_options()
        self.driver = RoundDriver(self.sched, dropout_duration=setup.deadline, **options)
        self.worker = model_for(cfg, setup.data)
        self.worker.load_state_dict(setup.initial_state)
        state = {k: v.numpy().copy() for k, v in setup.initial_state.items()}
        self.gates: LocalGates | None = None
        if strategy.gate == "local":  # the gate stays on the clients: not in the global state
            self.gates = LocalGates({k: state.pop(k) for k in gate_keys(state)})
        self.state: State = state
        self.rng = np.random.default_rng([setup.seed, 271828])  # dry-run solver seeds
        self.oort: OortSelector | None = None
        if strategy.selection == "oort":
            self.oort = OortSelector(
                cfg.n_clients,
                preferred=cfg.oort_preferred * setup.deadline,
                pacer_step=cfg.oort_pacer_step * setup.deadline,
                pacer_window=cfg.oort_pacer_window,
                alpha=cfg.oort_alpha,
                exploration=cfg.oort_exploration,
                decay=cfg.oort_exploration_decay,
                cutoff=cfg.oort_cutoff,
                seed=[setup.seed, 4271],
            )

    def check_in(self, rnd: int) -> _Round:
        """Who is online, and the faded bandwidth each reports."""
        pop, fade = self.setup.population, self.setup.timeline.fading[rnd]
        online = self.setup.timeline.online_clients(rnd)
        conditions: dict[Hashable, fa.ClientProfile] = {}
        for c in online.tolist():
            reported = fa.ClientProfile(
                bandwidth_down=float(pop.bandwidth_down[c] * fade[c]),
                bandwidth_up=float(pop.bandwidth_up[c] * fade[c]),
            )
            # a capacity liar overstates what it measured too
            conditions[c] = reported if self.threats is None else self.threats.condition(c, reported)
        return _Round(rnd, online, conditions)

    def plan(self, rnd: _Round) -> None:
        """Open the round for the clients the strategy picks (``rnd.current``; None if none)."""
        cohort, allowed = rnd.online, None
        if self.strategy.selection != "plan" and cohort.size:
            cohort, allowed, rnd.planning = self._admitted(rnd)
        if cohort.size == 0:
            return
        try:
            rnd.current = self.driver.open(
                cohort.tolist(),
                self.state,
                conditions={c: rnd.conditions[c] for c in cohort.tolist()},
                allowed=allowed,
            )
        except fa.InfeasibleError:  # e.g. no online client can host some expert's minimum
            rnd.infeasible = True
            return
        rnd.planning += float(rnd.current.solver_seconds or 0.0)

    def _admitted(self, rnd: _Round) -> tuple[NDArray[np.int64], NDArray[np.bool_], float]:
        """Each online client planned on its own, then admitted under the byte budget.

        Returns the admitted clients, their planned pairs (the real plan may only use
        those) and the first plan's solver seconds.
        """
        problem, _ = self.sched.build_problem(rnd.online.tolist(), conditions=rnd.conditions)
        solution = fa.solve(
            problem,
            self.strategy.solver,
            time_limit=self.cfg.time_limit,
            seed=int(self.rng.integers(0, 2**63 - 1)),
        )
        x = solution.assignment
        need = client_bytes(x, self.setup.expert_bytes, self.setup.shared_bytes[self.strategy.gate])
        keep = admit(need, self._order(rnd, problem, need), self.setup.round_bytes)
        return rnd.online[keep], x[keep], float(solution.runtime)

    def _order(
        self, rnd: _Round, problem: fa.AlignmentProblem, need: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        """Positions of the online clients in the order the server admits them."""
        if self.oort is None:  # check-in order
            return np.argsort(self.setup.timeline.arrival[rnd.number, rnd.online], kind="stable")
        budget = self.setup.round_bytes
        wanted = need[need > 0]
        k = rnd.online.size if budget is None or not wanted.size else int(budget // wanted.mean())
        assert problem.train_time is not None and problem.deadline is not None
        # predicted seconds for the client's fastest expert with the shared part
        fastest = problem.train_time.min(axis=1) + (self.setup.deadline - problem.deadline)
        return self.oort.rank(rnd.online, max(k, 1), 1.0 / np.maximum(fastest, 1e-9))

    def play(self, rnd: _Round) -> tuple[RoundRecord, Any]:
        """Run the opened round to its end: train, close, account. Returns the record and
        the driver's summary (None when nobody was sent anything)."""
        current, summary = rnd.current, None
        sent = np.zeros(0, dtype=np.int64)
        seconds, answered = np.zeros(0), np.zeros(0, dtype=bool)
        late = vanished = 0
        if current is not None:
            sent, seconds, answered, utility, late, vanished = self._clients(rnd, current)
            self.state, summary = current.close()
            if self.oort is not None:
                self.oort.update(sent, utility, np.where(answered, seconds, self.setup.deadline), answered)
        elif self.oort is not None and self.strategy.selection == "oort" and rnd.online.size:
            self.oort.update([], [], [], [])  # keep the pacer's rounds in step
        if self.threats is not None:  # every online client was offered the round
            self.threats.observe(rnd.online, summary)
        tier, n_tiers = self.setup.population.tier_of, self.cfg.n_tiers
        completed = np.array([] if summary is None else summary.completed, dtype=np.int64)
        record = RoundRecord(
            round=rnd.number,
            planning_seconds=rnd.planning,
            round_seconds=round_seconds(rnd.planning, seconds, answered, self.setup.deadline),
            bytes_down=(0 if summary is None else int(summary.bytes_sent))
            + (0 if self.threats is None else self.threats.take_survey_bytes()),
            bytes_up=0 if summary is None else int(summary.bytes_received),
            byte_budget=self.setup.round_bytes,
            online=int(rnd.online.size),
            trained_clients=int(completed.size),
            dropouts=0 if summary is None else len(summary.dropouts),
            late=int(late),
            vanished=int(vanished),
            infeasible=rnd.infeasible,
            online_by_tier=np.bincount(tier[rnd.online], minlength=n_tiers).tolist(),
            trained_by_tier=np.bincount(tier[completed], minlength=n_tiers).tolist(),
        )
        return record, summary

    def _clients(
        self, rnd: _Round, current: ActiveRound
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64], int, int]:
        """Settle every client sent a payload: late and vanished ones drop, the rest train.

        Returns the clients, their actual seconds, who answered in time, Oort's utility of
        those that did, and the number of late and vanished clients (a client out of memory,
        a capacity liar's fate, counts as late: it fails at the deadline).
        """
        sent = np.array(current.sent, dtype=np.int64)
        x = np.zeros((sent.size, self.cfg.n_experts), dtype=bool)
        for pos, c in enumerate(sent.tolist()):
            x[pos, current.experts(c)] = True
        total = self._times(rnd, sent, x)
        vanished = self.setup.timeline.vanished[rnd.number, sent]
        fits = np.ones(sent.size, dtype=bool) if self.threats is None else self.threats.fits(sent, x)
        oom = ~vanished & ~fits
        late = ~vanished & (oom | (total > self.setup.deadline))
        utility = np.zeros(sent.size)
        for pos, c in enumerate(sent.tolist()):
            if vanished[pos]:
                current.drop(c, "vanished")
            elif oom[pos]:  # given more than its real memory holds: it crashes
                current.drop(c, "out of memory", duration=self.setup.deadline)
            elif late[pos]:  # a straggler: its download happened, nothing is credited
                current.drop(c, "missed the deadline", duration=self.setup.deadline)
            else:
                utility[pos] = self._train_one(current, c, float(total[pos]), rnd.number)
        return sent, total, ~(vanished | late), utility, int(late.sum()), int(vanished.sum())

    def _times(self, rnd: _Round, sent: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Actual seconds of each sent client: this round's fading, jitter, hidden slowdown."""
        pop, line = self.setup.population, self.setup.timeline
        fade = line.fading[rnd.number, sent]
        return client_times(
            x,
            expert_bytes=self.setup.expert_bytes,
            shared_bytes=float(self.setup.shared_bytes[self.strategy.gate]),
            expert_cost=self.setup.expert_cost,
            samples=self.setup.samples[sent],
            compute=pop.compute[sent],
            bandwidth_down=pop.bandwidth_down[sent] * fade,
            bandwidth_up=pop.bandwidth_up[sent] * fade,
            latency=pop.latency[sent],
            slowdown=pop.slowdown[sent],
            jitter=line.jitter[rnd.number, sent],
        ).total

    def _train_one(self, current: ActiveRound, client: int, seconds: float, number: int) -> float:
        """Train ``client``'s experts from the global model (and its own gate); complete it.

        Returns Oort's statistical utility of the client's round, ``|B| sqrt(mean loss^2)``.
        """
        cfg, experts = self.cfg, current.experts(client)
        surveys = self.threats is not None and self.threats.surveys(client)
        # a surveying client holds every expert: it evaluates the others too
        load_partial_state(
            self.worker, self.state if surveys else {k: self.state[k] for k in current.keys(client)}
        )
        if self.gates is not None:
            load_partial_state(self.worker, self.gates.get(client))
        survey: dict[int, float] = {}
        if surveys:
            assert self.threats is not None
            data = as_tensors(self.setup.partition.clients[client])
            survey = self.threats.survey(self.worker, experts, *data, cfg.reward, current.layout)
        trained, metrics = local_train(
            self.worker,
            experts,
            self.setup.partition.clients[client],
            epochs=cfg.local_epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            seed=self.setup.seed * 1_000_003 + number * 1009 + client,
            reward=cfg.reward,
        )
        arrays = {k: v.numpy() for k, v in trained.items()}
        if self.gates is not None:  # the client keeps its gate; the server never sees it
            self.gates.keep(client, arrays)
            arrays = {k: v for k, v in arrays.items() if k in self.state}
        feedback = fa.Feedback(
            samples=int(self.setup.samples[client]),
            rewards=metrics["rewards"],
            duration=seconds,
            survey=survey,
        )
        weight = float(metrics["samples"])
        if self.threats is not None:
            arrays, feedback, weight = self.threats.reply(
                client, experts, current.payload(client), arrays, feedback, weight
            )
        current.complete(client, arrays, feedback, weight=weight)
        return float(metrics["samples"] * np.sqrt(metrics["loss_sq"]))

    def evaluate(self) -> list[float]:
        """Per domain, the accuracy of its clients' models (:func:`~fedalign.sim.gates.domain_accuracy`)."""
        load_partial_state(self.worker, self.state)
        part = self.setup.partition
        panel = None
        if self.gates is not None:
            gates = self.gates
            panel = [[gates.get(int(c)) for c in p] for p in self.setup.panel]
        return domain_accuracy(self.worker, part.x_test, part.y_test, part.test_group, panel)


def run_cross_device(
    setup: CrossDeviceSetup,
    strategy: Strategy,
    *,
    on_round: Any = None,
    threats: ThreatConfig | None = None,
) -> Any:
    """Run one strategy for ``config.rounds`` rounds on a seed's :class:`CrossDeviceSetup`.

    Parameters
    ----------
    setup : CrossDeviceSetup
        Not modified.
    strategy : Strategy
    on_round : callable(round, accuracy), optional
        Called after each round (progress bars).
    threats : ThreatConfig, optional
        Attack, defenses, fairness floor, reward privacy and leakage audit
        (:mod:`fedalign.sim.threats`); its figures go to ``RunResult.threats``.

    Returns
    -------
    RunResult
        With ``records`` (one :class:`~fedalign.sim.accounting.RoundRecord` dict per round);
        ``seconds`` is the simulated clock, planning included; ``solver_seconds`` the
        planning seconds per round.
    """
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        # the paper's top-k herds by design; the harness measures it, a warning per round is noise
        warnings.simplefilter("ignore", HerdingWarning)
        return _run_rounds(_Run(setup, strategy, threats), on_round)


def _run_rounds(run: _Run, on_round: Any) -> Any:
    """:func:`run_cross_device`'s loop over the rounds."""
    from .server import RunResult

    setup, strategy = run.setup, run.strategy
    n, e = setup.config.n_clients, setup.config.n_experts
    result = RunResult(strategy.name, setup.seed)
    result.expert_load = np.zeros((n, e), dtype=np.int64)
    result.trained_load = np.zeros((n, e), dtype=np.int64)
    clock, up, down = 0.0, 0, 0
    for number in range(setup.config.rounds):
        rnd = run.check_in(number)
        run.plan(rnd)
        record, summary = run.play(rnd)
        per_domain = run.evaluate()
        clock += record.round_seconds
        up, down = up + record.bytes_up, down + record.bytes_down
        load = _loads(result, summary, e)
        acc = float(np.mean(per_domain))
        result.accuracy.append(acc)
        result.domain_accuracy.append(per_domain)
        result.bytes_up.append(int(up))
        result.bytes_down.append(int(down))
        result.seconds.append(float(clock))
        result.round_load.append(load)
        result.dropouts.append(record.dropouts)
        result.solver_seconds.append(record.planning_seconds)
        result.records.append(record.to_dict())
        if on_round is not None:
            on_round(number, acc)
    if run.threats is not None:
        result.threats = run.threats.metrics(result.expert_load, run.sched)
    return result


def _loads(result: Any, summary: Any, n_experts: int) -> list[int]:
    """Add the round's assignments to the run's load counts; the round's trainings per expert."""
    load = np.zeros(n_experts, dtype=np.int64)
    if summary is None:
        return load.tolist()
    for client, experts in summary.assignment.items():
        result.expert_load[client, experts] += 1
    for client in summary.completed:
        experts = summary.assignment[client]
        result.trained_load[client, experts] += 1
        load[experts] += 1
    return load.tolist()


def solvers_for_rows(config: SimConfig) -> list[str]:
    """Solvers whose declarations support the rows of a ``cross-device`` round.

    Asks :func:`fedalign.solvers_for` about a two-client round built by a scheduler with the
    same kinds of settings as the scenario's (experts of three sizes, memory and deadline
    knapsacks, per-expert bounds, the byte budget), so the rows are the real ones.
    """
    sizes = np.array([1.0, 2.0, 4.0])
    sched = fa.Scheduler(
        3,
        solver="greedy",
        expert_memory=sizes,
        expert_bytes=sizes,
        expert_cost=sizes,
        shared_bytes=1.0,
        deadline=100.0,
        min_experts=0,
        max_experts=2,
        expert_min_clients=min(config.expert_min_trainers, 1),
        expert_max_clients=2,
        round_bytes=30.0,
        usage_weight=config.usage_weight,
    )
    for c, memory in enumerate((3.0, 9.0)):
        sched.register(c, fa.ClientProfile(memory=memory, compute=1.0, bandwidth_up=1.0,
                                           bandwidth_down=1.0, samples=10.0))  # fmt: skip
    problem, _ = sched.build_problem([0, 1])
    return fa.solvers_for(problem)
