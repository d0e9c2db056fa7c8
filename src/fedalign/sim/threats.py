"""Adversaries and defenses in the harness: who lies, how, and what the server does about it.

An :class:`Adversary` is a seeded share of the clients that attack in one of four ways
(``fedalign simulate --attack KIND --attackers SHARE``):

``reward-inflation``
    The attacker trains honestly but reports reward 1 for one *target* expert and 0 for every
    other, to capture the target (its fitness for the target rises, for the others falls).
``capacity-lie``
    The attacker's registered profile overstates its device: memory and ``max_experts`` of
    the largest tier (or ``lie_factor`` times its own, whichever is larger), compute and
    bandwidth ``lie_factor`` times its own. Its real device does not change: given more
    experts than its memory holds it fails the round (out of memory), and its real speed
    decides whether it meets the deadline.
``poison``
    The attacker returns, for every array it was sent, ``sent - poison_scale x (trained -
    sent)``: its update scaled and sign-flipped; and claims ``poison_claim`` times its
    samples, to dominate the average.
``free-ride``
    The attacker returns what it was sent, unchanged, claiming ``free_ride_claim`` times its
    samples and reward 1 for every expert.

:func:`parse_defenses` reads ``--defense`` (a comma-separated list, or ``all``): the
aggregation rule (``median``, ``trimmed-mean``, ``clipped-mean``), ``weight-cap``, the reply
screen (``screen``), the server-side validation callback (``validation``: an
:class:`ExpertValidator` on a small labelled sample the server holds), the trust score
(``trust``) and the population test of rewards (``reward-check``).

A :class:`ThreatConfig` gathers a run's threat settings (attack, defenses, the fairness
floor ``max_idle_rounds``, local differential privacy of rewards ``ldp_epsilon``, the
leakage ``audit``); both round loops take one -- :func:`fedalign.sim.server.run_strategy`
(``fig3``) and :func:`fedalign.sim.crossdevice.run_cross_device` (``cross-device``) -- and
hand it to a :class:`ThreatRun`, which holds one run's adversary, privacy accountant and
counters and is called at a few points of the round loop (the profiles registered, the
conditions reported at check-in, the driver's defenses, each reply, each closed round). What
a :class:`ThreatRun` needs to know of a scenario's devices (what each really holds and can
train in time, its tier, its domain) is a :class:`ThreatWorld`, which each scenario's setup
builds (``setup.threat_world()``), so the attacks and counters are written once.
Participation, Jain's fairness index and the leakage audit of ``--audit`` are computed from a run's assignments by :func:`participation`,
:func:`jain_index` and :func:`fedalign.privacy.assignment_leakage`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedalign import ClientProfile

from ..plan import MAX_SAMPLES
from ..rounds import ReplyScreen, RobustAggregator

__all__ = [
    "ATTACKS",
    "DEFENSES",
    "DEFENSE_SETS",
    "Adversary",
    "Defenses",
    "ExpertValidator",
    "ThreatConfig",
    "ThreatRun",
    "ThreatWorld",
    "jain_index",
    "parse_defenses",
    "participation",
    "validation_sample",
]

ATTACKS = ("reward-inflation", "capacity-lie", "poison", "free-ride")
"""The attacks :class:`Adversary` knows."""

RULES = ("median", "trimmed-mean", "clipped-mean")
DEFENSES = (*RULES, "weight-cap", "screen", "validation", "trust", "reward-check")
"""The defenses ``--defense`` names."""

DEFENSE_SETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "all": ("median", "weight-cap", "screen", "validation", "trust"),
}
"""Names standing for several defenses."""

#: Share of a group's weight one reply may hold under ``weight-cap``.
WEIGHT_CAP = 0.25
#: Trust rate under ``trust``.
TRUST_RATE = 0.3
#: ``reward_z`` under ``reward-check``.
REWARD_Z = 3.5
#: Slack of the validation tests: a reward above the sent expert's best-slice accuracy plus
#: this is implausible.
VALIDATION_TOLERANCE = 0.1


def parse_defenses(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """The defenses named, in :data:`DEFENSES` order, ``all`` and ``none`` expanded.

    Raises
    ------
    ValueError
        An unknown name, or two aggregation rules.
    """
    if names is None:
        return ()
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    out: set[str] = set()
    for name in items:
        if not name:
            continue
        if name in DEFENSE_SETS:
            out.update(DEFENSE_SETS[name])
        elif name in DEFENSES:
            out.add(name)
        else:
            raise ValueError(
                f"defense: unknown defense {name!r}; choose from {', '.join(DEFENSES)}, "
                f"or {', '.join(DEFENSE_SETS)}"
            )
    rules = [r for r in RULES if r in out]
    if len(rules) > 1:
        raise ValueError(f"defense: choose one aggregation rule, got {', '.join(rules)}")
    return tuple(d for d in DEFENSES if d in out)


@dataclass(frozen=True)
class Defenses:
    """What a set of defense names turns into for one run.

    Attributes
    ----------
    names : tuple of str
        As :func:`parse_defenses` returns them.
    """

    names: tuple[str, ...] = ()

    def aggregator(self) -> RobustAggregator | None:
        """The driver's aggregation (None: FedAvg per expert, the default)."""
        rule = next((r for r in RULES if r in self.names), "mean")
        cap = WEIGHT_CAP if "weight-cap" in self.names else None
        if rule == "mean" and cap is None:
            return None
        return RobustAggregator(rule, max_share=cap)

    def screen(self, validate: Any = None) -> ReplyScreen | None:
        """The driver's reply screen (None without ``screen`` and ``validation``)."""
        if "screen" not in self.names and "validation" not in self.names:
            return None
        relative = "screen" in self.names
        return ReplyScreen(
            norm_ratio=5.0 if relative else None,
            min_cosine=0.0 if relative else None,
            lazy_ratio=0.01 if relative else 0.0,
            validate=validate if "validation" in self.names else None,
            tolerance=VALIDATION_TOLERANCE,
        )

    def scheduler_settings(self) -> dict[str, Any]:
        """Scheduler keyword arguments (``trust_rate``, ``reward_z``)."""
        out: dict[str, Any] = {}
        if "trust" in self.names:
            out["trust_rate"] = TRUST_RATE
        if "reward-check" in self.names:
            out["reward_z"] = REWARD_Z
        return out


@dataclass(frozen=True)
class Adversary:
    """The attacking clients of a run and how they attack.

    Attributes
    ----------
    kind : str or None
        One of :data:`ATTACKS`; None for a clean run.
    attackers : tuple of int
        The attacking clients (sorted).
    target : int
        ``reward-inflation``'s target expert.
    poison_scale, poison_claim, free_ride_claim, lie_factor : float
        See the module's docstring.
    """

    kind: str | None = None
    attackers: tuple[int, ...] = ()
    target: int = 0
    poison_scale: float = 10.0
    poison_claim: float = 1000.0
    free_ride_claim: float = 10.0
    lie_factor: float = 8.0

    @classmethod
    def draw(
        cls, kind: str | None, share: float, n_clients: int, n_experts: int, seed: int
    ) -> Adversary:
        """``round(share x n_clients)`` attackers and a target expert, seeded per seed (the
        same for every strategy of the seed).

        Raises
        ------
        ValueError
            An unknown kind, or a share outside [0, 1].
        """
        if kind is not None and kind not in ATTACKS:
            raise ValueError(f"attack: unknown attack {kind!r}; choose from {', '.join(ATTACKS)}")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"attackers: expected a share in [0, 1], got {share!r}")
        if kind is None or share == 0.0:
            return cls(kind)
        rng = np.random.default_rng([seed, 666])
        k = int(round(share * n_clients))
        chosen = np.sort(rng.choice(n_clients, size=k, replace=False))
        return cls(kind, tuple(int(c) for c in chosen), target=int(rng.integers(n_experts)))

    @property
    def active(self) -> bool:
        """Whether anyone attacks."""
        return self.kind is not None and bool(self.attackers)

    def attacks(self, client: int) -> bool:
        """Whether ``client`` is an attacker."""
        return self.active and int(client) in self.attackers

    def profile(
        self, client: int, honest: ClientProfile, largest_memory: float, most_experts: int
    ) -> ClientProfile:
        """The profile ``client`` registers: its own, or a lie (``capacity-lie``)."""
        if self.kind != "capacity-lie" or not self.attacks(client):
            return honest
        f = self.lie_factor

        def up(v: float | None) -> float | None:
            return None if v is None else v * f

        memory = None if honest.memory is None else max(honest.memory * f, largest_memory)
        k = None if honest.max_experts is None else max(honest.max_experts, most_experts)
        return replace(
            honest,
            memory=memory,
            max_experts=k,
            compute=up(honest.compute),
            bandwidth_up=up(honest.bandwidth_up),
            bandwidth_down=up(honest.bandwidth_down),
        )

    def condition(self, client: int, reported: ClientProfile) -> ClientProfile:
        """What ``client`` reports at check-in (``cross-device``: this round's faded
        bandwidth): the truth, or under ``capacity-lie`` its bandwidths ``lie_factor`` times
        over, as in its registered profile."""
        if self.kind != "capacity-lie" or not self.attacks(client):
            return reported
        f = self.lie_factor
        return replace(
            reported,
            bandwidth_up=None if reported.bandwidth_up is None else reported.bandwidth_up * f,
            bandwidth_down=None
            if reported.bandwidth_down is None
            else reported.bandwidth_down * f,
        )

    def tamper(
        self,
        client: int,
        experts: Sequence[int],
        sent: Mapping[str, NDArray[Any]],
        trained: Mapping[str, NDArray[Any]],
        rewards: Mapping[int, float],
        samples: int,
        weight: float,
    ) -> tuple[dict[str, NDArray[Any]], dict[int, float], int, float]:
        """What ``client`` returns: its honest reply, or the attack's.

        Returns
        -------
        (arrays, rewards, samples, weight)
        """
        arrays = dict(trained)
        rw = {int(j): float(r) for j, r in rewards.items()}
        if not self.attacks(client) or self.kind == "capacity-lie":
            return arrays, rw, samples, weight
        if self.kind == "reward-inflation":
            return (
                arrays,
                {int(j): 1.0 if int(j) == self.target else 0.0 for j in experts},
                samples,
                weight,
            )
        if self.kind == "poison":
            s = self.poison_scale
            out = {}
            for k, v in trained.items():
                base = np.asarray(sent[k])
                if base.dtype.kind == "f":
                    out[k] = (base - s * (np.asarray(v) - base)).astype(base.dtype)
                else:
                    out[k] = np.asarray(v)
            claim = min(int(samples * self.poison_claim), MAX_SAMPLES)
            return out, rw, claim, weight * self.poison_claim
        # free-ride: nothing trained, everything claimed
        unchanged = {k: np.array(sent[k]) for k in trained}
        claim = min(int(samples * self.free_ride_claim), MAX_SAMPLES)
        return unchanged, {int(j): 1.0 for j in experts}, claim, weight * self.free_ride_claim

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``results.json``)."""
        return {
            "kind": self.kind,
            "attackers": list(self.attackers),
            "target": self.target if self.kind == "reward-inflation" else None,
        }


def validation_sample(
    clients: Sequence[tuple[NDArray[Any], NDArray[Any]]],
    groups: NDArray[np.int64],
    *,
    per_group: int = 48,
    seed: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """A small labelled sample per group (domain) the server holds: ``(x, y, group)``.

    Drawn (seeded) from the clients' own data, as a server would hold a few labelled
    examples of each kind of data it serves; it is used only to judge replies, never to
    train or to measure accuracy.
    """
    rng = np.random.default_rng([seed, 8191])
    xs, ys, gs = [], [], []
    for g in np.unique(groups[groups >= 0]):
        members = np.flatnonzero(groups == g)
        x = np.concatenate([clients[int(c)][0] for c in members])
        y = np.concatenate([clients[int(c)][1] for c in members])
        pick = rng.choice(len(y), size=min(per_group, len(y)), replace=False)
        xs.append(x[pick])
        ys.append(y[pick])
        gs.append(np.full(pick.size, g, dtype=np.int64))
    return (
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ys).astype(np.int64),
        np.concatenate(gs),
    )


class ExpertValidator:
    """The server's evaluation of one expert: its accuracy alone on each group of a small
    labelled sample, the best group's (the highest reward a client's data could honestly
    give it). A :data:`fedalign.rounds.robust.Validator`.

    Parameters
    ----------
    model : MoEModel
        A worker model of the run's architecture (its parameters are overwritten).
    x, y, groups : arrays
        The server's sample (:func:`validation_sample`).
    """

    def __init__(
        self, model: Any, x: NDArray[Any], y: NDArray[Any], groups: NDArray[np.int64]
    ) -> None:
        import torch

        self.model = model
        self.x = torch.as_tensor(x)
        self.y = torch.as_tensor(y)
        self.groups = np.asarray(groups)
        self.calls = 0

    def __call__(self, expert: int, state: Mapping[str, NDArray[Any]]) -> float:
        import torch

        from ..rounds.naming import expert_of_key
        from .model import load_partial_state

        self.calls += 1
        wanted = {k: v for k, v in state.items() if expert_of_key(k) in (None, expert)}
        load_partial_state(
            self.model, {k: v for k, v in wanted.items() if k in self.model.state_dict()}
        )
        with torch.no_grad():
            right = (self.model.expert_log_probs(self.x, expert).argmax(dim=1) == self.y).numpy()
        return float(max(right[self.groups == g].mean() for g in np.unique(self.groups)))


def participation(offered: NDArray[np.int64], trained: NDArray[np.int64]) -> list[dict[str, int]]:
    """Per client, ``{"offered": rounds in the cohort, "trained": rounds it trained}``."""
    return [{"offered": int(o), "trained": int(t)} for o, t in zip(offered, trained, strict=True)]


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index ``(Σx)² / (n Σx²)`` in [1/n, 1] (1: all equal); None if empty
    or all zero."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0 or not (x**2).sum() > 0:
        return None
    return float(x.sum() ** 2 / (x.size * (x**2).sum()))


@dataclass(frozen=True)
class ThreatConfig:
    """A run's threat settings: who attacks, which defenses, fairness and privacy.

    Attributes
    ----------
    attack : str or None
        One of :data:`ATTACKS` (``--attack``); None: a clean run.
    attackers : float in [0, 1]
        Share of the clients that attack (``--attackers``).
    defenses : str or sequence of str
        Defense names (``--defense``), normalised by :func:`parse_defenses`.
    max_idle_rounds : int >= 1 or None
        The scheduler's fairness floor (``--max-idle-rounds``).
    ldp_epsilon : float > 0 or None
        ε of every honest client's reward report (``--ldp-epsilon``): rewards are privatized
        with :func:`fedalign.privacy.privatize` before they leave the client, the scheduler
        runs with ``noisy_rewards=True`` and a :class:`fedalign.privacy.PrivacyAccountant`
        counts the ε spent.
    ldp_mechanism : {"laplace", "duchi", "best-expert"}
        The mechanism (:data:`fedalign.privacy.MECHANISMS`). ``best-expert``: every honest
        client also evaluates, as received, the experts it was not given (it downloads
        them: counted in ``bytes_down``) and reports which expert of all suits its data
        best (``Feedback.survey`` carries the others' rewards).
    audit : bool
        Run :func:`fedalign.privacy.assignment_leakage` on the run's assignments (``--audit``).
    exploration_weight : float >= 0 or None
        The scheduler's ``exploration_weight`` (``--exploration-weight``; None: its default).

    Raises
    ------
    ValueError
        A setting out of range; the message names it.
    """

    attack: str | None = None
    attackers: float = 0.0
    defenses: tuple[str, ...] = ()
    max_idle_rounds: int | None = None
    ldp_epsilon: float | None = None
    ldp_mechanism: str = "laplace"
    audit: bool = False
    exploration_weight: float | None = None

    def __post_init__(self) -> None:
        if self.attack is not None and self.attack not in ATTACKS:
            raise ValueError(
                f"attack: unknown attack {self.attack!r}; choose from {', '.join(ATTACKS)}"
            )
        share = self.attackers
        if (
            isinstance(share, bool)
            or not isinstance(share, (int, float))
            or not 0.0 <= share <= 1.0
        ):
            raise ValueError(f"attackers: expected a share in [0, 1], got {share!r}")
        object.__setattr__(self, "attackers", float(share))
        object.__setattr__(self, "defenses", parse_defenses(self.defenses))
        w = self.max_idle_rounds
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"max_idle_rounds: expected None or an int >= 1, got {w!r}")
        eps = self.ldp_epsilon
        if eps is not None and not (
            isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < np.inf
        ):
            raise ValueError(f"ldp_epsilon: expected None or a finite number > 0, got {eps!r}")
        from ..privacy import MECHANISMS

        if self.ldp_mechanism not in MECHANISMS:
            raise ValueError(
                f"ldp_mechanism: expected one of {MECHANISMS}, got {self.ldp_mechanism!r}"
            )
        x = self.exploration_weight
        if x is not None and not (
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < np.inf
        ):
            raise ValueError(
                f"exploration_weight: expected None or a finite number >= 0, got {x!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``results.json``'s ``config.threats``)."""
        return {
            "attack": self.attack,
            "attackers": self.attackers,
            "defense": list(self.defenses),
            "max_idle_rounds": self.max_idle_rounds,
            "ldp_epsilon": self.ldp_epsilon,
            "ldp_mechanism": self.ldp_mechanism,
            "audit": self.audit,
            "exploration_weight": self.exploration_weight,
        }


@dataclass(frozen=True)
class ThreatWorld:
    """What a :class:`ThreatRun` needs to know of one seed's devices and data.

    Each scenario's setup builds one (``setup.threat_world()``: :class:`fedalign.sim.server.Setup`
    for ``fig3``, :class:`fedalign.sim.crossdevice.CrossDeviceSetup` for ``cross-device``).

    Attributes
    ----------
    n_experts : int
    seed : int
        Seeds the adversary and the LDP noise.
    holds : (n,) float
        Memory each client's real device has for experts, in the units of ``expert_memory``.
    expert_memory : (E,) float
        Memory each expert needs to train.
    largest_memory : float
        Memory of the largest device, as a profile states it (what a capacity liar claims at
        least).
    most_experts : int
        The most experts any client may be given (what a capacity liar claims).
    tier_of : (n,) int
        Device tier per client, an index into ``tier_names``.
    tier_names : tuple of str
    client_group : (n,) int
        Each client's domain (-1: none); the leakage audit's labels and the validation
        sample's groups.
    clients : sequence of (x, y) arrays
        Each client's data (the validation sample is drawn from it).
    beyond_device : callable((m,) ints, (m, E) bool) -> (m,) bool
        Whether each client was given more than its real device trains in memory and before
        the deadline at its nominal speed (the capacity-lie counter).
    """

    n_experts: int
    seed: int
    holds: NDArray[np.float64]
    expert_memory: NDArray[np.float64]
    largest_memory: float
    most_experts: int
    tier_of: NDArray[np.int64]
    tier_names: tuple[str, ...]
    client_group: NDArray[np.int64]
    clients: Sequence[tuple[NDArray[Any], NDArray[Any]]]
    beyond_device: Callable[[NDArray[np.int64], NDArray[np.bool_]], NDArray[np.bool_]]

    @property
    def n_clients(self) -> int:
        """Registered clients."""
        return int(self.holds.size)


class ThreatRun:
    """One run's adversary, defenses, privacy accountant and fairness counters.

    Both round loops (:func:`fedalign.sim.server.run_strategy`,
    :func:`fedalign.sim.crossdevice.run_cross_device`) call it at a few points:
    :meth:`profile` when clients register, :meth:`condition` for what a client reports at
    check-in, :meth:`scheduler_settings` and :meth:`driver_options` when the scheduler and
    the round driver are built, :meth:`fits` and :meth:`reply` for each client given
    experts, :meth:`observe` after each round, :meth:`metrics` at the end.

    Parameters
    ----------
    config : ThreatConfig
    setup : fedalign.sim.server.Setup or fedalign.sim.crossdevice.CrossDeviceSetup
        The seed's world; its ``threat_world()`` is used unless ``world`` is given.
    make_model : callable, optional
        Builds a worker model for the server's validation callback (needed with the
        ``validation`` defense).
    world : ThreatWorld, optional
        The devices and data (default ``setup.threat_world()``).
    """

    def __init__(
        self,
        config: ThreatConfig,
        setup: Any,
        make_model: Any = None,
        *,
        world: ThreatWorld | None = None,
    ) -> None:
        self.config = config
        self.setup = setup
        self.world = w = setup.threat_world() if world is None else world
        n = w.n_clients
        self.adversary = Adversary.draw(config.attack, config.attackers, n, w.n_experts, w.seed)
        self.defenses = Defenses(config.defenses)
        self._rng = np.random.default_rng([w.seed, 4243])
        from ..privacy import PrivacyAccountant

        self.accountant = PrivacyAccountant() if config.ldp_epsilon is not None else None
        self.survey_bytes = 0  # downloads of experts evaluated only (best-expert reports)
        self.offered = np.zeros(n, dtype=np.int64)
        self.trained = np.zeros(n, dtype=np.int64)
        self.over_assigned = np.zeros(n, dtype=np.int64)
        self.last_over_assigned = np.full(n, -1, dtype=np.int64)
        self.screened = np.zeros(n, dtype=np.int64)
        self.bounded = 0
        self.rounds = 0
        self.validator = None
        if "validation" in self.defenses.names:
            if make_model is None:
                raise ValueError("make_model: the validation defense needs a model factory")
            groups = np.asarray(w.client_group)
            if not (groups >= 0).any():
                groups = np.zeros(n, dtype=np.int64)
            x, y, g = validation_sample(w.clients, groups, seed=w.seed)
            self.validator = ExpertValidator(make_model(), x, y, g)

    # ------------------------------------------------------------------ building the run
    def scheduler_settings(self) -> dict[str, Any]:
        """Scheduler keyword arguments of the defenses, the floor and the privacy setting."""
        out = self.defenses.scheduler_settings()
        c = self.config
        if c.max_idle_rounds is not None:
            out["max_idle_rounds"] = c.max_idle_rounds
        if c.ldp_epsilon is not None:
            out["noisy_rewards"] = True
        if c.exploration_weight is not None:
            out["exploration_weight"] = float(c.exploration_weight)
        return out

    def profile(self, client: int, honest: ClientProfile) -> ClientProfile:
        """The profile ``client`` registers (a lie under ``capacity-lie``)."""
        w = self.world
        return self.adversary.profile(client, honest, w.largest_memory, w.most_experts)

    def condition(self, client: int, reported: ClientProfile) -> ClientProfile:
        """What ``client`` reports at check-in (a lie under ``capacity-lie``)."""
        return self.adversary.condition(client, reported)

    def driver_options(self) -> dict[str, Any]:
        """``RoundDriver`` keyword arguments: the aggregation and the reply screen."""
        out: dict[str, Any] = {}
        agg = self.defenses.aggregator()
        if agg is not None:
            out["aggregate"] = agg
        screen = self.defenses.screen(self.validator)
        if screen is not None:
            out["screen"] = screen
        return out

    # ------------------------------------------------------------------ during a round
    def fits(
        self, clients: Sequence[int] | NDArray[np.int64], assigned: NDArray[np.bool_]
    ) -> NDArray[np.bool_]:
        """Whether each client's real device holds its assigned experts (else: out of
        memory); ``assigned`` is ``(m, E)``."""
        w = self.world
        need = np.asarray(assigned, dtype=np.float64) @ w.expert_memory
        # a hair of slack: a plan that fills memory exactly must not read as overflowing
        return need <= w.holds[np.asarray(clients, dtype=np.int64)] * (1 + 1e-9)

    def surveys(self, client: int) -> bool:
        """Whether ``client`` evaluates every expert this round: an honest client under the
        ``best-expert`` mechanism, whose private report names its best expert of all."""
        c = self.config
        return (
            c.ldp_epsilon is not None
            and c.ldp_mechanism == "best-expert"
            and not self.adversary.attacks(client)
        )

    def survey(
        self, model: Any, experts: Sequence[int], x: Any, y: Any, kind: str, layout: Any
    ) -> dict[int, float]:
        """Rewards of the experts outside ``experts``, measured on ``model`` as received
        (it must hold the global experts); their download is added to :attr:`survey_bytes`
        (``layout``: the round's :class:`fedalign.rounds.naming.ModelLayout`)."""
        from .client import expert_rewards

        given = set(experts)
        others = [j for j in range(self.world.n_experts) if j not in given]
        self.survey_bytes += layout.nbytes_for(others) - layout.shared_nbytes
        return expert_rewards(model, others, x, y, kind)

    def take_survey_bytes(self) -> int:
        """Bytes of survey downloads since the last call (added to the round's bytes down)."""
        out, self.survey_bytes = self.survey_bytes, 0
        return out

    def reply(
        self,
        client: int,
        experts: Sequence[int],
        sent: Mapping[str, NDArray[Any]],
        trained: Mapping[str, NDArray[Any]],
        feedback: Any,
        weight: float,
    ) -> tuple[dict[str, NDArray[Any]], Any, float]:
        """What ``client`` sends back: the attack's reply, or its honest one with rewards
        (and survey rewards) privatized under ``ldp_epsilon`` (the ε spent is counted)."""
        arrays, rewards, samples, w = self.adversary.tamper(
            client, experts, sent, trained, feedback.rewards, feedback.samples, weight
        )
        survey = {} if self.adversary.attacks(client) else feedback.survey
        out = replace(feedback, rewards=rewards, samples=samples, survey=survey)
        eps = self.config.ldp_epsilon
        if eps is not None and not self.adversary.attacks(client) and out.rewards:
            from ..privacy import privatize

            out = privatize(out, eps, rng=self._rng, mechanism=self.config.ldp_mechanism)
            assert self.accountant is not None
            self.accountant.spend(client, eps)
        return arrays, out, w

    def observe(self, offered: NDArray[np.int64], summary: Any) -> None:
        """Count a closed round: offers (``offered``: the clients the round was open to --
        the cohort, or in ``cross-device`` every client online), trainings, screened and
        bounded replies, liars given more experts than their device can really train.
        ``summary`` is the driver's (None: nobody was planned)."""
        self.offered[np.asarray(offered, dtype=np.int64)] += 1
        if summary is not None:
            self.trained[np.asarray(summary.completed, dtype=np.int64)] += 1
            self.screened[np.asarray(list(summary.screened), dtype=np.int64)] += 1
            self.bounded += len(summary.bounded)
            if self.adversary.kind == "capacity-lie":
                self._count_over_assigned(summary.assignment)
        self.rounds += 1

    def _count_over_assigned(self, assignment: Mapping[Any, Sequence[int]]) -> None:
        """Liars given more experts than their real device trains in memory and time."""
        liars = np.array([c for c in self.adversary.attackers if c in assignment], dtype=np.int64)
        if not liars.size:
            return
        x = np.zeros((liars.size, self.world.n_experts), dtype=bool)
        for pos, c in enumerate(liars.tolist()):  # the round's few liars, not every pair
            x[pos, list(assignment[c])] = True
        over = liars[self.world.beyond_device(liars, x)]
        self.over_assigned[over] += 1
        self.last_over_assigned[over] = self.rounds

    # ------------------------------------------------------------------ after the run
    def metrics(self, expert_load: NDArray[np.int64], scheduler: Any) -> dict[str, Any]:
        """The run's threat figures (the per-seed entries of ``results.json``)."""
        w = self.world
        rate = np.divide(
            self.trained, self.offered, out=np.zeros(len(self.offered)), where=self.offered > 0
        )
        seen = self.offered > 0
        tiers = np.asarray(w.tier_of)
        per_tier = {
            name: jain_index(rate[seen & (tiers == k)])
            for k, name in enumerate(w.tier_names)
            if (seen & (tiers == k)).any()
        }
        out: dict[str, Any] = {
            "adversary": self.adversary.to_dict(),
            "participation": participation(self.offered, self.trained),
            "jain_index": per_tier,
            "jain_index_overall": jain_index(rate[seen]),
            "idle_violations": int(scheduler.idle_violations),
            "screened": int(self.screened.sum()),
            "screened_attackers": int(self.screened[list(self.adversary.attackers)].sum()),
            "bounded": int(self.bounded),
            "trust": [float(t) for t in scheduler.trust],
        }
        if self.adversary.kind == "capacity-lie":
            liars = list(self.adversary.attackers)
            out["over_assigned_rounds"] = [int(self.over_assigned[c]) for c in liars]
            out["last_over_assigned_round"] = [int(self.last_over_assigned[c]) for c in liars]
        if self.accountant is not None:
            out["epsilon_spent"] = self.accountant.max_spent
        if self.config.audit:
            from ..privacy import assignment_leakage

            groups = np.asarray(w.client_group)
            try:
                audit = assignment_leakage(expert_load, groups)
                out["leakage"] = {"accuracy": audit.accuracy, "chance": audit.chance}
            except ValueError:  # fewer than two groups (no domains): nothing to guess
                out["leakage"] = {"accuracy": None, "chance": None}
        return out
