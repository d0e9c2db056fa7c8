"""The solver contract: :class:`Solution`, :class:`Solver`, the registry, and :func:`solve`.

A solver is one small class in its own module, registered with :func:`register`. The
registry's insertion order is the order of preference (cvxpy's habit). Optional
dependencies are imported inside the solver; :meth:`Solver.is_available` answers False when
they are missing, and asking for such a solver raises :class:`SolverUnavailableError`.

Each solver declares the rows it supports (:attr:`Solver.supports`, a tuple of
:class:`RowSupport`, the way cvxpy's solvers declare ``SUPPORTED_CONSTRAINTS``) and its
options (:attr:`Solver._parameter_constraints`, a table for
:func:`fedalign._validation.validate`, the way scikit-learn declares its estimators'
parameters). A problem with a row no declaration matches is refused with
:class:`UnsupportedProblemError` before the solver starts, naming the solvers that can.

:func:`solve` is the single entry point: it validates the call, runs the solver, checks the
result with :func:`fedalign.check` and refuses to return an infeasible assignment.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Constraint, Interval, validate
from ..errors import AlignmentError, SolverUnavailableError, TimeLimitError, UnsupportedProblemError
from ..problem import AlignmentProblem, check, feasible
from ..rows import Row
from .warm import WarmStart

__all__ = [
    "KEYWORD_ROWS",
    "Budget",
    "Result",
    "RowSupport",
    "Solution",
    "Solver",
    "WarmStart",
    "available_solvers",
    "get_solver",
    "register",
    "registered_solvers",
    "solve",
    "solvers_for",
]


# --------------------------------------------------------------------------- capabilities


@dataclass(frozen=True)
class RowSupport:
    """One kind of row a solver handles.

    Attributes
    ----------
    over : {"client", "expert", "total"}
    weights : {"unit", "count", "any"}
        ``"unit"``: every weight is 1 (the row counts pairs). ``"count"``: within each row,
        every pair that fits has the same weight, so the row reduces to a count (e.g. the
        memory row when all experts have one size). ``"any"``: any weights.
    lower, upper : bool
        Whether a lower / an upper bound is handled.
    soft : bool
        True: soft rows (with a penalty) of this kind; False: hard rows.
    """

    over: str
    weights: str = "any"
    lower: bool = True
    upper: bool = True
    soft: bool = False

    def matches(self, row: Row, problem: AlignmentProblem) -> bool:
        """Whether ``row`` of ``problem`` is of this kind."""
        if row.over != self.over or row.soft != self.soft:
            return False
        if (row.lower is not None and not self.lower) or (row.upper is not None and not self.upper):
            return False
        if self.weights == "unit":
            return row.unit
        if self.weights == "count":
            return row.unit or row.reduced_counts(problem.fits) is not None
        return True


def _why(solver: Solver, row: Row, problem: AlignmentProblem) -> str:
    """What keeps ``row`` from matching a declaration that differs only in its weights."""
    near = [
        s for s in solver.supports
        if s.over == row.over and s.soft == row.soft
        and (row.lower is None or s.lower) and (row.upper is None or s.upper)
    ]
    if not near:
        return ""
    if any(s.weights == "count" for s in near):
        k = row.first_uneven(problem.fits)
        if k is not None:
            who = row.who(k, problem.client_ids, problem.expert_ids)
            return (
                f": it does not reduce to a count, since the pairs of {who} that fit have "
                "different weights"
            )
    return ": its weights are not all 1"


#: Clients taking more experts than this make a problem GAP-like (:func:`gap_like`).
FEW_EXPERTS = 6


def gap_like(problem: AlignmentProblem) -> bool:
    """Whether the problem looks like a generalised assignment problem: some client may take
    more than :data:`FEW_EXPERTS` experts while a client row limits which (OR-Library's
    agents take many jobs under a capacity). ``auto`` and ``highs`` treat these apart."""
    return (
        problem.n_clients > 0
        and int(problem.max_experts.max()) > FEW_EXPERTS
        and bool(problem.client_rows)
    )


#: The rows of the keyword arguments: the two count rows, and client knapsacks (upper bounds).
KEYWORD_ROWS = (
    RowSupport("client", "unit"),
    RowSupport("expert", "unit"),
    RowSupport("client", "any", lower=False),
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Result:
    """What a solver's ``_solve`` returns; :class:`Solver` turns it into a :class:`Solution`.

    Attributes
    ----------
    assignment : (n, E) bool array
        A feasible assignment (``solve`` checks it).
    bound : float or None
        A proven upper bound on the optimum, if the method has one.
    optimal : bool
        True only when the method proves ``assignment`` optimal.
    info : dict
        Solver-specific extras (iterations, candidate set size, ...), kept on the Solution.
    """

    assignment: NDArray[np.bool_]
    bound: float | None = None
    optimal: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Solution:
    """A feasible assignment for an :class:`AlignmentProblem` and what is known about it.

    Attributes
    ----------
    assignment : (n_clients, n_experts) bool ndarray
        Always feasible for the problem it was solved for.
    objective : float
        Sum of desirability over the assigned pairs.
    bound : float or None
        A proven upper bound on the optimum, or None when the solver proves none.
    status : {"optimal", "feasible"}
    solver : str
        Name of the solver that produced it (``auto`` names the one it chose).
    runtime : float
        Wall-clock seconds spent inside ``solve``.
    problem : AlignmentProblem
        The problem it solves (for ids).
    info : dict
        Solver-specific extras.
    """

    assignment: NDArray[np.bool_]
    objective: float
    bound: float | None
    status: str
    solver: str
    runtime: float
    problem: AlignmentProblem = field(repr=False, compare=False)
    info: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def gap(self) -> float | None:
        """``(bound - objective) / max(1, |bound|)``, or None without a bound."""
        if self.bound is None:
            return None
        return max(0.0, (self.bound - self.objective) / max(1.0, abs(self.bound)))

    def experts_of(self, client: int) -> list[int]:
        """Expert positions assigned to the client at position ``client``."""
        return [int(j) for j in np.flatnonzero(self.assignment[client])]

    def to_dict(self) -> dict[Hashable, list[Hashable]]:
        """``{client_id: [expert_id, ...]}`` for every client (empty list if none)."""
        n, n_experts = self.assignment.shape
        rows, cols = np.nonzero(self.assignment)  # row-major: grouped by client, cols ascending
        eids = np.fromiter(self.problem.expert_ids, dtype=object, count=n_experts)
        ends = np.cumsum(np.bincount(rows, minlength=n))
        per_client = np.split(eids[cols], ends[:-1]) if n else []
        return dict(zip(self.problem.client_ids, (p.tolist() for p in per_client), strict=True))

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object ``fedalign solve`` prints: the assignment and what is known about it.

        Returns
        -------
        dict
            ``assignment`` (``{str(client_id): [expert_id, ...]}`` for every client, in
            order; expert ids kept as given), ``objective``, ``bound``, ``gap``, ``status``,
            ``solver``, ``runtime`` and ``info`` (:func:`json_safe`: keys as strings,
            arrays as lists, numpy numbers as Python numbers, anything else as its
            ``repr``). Numbers are floats, or None where unknown or not finite (JSON has
            no infinity).

        Raises
        ------
        ValueError
            Two client ids have the same string form (``1`` and ``"1"``), so they cannot
            both be JSON object keys; :meth:`AlignmentProblem.from_dict` refuses such ids.
        """
        assignment = {str(c): experts for c, experts in self.to_dict().items()}
        if len(assignment) != self.problem.n_clients:
            keys: dict[str, int] = {}
            for k, c in enumerate(self.problem.client_ids):
                first = keys.setdefault(str(c), k)
                if first != k:
                    raise ValueError(
                        f"client_ids[{k}]: id {c!r} has the same JSON key as position {first}"
                    )
        return {
            "assignment": assignment,
            "objective": _finite(self.objective),
            "bound": _finite(self.bound),
            "gap": _finite(self.gap),
            "status": self.status,
            "solver": self.solver,
            "runtime": _finite(self.runtime),
            "info": json_safe(self.info),
        }


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with only JSON's types: dicts with string keys, lists, str, finite numbers,
    bools and None (non-finite floats become None, arrays lists, other objects their repr)."""
    if depth > 32:  # a self-referencing or absurdly deep structure: cut it short
        return "..."
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), depth + 1)
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    return repr(value)


def _finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None or not finite."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


class Budget:
    """A wall-clock budget for anytime solvers: ``remaining()`` seconds, ``expired()``.

    ``owner`` names the solver in :meth:`message`; :meth:`check` raises
    :class:`~fedalign.TimeLimitError` once the time is up.
    """

    def __init__(self, time_limit: float | None, owner: str = "", reserve: float = 0.0) -> None:
        self.start = time.perf_counter()
        self.time_limit = time_limit
        #: The solver's own deadline: the limit less ``reserve`` seconds kept for what runs
        #: after it (``finish``: checking the plan, its objective).
        self.deadline = None if time_limit is None else self.start + max(0.0, time_limit - reserve)
        self.owner = owner

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def with_grace(self) -> Budget:
        """This budget with half the stated overrun added, ``max(5 %, 0.1 s)`` of the limit.

        For a solver's first feasible plan only: a plan a little late is worth more than
        none (within the overrun every solver promises to stay within, docs/solvers.md).
        Half of it: a repair sees the clock only between its steps (0.1 s apart at 20,000 x
        64 under a load of 4), and given all, or three quarters, of the overrun first
        repairs ended 0.20-0.34 s past 1 s and 3 s limits there (docs/benchmarks.md).
        """
        if self.time_limit is None or self.deadline is None:
            return self
        out = copy.copy(self)
        out.deadline = self.deadline + 0.5 * max(0.1 * self.time_limit, 0.2)
        return out

    def remaining(self, default: float = float("inf")) -> float:
        """Seconds left, or ``default`` when there is no limit."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.perf_counter())

    def expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def message(self, doing: str) -> str:
        """``"solver 'x' hit its time limit of 2 s while <doing>, ..."``."""
        who = f"solver {self.owner!r}" if self.owner else "the solver"
        return (
            f"{who} hit its time limit of {self.time_limit:g} s while {doing}, before it had "
            "a feasible assignment (the problem may well be feasible: give it more time)"
        )

    def check(self, doing: str) -> None:
        """Raise :class:`~fedalign.TimeLimitError` (saying what it was ``doing``) when the time is up."""
        if self.expired():
            raise TimeLimitError(self.message(doing))


# --------------------------------------------------------------------------- the contract


class Solver(ABC):
    """Base class of every solver.

    Subclasses set the class attributes and implement :meth:`_solve`. Keyword-only
    parameters of ``_solve`` after ``budget`` and ``rng`` are the solver's options.

    Class attributes
    ----------------
    name : str
        Registry name.
    exact : bool
        The solver proves optimality when it finishes within its time limit.
    requires : tuple of str
        Importable modules it needs beyond the core.
    extra : str or None
        The pip extra that installs ``requires``.
    supports : tuple of RowSupport
        The kinds of row it handles; any other row makes it refuse the problem.
    warm_start : str or None
        What it reuses from a warm start, in a few words; None when it reuses nothing (a
        warm start is then ignored). When set, ``_solve`` takes a keyword ``warm``: a
        :class:`~fedalign.solvers.warm.WarmStart`, or None.
    builds_standard_form : bool
        It builds :func:`~fedalign.solvers.standard.standard_form`: under a time limit,
        :meth:`solve` first predicts that build and raises
        :class:`~fedalign.TimeLimitError` at once when it cannot end in time.
    _parameter_constraints : dict or None
        Its options: name -> allowed forms (:mod:`fedalign._validation`). None reads the
        option names from ``_solve``'s signature and checks no values.
    """

    name: ClassVar[str]
    exact: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    supports: ClassVar[tuple[RowSupport, ...]] = KEYWORD_ROWS
    warm_start: ClassVar[str | None] = None
    builds_standard_form: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = None

    @classmethod
    def is_available(cls) -> bool:
        """Whether this install can run the solver."""
        return all(importlib.util.find_spec(m) is not None for m in cls.requires)

    def refusal(self, problem: AlignmentProblem) -> str | None:
        """Why this solver cannot handle ``problem``, or None (without naming alternatives).

        The first row no entry of :attr:`supports` matches, then :meth:`_refuse_data`.
        """
        for row in problem.rows:
            if not any(s.matches(row, problem) for s in self.supports):
                return f"solver {self.name!r} does not support the {row.describe()}{_why(self, row, problem)}"
        return self._refuse_data(problem)

    def _refuse_data(self, problem: AlignmentProblem) -> str | None:
        """A solver's own data-dependent refusal (e.g. weights too fine to scale); None by default."""
        return None

    def accepts(self, problem: AlignmentProblem) -> bool:
        """Whether this solver handles every row of ``problem`` (cvxpy's ``accepts``)."""
        return self.refusal(problem) is None

    def unsupported_reason(self, problem: AlignmentProblem) -> str | None:
        """Why this solver cannot handle ``problem`` and which solvers can; None if it can."""
        reason = self.refusal(problem)
        if reason is None:
            return None
        others = [s for s in solvers_for(problem) if s not in (self.name, "auto")]
        can = f"use {', '.join(repr(s) for s in others)}" if others else "no installed solver can"
        return f"{reason}; {can}"

    @abstractmethod
    def _solve(
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        **options: Any,
    ) -> Result:
        """Solve; return a feasible :class:`Result` or raise ``InfeasibleError``."""

    def option_names(self) -> set[str] | None:
        """Names of the options ``_solve`` accepts (None: any)."""
        if self._parameter_constraints is not None:
            return set(self._parameter_constraints)
        params = inspect.signature(self._solve).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return {k for k in params if k not in {"problem", "budget", "rng", "warm"}}

    def solve(
        self,
        problem: AlignmentProblem,
        *,
        time_limit: float | None = None,
        seed: int | None = None,
        warm_start: Solution | None = None,
        **options: Any,
    ) -> Solution:
        """Run the solver and wrap its result in a checked :class:`Solution`.

        ``warm_start`` (an earlier Solution, or None) is matched to ``problem`` by id and
        handed to ``_solve`` as ``warm`` when the solver reuses anything
        (:attr:`warm_start`); ``info["warm_start"]`` then says what was matched and reused.
        """
        check_warm_start(warm_start)
        if self._parameter_constraints is not None:
            options = validate(self._parameter_constraints, options, owner=f"solver {self.name!r}")
        # The clock starts before the checks of the rows: at scale they are (n, E) passes too.
        budget = Budget(time_limit, owner=self.name, reserve=finish_reserve(problem, time_limit))
        if self.builds_standard_form and time_limit is not None:
            from .standard import check_build_time

            check_build_time(problem, budget)  # a model that cannot be built in time: say so now
        reason = self.unsupported_reason(problem)
        if reason is not None:
            raise UnsupportedProblemError(reason)
        rng = np.random.default_rng(seed)
        warm = None
        if self.warm_start is not None:
            warm = None if warm_start is None else WarmStart(problem, warm_start)
            options = {**options, "warm": warm}
        result = self._solve(problem, budget=budget, rng=rng, **options)
        runtime = budget.elapsed()
        solution = finish(problem, result, solver=self.name, runtime=runtime)
        if warm_start is not None:
            used = solution.info.get("warm_start")
            note = {} if warm is None else warm.summary()
            note["reused"] = used.get("reused", "nothing") if isinstance(used, dict) else "nothing"
            if isinstance(used, dict):
                note.update(used)
            solution.info["warm_start"] = note
        return solution


#: Seconds per pair that :func:`finish` takes to check a plan and sum its objective, generously
#: (0.15 s were measured at 100,000 x 128 with four rows on a 2-core machine, twice that under
#: a load of 4: docs/benchmarks.md, time limits).
FINISH_SECONDS_PER_PAIR = 3e-8


def finish_reserve(problem: AlignmentProblem, time_limit: float | None) -> float:
    """Seconds of a time limit kept for :func:`finish` (at most half of it)."""
    if time_limit is None:
        return 0.0
    pairs = float(problem.n_clients) * problem.n_experts
    return min(0.5 * time_limit, FINISH_SECONDS_PER_PAIR * pairs * max(1, len(problem.rows)) / 4)


def check_warm_start(warm_start: object) -> None:
    """A warm start must be a :class:`Solution` or None (a TypeError names what it got)."""
    if warm_start is not None and not isinstance(warm_start, Solution):
        raise TypeError(
            f"warm_start: expected a fedalign.Solution (an earlier solve's result) or None, "
            f"got {type(warm_start).__name__}"
        )


def finish(problem: AlignmentProblem, result: Result, *, solver: str, runtime: float) -> Solution:
    """Check a solver's result and turn it into a :class:`Solution` (raises on a bug)."""
    x = np.ascontiguousarray(result.assignment, dtype=bool)
    violations = [] if feasible(problem, x) else check(problem, x)
    if violations:
        shown = "; ".join(v.message for v in violations[:3])
        raise AlignmentError(
            f"solver {solver!r} returned an infeasible assignment ({len(violations)} "
            f"violations: {shown}). This is a bug in fedalign; please report it."
        )
    objective = problem.objective(x)
    bound = result.bound
    if bound is not None:
        bound = float(bound)
        if result.optimal:
            bound = max(bound, objective)
    elif result.optimal:
        bound = objective
    x.flags.writeable = False
    return Solution(
        assignment=x,
        objective=objective,
        bound=bound,
        status="optimal" if result.optimal else "feasible",
        solver=solver,
        runtime=runtime,
        problem=problem,
        info=dict(result.info),
    )


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    """Class decorator: add a solver to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"solver name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def registered_solvers() -> list[str]:
    """Every registered solver name, installed or not, in order of preference."""
    return list(_REGISTRY)


def available_solvers() -> list[str]:
    """Names of the solvers this install can run, in order of preference."""
    return [name for name, cls in _REGISTRY.items() if cls.is_available()]


def solvers_for(problem: AlignmentProblem) -> list[str]:
    """Names of the installed solvers that support every row of ``problem``, in order of preference.

    ``"auto"`` is listed when any other solver is.
    """
    if not isinstance(problem, AlignmentProblem):
        raise TypeError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    return [
        name for name in available_solvers() if _REGISTRY[name]().refusal(problem) is None
    ]


def get_solver(name: str) -> Solver:
    """An instance of the named solver.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    SolverUnavailableError
        The solver's optional dependency is missing (the message names the extra).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"solver: unknown solver {name!r}; choose from {registered_solvers()}")
    cls = _REGISTRY[name]
    if not cls.is_available():
        extra = f"pip install 'fedalign[{cls.extra}]'" if cls.extra else "its dependencies"
        raise SolverUnavailableError(
            f"solver {name!r} needs {', '.join(cls.requires)}; install it with {extra}"
        )
    return cls()


def solve(
    problem: AlignmentProblem,
    solver: str = "auto",
    *,
    time_limit: float | None = None,
    seed: int | None = None,
    warm_start: Solution | None = None,
    **options: Any,
) -> Solution:
    """Solve an alignment problem; return a feasible :class:`Solution` or raise.

    Parameters
    ----------
    problem : AlignmentProblem
    solver : str
        A name from :func:`available_solvers`, or ``"auto"``.
    time_limit : float, optional
        Seconds; anytime solvers return their best assignment when it runs out.
    seed : int, optional
        Seeds every random choice; the same seed reproduces the same result.
    warm_start : Solution, optional
        An earlier solution of a related problem (the previous round's): matched to
        ``problem`` by client id, expert id and row name, and reused where the solver can
        (``lagrangian``: prices; ``flow``: expert prices; ``cpsat``: a hint; ``highs``,
        ``milp``: a MIP start; see docs/solvers.md). What does not match is ignored. Bounds
        stay proven for ``problem`` and the assignment is checked as always.
    **options
        Solver-specific options (see docs/solvers.md).

    Raises
    ------
    InfeasibleError
        No feasible assignment exists, or none was found in the time limit.
    UnsupportedProblemError
        The solver cannot handle this problem's constraints.
    SolverUnavailableError
        The solver's optional dependency is missing.
    ValueError / TypeError
        Bad arguments to ``solve`` itself.
    """
    if not isinstance(problem, AlignmentProblem):
        raise TypeError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    call = validate(_SOLVE_CONSTRAINTS, {"time_limit": time_limit, "seed": seed})
    check_warm_start(warm_start)
    instance = get_solver(solver)
    names = instance.option_names()
    if names is not None:
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"solver {solver!r} has no option {unknown[0]!r}; its options are {sorted(names)}"
            )
    return instance.solve(
        problem, time_limit=call["time_limit"], seed=call["seed"], warm_start=warm_start, **options
    )


#: What :func:`solve` itself takes besides the solver's options.
_SOLVE_CONSTRAINTS: dict[str, list[Constraint | None]] = {
    "time_limit": [Interval(float, 0, None, closed="neither"), None],
    "seed": [Interval(int, 0, None), None],
}
