"""Experiment settings (:class:`SimConfig`) and the strategies compared (:class:`Strategy`).

Two scenarios (``SimConfig.scenario``):

* ``fig3`` -- the paper's Fig. 3 on a laptop: 20 clients, all online, one expert each;
* ``cross-device`` -- 1,000 registered devices in three tiers, a few hundred online per
  round, faded channels, experts of three sizes, 0-4 experts per client, per-client memory
  and deadline rows, per-expert bounds and a server byte budget per round
  (:mod:`fedalign.sim.crossdevice`).

Strategies are named after the paper's Fig. 3:

* ``random`` -- a uniformly random feasible assignment (solver ``random``);
* ``greedy`` -- desirability is fitness alone, solved by ``topk``;
* ``load-balanced`` -- fitness minus usage, solved by ``topk``: the paper's system, where
  balance comes only from the soft usage penalty;
* ``load-balanced/<solver>`` -- the same desirability plus the hard per-expert rows of
  docs/scheduler.md (at most ``ceil(expert_capacity_slack * slots / E)`` clients per expert and
  round), solved by ``<solver>`` (``flow``, ``lagrangian``, ``cpsat``, ... and ``topk``
  itself, whose per-client choice is then repaired to meet the rows). In ``cross-device``
  the rows are the per-expert minimum and maximum trainers and the server byte budget;
* ``oort`` (``cross-device`` only) -- participants selected by Oort's utility (Lai et al.,
  OSDI'21; :mod:`fedalign.sim.selection`), then the paper's top-k for their experts;
* ``balanced`` -- the :class:`fedalign.Scheduler`'s own defaults (solver ``auto``, its
  default desirability weights) with the scenario's rows: the library's default, compared
  beside the paper's algorithm.

In ``cross-device``, the strategies without the byte-budget row (``random``, ``greedy``,
``load-balanced``, ``oort``) meet the budget by admission: the server takes the clients in
check-in order (``oort``: in Oort's order) and skips any whose planned bytes no longer fit.

A name may end in ``@global`` or ``@local``: where the gate lives (``SimConfig.gate`` is the
default). ``@local``: each client keeps its own gate, never sent or averaged.

Why the hard rows: with the usage penalty alone, every client of a round sees the same
penalty, so when fitness cannot yet tell experts apart the whole cohort moves to the same
least-used expert (it flocks); a per-round cap is coordination only a global solver provides.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "CROSS_DEVICE",
    "DATASET_DEFAULTS",
    "DEFAULT_STRATEGIES",
    "GATES",
    "REWARDS",
    "SCENARIOS",
    "SimConfig",
    "Strategy",
    "parse_strategy",
    "preset",
]

REWARDS = ("accuracy", "routing", "loss-reduction")
"""Reward kinds a client can report (see :func:`fedalign.sim.client.local_train`)."""

SCENARIOS = ("fig3", "cross-device")
"""Scenarios :class:`SimConfig` describes."""

GATES = ("global", "local")
"""Where the gate lives: averaged like any shared part, or kept by each client."""

DEFAULT_STRATEGIES = ("random", "greedy", "load-balanced", "load-balanced/flow", "balanced")
"""What ``fedalign simulate`` compares unless told otherwise (``fig3``)."""


@dataclass(frozen=True)
class Strategy:
    """How a strategy drives the :class:`fedalign.Scheduler`.

    Attributes
    ----------
    name : str
        As given (``"load-balanced/flow"``, ``"oort@local"``).
    solver : str
        Solver passed to the scheduler.
    usage_weight : float
        ``w_use`` (0 for ``random`` and ``greedy``).
    balanced : bool
        Whether the hard rows apply: in ``fig3`` the per-expert cap of
        :attr:`SimConfig.expert_capacity_slack`; in ``cross-device`` the per-expert bounds
        and the server byte budget (the ``load-balanced/<solver>`` and ``balanced`` strategies).
    selection : {"plan", "arrival", "oort"}
        Who is planned in ``cross-device``: every online client (``plan``: the rows decide),
        or the clients admitted under the byte budget in check-in order (``arrival``) or in
        Oort's order (``oort``).
    gate : {"global", "local"}
        Where the gate lives.
    defaults : bool
        Build the scheduler with its own default desirability settings (``balanced``).
    """

    name: str
    solver: str
    usage_weight: float
    balanced: bool
    selection: str = "arrival"
    gate: str = "global"
    defaults: bool = False


def _scheduler_default(name: str) -> Any:
    """A :class:`fedalign.Scheduler` keyword's default (the ``balanced`` strategy uses them)."""
    from fedalign import Scheduler

    return inspect.signature(Scheduler).parameters[name].default


def parse_strategy(name: str, usage_weight: float, gate: str = "global") -> Strategy:
    """The :class:`Strategy` a name stands for.

    Parameters
    ----------
    name : str
        ``random``, ``greedy``, ``load-balanced``, ``load-balanced/<solver>``, ``oort`` or
        ``balanced``, optionally ending in ``@global`` or ``@local``.
    usage_weight : float
        ``w_use`` for the load-balanced strategies and ``oort``.
    gate : {"global", "local"}
        The gate of a name without suffix.

    Raises
    ------
    ValueError
        Unknown name or gate, or a ``load-balanced/`` suffix naming no registered solver.
    """
    base, _, suffix = name.partition("@")
    gate = suffix or gate
    if gate not in GATES:
        raise ValueError(f"strategies: {name!r} names no gate; use @global or @local")
    if base == "random":
        return Strategy(name, "random", 0.0, False, gate=gate)
    if base == "greedy":
        return Strategy(name, "topk", 0.0, False, gate=gate)
    if base == "load-balanced":
        return Strategy(name, "topk", usage_weight, False, gate=gate)
    if base == "oort":
        return Strategy(name, "topk", usage_weight, False, selection="oort", gate=gate)
    if base == "balanced":
        weight = float(_scheduler_default("usage_weight"))
        return Strategy(name, "auto", weight, True, "plan", gate, defaults=True)
    if base.startswith("load-balanced/"):
        from fedalign.solvers import registered_solvers

        solver = base.split("/", 1)[1]
        if solver not in registered_solvers():
            raise ValueError(
                f"strategies: {name!r} names no solver; choose from {registered_solvers()}"
            )
        return Strategy(name, solver, usage_weight, True, "plan", gate)
    raise ValueError(
        f"strategies: unknown strategy {name!r}; use random, greedy, load-balanced, "
        "load-balanced/<solver>, oort or balanced (optionally @global or @local)"
    )


@dataclass(frozen=True)
class SimConfig:
    """Every setting of a simulation (all of it is written to ``results.json``).

    The defaults are the quick ``fig3`` scenario on ``digits``; :func:`preset` gives the full
    runs and the ``cross-device`` scenario (whose values are the defaults of its fields below).

    Attributes
    ----------
    scenario : {"fig3", "cross-device"}
        ``fig3``: all clients online, one expert each (the paper's Fig. 3). ``cross-device``:
        the registered fleet below, of which the online clients are the cohort
        (:mod:`fedalign.sim.crossdevice`).
    gate : {"global", "local"}
        Default gate placement of the strategies (a name's ``@global``/``@local`` overrides
        it). ``local``: each client keeps its own gate, never sent nor averaged (as FLEX-MoE
        and pFedMoE do); accuracy is then measured per client (see :attr:`eval_clients`).
    dataset : {"digits", "mnist1d", "cifar10"}
    data_root : str or None
        Folder of CIFAR-10's python batches.
    mnist1d_samples : int
        Samples MNIST-1D generates (80 % train, 20 % test).
    partition : {"domain", "label-skew", "dirichlet"}
        ``fig3`` only; ``cross-device`` always splits by domain with label skew.
    n_clients, n_domains, classes_per_client, alpha : partition settings
        ``n_clients`` is the registered fleet in ``cross-device``.
    n_experts, expert_hidden, trunk_hidden, top_k : model settings
        ``expert_hidden`` is one width or one per expert (experts of different sizes).
    rounds : int
    cohort_size : int or None
        ``fig3``: clients sampled per round (None: all).
    local_epochs, lr, batch_size : local training
    reward : {"accuracy", "routing", "loss-reduction"}
        Reward reported per trained expert (see :func:`fedalign.sim.client.local_train`).
    cold_start : {"prior", "routing"}
        A new client's fitness: the prior, or its share of samples the initial gate routes
        to each expert (a cheap forward pass).
    fitness_weight, usage_weight, fitness_ema, fitness_decay, fitness_prior, usage_decay
        The scheduler's desirability and trackers (docs/scheduler.md).
    time_weight : float
        ``w_time`` of the desirability: minus ``w_time * t / deadline`` per pair (0: off).
    max_experts : int or None
        Cap on experts per client and round on top of the device's memory (None: memory only).
    expert_capacity_slack : float or None
        ``fig3``: for the ``load-balanced/<solver>`` strategies, at most
        ``ceil(slack * slots / E)`` clients per expert and round, ``slots`` being the
        cohort's expected expert slots (None: no hard cap).
    deadline_factor : float
        ``fig3``: round deadline = this times the nominal seconds of the slowest tier for one
        expert.
    slowdown_sigma : float
        ``fig3``: log-normal spread of actual against nominal device speed, per round.
    device_tiers : {"default", "uniform"}
        ``fig3``: heterogeneous phone/laptop/workstation mix, or every client a laptop with
        one expert.
    target_accuracy : float or None
        Accuracy whose first crossing gives ``rounds_to_target``, ``time_to_target`` and
        ``bytes_to_target`` (None: 0.9 x the best strategy's mean final accuracy, floored to
        a percent, decided after the runs).
    time_limit : float or None
        Solver time limit per round (the exact solvers need one in ``cross-device``).

    Cross-device fleet (``scenario="cross-device"``; per tier, in the order of
    ``tier_names``). Device figures are those of the *deployed* model, which the simulated
    MoE stands for at ``size_scale`` times its size: a transfer of ``b`` tensor bytes takes
    ``b * size_scale / bandwidth`` seconds, and an expert of ``p`` parameters needs
    ``memory_factor * 4 * p * size_scale`` bytes of memory to train. Bytes *reported*
    (``bytes_up``, ``bytes_down``, the budget) are those of the tensors actually sent.

    tier_names : tuple of str
        ``("phone", "laptop", "workstation")``.
    tier_shares : tuple of float
        Share of the fleet per tier (0.6, 0.3, 0.1), exact up to rounding.
    tier_memory : tuple of float
        Median memory for training, bytes (300 MB, 1 GB, 4 GB); the shared part's training
        memory is taken off what a client reports for experts.
    tier_compute : tuple of float
        Median training speed, samples per second on the smallest expert (5, 25, 100); an
        expert of ``c`` times its parameters costs ``c`` times as much per sample.
    tier_bandwidth_down, tier_bandwidth_up : tuple of float
        Median bandwidth, bytes per second (2.5 / 6 / 25 MB/s down, 0.75 / 2 / 10 MB/s up).
    tier_latency : tuple of float
        Median seconds per expert exchanged (0.5, 0.2, 0.05).
    tier_spread : float
        Log-normal sigma of each client's memory, compute, bandwidths and latency around its
        tier's medians (0.5): what it registers, its profile.
    hidden_slowdown_sigma : float
        Log-normal sigma (median 1) of a per-client factor on its training time that its
        profile does not show (0.4): profiles are imperfect, the profiler must learn it.
    jitter_sigma : float
        Log-normal sigma (median 1) of a per-round, per-client factor on its whole round time
        (0.1).
    tier_online : tuple of float
        Long-run probability of being online in a round (0.2, 0.35, 0.6: about 285 of 1,000
        online per round).
    online_spell : float
        Mean number of consecutive rounds an online client stays online (4): availability is
        a per-client two-state Markov chain, so who is online is correlated over rounds.
    tier_vanish : tuple of float
        Chance that an online client given experts disappears mid-round (0.05, 0.02, 0.01).
    fading_sigma : float
        Log-normal sigma (mean 1) of the per-round factor on an online client's up and down
        bandwidth (0.5), which it measures and reports at check-in; the scheduler uses it for
        that round only (``Scheduler.plan(conditions=...)``).
    size_scale : float
        Deployed parameters per simulated parameter (5,000).
    memory_factor : float
        Training memory per byte of parameters (4: weights, gradients, two Adam moments).
    client_samples : (int, int)
        Range of client dataset sizes, drawn log-uniformly (10 to 100: an order of magnitude).
    label_alpha : float
        Dirichlet concentration of each client's labels within its domain (0.5).
    domain_offset : float
        Scale of a fixed per-domain offset added to the (permuted) inputs, in units of the
        data's standard deviation (0: none).
    deadline_seconds : float
        The round's deadline (180 s): a client that has not returned by then is a straggler,
        credited nothing; the per-client deadline row includes transfer time.
    byte_budget_pairs : float or None
        The server's byte budget per round, in pairs of an average expert: ``round_bytes =
        pairs * 2 * (mean expert bytes + shared bytes)`` (64; None: no budget). The row
        counts the shared part with every pair, so the bytes actually sent stay below it.
    expert_min_trainers, expert_max_trainers : int, int or None
        Per-expert minimum and maximum clients per round for the strategies with rows
        (1 and 6).
    test_per_domain : int or None
        Held-out samples per domain used for evaluation (None: all).
    eval_clients : int
        Clients per domain whose own model is evaluated with ``gate="local"`` (25).
    oort_alpha, oort_exploration, oort_exploration_decay, oort_cutoff : Oort's selection
        Straggler penalty exponent (2), exploration share ``(start, minimum)`` (0.9, 0.2)
        decayed by 0.98 per round, and the cut-off: exploited clients are sampled among those
        within 0.95 of the ``(1 - epsilon) K``-th utility (the paper's defaults).
    oort_preferred, oort_pacer_step, oort_pacer_window : Oort's pacer
        The preferred round duration ``T`` starts at ``oort_preferred`` times the deadline
        (0.5) and grows by ``oort_pacer_step`` times the deadline (0.1) when the utility of
        the last ``oort_pacer_window`` rounds (20) falls below that of the window before.
    """

    scenario: str = "fig3"
    gate: str = "global"
    dataset: str = "digits"
    data_root: str | None = None
    mnist1d_samples: int = 5000
    partition: str = "domain"
    n_clients: int = 20
    n_domains: int = 4
    classes_per_client: int = 2
    alpha: float = 0.5
    n_experts: int = 4
    expert_hidden: int | tuple[int, ...] = 8
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
    time_weight: float = 0.0
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
    # cross-device
    tier_names: tuple[str, ...] = ("phone", "laptop", "workstation")
    tier_shares: tuple[float, ...] = (0.6, 0.3, 0.1)
    tier_memory: tuple[float, ...] = (300e6, 1e9, 4e9)
    tier_compute: tuple[float, ...] = (5.0, 25.0, 100.0)
    tier_bandwidth_down: tuple[float, ...] = (2.5e6, 6e6, 25e6)
    tier_bandwidth_up: tuple[float, ...] = (0.75e6, 2e6, 10e6)
    tier_latency: tuple[float, ...] = (0.5, 0.2, 0.05)
    tier_spread: float = 0.5
    hidden_slowdown_sigma: float = 0.4
    jitter_sigma: float = 0.1
    tier_online: tuple[float, ...] = (0.2, 0.35, 0.6)
    online_spell: float = 4.0
    tier_vanish: tuple[float, ...] = (0.05, 0.02, 0.01)
    fading_sigma: float = 0.5
    size_scale: float = 5e3
    memory_factor: float = 4.0
    client_samples: tuple[int, int] = (10, 100)
    label_alpha: float = 0.5
    domain_offset: float = 0.0
    deadline_seconds: float = 180.0
    byte_budget_pairs: float | None = 64.0
    expert_min_trainers: int = 1
    expert_max_trainers: int | None = 6
    test_per_domain: int | None = None
    eval_clients: int = 25
    oort_alpha: float = 2.0
    oort_exploration: tuple[float, float] = (0.9, 0.2)
    oort_exploration_decay: float = 0.98
    oort_cutoff: float = 0.95
    oort_preferred: float = 0.5
    oort_pacer_step: float = 0.1
    oort_pacer_window: int = 20

    def __post_init__(self) -> None:
        # JSON and the CLI hand sequences back as lists: store tuples (frozen, hashable)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self._check_fig3()
        self._check_cross_device()

    def _check_fig3(self) -> None:
        positive = (
            "n_clients",
            "n_domains",
            "n_experts",
            "rounds",
            "local_epochs",
            "batch_size",
            "top_k",
        )
        for name in positive:
            _check_int(name, getattr(self, name), 1)
        widths = self.expert_hidden
        for h in widths if isinstance(widths, tuple) else (widths,):
            _check_int("expert_hidden", h, 1)
        if isinstance(widths, tuple) and len(widths) != self.n_experts:
            raise ValueError(
                f"expert_hidden: expected one width or n_experts={self.n_experts}, "
                f"got {len(widths)}"
            )
        if self.cohort_size is not None and not 1 <= self.cohort_size <= self.n_clients:
            raise ValueError(
                f"cohort_size: expected 1..n_clients={self.n_clients} or None, got {self.cohort_size!r}"
            )
        for name in ("lr", "deadline_factor", "alpha"):
            _check_positive(name, getattr(self, name))
        if self.expert_capacity_slack is not None and not self.expert_capacity_slack >= 1.0:
            raise ValueError(
                f"expert_capacity_slack: expected None or >= 1, got {self.expert_capacity_slack!r}"
            )
        _check_choice("scenario", self.scenario, SCENARIOS)
        _check_choice("gate", self.gate, GATES)
        _check_choice("dataset", self.dataset, ("digits", "mnist1d", "cifar10"))
        _check_choice("partition", self.partition, ("domain", "label-skew", "dirichlet"))
        if self.max_experts is not None and not (
            isinstance(self.max_experts, int) and self.max_experts >= 1
        ):
            raise ValueError(f"max_experts: expected None or an int >= 1, got {self.max_experts!r}")
        _check_choice("reward", self.reward, REWARDS)
        _check_choice("cold_start", self.cold_start, ("prior", "routing"))
        _check_choice("device_tiers", self.device_tiers, ("default", "uniform"))
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(
                f"target_accuracy: expected a value in (0, 1], got {self.target_accuracy!r}"
            )

    def _check_cross_device(self) -> None:
        k = len(self.tier_names)
        if k < 1 or len(set(self.tier_names)) != k:
            raise ValueError(f"tier_names: expected distinct names, got {self.tier_names!r}")
        for name in ("tier_shares", "tier_memory", "tier_compute", "tier_bandwidth_down",
                     "tier_bandwidth_up", "tier_latency", "tier_online", "tier_vanish"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != k:
                raise ValueError(f"{name}: expected {k} values (one per tier), got {value!r}")
            low = 0.0 if name in ("tier_shares", "tier_latency", "tier_vanish") else None
            for v in value:
                _check_positive(name, v, at_least=low)
        if sum(self.tier_shares) <= 0:
            raise ValueError(f"tier_shares: expected a positive total, got {self.tier_shares!r}")
        for name in ("tier_online", "tier_vanish"):
            if not all(v < 1.0 for v in getattr(self, name)):
                raise ValueError(f"{name}: expected probabilities below 1, got {getattr(self, name)!r}")
        for name in ("tier_spread", "hidden_slowdown_sigma", "jitter_sigma", "fading_sigma",
                     "domain_offset"):  # fmt: skip
            _check_positive(name, getattr(self, name), at_least=0.0)
        for name in ("size_scale", "memory_factor", "label_alpha", "deadline_seconds",
                     "oort_alpha", "oort_preferred", "oort_pacer_step"):  # fmt: skip
            _check_positive(name, getattr(self, name))
        if not self.online_spell >= 1.0:
            raise ValueError(f"online_spell: expected rounds >= 1, got {self.online_spell!r}")
        lo, hi = self.client_samples
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"client_samples: expected ints 1 <= low <= high, got {self.client_samples!r}")
        if self.byte_budget_pairs is not None:
            _check_positive("byte_budget_pairs", self.byte_budget_pairs)
        _check_int("expert_min_trainers", self.expert_min_trainers, 0)
        if self.expert_max_trainers is not None:
            _check_int("expert_max_trainers", self.expert_max_trainers, max(1, self.expert_min_trainers))
        if self.test_per_domain is not None:
            _check_int("test_per_domain", self.test_per_domain, 1)
        _check_int("eval_clients", self.eval_clients, 1)
        _check_int("oort_pacer_window", self.oort_pacer_window, 1)
        start, low = self.oort_exploration
        if not 0.0 <= low <= start <= 1.0:
            raise ValueError(f"oort_exploration: expected 0 <= minimum <= start <= 1, got {self.oort_exploration!r}")
        for name in ("oort_exploration_decay", "oort_cutoff"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}: expected a value in (0, 1], got {value!r}")

    @property
    def n_tiers(self) -> int:
        """Number of device tiers (``cross-device``)."""
        return len(self.tier_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of every setting."""
        return asdict(self)

    def replace(self, **changes: Any) -> SimConfig:
        """A copy with some settings changed (validated)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a SimConfig setting")
        return replace(self, **changes)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _check_positive(name: str, value: Any, *, at_least: float | None = None) -> None:
    """A finite number > 0 (or >= ``at_least``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if at_least is None else value >= at_least)
    if not ok:
        bound = "> 0" if at_least is None else f">= {at_least:g}"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {},
    # MNIST-1D's per-position means are nearly equal, so a feature permutation is invisible
    # to a linear gate on raw inputs: a shared ReLU trunk lets the gate see the domain.
    "mnist1d": {"expert_hidden": 16, "trunk_hidden": 32},
    "cifar10": {"expert_hidden": 32, "trunk_hidden": 128},
}
"""Model sizes :func:`preset` uses per dataset unless told otherwise (``fig3``)."""

CROSS_DEVICE: dict[str, Any] = {
    "scenario": "cross-device",
    "dataset": "mnist1d",
    "mnist1d_samples": 24_000,
    "n_clients": 1000,
    "n_domains": 4,
    # 16 experts of three sizes: 6 small, 6 medium, 4 large (2x and 4x the small one's
    # parameters); a trunk lets the gate see MNIST-1D's domains (as in fig3)
    "n_experts": 16,
    "expert_hidden": (16,) * 6 + (32,) * 6 + (64,) * 4,
    "trunk_hidden": 32,
    "max_experts": 4,
    "rounds": 150,
    "test_per_domain": 2000,
    # a client holds tens of samples: small batches give its Adam enough steps per round
    "batch_size": 8,
    # at 0.01 every strategy's accuracy decays after rounds 40-50 of the 150 (each expert
    # drifts to its last few label-skewed trainers); 0.003 holds on seeds 0-2
    # (benchmarks/cross_device_lr.py, docs/experiments.md)
    "lr": 0.003,
    # MNIST-1D's positions have nearly equal statistics, so a permutation alone is invisible
    # to the gate: each domain also offsets its inputs (a fixed marker, one std in scale)
    "domain_offset": 1.0,
    # a client trains once every few dozen rounds: its first fitness row comes from the
    # gate's routing of its data (per-client rewards alone would take hundreds of rounds)
    "cold_start": "routing",
    # the exact solvers stop here each round; their runtime is planning time on the clock
    "time_limit": 5.0,
}
"""The ``cross-device`` scenario's settings that differ from :class:`SimConfig`'s defaults
(the fleet's own fields default to the cross-device values)."""

CROSS_DEVICE_DIGITS: dict[str, Any] = {
    "dataset": "digits",
    "n_clients": 120,
    "n_experts": 8,
    "expert_hidden": (8,) * 3 + (16,) * 3 + (32,) * 2,
    "trunk_hidden": None,
    "client_samples": (5, 40),
    "byte_budget_pairs": 16.0,
    "expert_max_trainers": 4,
    "test_per_domain": None,
    "eval_clients": 5,
    "time_limit": 0.5,
}
"""The digits variant of ``cross-device`` (seconds, for tests): 120 clients, 8 experts."""


def preset(name: str, **changes: Any) -> SimConfig:
    """A named scenario, optionally changed.

    Parameters
    ----------
    name : {"quick", "full", "tiny"}
        ``fig3``: ``quick`` is the default digits scenario (minutes on 2 cores); ``full``
        has more rounds, for docs/experiments.md; ``tiny`` a few rounds for tests.
        ``cross-device`` (``scenario="cross-device"``): ``full`` is :data:`CROSS_DEVICE`
        (150 rounds, solver time limit 5 s), ``quick`` the same fleet for 60 rounds with a
        2 s limit, ``tiny`` the digits variant (:data:`CROSS_DEVICE_DIGITS`) for 3 rounds.
    **changes
        Settings to override. The dataset's model sizes (:data:`DATASET_DEFAULTS`) apply
        first in ``fig3``, so ``preset("quick", dataset="mnist1d")`` gets MNIST-1D's trunk.
    """
    if name not in ("quick", "full", "tiny"):
        raise ValueError(f"name: unknown preset {name!r}; choose quick, full or tiny")
    scenario = changes.get("scenario", "fig3")
    if scenario == "cross-device":
        return _cross_device_preset(name, changes)
    base = SimConfig()
    if name == "quick":
        cfg = base
    elif name == "full":
        cfg = base.replace(rounds=80)
    else:
        cfg = base.replace(rounds=2, n_clients=8, local_epochs=1)
    dataset = changes.get("dataset", cfg.dataset)
    if dataset not in DATASET_DEFAULTS:
        raise ValueError(
            f"dataset: unknown dataset {dataset!r}; choose one of {tuple(DATASET_DEFAULTS)}"
        )
    return cfg.replace(**{**DATASET_DEFAULTS[dataset], **changes})


def _cross_device_preset(name: str, changes: dict[str, Any]) -> SimConfig:
    """:func:`preset` for ``scenario="cross-device"``."""
    settings = dict(CROSS_DEVICE)
    if name == "quick":
        settings.update(rounds=60, time_limit=2.0)
    elif name == "tiny":
        settings.update(CROSS_DEVICE_DIGITS, rounds=3)
    if changes.get("dataset", settings["dataset"]) == "digits" and name != "tiny":
        settings.update(CROSS_DEVICE_DIGITS)
    if changes.get("dataset", settings["dataset"]) not in ("digits", "mnist1d"):
        raise ValueError("dataset: the cross-device scenario runs on mnist1d or digits")
    return SimConfig().replace(**{**settings, **changes})
