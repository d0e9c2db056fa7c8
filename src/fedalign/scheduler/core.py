"""The :class:`Scheduler`: registry, planning, feedback, and the undo that keeps them safe.

Each round the scheduler turns its state (fitness, usage, client profiles) into one
:class:`~fedalign.AlignmentProblem` for the cohort of participating clients, solves it with
the chosen solver, and hands back a :class:`~fedalign.Plan`. Clients train, then
:meth:`Scheduler.report` their :class:`~fedalign.Feedback`; :meth:`Scheduler.end_round`
folds the round into usage and fitness (or :meth:`Scheduler.plan` does it when the next
round starts).

This module is the class and its round-to-round bookkeeping; the rest of the package holds
what it is built from: :mod:`.settings` (validated settings), :mod:`.desirability` (the
objective), :mod:`.capacity` (the constraint rows), :mod:`.rounds` (the open round) and
:mod:`.persistence` (state dicts and files).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._arrays import check_unit_interval, float_array
from .._checks import bool_matrix
from .._validation import Boolean, Interval, short_repr, validate_one
from ..errors import HerdingWarning, InfeasibleError, InvalidFeedbackError, InvalidStateError
from ..plan import Feedback, Plan
from ..problem import AlignmentProblem
from ..profiles import CapacityProfiler, ClientProfile, ProfileBounds
from ..rows import Row
from ..scores import USAGE_MAX, FitnessTracker, UsageTracker
from ..solvers import Solution, solve
from .capacity import cohort_capacity, feasible_min, slots
from .desirability import desirability
from .ledger import ClientLedger
from .persistence import SchedulerState, load_state, malformed_state, reward_bounds, save_state
from .rounds import MAX_ROUND, OpenRound
from .settings import SchedulerSettings
from .state_file import ANY

__all__ = ["Scheduler"]

#: The name of the byte-budget row (setting ``round_bytes``).
ROUND_BYTES_ROW = "server bytes"
#: The name of the in-round balance row (setting ``balance_weight``), and its price bands.
BALANCE_ROW = "round load"
BALANCE_BANDS = 8
#: A plan whose busiest quarter of the experts holds more than this share of the round's
#: trainings (and at least twice their fair share) draws a HerdingWarning.
HERDING_SHARE = 0.5

#: A round number given by the caller (plan, report).
_ROUND = [Interval(int, 0, MAX_ROUND), None]
#: A verdict of the server on a report (:meth:`Scheduler.judge`).
_VERDICT = [Interval(float, 0, 1)]


def _path_key(path: str | os.PathLike[str]) -> str:
    """How a scheduler names a state file it read or wrote (absolute, normalised)."""
    return os.path.normcase(os.path.abspath(os.fspath(path)))


class Scheduler:
    """Plans which experts each client trains every round, and learns from the outcome.

    Parameters
    ----------
    n_experts : int >= 1
        Number of experts of the model.
    solver : str
        Name passed to :func:`fedalign.solve` (``"auto"``, ``"topk"`` for the paper's
        algorithm, ``"flow"``, ``"lagrangian"``, ...).
    expert_memory : float or (E,) floats >= 0, optional
        Memory one expert needs on a client; enables the memory knapsack (clients with
        unknown memory are unlimited).
    seed : int, optional
        Seeds the scheduler's random generator (solver seeds are drawn from it).
    fitness_weight, usage_weight : float >= 0
        ``w_fit`` and ``w_use`` of the desirability (defaults 1.0 and 0.5).
    fitness_ema, fitness_decay, fitness_prior : float in [0, 1]
        ``a``, ``d`` and the prior of the fitness update (defaults 0.3, 0.02, 0.5).
    usage_decay : float in [0, 1]
        ``ρ`` of the usage average (default 0.8: a window of about 5 rounds).
    time_limit : float, optional
        Seconds given to the solver each round.
    usage_norm : {"max", "mean", "share"}
        How usage is normalised across experts into ``Ũ`` (default ``U / max U``, in [0, 1]).
    usage_measure : {"samples", "compute"}
        Load credited to an expert per report: the samples trained, or samples times the
        expert's ``expert_cost``.
    time_weight : float >= 0
        Weight of the time cost ``t[i, j] / deadline_i`` (needs a deadline policy).
    exploration_weight : float >= 0
        Weight of the bonus ``sqrt(ln(R + 2) / (1 + n[i, j]))`` for rarely tried pairs.
    min_experts : int >= 0
        Experts each cohort client should train (default 1). A client that cannot fit that
        many on its own (memory, deadline, allowed pairs) gets as many as fit; ``explain``
        shows why.
    max_experts : int >= 0 or None
        Cap for clients whose profile leaves ``max_experts`` unset (default 1; None: no cap
        beyond memory and time).
    expert_min_clients, expert_max_clients : int or (E,) ints, optional
        Per-expert bounds on clients per round, passed to the problem as given (an
        impossible minimum surfaces as :class:`~fedalign.InfeasibleError`).
    expert_ids : sequence of E hashable ids, optional
        Default ``0..E-1``.
    expert_bytes : float or (E,) floats >= 0, optional
        Bytes to fetch an expert (and to return its update); enables transfer time.
    expert_cost : float or (E,) floats >= 0
        Relative training cost per sample of each expert (default 1).
    samples_per_round : float, optional
        Samples assumed for clients that have neither declared nor reported any.
    deadline : float > 0, optional
        A fixed time budget per round in seconds (enables the deadline knapsack).
    deadline_percentile : float in (0, 100], optional
        Oort-style deadline: this percentile, over the cohort, of the time each client needs
        for its ``max_experts`` fastest experts. Exclusive with ``deadline``.
    profile_bounds : ProfileBounds, optional
        Plausible ranges self-reported profiles are clipped to.
    profile_window : int
        Completed rounds per client the profiler's median slowdown looks at (default 8).
    dropout_inflation : float >= 1
        How much slower than known a dropout is assumed to be (default 1.25).
    max_report_factor : float >= 1 or None
        Bound on what one report is credited with: at most this many times the client's
        declared ``samples`` (its profile), or, for a client that declared none, the
        median ``samples`` of the round's completed reports (default 10; None: no relative
        bound). Larger claims are accepted and clipped (see :meth:`end_round`).
    max_report_samples : float > 0
        Absolute bound on the samples one report is credited with (default 1e9).
    solver_options : dict, optional
        Extra options passed to the solver; names are checked against the solver's options.
    round_bytes : float > 0, optional
        The server's byte budget per round: a ``"server bytes"`` total row bounds the bytes
        the plan moves, ``2 * (expert_bytes[j] + shared_bytes)`` per pair (down and up; the
        shared part counted with every expert, which over-counts a client with several
        experts, so the budget holds for the bytes actually sent). Needs ``expert_bytes``.
    shared_bytes : float >= 0
        Bytes of the shared parameters (trunk, gate) a client downloads and uploads with its
        experts, once per round (default 0). The byte budget counts them with every pair; the
        deadline row takes their transfer time off each client's deadline, and the profiler
        expects it in every observed duration.
    balance_weight : float >= 0
        In-round load balance: a soft ``"round load"`` row charges, on each expert, the
        ``k``-th client above its fair share of the round (the cohort's expert slots --
        what each client's ``max_experts``, memory and deadline allow -- over E, rounded
        down, at least 1: the cost is convex, so a remainder is spread one per expert) ``k * balance_weight`` in desirability units (up to
        ``BALANCE_BANDS * balance_weight`` per further client): a convex cost that
        couples the clients of a round, so that a cohort whose desirabilities move alike
        (the usage term moves only between rounds) spreads over the experts instead of
        herding onto the same ones. Default 0.25 (a quarter of the desirability scale
        for the first client over the fair share): on by default so that defaults never
        herd; 0 turns it off (the paper's published system, where only the usage term
        spreads load, between rounds).
    trust_rate : float in [0, 1]
        Keep a trust score per client, an exponential average (this weight for the latest
        round) of the plausibility of its reports, starting at 1; a client's fitness moves
        toward its rewards at ``fitness_ema x trust`` instead of ``fitness_ema``, so a
        client whose rewards keep being implausible stops steering its fitness.
        Plausibility comes from ``reward_z`` and from the server's verdicts
        (:meth:`judge`, e.g. the round driver's reply screen). 0 (default): no trust score.
    reward_z : float > 0, optional
        Judge each reward against the round's rewards for the same expert: with at least
        three rewards for the expert, a reward farther from their median than
        ``max(reward_tolerance, reward_z x 1.4826 x MAD)`` is implausible and not credited.
        None (default): rewards are not judged against each other.
    reward_tolerance : float >= 0
        The smallest distance from the median ``reward_z`` judges implausible (default 0.2).
    max_idle_rounds : int >= 1, optional
        Fairness floor: a cohort client that could fit an expert but received none in its
        last ``max_idle_rounds`` offered rounds must receive one (a minimum of one expert
        for it that round); when the round cannot take every floor, the floors are dropped
        for that round and the clients left idle are counted (:attr:`idle_violations`).
        None (default): no floor.
    noisy_rewards : bool
        Rewards may carry zero-mean local-differential-privacy noise
        (``Feedback.epsilon``, :func:`fedalign.privacy.privatize_rewards`): rewards outside
        [0, 1] are accepted and the fitness average is kept unclipped, so it stays an
        unbiased estimate of the exact rewards' average (fitness then leaves [0, 1]). A
        noisy reward moves its pair's fitness by a Kalman-style gain ``P / (P + R0 + V)``
        instead of ``fitness_ema``: ``V`` the report's noise variance
        (``Feedback.reward_variance``), ``P`` the variance of the pair's estimate, which
        shrinks with each report and grows back with ``fitness_decay``, ``R0`` the exact
        rewards' own scatter, for which ``fitness_ema`` is the steady gain
        (:class:`~fedalign.FitnessTracker`); the gain tends to ``fitness_ema`` as ``V``
        vanishes. Exact rewards keep ``fitness_ema``.
        False (default): a reward outside [0, 1] is refused.
    warm_start : bool
        Pass the previous round's :class:`~fedalign.Solution` to the solver as a warm start
        (default True): consecutive rounds share clients, experts and rows, and a solver
        that reuses anything (``lagrangian``'s prices, ``flow``'s expert prices, a hint or
        MIP start for ``cpsat``, ``highs``, ``milp``) starts close to the new optimum.
        Bounds stay proven for the new round. The warm start is not part of the saved
        state: a scheduler loaded from a file plans its first round cold.

    Raises
    ------
    ValueError
        A setting of the wrong type or out of range (the message names it, and the
        position for per-expert values), an unknown solver name, or a solver option the
        solver does not have.
    SolverUnavailableError
        The solver's optional dependency is missing.

    Notes
    -----
    The settings are validated once, into a frozen :class:`SchedulerSettings` (:attr:`config`;
    :attr:`settings` is its JSON-ready dict); :meth:`from_settings` builds a scheduler from one.
    """

    def __init__(
        self,
        n_experts: int,
        *,
        solver: str = "auto",
        expert_memory: float | ArrayLike | None = None,
        seed: int | None = None,
        fitness_weight: float = 1.0,
        usage_weight: float = 0.5,
        fitness_ema: float = 0.3,
        fitness_decay: float = 0.02,
        fitness_prior: float = 0.5,
        usage_decay: float = 0.8,
        time_limit: float | None = None,
        usage_norm: str = "max",
        usage_measure: str = "samples",
        time_weight: float = 0.0,
        exploration_weight: float = 0.0,
        min_experts: int = 1,
        max_experts: int | None = 1,
        expert_min_clients: int | ArrayLike = 0,
        expert_max_clients: int | ArrayLike | None = None,
        expert_ids: Sequence[Hashable] | None = None,
        expert_bytes: float | ArrayLike | None = None,
        expert_cost: float | ArrayLike = 1.0,
        samples_per_round: float | None = None,
        deadline: float | None = None,
        deadline_percentile: float | None = None,
        profile_bounds: ProfileBounds | None = None,
        profile_window: int = 8,
        dropout_inflation: float = 1.25,
        max_report_factor: float | None = 10.0,
        max_report_samples: float = 1e9,
        solver_options: Mapping[str, Any] | None = None,
        round_bytes: float | None = None,
        shared_bytes: float = 0.0,
        balance_weight: float = 0.25,
        trust_rate: float = 0.0,
        reward_z: float | None = None,
        reward_tolerance: float = 0.2,
        max_idle_rounds: int | None = None,
        noisy_rewards: bool = False,
        warm_start: bool = True,
    ) -> None:
        # the arguments above, by name (the first statement: no other local exists yet); typed
        # Any, as SchedulerSettings' fields are annotated with the canonical forms it stores
        values: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "n_experts")}
        self._setup(SchedulerSettings(n_experts, **values))

    @classmethod
    def from_settings(cls, settings: SchedulerSettings) -> Scheduler:
        """A new scheduler with ``settings`` (already validated), no clients, no rounds."""
        if not isinstance(settings, SchedulerSettings):
            raise TypeError(f"settings: expected a SchedulerSettings, got {type(settings).__name__}")
        sched = cls.__new__(cls)
        sched._setup(settings)
        return sched

    def _setup(self, settings: SchedulerSettings) -> None:
        """Build the empty state for ``settings``: trackers, profiler, registry, random stream."""
        s = self._settings = settings
        e = self.n_experts = s.n_experts
        self.expert_ids: tuple[Hashable, ...] = s.expert_ids
        self._expert_pos = {x: k for k, x in enumerate(s.expert_ids)}
        self._expert_cost = np.asarray(s.expert_cost, dtype=np.float64)
        self._fit = FitnessTracker(
            e, ema=s.fitness_ema, decay=s.fitness_decay, prior=s.fitness_prior, bounds=reward_bounds(s)
        )
        self._ledger = ClientLedger(trust=s.tracks_trust, idle=s.max_idle_rounds is not None)
        self._use = UsageTracker(e, decay=s.usage_decay, norm=s.usage_norm)
        self._prof = CapacityProfiler(
            np.zeros(e) if s.expert_bytes is None else s.expert_bytes,
            s.expert_cost,
            samples_per_round=s.samples_per_round,
            bounds=s.profile_bounds,
            window=s.profile_window,
            dropout_inflation=s.dropout_inflation,
            shared_bytes=s.shared_bytes,
        )
        self._ids: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._rng = np.random.default_rng(s.seed)
        self._last_round = -1  # last planned round
        self._open: OpenRound | None = None
        # the last plan's solution: the next round's warm start (setting warm_start)
        self._previous: Solution | None = None
        # the open round's conditions (registry row -> ClientProfile): its durations were
        # measured under them, so end_round learns against them too. Kept in memory only: a
        # scheduler reloaded mid-round learns that round against the registered profiles.
        self._open_conditions: dict[int, ClientProfile] = {}
        # digest of the state file this scheduler last loaded or saved, per absolute path
        self._files: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return (
            f"Scheduler(n_experts={self.n_experts}, solver={self._settings.solver!r}, "
            f"clients={self.n_clients}, rounds_closed={self.rounds_closed}, open_round={self.round})"
        )

    # ------------------------------------------------------------------ registry

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor's settings, JSON-ready (a copy)."""
        return self._settings.to_dict()

    @property
    def config(self) -> SchedulerSettings:
        """The validated settings, as the frozen :class:`SchedulerSettings` the scheduler reads."""
        return self._settings

    @property
    def n_clients(self) -> int:
        """Number of registered clients."""
        return len(self._ids)

    @property
    def client_ids(self) -> list[Hashable]:
        """Registered client ids in registration order (the rows of :attr:`fitness`)."""
        return list(self._ids)

    def register(
        self,
        client_id: Hashable,
        profile: ClientProfile | None = None,
        *,
        routing_shares: ArrayLike | None = None,
    ) -> ClientProfile:
        """Register a client, or update the profile of a registered one.

        Parameters
        ----------
        client_id : hashable
            Any hashable id (int or str to be savable).
        profile : ClientProfile, optional
            Self-reported capacity; clipped to ``profile_bounds``. None: all unknown for a
            new client, unchanged for a registered one.
        routing_shares : (E,) floats in [0, 1], optional
            Cold start for a new client's fitness, e.g. the share of its samples its gate
            routes to each expert. Only for a client's first registration.

        Returns
        -------
        ClientProfile
            The profile as stored (after clipping).
        """
        if profile is not None and not isinstance(profile, ClientProfile):
            raise TypeError(f"profile: expected a ClientProfile, got {type(profile).__name__}")
        try:
            row = self._index.get(client_id)
        except TypeError:
            raise TypeError(f"client_id: {short_repr(client_id)} is not hashable") from None
        if row is None:
            shares = None
            if routing_shares is not None:
                shares = self._routing_shares(routing_shares, None)
            self._fit.add(1, shares)
            self._ledger.add(1)
            row = int(self._prof.add(1)[0])
            self._index[client_id] = row
            self._ids.append(client_id)
        elif routing_shares is not None:
            raise ValueError(
                f"routing_shares: client {short_repr(client_id)} is already registered; its fitness is learned"
            )
        elif profile is None:
            return self._prof.profile(row)
        return self._prof.set_profile(row, profile if profile is not None else ClientProfile())

    def register_many(
        self,
        client_ids: Iterable[Hashable],
        profile: ClientProfile | Sequence[ClientProfile] | None = None,
        *,
        routing_shares: ArrayLike | None = None,
    ) -> None:
        """Register many new clients at once (vectorised; for large registries).

        Parameters
        ----------
        client_ids : iterable of hashable
            New, distinct ids (use :meth:`register` to update a registered client).
        profile : ClientProfile or sequence of ClientProfile, optional
            One profile shared by all, or one per client. None: all unknown.
        routing_shares : (k, E) floats in [0, 1], optional
            Cold-start fitness rows, one per new client (see :meth:`register`).

        Raises
        ------
        ValueError
            An id is already registered or repeated, or the profile count does not match.
        """
        ids = self._new_ids(client_ids)
        profs = self._profile_list(profile, len(ids))
        shares = None if routing_shares is None else self._routing_shares(routing_shares, len(ids))
        # validated: nothing below can fail half-way
        self._fit.add(len(ids), shares)
        self._ledger.add(len(ids))
        rows = self._prof.add(len(ids))
        start = len(self._ids)
        self._ids.extend(ids)
        self._index.update(zip(ids, range(start, start + len(ids)), strict=True))
        if profs is not None:
            for r, p in zip(rows.tolist(), profs, strict=True):
                self._prof.set_profile(r, p)
        else:
            shared = profile if isinstance(profile, ClientProfile) else ClientProfile()
            self._prof.set_profiles(rows, shared)

    def _new_ids(self, client_ids: Iterable[Hashable]) -> list[Hashable]:
        """``client_ids`` as a list of distinct ids not registered yet."""
        if isinstance(client_ids, (str, bytes)):
            raise ValueError("client_ids: expected an iterable of client ids, got a string")
        try:
            ids = list(client_ids)
        except TypeError:
            raise ValueError(
                f"client_ids: expected an iterable of client ids, got {type(client_ids).__name__}"
            ) from None
        for k, c in enumerate(ids):
            try:
                known = c in self._index
            except TypeError:
                raise TypeError(f"client_ids[{k}]: {short_repr(c)} is not hashable") from None
            if known:
                raise ValueError(f"client_ids[{k}]: {short_repr(c)} is already registered")
        if len(set(ids)) != len(ids):
            raise ValueError("client_ids: ids repeat")
        return ids

    @staticmethod
    def _profile_list(
        profile: ClientProfile | Sequence[ClientProfile] | None, k: int
    ) -> list[ClientProfile] | None:
        """One profile per new client when ``profile`` is a sequence; None when it is shared."""
        if profile is None or isinstance(profile, ClientProfile):
            return None
        if isinstance(profile, (str, bytes, Mapping)):
            raise TypeError(
                f"profile: expected a ClientProfile or a sequence of them, got {type(profile).__name__}"
            )
        try:
            profs = list(profile)
        except TypeError:
            raise TypeError(
                f"profile: expected a ClientProfile or a sequence of them, got {type(profile).__name__}"
            ) from None
        if len(profs) != k:
            raise ValueError(f"profile: expected {k} profiles, got {len(profs)}")
        for j, p in enumerate(profs):
            if not isinstance(p, ClientProfile):
                raise TypeError(f"profile[{j}]: expected a ClientProfile, got {type(p).__name__}")
        return profs

    def _routing_shares(self, value: ArrayLike, k: int | None) -> NDArray[np.float64]:
        """Cold-start rows checked: (E,) for one client (``k`` None), else (k, E), in [0, 1]."""
        shares = float_array("routing_shares", value)
        shape = (self.n_experts,) if k is None else (k, self.n_experts)
        if shares.shape != shape:
            expected = f"{self.n_experts} values" if k is None else f"shape {shape}"
            raise ValueError(f"routing_shares: expected {expected}, got shape {shares.shape}")
        check_unit_interval("routing_shares", shares)
        return shares

    def profile(self, client_id: Hashable) -> ClientProfile:
        """The stored (clipped) profile of a registered client."""
        return self._prof.profile(self._row(client_id))

    def estimates(self, client_id: Hashable) -> dict[str, float | None]:
        """The profiler's view of a client: slowdown, reliability, effective speeds, samples."""
        return self._prof.estimates(self._row(client_id))

    def _row(self, client_id: Hashable) -> int:
        try:
            return self._index[client_id]
        except (KeyError, TypeError):
            raise KeyError(f"client_id: {short_repr(client_id)} is not registered") from None

    # ------------------------------------------------------------------ state views

    @property
    def fitness(self) -> NDArray[np.floating[Any]]:
        """(n_registered, E) current fitness, rows in registration order (a float32 copy)."""
        return self._fit.values()

    @property
    def usage(self) -> NDArray[np.float64]:
        """(E,) raw exponential average of the samples (or compute) trained per expert."""
        return self._use.usage.copy()

    @property
    def trust(self) -> NDArray[np.float64]:
        """(n_registered,) trust score of every client in [0, 1], registration order (a copy).

        All ones unless ``trust_rate > 0``. A client's fitness moves toward its rewards at
        ``fitness_ema x trust``; :meth:`Plan.explain <fedalign.Plan.explain>` shows it.
        """
        return self._ledger.all_trust()

    @property
    def idle_violations(self) -> int:
        """Client-rounds in which the ``max_idle_rounds`` floor was due and not met (0 without
        the setting)."""
        return int(self._ledger.violations)

    def idle_rounds(self, client_id: Hashable) -> int:
        """Offered rounds in a row in which ``client_id`` could fit an expert and got none
        (0 without the setting ``max_idle_rounds``)."""
        return int(self._ledger.idle([self._row(client_id)])[0])

    @property
    def round(self) -> int | None:
        """The open round's number, or None between rounds."""
        return None if self._open is None else self._open.round

    @property
    def rounds_closed(self) -> int:
        """How many rounds have been closed."""
        return self._fit.rounds_closed

    # ------------------------------------------------------------------ planning

    def build_problem(
        self,
        clients: Iterable[Hashable],
        *,
        allowed: ArrayLike | None = None,
        conditions: Mapping[Hashable, ClientProfile] | None = None,
    ) -> tuple[AlignmentProblem, dict[str, NDArray[np.float64]]]:
        """The alignment problem for a cohort, and the desirability's terms (no state change).

        Parameters
        ----------
        clients : iterable of registered client ids
        allowed : (n, E) bool, optional
            False forbids a pair this round.
        conditions : mapping of client id to ClientProfile, optional
            This round's measured capacity (see :meth:`plan`).

        Raises
        ------
        KeyError
            A client is not registered, or a key of ``conditions`` is not in the cohort.
        TypeError
            A value of ``conditions`` is not a ClientProfile.
        ValueError
            ``clients`` is a string or not iterable, empty, or repeats a client;
            ``allowed`` is not a boolean (0/1) matrix of the cohort's shape
            (``InvalidProblemError``); or ``conditions`` is not a mapping.
        """
        rows = self._cohort_rows(clients)
        overrides = self._conditions(conditions, rows)
        with self._prof.overlay(overrides):
            problem, terms, _ = self._build_problem(rows, allowed, self._due_floor(rows))
            return problem, terms

    def _due_floor(self, rows: NDArray[np.int64]) -> NDArray[np.bool_] | None:
        """Cohort clients due the idle floor (None without the setting ``max_idle_rounds``)."""
        w = self._settings.max_idle_rounds
        if w is None:
            return None
        return self._ledger.idle(rows) >= w

    def _conditions(
        self, conditions: Mapping[Hashable, ClientProfile] | None, rows: NDArray[np.int64]
    ) -> dict[int, ClientProfile]:
        """``conditions`` checked (cohort clients, ClientProfile values) as registry row -> profile."""
        if conditions is None:
            return {}
        if not isinstance(conditions, Mapping):
            raise ValueError(
                f"conditions: expected a mapping of client id to ClientProfile, got {type(conditions).__name__}"
            )
        cohort = set(rows.tolist())
        out: dict[int, ClientProfile] = {}
        for cid, profile in conditions.items():  # one per cohort client at most
            try:
                row = self._index.get(cid)
            except TypeError:  # a tuple holding a list passes isinstance(x, Hashable)
                row = None
            if row is None or row not in cohort:
                raise KeyError(f"conditions: client {short_repr(cid)} is not in this round's cohort")
            if not isinstance(profile, ClientProfile):
                raise TypeError(
                    f"conditions[{short_repr(cid)}]: expected a ClientProfile, got {type(profile).__name__}"
                )
            out[row] = profile
        return out

    def _build_problem(
        self,
        rows: NDArray[np.int64],
        allowed: ArrayLike | None,
        due: NDArray[np.bool_] | None = None,
    ) -> tuple[AlignmentProblem, dict[str, NDArray[np.float64]], NDArray[np.bool_] | None]:
        """:meth:`build_problem` for registry rows already validated by :meth:`_cohort_rows`.

        ``due`` marks clients due the idle floor: each that can fit an expert on its own gets
        a minimum of one. Also returns, with the floor setting on, which clients can fit an
        expert on their own this round (None otherwise).
        """
        s = self._settings
        n, e = rows.size, self.n_experts
        cap = cohort_capacity(s, self._prof, rows)
        d, terms = desirability(
            s,
            fitness=self._fit.get(rows),
            usage=self._use.usage.copy(),
            usage_norm=self._use.normalised(),
            train_time=cap.train_time,
            deadline=cap.deadline,
            # counts are an O(cohort · E) copy: only read when the bonus is on
            times_trained=self._fit.times_trained(rows) if s.exploration_weight > 0 else None,
            rounds_closed=self._fit.rounds_closed,
        )
        if s.tracks_trust:
            terms["trust"] = self._ledger.trust(rows)
        allow = np.ones((n, e), dtype=bool) if allowed is None else bool_matrix("allowed", allowed, (n, e))
        # The (n, E) arrays are this round's own and nothing writes them again: frozen, the
        # problem keeps them without a copy (at 100,000 x 128 each is 100 MB).
        for arr in (d, cap.train_time, allow):
            if arr is not None and arr is not allowed:
                arr.flags.writeable = False
        min_clients = np.asarray(s.expert_min_clients, dtype=np.int64)
        min_experts = feasible_min(s.min_experts, cap, allow)
        could = None
        if s.max_idle_rounds is not None:
            could = feasible_min(1, cap, allow) >= 1
            if due is not None:
                min_experts = np.where(due & could, np.maximum(min_experts, 1), min_experts)
        problem = AlignmentProblem(
            d,
            rows=self._round_rows(slots(cap, allow)),
            max_experts=cap.max_experts,
            min_experts=min_experts,
            expert_memory=cap.expert_memory,
            client_memory=cap.client_memory,
            train_time=cap.train_time,
            deadline=cap.deadline,
            expert_min_clients=min_clients,
            # "unbounded" must not read as "at most n": a minimum above n is infeasible, not malformed
            expert_max_clients=(
                np.maximum(n, min_clients)
                if s.expert_max_clients is None
                else np.asarray(s.expert_max_clients, dtype=np.int64)
            ),
            allowed=allow,
            client_ids=[self._ids[r] for r in rows],
            expert_ids=self.expert_ids,
        )
        return problem, terms, could

    def _round_rows(self, slots: NDArray[np.int64]) -> list[Row]:
        """The rows the settings add to every round: the byte budget, the in-round balance
        (fair share: the cohort's ``slots``, :func:`.capacity.slots`, over E, rounded down)."""
        s = self._settings
        out = []
        if s.round_bytes is not None and s.expert_bytes is not None:
            per_pair = 2.0 * (np.asarray(s.expert_bytes, dtype=np.float64) + s.shared_bytes)
            out.append(Row(ROUND_BYTES_ROW, "total", per_pair, upper=s.round_bytes))
        if s.balance_weight > 0:
            fair = max(1, int(slots.sum()) // self.n_experts)
            prices = (s.balance_weight * np.arange(1, BALANCE_BANDS + 1)).tolist()
            out.append(Row(BALANCE_ROW, "expert", 1.0, upper=fair, penalty=prices))
        return out

    def plan(
        self,
        clients: Iterable[Hashable],
        round: int | None = None,
        *,
        allowed: ArrayLike | None = None,
        conditions: Mapping[Hashable, ClientProfile] | None = None,
    ) -> Plan:
        """Plan a round for a cohort: which experts each client trains.

        Closes an open round first (clients that did not report count as dropouts).

        Parameters
        ----------
        clients : iterable of registered client ids
            The cohort: distinct ids, at least one.
        round : int, optional
            The round's number; must exceed every round planned before. Default: the
            previous round plus one (the first round is 0).
        allowed : (n, E) bool, optional
            False forbids a pair this round (e.g. a client declines an expert).
        conditions : mapping of client id to ClientProfile, optional
            What clients measured at check-in (e.g. this round's bandwidth after fading):
            the fields a profile sets override the registered profile for this round only
            (clipped like any profile); fields left None keep the registered values.

        Returns
        -------
        Plan

        Raises
        ------
        KeyError
            A client is not registered, or a key of ``conditions`` is not in the cohort.
        TypeError
            A value of ``conditions`` is not a ClientProfile.
        ValueError
            ``clients`` is a string or not iterable, the cohort is empty or repeats a
            client, ``allowed`` is not a boolean (0/1) matrix of the cohort's shape
            (``InvalidProblemError``), ``conditions`` is not a mapping, or the round number
            is not an int in [0, 2**53] above every round planned before.
        InfeasibleError
            The round's constraints cannot all be met (the message names the constraint).
        UnsupportedProblemError
            The scheduler's solver cannot handle this round's constraints.

        Any error leaves the scheduler as it was: an open round stays open with its
        reports, and the random stream is not advanced.
        """
        rows = self._cohort_rows(clients)  # bad cohorts raise before anything changes
        number = self._next_round(round)
        overrides = self._conditions(conditions, rows)
        undo = self._checkpoint()
        try:
            self.end_round()
            due = self._due_floor(rows)  # after end_round: trust and streaks are current
            with self._prof.overlay(overrides):
                problem, terms, could, solution, due = self._solve_round(rows, allowed, due, number)
        except BaseException:
            self._rollback(undo)  # a failed plan changes nothing: the open round stays open
            raise
        self._last_round = number
        self._previous = solution if self._settings.warm_start else None
        self._open = OpenRound.start(number, rows, solution.assignment, problem.deadline)
        floored, missed = self._record_floors(rows, problem, solution, could, due)
        self._open_conditions = overrides
        _warn_if_herding(solution.assignment, number)
        return Plan(
            round=number,
            assignment=solution.to_dict(),
            solution=solution,
            problem=problem,
            terms=terms,
            floored=floored,
            idle_violations=missed,
        )

    def _solve_round(
        self, rows: NDArray[np.int64], allowed: ArrayLike | None, due: NDArray[np.bool_] | None, number: int
    ) -> tuple[AlignmentProblem, Any, NDArray[np.bool_] | None, Solution, NDArray[np.bool_] | None]:
        """Build and solve the round with the fairness floor ``due``; when the round cannot
        take every floor, again without them (the misses are counted by the caller).

        Returns the problem, its terms, which clients could fit an expert, the solution and
        the floor actually applied.
        """
        problem, terms, could = self._build_problem(rows, allowed, due)
        try:
            return problem, terms, could, self._solve(problem, number), due
        except InfeasibleError:
            if due is None or not (due & could).any():  # type: ignore[operator]
                raise
        due = np.zeros_like(due)
        problem, terms, could = self._build_problem(rows, allowed, due)
        return problem, terms, could, self._solve(problem, number), due

    def _record_floors(
        self,
        rows: NDArray[np.int64],
        problem: AlignmentProblem,
        solution: Solution,
        could: NDArray[np.bool_] | None,
        due: NDArray[np.bool_] | None,
    ) -> tuple[list[Hashable], list[Hashable]]:
        """Update the idle streaks after a planned round; the clients floored and the ones
        whose floor was due but not met (``idle_violations``). Nothing without a floor."""
        if could is None:
            return [], []
        was_due = self._due_floor(rows)
        assert was_due is not None
        got = solution.assignment.any(axis=1)
        self._ledger.record_round(rows, got, could, was_due)
        ids = problem.client_ids
        floored = [ids[k] for k in np.flatnonzero(due & could)]  # type: ignore[operator]
        missed = [ids[k] for k in np.flatnonzero(was_due & could & ~got)]
        return floored, missed

    def _next_round(self, round: int | None) -> int:
        """The number of the round :meth:`plan` opens: ``round``, checked, or the next one."""
        round = validate_one("round", round, _ROUND)
        if round is None:
            return self._last_round + 1
        if round <= self._last_round:
            raise ValueError(f"round: {round} is not after the last planned round {self._last_round}")
        return int(round)

    def _solve(self, problem: AlignmentProblem, number: int) -> Solution:
        """Solve round ``number``'s problem with the scheduler's solver and a seed drawn from
        its stream; infeasibility is reported with the round's number."""
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(f"round {number}: {reason}")
        s = self._settings
        seed = int(self._rng.integers(0, 2**63 - 1))
        warm = self._previous if s.warm_start else None
        try:
            return solve(
                problem, s.solver, time_limit=s.time_limit, seed=seed, warm_start=warm,
                **s.solver_options,
            )
        except InfeasibleError as exc:
            raise InfeasibleError(f"round {number}: {exc}") from exc

    def _checkpoint(self) -> dict[str, Any]:
        """What :meth:`_rollback` needs to undo :meth:`end_round` and one plan's draws.

        Only the open round's cohort rows change when a round closes, so this copies
        O(cohort · E) values, not the registry.
        """
        rows = np.empty(0, dtype=np.int64) if self._open is None else self._open.rows
        return {
            "fit": self._fit.snapshot(rows),
            "use": self._use.snapshot(),
            "prof": self._prof.snapshot(rows),
            "ledger": self._ledger.snapshot(rows),
            "rng": self._rng.bit_generator.state,
            "open": self._open,  # end_round only drops it: the object itself is unchanged
            "open_conditions": self._open_conditions,
            "last_round": self._last_round,
        }

    def _rollback(self, undo: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`_checkpoint`."""
        self._fit.restore(undo["fit"])
        self._use.restore(undo["use"])
        self._prof.restore(undo["prof"])
        self._ledger.restore(undo["ledger"])
        self._rng.bit_generator.state = undo["rng"]
        self._open = undo["open"]
        self._open_conditions = undo["open_conditions"]
        self._last_round = undo["last_round"]

    def _cohort_rows(self, clients: Iterable[Hashable]) -> NDArray[np.int64]:
        """Registry rows of a cohort: distinct registered ids, at least one."""
        if isinstance(clients, (str, bytes)):  # before list(): "ab" is not the cohort a, b
            raise ValueError("clients: expected an iterable of client ids, got a string")
        try:
            clients = list(clients)
        except TypeError:
            raise ValueError(
                f"clients: expected an iterable of client ids, got {type(clients).__name__}"
            ) from None
        rows = np.empty(len(clients), dtype=np.int64)
        for k, c in enumerate(clients):
            try:
                rows[k] = self._index[c]
            except (KeyError, TypeError):
                raise KeyError(f"clients[{k}]: client {short_repr(c)} is not registered") from None
        if rows.size == 0:
            raise ValueError("clients: the cohort is empty")
        if np.unique(rows).size != rows.size:
            u, first = np.unique(rows, return_index=True)
            dup = sorted(set(range(rows.size)) - set(first.tolist()))[0]
            raise ValueError(f"clients[{dup}]: client {short_repr(clients[dup])} appears twice")
        return rows

    # ------------------------------------------------------------------ feedback

    def report(self, client_id: Hashable, feedback: Feedback, round: int | None = None) -> None:
        """Record a client's feedback for the open round.

        Parameters
        ----------
        client_id : hashable
            A client of the open round's cohort.
        feedback : Feedback
        round : int, optional
            The plan's round number (default: the open round).

        Raises
        ------
        InvalidFeedbackError
            Unknown client, a closed or future round, a client not in the cohort, an expert
            it was not given, a bad reward, or a second report. Nothing changes.
        """
        if not isinstance(feedback, Feedback):
            raise InvalidFeedbackError(f"feedback: expected a Feedback, got {type(feedback).__name__}")
        op, pos = self._report_position(client_id, round)
        if feedback.noisy and not self._settings.noisy_rewards:
            raise InvalidFeedbackError(
                f"feedback.rewards: rewards outside [0, 1] (noisy, epsilon={feedback.epsilon:g}) "
                "need a scheduler built with noisy_rewards=True"
            )
        trained, rewards = self._report_rewards(client_id, feedback, op.assigned[pos], op.round)
        survey = self._report_survey(feedback) if feedback.survey else None
        # validation done: record it; end_round learns from the whole cohort at once
        op.record(
            pos,
            trained=trained,
            rewards=rewards,
            samples=feedback.samples,
            duration=feedback.duration,
            completed=feedback.completed,
            noise=self._reward_noise(feedback),
            survey=survey,
        )

    def _reward_noise(self, feedback: Feedback) -> float | None:
        """Variance of the privacy noise of each of the report's rewards (None: exact).

        Only a scheduler built with ``noisy_rewards=True`` weighs rewards by their noise; a
        report that states ``epsilon`` but no ``reward_variance`` is taken as Laplace
        noise for its ε and number of rewards (:func:`fedalign.privacy.privatize_rewards`'
        default mechanism).
        """
        k = len(feedback.rewards) + len(feedback.survey)
        if not self._settings.noisy_rewards or feedback.epsilon is None or k == 0:
            return None
        if feedback.reward_variance is not None:
            return feedback.reward_variance
        # fedalign.privacy.noise_variance(ε, k, "laplace"): Laplace noise of scale k / ε
        return 2.0 * (k / feedback.epsilon) ** 2

    def judge(
        self,
        client_id: Hashable,
        verdict: float | Mapping[Hashable, float],
        round: int | None = None,
    ) -> None:
        """Record the server's verdict on a client's report of the open round.

        The verdict is the plausibility, in [0, 1], of what the client sent: 0 for a reply
        the server found implausible (an update unlike the others', a reward its own
        validation cannot reach), 1 for a plausible one. When the round closes, a reward of
        verdict 0 is not credited (its pair drifts like an untrained one), a reward of
        verdict ``v`` moves fitness at ``fitness_ema x v`` (times the client's trust), and,
        with ``trust_rate > 0``, the client's mean verdict over its rewards enters its trust
        score. Called by the round driver's reply screen
        (:class:`fedalign.rounds.ReplyScreen`); a client judged twice keeps the lower
        verdict per expert.

        Parameters
        ----------
        client_id : hashable
            A client of the open round's cohort.
        verdict : float in [0, 1], or mapping of expert id to float in [0, 1]
            One verdict for every expert the client was given, or one per expert.
        round : int, optional
            The plan's round number (default: the open round).

        Raises
        ------
        InvalidFeedbackError
            Unknown client, no open round, a closed or future round, a client outside the
            cohort, an expert it was not given, a verdict outside [0, 1]. Nothing changes.
        """
        op, pos = self._round_position(client_id, round)
        row = np.full(self.n_experts, np.nan)
        if isinstance(verdict, Mapping):
            for eid, v in verdict.items():
                try:
                    j = self._expert_pos[eid]
                except (KeyError, TypeError):
                    raise InvalidFeedbackError(f"verdict: {short_repr(eid)} is not an expert id") from None
                if not op.assigned[pos, j]:
                    raise InvalidFeedbackError(
                        f"verdict: expert {short_repr(eid)} was not assigned to client "
                        f"{short_repr(client_id)} in round {op.round}"
                    )
                row[j] = validate_one(f"verdict[{short_repr(eid)}]", v, _VERDICT, error=InvalidFeedbackError)
        else:
            v = validate_one("verdict", verdict, _VERDICT, error=InvalidFeedbackError)
            row[op.assigned[pos]] = v
        op.judge(pos, row)

    def _report_position(self, client_id: Hashable, round: int | None) -> tuple[OpenRound, int]:
        """The open round and the client's position in its cohort, for a first report."""
        op, pos = self._round_position(client_id, round)
        if op.reported[pos]:
            raise InvalidFeedbackError(f"client_id: {short_repr(client_id)} already reported for round {op.round}")
        return op, pos

    def _round_position(self, client_id: Hashable, round: int | None) -> tuple[OpenRound, int]:
        """The open round and the client's position in its cohort, for a report."""
        try:
            row = self._index.get(client_id)
        except TypeError:
            row = None
        if row is None:
            raise InvalidFeedbackError(f"client_id: {short_repr(client_id)} is not registered")
        op = self._open
        if op is None:
            raise InvalidFeedbackError(
                f"round: no round is open (round {self._last_round} is closed)"
                if self._last_round >= 0
                else "round: no round has been planned yet"
            )
        if round is not None:  # most reports leave it out: skip the check then
            round = validate_one("round", round, _ROUND, error=InvalidFeedbackError)
        if round is not None and round != op.round:
            kind = "closed" if round < op.round else "future"
            raise InvalidFeedbackError(f"round: {round} is a {kind} round; the open round is {op.round}")
        pos = op.position(row)
        if pos is None:
            raise InvalidFeedbackError(f"client_id: {short_repr(client_id)} is not in round {op.round}'s cohort")
        return op, pos

    def _report_rewards(
        self, client_id: Hashable, feedback: Feedback, assigned: NDArray[np.bool_], number: int
    ) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """A report's rewards as (E,) rows: which experts it trained, and their rewards."""
        trained = np.zeros(self.n_experts, dtype=bool)
        rewards = np.zeros(self.n_experts)
        for eid, r in feedback.rewards.items():  # the experts one client trained: a few
            try:
                j = self._expert_pos[eid]
            except (KeyError, TypeError):
                raise InvalidFeedbackError(f"feedback.rewards: {short_repr(eid)} is not an expert id") from None
            if not assigned[j]:
                raise InvalidFeedbackError(
                    f"feedback.rewards: expert {short_repr(eid)} was not assigned to client "
                    f"{short_repr(client_id)} in round {number}"
                )
            trained[j] = True
            rewards[j] = r
        return trained, rewards

    def _report_survey(self, feedback: Feedback) -> NDArray[np.float64]:
        """A report's survey rewards as an (E,) row, NaN where none (any expert may be
        surveyed; Feedback keeps them apart from the trained ones)."""
        survey = np.full(self.n_experts, np.nan)
        for eid, r in feedback.survey.items():
            try:
                j = self._expert_pos[eid]
            except (KeyError, TypeError):
                raise InvalidFeedbackError(f"feedback.survey: {short_repr(eid)} is not an expert id") from None
            survey[j] = r
        return survey

    def end_round(self) -> None:
        """Close the open round (a no-op between rounds).

        Clients of the cohort that did not report are recorded as dropouts; usage takes in
        the round's load; fitness of every pair that did not train drifts toward the prior.
        Each report is credited with its ``samples`` bounded by ``max_report_factor`` and
        ``max_report_samples`` (:meth:`_credited_samples`), for usage and the profiler alike;
        usage takes in a judged report's samples times the server's verdict (:meth:`judge`).
        """
        op = self._open
        if op is None:
            return
        done, trained, worked = op.outcome()
        samples = self._credited_samples(op, done)
        # durations were measured under the round's conditions (e.g. a faded channel): a
        # slowdown learned against the registered profile would be the fading, not the device
        with self._prof.overlay(self._open_conditions):
            self._prof.observe(op.rows, worked, samples, op.duration, done, op.deadline)
        if done.any():
            weight = self._credit_weights(op, done, trained)
            noise = None if op.noise is None or np.isnan(op.noise).all() else op.noise[done]
            rewards, surveyed = op.rewards[done], None
            if op.survey is not None:  # experts evaluated, not trained: fitness only
                surveyed = ~np.isnan(op.survey[done])
                rewards = np.where(surveyed, op.survey[done], rewards)
            self._fit.record(
                op.rows[done],
                trained[done],
                rewards,
                None if weight is None else weight[done],
                noise=noise,
                surveyed=surveyed,
            )
            share = np.ones(trained.shape)
            assert op.verdict is not None
            if not np.isnan(op.verdict).all():
                # a report the server judged implausible was left out of the averages: its
                # claimed work does not count as the expert's usage (else a free-rider's
                # claims make its expert look busy and steer honest clients away)
                share = np.where(np.isnan(op.verdict), 1.0, op.verdict)
            load = np.where(trained, samples[:, None] * share, 0.0).sum(axis=0)
            if self._settings.usage_measure == "compute":
                with np.errstate(over="ignore"):  # a huge expert_cost: clipped just below
                    load = load * self._expert_cost
            self._use.add_load(np.minimum(load, USAGE_MAX))
        self._fit.close_round()
        self._use.close_round()
        self._open = None
        self._open_conditions = {}

    def _credit_weights(
        self, op: OpenRound, done: NDArray[np.bool_], trained: NDArray[np.bool_]
    ) -> NDArray[np.float64] | None:
        """How much each reward of round ``op`` counts, (m, E) in [0, 1]; None: all fully.

        The plausibility of each reward (the server's verdicts, :meth:`judge`, and the
        population test of ``reward_z``), times the client's trust after this round's
        plausibility is folded into it (``trust_rate``).
        """
        s = self._settings
        assert op.verdict is not None
        judged = not np.isnan(op.verdict).all()
        if not (judged or s.reward_z is not None or s.tracks_trust):
            return None
        plaus = np.where(np.isnan(op.verdict), 1.0, op.verdict)
        if s.reward_z is not None:
            plaus = np.where(self._reward_outliers(op, trained), 0.0, plaus)
        if s.tracks_trust:
            n_trained = trained.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(trained, plaus, 0.0).sum(axis=1) / n_trained
            mean = np.where(done & (n_trained > 0), mean, np.nan)
            self._ledger.update_trust(op.rows, mean, s.trust_rate)
            plaus = plaus * self._ledger.trust(op.rows)[:, None]
        return plaus

    def _reward_outliers(self, op: OpenRound, trained: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """(m, E): rewards farther from the median of the round's rewards for the same expert
        than ``max(reward_tolerance, reward_z x 1.4826 x MAD)`` (experts with >= 3 rewards)."""
        s = self._settings
        assert s.reward_z is not None
        out = np.zeros(trained.shape, dtype=bool)
        judged = np.flatnonzero(trained.sum(axis=0) >= 3)
        if judged.size == 0:
            return out
        r = np.where(trained[:, judged], op.rewards[:, judged], np.nan)
        med = np.nanmedian(r, axis=0)
        dist = np.abs(r - med)
        mad = np.nanmedian(dist, axis=0)
        bound = np.maximum(s.reward_tolerance, s.reward_z * 1.4826 * mad)
        out[:, judged] = np.nan_to_num(dist, nan=0.0) > bound
        return out

    def credited_samples(self) -> dict[Hashable, float]:
        """What each completed report of the open round is credited with, by client id.

        The claimed ``samples`` bounded as :meth:`end_round` bounds them (``max_report_factor``
        times the client's declared samples or the round's median claim, and
        ``max_report_samples``). Transports cap a reply's averaging weight by it, so that no
        claimed sample count can dominate an average (:class:`fedalign.rounds.RoundDriver`).
        Empty between rounds.
        """
        op = self._open
        if op is None:
            return {}
        done = op.outcome()[0]
        samples = self._credited_samples(op, done)
        return {self._ids[int(r)]: float(samples[k]) for k, r in enumerate(op.rows) if done[k]}

    def _credited_samples(self, op: OpenRound, done: NDArray[np.bool_]) -> NDArray[np.float64]:
        """The samples each report of round ``op`` is credited with (NaN: no report).

        A report's claim, at most ``max_report_samples`` and at most ``max_report_factor``
        times a reference: the client's declared ``samples`` where its profile has one, else
        the median claim of the round's completed reports (robust to a minority of inflated
        claims). So no report, however large, moves usage or the profiler further than a
        bounded step, and one client cannot make every other expert look idle.
        """
        s = self._settings
        claimed = op.samples
        cap = np.full(claimed.shape, s.max_report_samples)
        if s.max_report_factor is not None:
            seen = claimed[done & (claimed > 0)]
            median = float(np.median(seen)) if seen.size else np.nan
            declared = self._prof.column("samples", op.rows)
            reference = np.fmax(np.where(np.isnan(declared), median, declared), 1.0)
            cap = np.minimum(cap, s.max_report_factor * reference)
        return np.minimum(claimed, cap)  # NaN (no report) stays NaN

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this scheduler exactly (arrays are copies).

        Returns
        -------
        dict
            ``{"format_version", "settings", "client_ids", "scalars", "rng", "arrays"}``;
            ``arrays`` maps names to numpy arrays, the rest is JSON-ready. The layout is
            described in :mod:`fedalign.scheduler.persistence`.
        """
        return self._state(copy=True).to_dict()

    def _state(self, *, copy: bool) -> SchedulerState:
        """This scheduler's state; ``copy=False`` shares the live arrays (to write them out)."""
        return SchedulerState(
            settings=self._settings,
            client_ids=self._ids,
            rounds_closed=self._fit.rounds_closed,
            last_round=self._last_round,
            rng=self._rng.bit_generator.state,
            fitness=self._fit.state_dict(copy=copy),
            usage=self._use.state_dict(),
            profiler=self._prof.state_dict(copy=copy),
            open_round=self._open,
            ledger=self._ledger.state_dict(copy=copy),
            idle_violations=self._ledger.violations if self._ledger.keeps_idle else None,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace this scheduler's state with ``state`` (from :meth:`state_dict`).

        The state is validated and built into a fresh scheduler first, so a bad state
        raises :class:`~fedalign.InvalidStateError` and leaves this one untouched.
        """
        fresh = self._from_state(state)
        files = self._files  # what this object knows of the files it read or wrote stays true
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
        self._files = files

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Scheduler:
        """A new scheduler rebuilt from :meth:`state_dict`'s output."""
        return cls._from_state(state)

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], *, copy: bool = True) -> Scheduler:
        """A scheduler rebuilt from a state dict; ``copy=False`` adopts its arrays."""
        parts = SchedulerState.from_dict(state)
        sched = cls.from_settings(parts.settings)
        with malformed_state():
            sched._restore(parts, copy=copy)
        return sched

    def _restore(self, state: SchedulerState, *, copy: bool) -> None:
        """Load ``state`` into this freshly built scheduler (the trackers check their arrays)."""
        self._fit.load_state_dict({**state.fitness, "rounds_closed": state.rounds_closed}, copy=copy)
        self._use.load_state_dict(state.usage)
        self._prof.load_state_dict(state.profiler, copy=copy)
        n = len(state.client_ids)
        if self._fit.n_clients != n or self._prof.n_clients != n:
            raise InvalidStateError("client_ids: count does not match the stored arrays")
        self._ledger.load_state_dict(state.ledger, n, violations=state.idle_violations or 0, copy=copy)
        self._ids = list(state.client_ids)
        self._index = {c: k for k, c in enumerate(self._ids)}
        if len(self._index) != n:
            raise InvalidStateError("client_ids: duplicate ids")
        self._last_round = state.last_round
        self._rng.bit_generator.state = state.rng
        self._open = state.open_round
        self._open_conditions = {}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the state to ``path`` atomically, never over another writer's state.

        The file is a versioned container: a magic line, a header (format version, payload
        length, SHA-256 of the payload, its *digest*), then an ``.npz`` payload holding the
        arrays and a JSON header (no pickles). Arrays are streamed to a temporary file in
        the same directory (unnamed where Linux allows, so a killed save leaves nothing),
        fsynced, and put in place in one atomic step: a crash at any point leaves the
        previous file intact.

        Two writers cannot silently overwrite each other (compare-and-swap): the scheduler
        remembers the digest of the file it loaded from or last saved at each path, and
        replaces a file only while it still holds that digest (checked under an exclusive
        lock on the file itself); it creates a file only where none exists.

        Parameters
        ----------
        path : path
        overwrite : bool
            Replace any scheduler state file (or other regular file) at ``path``, e.g. to
            start a fresh run over an old one's state. Directories and FIFOs never are.

        Raises
        ------
        StateConflictError
            ``path`` holds a state this scheduler did not load or save (another server's,
            or a newer one), a file that is not a state, a directory or a FIFO, or another
            process is replacing it at this moment. Nothing is written.
        TypeError
            A client id that is neither int nor str (nothing is written).
        OSError
            The file cannot be written; ``path`` is untouched.
        """
        overwrite = validate_one("overwrite", overwrite, [Boolean()], error=TypeError)
        state = self._state(copy=False).to_dict()  # fails on unsavable ids before any file exists
        key = _path_key(path)
        expected = ANY if overwrite else self._files.get(key)
        self._files[key] = save_state(path, state, expected=expected)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scheduler:
        """A scheduler read from a file written by :meth:`save`.

        The file is checked as a container (a regular file, magic, version, length,
        checksum, bounded decompression) and then as a state (every array's shape, kind
        and values, the counters, the open round), so a hostile file fails here, never
        later. The scheduler remembers the file's digest: it may save over it.

        Raises
        ------
        InvalidStateError
            The path is a directory or a FIFO; the file is not a scheduler state, is
            truncated or corrupt (checksum), was written by a newer format version, would
            inflate beyond its bounds, or holds invalid values. Nothing is half-loaded.
        FileNotFoundError
            No file at ``path``.
        """
        stored = load_state(path)
        sched = cls._from_state(stored.meta, copy=False)  # just read: adopt the arrays
        sched._files[_path_key(path)] = stored.digest
        return sched


def _warn_if_herding(x: NDArray[np.bool_], number: int) -> None:
    """Warn when the busiest quarter of the experts holds most of the round's trainings."""
    e = x.shape[1]
    load = x.sum(axis=0)
    total = int(load.sum())
    top = max(1, math.ceil(e / 4))
    if e < 4 or total < 2 * e:
        return  # too few experts or pairs to call it herding
    busiest = int(np.sort(load)[::-1][:top].sum())
    if busiest > HERDING_SHARE * total and busiest >= 2 * total * top / e:
        warnings.warn(
            f"round {number}: {busiest} of the round's {total} trainings went to {top} of "
            f"{e} experts; a cohort whose desirabilities move alike herds onto the same "
            "experts: set balance_weight > 0 (the in-round load row) or use per-expert caps "
            "(expert_max_clients)",
            HerdingWarning,
            stacklevel=3,
        )
