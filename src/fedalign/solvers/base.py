"""The solver contract: :class:`Solution`, :class:`Solver`, the registry, and :func:`solve`.

A solver is one small class in its own module, registered with :func:`register`. The
registry's insertion order is the order of preference (cvxpy's habit). Optional
dependencies are imported inside the solver; :meth:`Solver.is_available` answers False when
they are missing, and asking for such a solver raises :class:`SolverUnavailableError`.

:func:`solve` is the single entry point: it validates the call, runs the solver, checks the
result with :func:`fedalign.check` and refuses to return an infeasible assignment.
"""

from __future__ import annotations

import importlib.util
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import AlignmentError, SolverUnavailableError, UnsupportedProblemError
from ..problem import AlignmentProblem, check

__all__ = [
    "Budget",
    "Result",
    "Solution",
    "Solver",
    "available_solvers",
    "get_solver",
    "register",
    "registered_solvers",
    "solve",
]


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
            ``solver`` and ``runtime``. Numbers are floats, or None where unknown or not
            finite (JSON has no infinity).

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
        }


def _finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None or not finite."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


class Budget:
    """A wall-clock budget for anytime solvers: ``remaining()`` seconds, ``expired()``."""

    def __init__(self, time_limit: float | None) -> None:
        self.start = time.perf_counter()
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else self.start + time_limit

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self, default: float = float("inf")) -> float:
        """Seconds left, or ``default`` when there is no limit."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.perf_counter())

    def expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline


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
    handles_knapsack : bool
        Whether it handles knapsack rows that do not reduce to counts.
    """

    name: ClassVar[str]
    exact: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    handles_knapsack: ClassVar[bool] = True

    @classmethod
    def is_available(cls) -> bool:
        """Whether this install can run the solver."""
        return all(importlib.util.find_spec(m) is not None for m in cls.requires)

    def unsupported_reason(self, problem: AlignmentProblem) -> str | None:
        """Why this solver cannot handle ``problem`` (None if it can)."""
        return None

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
        params = inspect.signature(self._solve).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return {k for k in params if k not in {"problem", "budget", "rng"}}

    def solve(
        self,
        problem: AlignmentProblem,
        *,
        time_limit: float | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> Solution:
        """Run the solver and wrap its result in a checked :class:`Solution`."""
        reason = self.unsupported_reason(problem)
        if reason is not None:
            raise UnsupportedProblemError(f"solver {self.name!r}: {reason}")
        budget = Budget(time_limit)
        rng = np.random.default_rng(seed)
        result = self._solve(problem, budget=budget, rng=rng, **options)
        runtime = budget.elapsed()
        return finish(problem, result, solver=self.name, runtime=runtime)


def finish(problem: AlignmentProblem, result: Result, *, solver: str, runtime: float) -> Solution:
    """Check a solver's result and turn it into a :class:`Solution` (raises on a bug)."""
    x = np.ascontiguousarray(result.assignment, dtype=bool)
    violations = check(problem, x)
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
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)):
            raise ValueError(f"time_limit: expected seconds > 0 or None, got {time_limit!r}")
        if not np.isfinite(time_limit) or time_limit <= 0:
            raise ValueError(f"time_limit: expected seconds > 0 or None, got {time_limit!r}")
        time_limit = float(time_limit)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed: expected an int or None, got {seed!r}")
    instance = get_solver(solver)
    names = instance.option_names()
    if names is not None:
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"solver {solver!r} has no option {unknown[0]!r}; its options are {sorted(names)}"
            )
    return instance.solve(problem, time_limit=time_limit, seed=seed, **options)
