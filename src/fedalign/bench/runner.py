"""Run every solver on every benchmark instance under a time limit and collect the rows.

:func:`run_benchmark` is what ``fedalign bench`` calls. An *instance* is one generated
problem (family, size, seed) or one OR-Library GAP problem; every selected solver runs on it
once, and each run becomes a :class:`Row`. Exact solvers (``milp``, ``cpsat``) and the LP are
skipped above a size where they cannot even build their model within the time limit; each
skip is recorded (and printed) with its reason, never silently.

After all solvers ran on an instance, ``best_known`` is filled in: the published optimum
(OR-Library) or else the best objective any solver found, and ``gap_to_best_bound`` compares
each objective with the smallest proven bound of any solver.

Instances of your own (``BenchConfig(instances=...)``, ``fedalign bench --instance FILE``)
are problems in ``fedalign solve``'s JSON format, or :class:`AlignmentProblem` objects;
each is its own family, ``"instance-<name>"`` (its file's stem), so the summary and the
Pareto plots show it alone. Every run records its time limit and whether it ended
later than the limit allows (``over_limit``: past ``max(10 %, 0.2 s)`` beyond it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AlignmentError, InfeasibleError, UnsupportedProblemError
from ..problem import AlignmentProblem
from ..solvers import available_solvers, get_solver
from .families import FAMILIES, make_instance
from .orlib import GapInstance, find_files, load_file

__all__ = [
    "DEFAULT_SIZES",
    "QUICK_SIZES",
    "BenchConfig",
    "Instance",
    "Row",
    "instances",
    "load_instance",
    "over_limit",
    "run_benchmark",
    "run_instance",
]

#: (n_clients, n_experts) of the full benchmark.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (100, 8),
    (1_000, 32),
    (1_000, 64),
    (10_000, 64),
    (100_000, 128),
)
#: Sizes of ``--quick``.
QUICK_SIZES: tuple[tuple[int, int], ...] = ((100, 8), (300, 16), (1_000, 32))

#: Largest ``n_clients * n_experts`` each solver is run on (others: no limit). Past these
#: sizes building the model alone takes longer than any sensible time limit.
MAX_PAIRS: dict[str, int] = {"milp": 70_000, "cpsat": 70_000, "lp": 2_000_000, "highs": 2_000_000}


def over_limit(runtime: float | None, time_limit: float) -> bool:
    """Whether a run ended later than its limit allows: past ``max(10 %, 0.2 s)`` beyond it."""
    return runtime is not None and runtime > time_limit + max(0.1 * time_limit, 0.2)


@dataclass
class BenchConfig:
    """What to run.

    Attributes
    ----------
    families : sequence of str
        Generated families (keys of :data:`fedalign.bench.families.FAMILIES`).
    sizes : sequence of (n_clients, n_experts)
    seeds : sequence of int
    solvers : sequence of str or None
        Solver names; None runs every available solver (``auto`` included).
    time_limit : float
        Seconds per solver run.
    orlib : str or Path or None
        Directory with OR-Library ``gap*.txt`` files; None skips them.
    orlib_files : sequence of str or None
        Only these file stems (e.g. ``["gap1", "gapd"]``); None takes every file found.
    max_pairs : dict
        Per-solver size limit (``n_clients * n_experts``) above which the solver is skipped.
    instances : sequence
        Problems of your own: paths of JSON files in ``fedalign solve``'s format (one
        problem object per file), :class:`AlignmentProblem` objects, or ``(name,
        problem)`` pairs; each is reported as its own family ``"instance-<name>"`` (a bare problem is
        named ``problem-<k>``, k counting from 1).
    """

    families: Sequence[str] = tuple(FAMILIES)
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES
    seeds: Sequence[int] = (0, 1, 2)
    solvers: Sequence[str] | None = None
    time_limit: float = 10.0
    orlib: str | Path | None = None
    orlib_files: Sequence[str] | None = None
    max_pairs: dict[str, int] = field(default_factory=lambda: dict(MAX_PAIRS))
    instances: Sequence[Any] = ()

    def solver_names(self) -> list[str]:
        """The solvers to run, validated against the registry."""
        names = list(available_solvers()) if self.solvers is None else list(self.solvers)
        known = available_solvers()
        for k, name in enumerate(names):
            if name not in known:
                raise ValueError(f"solvers[{k}]: unknown or unavailable solver {name!r}; choose from {known}")
        return names


@dataclass
class Instance:
    """One benchmark problem and how to label its rows."""

    family: str
    name: str
    n_clients: int
    n_experts: int
    seed: int
    build: Callable[[], AlignmentProblem]
    gap: GapInstance | None = None


@dataclass
class Row:
    """One solver run on one instance (a line of results.csv).

    ``objective``, ``bound`` and ``best_known`` are in the instance's own sense: for the
    OR-Library cost files (gapa-gapd) they are costs (lower is better, ``bound`` is a lower
    bound); everywhere else desirability sums (higher is better).
    """

    family: str
    instance: str
    n_clients: int
    n_experts: int
    seed: int
    solver: str
    objective: float | None
    bound: float | None
    gap: float | None
    best_known: float | None
    runtime: float | None
    status: str
    gap_to_best_bound: float | None = None
    note: str = ""
    time_limit: float | None = None
    over_limit: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain-Python values (NaN-free) for JSON."""
        return asdict(self)


def load_instance(path: str | Path) -> AlignmentProblem:
    """A problem from a JSON file in ``fedalign solve``'s format.

    Raises
    ------
    ValueError
        The file cannot be read, is not JSON, or does not describe a valid problem (the
        message names the file, and the field where there is one).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"instances: cannot read {str(path)!r} as JSON: {exc}") from None
    try:
        return AlignmentProblem.from_dict(data)
    except AlignmentError as exc:
        raise ValueError(f"instances: {str(path)!r}: {exc}") from None


def _same(problem: AlignmentProblem) -> AlignmentProblem:
    return problem


def _own_instances(config: BenchConfig) -> Iterator[Instance]:
    """The configuration's own problems (``instances``), loaded and named."""
    for k, source in enumerate(config.instances):
        if isinstance(source, AlignmentProblem):
            name, problem = f"problem-{k + 1}", source
        elif isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], AlignmentProblem):
            name, problem = str(source[0]), source[1]
        elif isinstance(source, (str, Path)):
            name, problem = Path(source).stem, load_instance(source)
        else:
            raise ValueError(
                f"instances[{k}]: expected a JSON file's path, an AlignmentProblem or a "
                f"(name, problem) pair, got {type(source).__name__}"
            )
        yield Instance(
            family=f"instance-{name}", name=name, n_clients=problem.n_clients,
            n_experts=problem.n_experts, seed=0, build=partial(_same, problem),
        )


def instances(config: BenchConfig) -> Iterator[Instance]:
    """Every instance of the configuration: generated families, your own, then OR-Library."""
    for family in config.families:
        if family not in FAMILIES:
            raise ValueError(f"families: unknown family {family!r}; choose from {sorted(FAMILIES)}")
        for n, e in config.sizes:
            for seed in config.seeds:
                yield Instance(
                    family=family,
                    name=f"{family}-{n}x{e}-s{seed}",
                    n_clients=n,
                    n_experts=e,
                    seed=seed,
                    build=partial(make_instance, family, n, e, seed),
                )
    yield from _own_instances(config)
    if config.orlib is not None:
        wanted = None if config.orlib_files is None else set(config.orlib_files)
        for path in find_files(config.orlib):
            if wanted is not None and path.stem not in wanted:
                continue
            for gap in load_file(path):
                yield Instance(
                    family="orlib-gap",
                    name=gap.name,
                    n_clients=gap.problem.n_clients,
                    n_experts=gap.problem.n_experts,
                    seed=gap.index,
                    build=partial(getattr, gap, "problem"),
                    gap=gap,
                )


def _skip_reason(solver: str, problem: AlignmentProblem, config: BenchConfig) -> str | None:
    limit = config.max_pairs.get(solver)
    pairs = problem.n_clients * problem.n_experts
    if limit is not None and pairs > limit:
        return f"skipped: {pairs:,} pairs is above {solver}'s limit of {limit:,} for this benchmark"
    reason = get_solver(solver).unsupported_reason(problem)
    if reason is not None:
        return f"unsupported: {reason}"
    return None


def run_instance(inst: Instance, solvers: Sequence[str], config: BenchConfig) -> list[Row]:
    """Run every solver on one instance; fill ``best_known`` and ``gap_to_best_bound``."""
    problem = inst.build()
    sign = -1.0 if inst.gap is not None and inst.gap.minimise else 1.0
    rows: list[Row] = []
    for solver in solvers:

        def row(status: str, note: str = "", runtime: float | None = None, **values: Any) -> Row:
            return Row(
                family=inst.family,
                instance=inst.name,
                n_clients=inst.n_clients,
                n_experts=inst.n_experts,
                seed=inst.seed,
                solver=solver,  # noqa: B023 - used at once, inside this iteration
                objective=values.get("objective"),
                bound=values.get("bound"),
                gap=values.get("gap"),
                best_known=None,
                runtime=runtime,
                status=status,
                note=note,
                time_limit=config.time_limit,
                over_limit=over_limit(runtime, config.time_limit),
            )

        reason = _skip_reason(solver, problem, config)
        if reason is not None:
            status = "unsupported" if reason.startswith("unsupported") else "skipped"
            rows.append(row(status, reason))
            continue
        t0 = time.perf_counter()
        try:
            sol = get_solver(solver).solve(problem, time_limit=config.time_limit, seed=inst.seed)
        except UnsupportedProblemError as exc:
            rows.append(row("unsupported", str(exc)))
            continue
        except InfeasibleError as exc:
            rows.append(row("failed", str(exc), time.perf_counter() - t0))
            continue
        except AlignmentError as exc:  # a solver bug: record it, keep benchmarking
            rows.append(row("error", str(exc), time.perf_counter() - t0))
            continue
        # Wall-clock seconds around the call, as for failed runs (validation included).
        seconds = time.perf_counter() - t0
        rows.append(
            row(
                sol.status,
                f"chose {sol.solver}" if sol.solver != solver else "",
                seconds,
                objective=sign * sol.objective,
                bound=None if sol.bound is None else sign * sol.bound,
                gap=sol.gap,
            )
        )
    _fill_best(rows, inst, sign)
    return rows


def _fill_best(rows: list[Row], inst: Instance, sign: float) -> None:
    """``best_known`` and ``gap_to_best_bound`` of every row of one instance (in place)."""
    found = [sign * r.objective for r in rows if r.objective is not None]
    bounds = [sign * r.bound for r in rows if r.bound is not None]
    best = max(found) if found else None
    if inst.gap is not None and inst.gap.best_known is not None:
        published = sign * inst.gap.best_known
        best = published if best is None else max(best, published)
        if inst.gap.proven:
            bounds.append(published)
    best_bound = min(bounds) if bounds else None
    if best_bound is None or (best is not None and best > best_bound):
        best_bound = best  # no bound, or a best-known value that no solver's bound covers
    for r in rows:
        r.best_known = None if best is None else sign * best
        if r.objective is not None and best_bound is not None:
            r.gap_to_best_bound = max(
                0.0, (best_bound - sign * r.objective) / max(1.0, abs(best_bound))
            )


def run_benchmark(
    config: BenchConfig,
    *,
    progress: bool = True,
    on_skip: Callable[[str], None] | None = None,
) -> list[Row]:
    """Run the whole benchmark; returns the rows (see :func:`fedalign.bench.report.write`).

    Parameters
    ----------
    config : BenchConfig
    progress : bool
        Show a tqdm progress bar (one step per solver run).
    on_skip : callable, optional
        Called once per (solver, reason) the first time a solver is skipped or unsupported.
    """
    if not (isinstance(config.time_limit, (int, float)) and math.isfinite(config.time_limit)
            and config.time_limit > 0):
        raise ValueError(f"time_limit: expected seconds > 0, got {config.time_limit!r}")
    solvers = config.solver_names()
    todo = list(instances(config))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo) * len(solvers), unit="run", desc="bench")
    rows: list[Row] = []
    told: set[tuple[str, str]] = set()
    try:
        for inst in todo:
            if bar is not None:
                bar.set_postfix_str(inst.name)
            out = run_instance(inst, solvers, config)
            for r in out:
                if r.status in ("skipped", "unsupported") and on_skip is not None:
                    key = (r.solver, r.note.split(":")[0] + r.family)
                    if key not in told:
                        told.add(key)
                        on_skip(f"{r.solver} on {r.family} {r.n_clients}x{r.n_experts}: {r.note}")
            rows.extend(out)
            if bar is not None:
                bar.update(len(solvers))
    finally:
        if bar is not None:
            bar.close()
    return rows


def summarise(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per family and solver: runs, outcomes, gaps and runtimes, failures counted honestly.

    ``runs`` counts every run attempted, failed ones included (``solved`` those that
    returned a plan); ``mean_runtime`` / ``max_runtime`` include the failed runs' seconds;
    ``over_limit`` counts the runs that ended later than their limit allows; the gaps (to
    the best proven bound) are over the solved runs only, and None when none solved.
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.family, r.solver), []).append(r)
    out = []
    for (family, solver), rs in groups.items():
        ran = [r for r in rs if r.status not in ("skipped", "unsupported")]
        solved = [r for r in ran if r.objective is not None]
        gaps = [r.gap_to_best_bound for r in solved if r.gap_to_best_bound is not None]
        times = [r.runtime for r in ran if r.runtime is not None]
        out.append(
            {
                "family": family,
                "solver": solver,
                "runs": len(ran),
                "solved": len(solved),
                "optimal": sum(r.status == "optimal" for r in rs),
                "at_best_known": sum(
                    r.objective is not None and r.best_known is not None
                    and abs(r.objective - r.best_known) <= 1e-6 * max(1.0, abs(r.best_known))
                    for r in rs
                ),
                "failed": sum(r.status in ("failed", "error") for r in rs),
                "over_limit": sum(r.over_limit for r in ran),
                "skipped": sum(r.status in ("skipped", "unsupported") for r in rs),
                "mean_gap_to_best_bound": float(np.mean(gaps)) if gaps else None,
                "max_gap_to_best_bound": float(np.max(gaps)) if gaps else None,
                "mean_runtime": float(np.mean(times)) if times else None,
                "max_runtime": float(np.max(times)) if times else None,
            }
        )
    return out
