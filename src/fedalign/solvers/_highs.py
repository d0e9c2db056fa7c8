"""HiGHS through ``highspy``: a MILP passed as arrays, a MIP start, and a time limit that holds.

``highs`` and ``milp`` both end here. :class:`HighsModel` is the MILP in HiGHS' own terms
(minimise, row-wise sparse matrix, one-sided or ranged rows); :func:`solve` hands it to
HiGHS in one ``passModel`` call (never a column or a row at a time), gives it a start
solution (``setSolution``: HiGHS checks it and keeps it as its incumbent when it is
feasible) and runs it.

HiGHS does not look at its clock everywhere: its MIP set-up (the clique partition of the
objective) ran 40-60 s under a 5 s limit on a 2,000 x 32 alignment problem. Under a time
limit, a model that large runs in a forked child process that is killed when the limit is
up (:mod:`._worker`); :func:`solve` then returns None and the caller falls back on what it has
(its start, or :class:`~fedalign.TimeLimitError`). Small models, and every solve without a
limit, run in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._fd import native_silence
from ..errors import InfeasibleError, TimeLimitError
from ..problem import AlignmentProblem, check
from . import _worker
from .base import Result
from .repair import repair
from .standard import StandardForm
from .warm import WarmStart

__all__ = [
    "ISOLATE_COLUMNS",
    "HighsModel",
    "HighsResult",
    "Start",
    "solve",
    "standard_model",
    "to_result",
    "warm_plan",
]

#: Under a time limit, models with at least this many integer columns run in a worker
#: process killed at the limit: HiGHS' set-up can overrun the limit from a few thousand
#: binaries on, and one cross-device round of 280 clients x 16 experts (about 4,500
#: binaries, 5 s limit) stayed in ``Highs.run`` for over ten minutes in process.
ISOLATE_COLUMNS = 1_000
#: Seconds a stopped worker may take beyond the limit before its result is given up.
_GRACE = 0.05


@dataclass
class HighsModel:
    """``min cost . z`` s.t. ``row_lower <= A z <= row_upper``, column bounds, integrality.

    ``A`` is row-wise (``start``, ``index``, ``value``, CSR); infinite bounds are allowed.
    """

    cost: NDArray[np.float64]
    col_lower: NDArray[np.float64]
    col_upper: NDArray[np.float64]
    row_lower: NDArray[np.float64]
    row_upper: NDArray[np.float64]
    start: NDArray[np.int64]
    index: NDArray[np.int64]
    value: NDArray[np.float64]
    integer: NDArray[np.bool_]

    @property
    def n_cols(self) -> int:
        return int(self.cost.size)


@dataclass
class HighsResult:
    """What HiGHS reported.

    Attributes
    ----------
    status : str
        The model status' name (``"kOptimal"``, ``"kTimeLimit"``, ``"kInfeasible"``, ...).
    values : (n_cols,) float array or None
        The best solution's column values, None when HiGHS has none.
    objective : float or None
        Its objective (minimisation form).
    dual_bound : float or None
        HiGHS' MIP dual bound (a lower bound of the minimum), None when not finite.
    seconds : float
        Wall-clock seconds, transfer and worker included.
    isolated : bool
        Whether it ran in a worker process.
    """

    status: str
    values: NDArray[np.float64] | None
    objective: float | None
    dual_bound: float | None
    seconds: float = 0.0
    isolated: bool = False


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def run_model(
    model: HighsModel, options: dict[str, Any], start: NDArray[np.float64] | None
) -> HighsResult:
    """Solve ``model`` with HiGHS in this process (quiet), starting from ``start`` if given."""
    import highspy

    t0 = time.perf_counter()
    with native_silence():  # the banner is printed from native code on construction
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for key, value in options.items():
        h.setOptionValue(key, value)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = model.n_cols
    lp.num_row_ = int(model.row_lower.size)
    lp.col_cost_ = model.cost
    lp.col_lower_ = np.where(np.isfinite(model.col_lower), model.col_lower, -inf)
    lp.col_upper_ = np.where(np.isfinite(model.col_upper), model.col_upper, inf)
    lp.row_lower_ = np.where(np.isfinite(model.row_lower), model.row_lower, -inf)
    lp.row_upper_ = np.where(np.isfinite(model.row_upper), model.row_upper, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = model.n_cols
    lp.a_matrix_.num_row_ = int(model.row_lower.size)
    lp.a_matrix_.start_ = model.start.astype(np.int32)
    lp.a_matrix_.index_ = model.index.astype(np.int32)
    lp.a_matrix_.value_ = model.value
    kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
    lp.integrality_ = [kinds[int(k)] for k in model.integer]
    h.passModel(lp)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, dtype=np.float64)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    values: NDArray[np.float64] | None = None
    objective = _finite(info.objective_function_value)
    if objective is not None and int(info.primal_solution_status) != 0:
        values = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return HighsResult(
        status=status.name,
        values=values,
        objective=objective if values is not None else None,
        dual_bound=_finite(info.mip_dual_bound),
        seconds=time.perf_counter() - t0,
    )


def _fresh_threads() -> None:
    """In a forked child: HiGHS' global thread pool, whose threads stayed in the parent, anew."""
    import highspy

    highspy.Highs.resetGlobalScheduler(True)


def solve(
    model: HighsModel,
    options: dict[str, Any],
    *,
    start: NDArray[np.float64] | None = None,
    time_limit: float | None = None,
) -> HighsResult | None:
    """Solve ``model``; None when a time limit stopped a worker before HiGHS answered.

    ``options`` are HiGHS options (``time_limit`` is set here from ``time_limit``). Without
    a limit, or for a model with fewer than :data:`ISOLATE_COLUMNS` integer columns, HiGHS
    runs in this process.
    """
    if time_limit is not None:
        options = {**options, "time_limit": max(0.01, float(time_limit))}
    if time_limit is None or int(model.integer.sum()) < ISOLATE_COLUMNS:
        return run_model(model, options, start)
    outcome = _worker.call(
        run_model, (model, options, start), time_limit + _GRACE, after_fork=_fresh_threads
    )
    if not outcome.finished:
        return None
    result: HighsResult = outcome.value
    result.seconds = outcome.seconds
    result.isolated = outcome.isolated
    return result


# --------------------------------------------------------------------------- alignment problems


def standard_model(sf: StandardForm) -> HighsModel:
    """The standard form as a HiGHS model (maximisation turned into minimisation)."""
    a = sf.A.tocsr()
    return HighsModel(
        cost=-sf.c,
        col_lower=sf.col_lower,
        col_upper=sf.col_upper,
        row_lower=sf.row_lower,
        row_upper=sf.row_upper,
        start=a.indptr.astype(np.int64),
        index=a.indices.astype(np.int64),
        value=np.asarray(a.data, dtype=np.float64),
        integer=sf.integral,
    )


@dataclass
class Start:
    """A feasible assignment handed to HiGHS as its first incumbent, and what is known of it.

    ``bound`` is a proven upper bound from the heuristic that found it (a Lagrangian bound),
    or None; ``source`` names the heuristic (``"warm start"``, ``"lagrangian"``, ...).
    """

    x: NDArray[np.bool_]
    bound: float | None
    source: str


def to_result(
    problem: AlignmentProblem,
    sf: StandardForm,
    res: HighsResult | None,
    start: Start | None,
    *,
    limit: float | None,
    rng: np.random.Generator,
    obj_scale: float = 1.0,
) -> Result:
    """A :class:`Result` from what HiGHS reported (None: stopped at the limit).

    ``obj_scale`` is the factor :meth:`StandardForm.normalised` multiplied the objective by
    (HiGHS' dual bound is divided by it).

    The best of HiGHS' solution and the start is returned; the bound is the smaller of
    HiGHS' dual bound and the start's. Statuses: ``kInfeasible`` raises
    :class:`InfeasibleError`; no solution and no start raises :class:`TimeLimitError`
    (or :class:`InfeasibleError` when HiGHS stopped for another reason).
    """
    info: dict[str, Any] = {"backend": "highspy"}
    if start is not None:
        info["start"] = start.source
    if res is not None:
        info.update(status=res.status, highs_seconds=res.seconds, isolated=res.isolated)
        if res.status in ("kInfeasible", "kUnboundedOrInfeasible"):
            raise InfeasibleError("HiGHS proved that no assignment meets every constraint")
    else:
        info["status"] = "stopped at the time limit"
    x, proved = None, False
    if res is not None and res.values is not None:
        x = sf.assignment(res.values)
        proved = res.status == "kOptimal"
        if check(problem, x):
            # Tolerances left a row marginally broken; fix it and claim no optimality.
            x = repair(problem, x, rng=rng)
            proved = False
            info["repaired"] = True
    bounds = [] if start is None or start.bound is None else [start.bound]
    if res is not None and res.dual_bound is not None:
        # HiGHS minimises the negated objective: its dual bound flips sign.
        value = -res.dual_bound / obj_scale
        info["mip_dual_bound"] = value
        bounds.append(value + 1e-9 * max(1.0, abs(value)))
    if start is not None and (x is None or problem.objective(start.x) > problem.objective(x)):
        x, proved = start.x, False
    if x is None:
        if res is None or res.status == "kTimeLimit":
            raise TimeLimitError(
                f"HiGHS found no assignment within the time limit of {limit:g} s"
                + (" (its set-up alone outlasted it)" if res is None else "")
            )
        raise InfeasibleError(f"HiGHS found no assignment (status {res.status})")
    return Result(assignment=x, bound=min(bounds) if bounds else None, optimal=proved, info=info)


def warm_plan(problem: AlignmentProblem, warm: WarmStart, rng: np.random.Generator) -> Start | None:
    """A warm start's assignment repaired into a feasible plan of ``problem`` (None if repair fails)."""
    try:
        x = repair(problem, warm.assignment(), rng=rng, fill=True)
    except InfeasibleError:
        return None
    return Start(x, None, "warm start")
