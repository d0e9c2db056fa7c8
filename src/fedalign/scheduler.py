"""The paper's system: a stateful :class:`Scheduler` that plans each round and learns from it.

Each round the scheduler turns its state (DESIGN.md §1: fitness, usage, client profiles) into
one :class:`~fedalign.AlignmentProblem` for the cohort of participating clients, solves it
with the chosen solver, and hands back a :class:`Plan`. Clients train, then
:meth:`Scheduler.report` their :class:`Feedback`; :meth:`Scheduler.end_round` folds the round
into usage and fitness (or :meth:`Scheduler.plan` does it when the next round starts).

Desirability of client ``i`` for expert ``j`` (each term is shown by :meth:`Plan.explain`)::

    d[i, j] =  fitness_weight     · F[i, j]                      # suits the client's data
             − usage_weight       · Ũ[j]                         # expert already busy
             − time_weight        · t[i, j] / deadline_i          # slow for this client
             + exploration_weight · sqrt(ln(R + 2) / (1 + n[i, j]))   # rarely tried pair

``Ũ`` is usage normalised across experts (``usage_norm``: ``U / max U`` by default), ``t`` the
profiler's expected seconds, ``R`` the number of closed rounds and ``n[i, j]`` how often the
pair trained. The constraints are the client's memory and deadline knapsacks, its
``min_experts``/``max_experts``, and per-expert ``expert_min_clients``/``expert_max_clients``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import check_unit_interval, float_array
from ._state_file import read_state, write_state
from .errors import InfeasibleError, InvalidFeedbackError, InvalidStateError
from .plan import Feedback, Plan
from .problem import AlignmentProblem, capacity_tolerance
from .profiles import CapacityProfiler, ClientProfile, ProfileBounds
from .scores import USAGE_NORMS, FitnessTracker, UsageTracker
from .solvers import get_solver, solve

__all__ = ["Feedback", "Plan", "Scheduler", "STATE_FORMAT_VERSION"]

#: Version of the layout written by :meth:`Scheduler.save` / :meth:`Scheduler.state_dict`.
STATE_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- helpers


def _per_expert(name: str, value: Any, e: int, *, integer: bool, allow_none: bool = False) -> Any:
    """A scalar or length-E vector as a list (validated; None kept if allowed)."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name}: must not be None")
    arr = float_array(name, value)
    if arr.ndim == 0:
        arr = np.full(e, float(arr))
    if arr.shape != (e,):
        raise ValueError(f"{name}: expected a number or {e} values, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if integer:
        bad |= arr != np.round(arr)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        kind = "an int >= 0" if integer else "a finite number >= 0"
        raise ValueError(f"{name}[{k}]: expected {kind}, got {arr[k].item()!r}")
    return [int(v) for v in arr] if integer else [float(v) for v in arr]


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return v


def _fraction(name: str, value: Any) -> float:
    """A setting that must be a number in [0, 1]."""
    v = _weight(name, value)
    if v > 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return v


def _expert_ids(ids: Any, e: int) -> tuple[Hashable, ...]:
    """``expert_ids`` validated: ``e`` distinct hashable ids (default ``0..e-1``)."""
    if ids is None:
        return tuple(range(e))
    if isinstance(ids, (str, bytes)):
        raise ValueError("expert_ids: expected a sequence of ids, got a string")
    try:
        out = tuple(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    except TypeError:
        raise ValueError(f"expert_ids: expected a sequence of {e} ids, got {ids!r}") from None
    if len(out) != e:
        raise ValueError(f"expert_ids: expected {e} unique ids, got {len(out)}: {list(out)!r}")
    seen: dict[Hashable, int] = {}
    for k, x in enumerate(out):
        try:
            first = seen.setdefault(x, k)
        except TypeError:
            raise ValueError(f"expert_ids[{k}]: id {x!r} is not hashable") from None
        if first != k:
            raise ValueError(f"expert_ids[{k}]: duplicate id {x!r} (first at position {first})")
    return out


def _solver_options(solver: str, options: Any) -> dict[str, Any]:
    """``solver_options`` checked against the named solver's options (the solver must exist)."""
    names = get_solver(solver).option_names()  # ValueError / SolverUnavailableError
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(
            f"solver_options: expected a mapping of option names to values, got {options!r}"
        )
    out: dict[str, Any] = {}
    for k, v in options.items():
        if not isinstance(k, str):
            raise ValueError(f"solver_options: option names must be strings, got {k!r}")
        if names is not None and k not in names:
            raise ValueError(
                f"solver_options[{k!r}]: solver {solver!r} has no option {k!r}; "
                f"its options are {sorted(names)}"
            )
        out[k] = v
    return out


def _id_json(ids: Sequence[Hashable], what: str) -> list[Any]:
    out = []
    for k, c in enumerate(ids):
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, str, np.integer, np.str_)):
            raise TypeError(f"{what}[{k}]: only int and str ids can be saved, got {c!r}")
        out.append(int(c) if isinstance(c, (int, np.integer)) else str(c))
    return out


#: Arrays of the open round (cohort positions): dtype and whether they have an expert axis.
_OPEN_KEYS: dict[str, tuple[Any, bool]] = {
    "rows": (np.int64, False),
    "assigned": (bool, True),
    "deadline": (np.float64, False),
    "reported": (bool, False),
    "completed": (bool, False),
    "samples": (np.float64, False),
    "duration": (np.float64, False),
    "trained": (bool, True),
    "rewards": (np.float64, True),
}


def _empty_reports(m: int, e: int) -> dict[str, NDArray[Any]]:
    """The open round's feedback arrays before anyone reports."""
    return {
        "reported": np.zeros(m, dtype=bool),
        "completed": np.zeros(m, dtype=bool),
        "samples": np.full(m, np.nan),
        "duration": np.full(m, np.nan),
        "trained": np.zeros((m, e), dtype=bool),
        "rewards": np.zeros((m, e)),
    }


# --------------------------------------------------------------------------- scheduler


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
    solver_options : dict, optional
        Extra options passed to the solver; names are checked against the solver's options.

    Raises
    ------
    ValueError
        A setting of the wrong type or out of range (the message names it, and the
        position for per-expert values), an unknown solver name, or a solver option the
        solver does not have.
    SolverUnavailableError
        The solver's optional dependency is missing.
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
        solver_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) or n_experts < 1:
            raise ValueError(f"n_experts: expected an int >= 1, got {n_experts!r}")
        e = int(n_experts)
        if not isinstance(solver, str):
            raise ValueError(f"solver: expected a solver name, got {solver!r}")
        options = _solver_options(solver, solver_options)  # unknown or unavailable solver raises
        if usage_norm not in USAGE_NORMS:
            raise ValueError(f"usage_norm: expected one of {USAGE_NORMS}, got {usage_norm!r}")
        if usage_measure not in ("samples", "compute"):
            raise ValueError(f"usage_measure: expected 'samples' or 'compute', got {usage_measure!r}")
        if time_limit is not None:
            time_limit = _weight("time_limit", time_limit)
            if time_limit <= 0:
                raise ValueError(f"time_limit: expected seconds > 0 or None, got {time_limit!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        for name, v in (("min_experts", min_experts), ("max_experts", max_experts)):
            if v is None and name == "max_experts":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
        if deadline is not None and deadline_percentile is not None:
            raise ValueError("deadline: give either deadline or deadline_percentile, not both")
        if deadline is not None:
            deadline = _weight("deadline", deadline)
            if deadline <= 0:
                raise ValueError(f"deadline: expected seconds > 0, got {deadline!r}")
        if deadline_percentile is not None:
            q = _weight("deadline_percentile", deadline_percentile)
            if not 0 < q <= 100:
                raise ValueError(f"deadline_percentile: expected a value in (0, 100], got {q!r}")
            deadline_percentile = q
        tw = _weight("time_weight", time_weight)
        if tw > 0 and deadline is None and deadline_percentile is None:
            raise ValueError("time_weight: needs a deadline policy (deadline or deadline_percentile)")
        if samples_per_round is not None:
            samples_per_round = _weight("samples_per_round", samples_per_round)
        if profile_bounds is not None and not isinstance(profile_bounds, ProfileBounds):
            raise ValueError(f"profile_bounds: expected a ProfileBounds, got {profile_bounds!r}")
        inflation = _weight("dropout_inflation", dropout_inflation)
        if inflation < 1:
            raise ValueError(f"dropout_inflation: expected a number >= 1, got {dropout_inflation!r}")

        self.n_experts = e
        self.expert_ids: tuple[Hashable, ...] = _expert_ids(expert_ids, e)
        self._expert_pos = {x: k for k, x in enumerate(self.expert_ids)}
        self._settings: dict[str, Any] = {
            "n_experts": e,
            "solver": solver,
            "expert_memory": _per_expert("expert_memory", expert_memory, e, integer=False, allow_none=True),
            "seed": None if seed is None else int(seed),
            "fitness_weight": _weight("fitness_weight", fitness_weight),
            "usage_weight": _weight("usage_weight", usage_weight),
            "fitness_ema": _fraction("fitness_ema", fitness_ema),
            "fitness_decay": _fraction("fitness_decay", fitness_decay),
            "fitness_prior": _fraction("fitness_prior", fitness_prior),
            "usage_decay": _fraction("usage_decay", usage_decay),
            "time_limit": time_limit,
            "usage_norm": usage_norm,
            "usage_measure": usage_measure,
            "time_weight": tw,
            "exploration_weight": _weight("exploration_weight", exploration_weight),
            "min_experts": int(min_experts),
            "max_experts": None if max_experts is None else int(max_experts),
            "expert_min_clients": _per_expert("expert_min_clients", expert_min_clients, e, integer=True),
            "expert_max_clients": _per_expert(
                "expert_max_clients", expert_max_clients, e, integer=True, allow_none=True
            ),
            "expert_ids": list(self.expert_ids),
            "expert_bytes": _per_expert("expert_bytes", expert_bytes, e, integer=False, allow_none=True),
            "expert_cost": _per_expert("expert_cost", expert_cost, e, integer=False),
            "samples_per_round": samples_per_round,
            "deadline": deadline,
            "deadline_percentile": deadline_percentile,
            "profile_bounds": (profile_bounds or ProfileBounds()).to_dict(),
            "profile_window": profile_window,
            "dropout_inflation": inflation,
            "solver_options": options,
        }
        s = self._settings
        if s["expert_max_clients"] is not None:
            above = np.asarray(s["expert_min_clients"]) > np.asarray(s["expert_max_clients"])
            if above.any():
                k = int(np.flatnonzero(above)[0])
                raise ValueError(
                    f"expert_min_clients[{k}]: {s['expert_min_clients'][k]} is above "
                    f"expert_max_clients[{k}] = {s['expert_max_clients'][k]}"
                )
        self._fit = FitnessTracker(
            e, ema=s["fitness_ema"], decay=s["fitness_decay"], prior=s["fitness_prior"]
        )
        self._use = UsageTracker(e, decay=s["usage_decay"], norm=usage_norm)
        self._prof = CapacityProfiler(
            np.zeros(e) if s["expert_bytes"] is None else s["expert_bytes"],
            s["expert_cost"],
            samples_per_round=samples_per_round,
            bounds=profile_bounds,
            window=profile_window,
            dropout_inflation=inflation,
        )
        self._ids: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._rng = np.random.default_rng(seed)
        self._last_round = -1  # last planned round
        self._open: dict[str, Any] | None = None  # the open round's cohort state
        self._open_pos: dict[int, int] = {}  # registry row -> cohort position

    def __repr__(self) -> str:
        return (
            f"Scheduler(n_experts={self.n_experts}, solver={self._settings['solver']!r}, "
            f"clients={self.n_clients}, rounds_closed={self.rounds_closed}, open_round={self.round})"
        )

    # ------------------------------------------------------------------ registry

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor's settings, JSON-ready (a copy)."""
        return json.loads(json.dumps(self._settings))

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
            raise TypeError(f"client_id: {client_id!r} is not hashable") from None
        if row is None:
            if routing_shares is not None:
                shares = float_array("routing_shares", routing_shares)
                if shares.shape != (self.n_experts,):
                    raise ValueError(
                        f"routing_shares: expected {self.n_experts} values, got shape {shares.shape}"
                    )
                check_unit_interval("routing_shares", shares)
            else:
                shares = None
            self._fit.add(1, shares)
            row = int(self._prof.add(1)[0])
            self._index[client_id] = row
            self._ids.append(client_id)
        elif routing_shares is not None:
            raise ValueError(
                f"routing_shares: client {client_id!r} is already registered; its fitness is learned"
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
        if isinstance(client_ids, (str, bytes)):
            raise ValueError("client_ids: expected an iterable of client ids, got a string")
        ids = list(client_ids)
        for k, c in enumerate(ids):
            try:
                known = c in self._index
            except TypeError:
                raise TypeError(f"client_ids[{k}]: {c!r} is not hashable") from None
            if known:
                raise ValueError(f"client_ids[{k}]: {c!r} is already registered")
        if len(set(ids)) != len(ids):
            raise ValueError("client_ids: ids repeat")
        many = profile is not None and not isinstance(profile, ClientProfile)
        if many:
            profs = list(profile)  # type: ignore[arg-type]
            if len(profs) != len(ids):
                raise ValueError(f"profile: expected {len(ids)} profiles, got {len(profs)}")
            for k, p in enumerate(profs):
                if not isinstance(p, ClientProfile):
                    raise TypeError(f"profile[{k}]: expected a ClientProfile, got {type(p).__name__}")
        shares = None
        if routing_shares is not None:
            shares = float_array("routing_shares", routing_shares)
            if shares.shape != (len(ids), self.n_experts):
                raise ValueError(
                    f"routing_shares: expected shape {(len(ids), self.n_experts)}, got {shares.shape}"
                )
            check_unit_interval("routing_shares", shares)
        self._fit.add(len(ids), shares)
        rows = self._prof.add(len(ids))
        start = len(self._ids)
        self._ids.extend(ids)
        self._index.update(zip(ids, range(start, start + len(ids)), strict=True))
        if many:
            for r, p in zip(rows.tolist(), profs, strict=True):
                self._prof.set_profile(r, p)
        else:
            shared = profile if isinstance(profile, ClientProfile) else ClientProfile()
            self._prof.set_profiles(rows, shared)

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
            raise KeyError(f"client_id: {client_id!r} is not registered") from None

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
    def round(self) -> int | None:
        """The open round's number, or None between rounds."""
        return None if self._open is None else int(self._open["round"])

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
    ) -> tuple[AlignmentProblem, dict[str, NDArray[np.float64]]]:
        """The alignment problem for a cohort, and the desirability's terms (no state change).

        Parameters
        ----------
        clients : iterable of registered client ids
        allowed : (n, E) bool, optional
            False forbids a pair this round.

        Raises
        ------
        KeyError
            A client is not registered.
        ValueError
            ``clients`` is a string or not iterable, empty, or repeats a client; or
            ``allowed`` has the wrong shape.
        """
        return self._build_problem(self._cohort_rows(clients), allowed)

    def _build_problem(
        self, rows: NDArray[np.int64], allowed: ArrayLike | None
    ) -> tuple[AlignmentProblem, dict[str, NDArray[np.float64]]]:
        """:meth:`build_problem` for registry rows already validated by :meth:`_cohort_rows`."""
        s = self._settings
        n, e = rows.size, self.n_experts

        fit = self._fit.get(rows)
        u_raw = self._use.usage.copy()
        u_norm = self._use.normalised()
        d = s["fitness_weight"] * fit - s["usage_weight"] * u_norm[None, :]
        terms: dict[str, NDArray[np.float64]] = {"fitness": fit, "usage": u_raw, "usage_norm": u_norm}

        kmax = self._prof.max_experts(rows)
        default_k = e if s["max_experts"] is None else s["max_experts"]
        kmax = np.minimum(np.where(kmax < 0, default_k, kmax), e)

        e_mem = c_mem = None
        if s["expert_memory"] is not None:
            e_mem = np.asarray(s["expert_memory"], dtype=np.float64)
            c_mem = self._prof.client_memory(rows, e_mem)

        t = dl = None
        if s["deadline"] is not None or s["deadline_percentile"] is not None:
            t = self._prof.train_time(rows)
            dl = self._prof.deadline(
                t, kmax, fixed=s["deadline"], percentile=s["deadline_percentile"]
            )
            terms["time"] = t
            if s["time_weight"] > 0:
                d = d - s["time_weight"] * t / dl[:, None]
        else:
            terms["time"] = np.full((n, e), np.nan)

        if s["exploration_weight"] > 0:
            count = self._fit.times_trained(rows).astype(np.float64)
            bonus = np.sqrt(math.log(self._fit.rounds_closed + 2) / (1.0 + count))
            d = d + s["exploration_weight"] * bonus
        else:
            bonus = np.zeros((n, e))
        terms["exploration"] = bonus

        allow = np.ones((n, e), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        if allow.shape != (n, e):
            raise ValueError(f"allowed: expected shape {(n, e)}, got {allow.shape}")
        kmin = self._feasible_min(s["min_experts"], kmax, allow, e_mem, c_mem, t, dl)

        problem = AlignmentProblem(
            d,
            max_experts=kmax,
            min_experts=kmin,
            expert_memory=e_mem,
            client_memory=c_mem,
            train_time=t,
            deadline=dl,
            expert_min_clients=s["expert_min_clients"],
            # "unbounded" must not read as "at most n": a minimum above n is infeasible, not malformed
            expert_max_clients=(
                np.maximum(n, s["expert_min_clients"])
                if s["expert_max_clients"] is None
                else s["expert_max_clients"]
            ),
            allowed=allow,
            client_ids=[self._ids[r] for r in rows],
            expert_ids=self.expert_ids,
        )
        return problem, terms

    @staticmethod
    def _feasible_min(
        want: int,
        kmax: NDArray[np.int64],
        allow: NDArray[np.bool_],
        e_mem: NDArray[np.float64] | None,
        c_mem: NDArray[np.float64] | None,
        t: NDArray[np.float64] | None,
        dl: NDArray[np.float64] | None,
    ) -> NDArray[np.int64]:
        """Per client, ``min(want, max_experts, how many of its cheapest experts fit)``.

        Exact for one expert (some expert fits both knapsacks on its own); for more it is a
        necessary condition per knapsack row, and the solver has the last word.
        """
        n, e = allow.shape
        mem = None if e_mem is None else np.broadcast_to(e_mem, (n, e))
        ok = allow.copy()
        for cost, cap in ((mem, c_mem), (t, dl)):
            if cost is not None and cap is not None:
                ok &= cost <= (cap + capacity_tolerance(cap))[:, None]
        k = np.minimum(np.minimum(want, kmax), ok.sum(axis=1))
        for cost, cap in ((mem, c_mem), (t, dl)):
            if cost is None or cap is None:
                continue
            c = np.sort(np.where(ok, cost, np.inf), axis=1)
            csum = np.concatenate([np.zeros((n, 1)), np.cumsum(c, axis=1)], axis=1)
            fits = csum <= (cap + capacity_tolerance(cap))[:, None]
            most = fits.sum(axis=1) - 1  # csum[:, 0] = 0 always fits
            k = np.minimum(k, most)
        return k.astype(np.int64)

    def plan(
        self,
        clients: Iterable[Hashable],
        round: int | None = None,
        *,
        allowed: ArrayLike | None = None,
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

        Returns
        -------
        Plan

        Raises
        ------
        KeyError
            A client is not registered.
        ValueError
            ``clients`` is a string or not iterable, the cohort is empty or repeats a
            client, ``allowed`` has the wrong shape, or the round number does not increase.
        InfeasibleError
            The round's constraints cannot all be met (the message names the constraint).
        UnsupportedProblemError
            The scheduler's solver cannot handle this round's constraints.

        Any error leaves the scheduler as it was: an open round stays open with its
        reports, and the random stream is not advanced.
        """
        rows = self._cohort_rows(clients)  # bad cohorts raise before anything changes
        if round is not None:
            if isinstance(round, bool) or not isinstance(round, (int, np.integer)):
                raise ValueError(f"round: expected an int or None, got {round!r}")
            if round <= self._last_round:
                raise ValueError(
                    f"round: {round} is not after the last planned round {self._last_round}"
                )
        number = self._last_round + 1 if round is None else int(round)
        undo = self._checkpoint()
        try:
            self.end_round()
            problem, terms = self._build_problem(rows, allowed)
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(f"round {number}: {reason}")
            s = self._settings
            seed = int(self._rng.integers(0, 2**63 - 1))
            try:
                solution = solve(
                    problem, s["solver"], time_limit=s["time_limit"], seed=seed, **s["solver_options"]
                )
            except InfeasibleError as exc:
                raise InfeasibleError(f"round {number}: {exc}") from exc
        except BaseException:
            self._rollback(undo)  # a failed plan changes nothing: the open round stays open
            raise
        self._last_round = number
        self._open = {
            "round": number,
            "rows": rows,
            "assigned": np.array(solution.assignment, dtype=bool),
            "deadline": np.full(rows.size, np.nan) if problem.deadline is None else problem.deadline.copy(),
            **_empty_reports(rows.size, self.n_experts),
        }
        self._open_pos = {int(r): k for k, r in enumerate(rows)}
        return Plan(
            round=number,
            assignment=solution.to_dict(),
            solution=solution,
            problem=problem,
            terms=terms,
        )

    def _checkpoint(self) -> dict[str, Any]:
        """What :meth:`_rollback` needs to undo :meth:`end_round` and one plan's draws.

        Only the open round's cohort rows change when a round closes, so this copies
        O(cohort · E) values, not the registry.
        """
        rows = np.empty(0, dtype=np.int64) if self._open is None else self._open["rows"]
        return {
            "fit": self._fit.snapshot(rows),
            "use": self._use.snapshot(),
            "prof": self._prof.snapshot(rows),
            "rng": self._rng.bit_generator.state,
            "open": self._open,
            "open_pos": self._open_pos,
            "last_round": self._last_round,
        }

    def _rollback(self, undo: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`_checkpoint`."""
        self._fit.restore(undo["fit"])
        self._use.restore(undo["use"])
        self._prof.restore(undo["prof"])
        self._rng.bit_generator.state = undo["rng"]
        self._open = undo["open"]
        self._open_pos = undo["open_pos"]
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
                raise KeyError(f"clients[{k}]: client {c!r} is not registered") from None
        if rows.size == 0:
            raise ValueError("clients: the cohort is empty")
        if np.unique(rows).size != rows.size:
            u, first = np.unique(rows, return_index=True)
            dup = sorted(set(range(rows.size)) - set(first.tolist()))[0]
            raise ValueError(f"clients[{dup}]: client {clients[dup]!r} appears twice")
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
        try:
            row = self._index.get(client_id)
        except TypeError:
            row = None
        if row is None:
            raise InvalidFeedbackError(f"client_id: {client_id!r} is not registered")
        op = self._open
        if op is None:
            raise InvalidFeedbackError(
                f"round: no round is open (round {self._last_round} is closed)"
                if self._last_round >= 0
                else "round: no round has been planned yet"
            )
        if round is not None and (
            isinstance(round, bool) or not isinstance(round, (int, np.integer))
        ):
            raise InvalidFeedbackError(f"round: expected an int or None, got {round!r}")
        if round is not None and round != op["round"]:
            kind = "closed" if round < op["round"] else "future"
            raise InvalidFeedbackError(
                f"round: {round} is a {kind} round; the open round is {op['round']}"
            )
        pos = self._open_pos.get(row)
        if pos is None:
            raise InvalidFeedbackError(
                f"client_id: {client_id!r} is not in round {op['round']}'s cohort"
            )
        if op["reported"][pos]:
            raise InvalidFeedbackError(
                f"client_id: {client_id!r} already reported for round {op['round']}"
            )
        assigned = op["assigned"][pos]
        trained = np.zeros(self.n_experts, dtype=bool)
        rewards = np.zeros(self.n_experts)
        for eid, r in feedback.rewards.items():
            try:
                j = self._expert_pos[eid]
            except (KeyError, TypeError):
                raise InvalidFeedbackError(
                    f"feedback.rewards: {eid!r} is not an expert id"
                ) from None
            if not assigned[j]:
                raise InvalidFeedbackError(
                    f"feedback.rewards: expert {eid!r} was not assigned to client "
                    f"{client_id!r} in round {op['round']}"
                )
            trained[j] = True
            rewards[j] = r
        # Validation done: record it; end_round learns from the whole cohort at once.
        op["trained"][pos] = trained
        op["rewards"][pos] = rewards
        op["samples"][pos] = feedback.samples
        op["duration"][pos] = np.nan if feedback.duration is None else feedback.duration
        op["completed"][pos] = feedback.completed
        op["reported"][pos] = True

    def end_round(self) -> None:
        """Close the open round (a no-op between rounds).

        Clients of the cohort that did not report are recorded as dropouts; usage takes in
        the round's load; fitness of every pair that did not train drifts toward the prior.
        """
        op = self._open
        if op is None:
            return
        done = op["completed"] & op["reported"]  # silent clients stay completed=False
        trained = op["trained"] & done[:, None]
        # the profiler times the experts a client trained, or all it was given if it says none
        worked = np.where(trained.any(axis=1)[:, None], trained, op["assigned"])
        self._prof.observe(
            op["rows"], worked, op["samples"], op["duration"], done, op["deadline"]
        )
        if done.any():
            self._fit.record(op["rows"][done], trained[done], op["rewards"][done])
            load = np.where(trained, op["samples"][:, None], 0.0).sum(axis=0)
            if self._settings["usage_measure"] == "compute":
                load = load * np.asarray(self._settings["expert_cost"])
            self._use.add_load(load)
        self._fit.close_round()
        self._use.close_round()
        self._open = None
        self._open_pos = {}

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this scheduler exactly (arrays are copies).

        Returns
        -------
        dict
            ``{"format_version", "settings", "client_ids", "scalars", "rng", "arrays"}``;
            ``arrays`` maps names to numpy arrays, the rest is JSON-ready.
        """
        return self._state(copy=True)

    def _state(self, *, copy: bool) -> dict[str, Any]:
        arrays: dict[str, NDArray[Any]] = {}
        for k, v in self._fit.state_dict(copy=copy).items():
            if isinstance(v, np.ndarray):
                arrays[f"fit.{k}"] = v
        for k, v in self._use.state_dict().items():
            arrays[f"use.{k}"] = v
        for k, v in self._prof.state_dict(copy=copy).items():
            arrays[f"prof.{k}"] = v
        op = self._open
        if op is not None:
            for k in _OPEN_KEYS:
                arrays[f"open.{k}"] = np.array(op[k])
        return {
            "format_version": STATE_FORMAT_VERSION,
            "settings": self.settings,
            "client_ids": _id_json(self._ids, "client_ids"),
            "scalars": {
                "rounds_closed": self._fit.rounds_closed,
                "last_round": self._last_round,
                "open_round": None if op is None else int(op["round"]),
            },
            "rng": json.loads(json.dumps(self._rng.bit_generator.state)),
            "arrays": arrays,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace this scheduler's state with ``state`` (from :meth:`state_dict`).

        The state is validated and built into a fresh scheduler first, so a bad state
        raises :class:`~fedalign.InvalidStateError` and leaves this one untouched.
        """
        fresh = self._from_state(state)
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Scheduler:
        """A new scheduler rebuilt from :meth:`state_dict`'s output."""
        return cls._from_state(state)

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], *, copy: bool = True) -> Scheduler:
        try:
            version = state["format_version"]
            if not isinstance(version, int) or version < 1:
                raise InvalidStateError(f"format_version: invalid value {version!r}")
            if version > STATE_FORMAT_VERSION:
                raise InvalidStateError(
                    f"format_version: {version} is newer than this fedalign reads "
                    f"({STATE_FORMAT_VERSION}); upgrade fedalign"
                )
            s = dict(state["settings"])
            bounds = ProfileBounds(**{k: tuple(v) for k, v in s.pop("profile_bounds").items()})
            n_experts = s.pop("n_experts")
            sched = cls(n_experts, profile_bounds=bounds, **s)
            ids = list(state["client_ids"])
            arrays = state["arrays"]
            fit_state = {k[4:]: arrays[k] for k in ("fit.fitness", "fit.synced", "fit.count")}
            fit_state["rounds_closed"] = int(state["scalars"]["rounds_closed"])
            sched._fit.load_state_dict(fit_state, copy=copy)
            sched._use.load_state_dict({k[4:]: arrays[k] for k in ("use.usage", "use.pending")})
            prof_keys = [k for k in arrays if k.startswith("prof.")]
            sched._prof.load_state_dict({k[5:]: arrays[k] for k in prof_keys}, copy=copy)
            n = len(ids)
            if sched._fit.n_clients != n or sched._prof.n_clients != n:
                raise InvalidStateError("client_ids: count does not match the stored arrays")
            sched._ids = ids
            sched._index = {c: k for k, c in enumerate(ids)}
            if len(sched._index) != n:
                raise InvalidStateError("client_ids: duplicate ids")
            sched._last_round = int(state["scalars"]["last_round"])
            sched._rng.bit_generator.state = state["rng"]
            open_round = state["scalars"]["open_round"]
            if open_round is not None:
                op: dict[str, Any] = {"round": int(open_round)}
                m = int(np.asarray(arrays["open.rows"]).shape[0])
                for k, (dtype, per_expert) in _OPEN_KEYS.items():
                    a = np.asarray(arrays[f"open.{k}"])
                    if a.shape != ((m, n_experts) if per_expert else (m,)):
                        raise InvalidStateError(f"open.{k}: shape {a.shape} does not match the cohort")
                    op[k] = a.astype(dtype, copy=True)
                if m and (op["rows"].min() < 0 or op["rows"].max() >= n):
                    raise InvalidStateError("open.rows: out of range")
                sched._open = op
                sched._open_pos = {int(r): k for k, r in enumerate(op["rows"])}
            return sched
        except InvalidStateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InvalidStateError(f"scheduler state is malformed: {type(exc).__name__}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state to ``path`` atomically (temp file, flush, fsync, rename).

        The file is a versioned container: a magic line, a header (format version, payload
        length, SHA-256 of the payload), then an ``.npz`` payload holding the arrays and a
        JSON header (no pickles). Arrays are streamed to disk without copies. A crash
        mid-save leaves any previous file at ``path`` intact.
        """
        state = self._state(copy=False)  # fails on unsavable ids before any file exists
        meta = {k: v for k, v in state.items() if k != "arrays"}
        write_state(path, meta, state["arrays"], version=STATE_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scheduler:
        """A scheduler read from a file written by :meth:`save`.

        Raises
        ------
        InvalidStateError
            The file is not a scheduler state, is truncated or corrupt (checksum), or was
            written by a newer format version. Nothing is half-loaded.
        FileNotFoundError
            No file at ``path``.
        """
        meta = read_state(path, newest=STATE_FORMAT_VERSION)
        return cls._from_state(meta, copy=False)  # the arrays were just read: adopt them
