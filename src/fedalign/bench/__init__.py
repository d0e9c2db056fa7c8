"""Solver benchmark: instance families, OR-Library GAP instances, runner and report.

``fedalign bench`` (see :mod:`fedalign.cli`) is a thin wrapper over :func:`bench`: it builds
a :class:`BenchConfig`, runs every solver on every instance under a time limit
(:func:`run_benchmark`), writes results.csv, results.json and the plots
(:func:`fedalign.bench.report.write`) and returns the rows and the printable summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .families import FAMILIES, make_instance
from .runner import DEFAULT_SIZES, QUICK_SIZES, BenchConfig, Row, run_benchmark

__all__ = [
    "DEFAULT_SIZES",
    "FAMILIES",
    "QUICK_SIZES",
    "BenchConfig",
    "Row",
    "bench",
    "make_instance",
    "run_benchmark",
]


def bench(
    out: str | Path,
    *,
    quick: bool = False,
    solvers: Sequence[str] | None = None,
    orlib: str | Path | None = None,
    time_limit: float | None = None,
    seeds: int | None = None,
    families: Sequence[str] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    instances: Sequence[Any] = (),
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
) -> tuple[list[Row], str]:
    """Run the benchmark and write its outputs into ``out``; return (rows, summary table).

    Parameters
    ----------
    out : path
        Output directory (created if needed).
    quick : bool
        Small sizes (:data:`QUICK_SIZES`), two seeds and a 2 s time limit: a few minutes.
    solvers : sequence of str, optional
        Solver names; default every available solver.
    orlib : path, optional
        Directory with the OR-Library ``gap*.txt`` files to add.
    time_limit : float, optional
        Seconds per solver run (default 10, or 2 with ``quick``).
    seeds : int, optional
        Number of seeds per family and size (default 3, or 2 with ``quick``).
    families, sizes : optional
        Restrict the generated families / sizes (default: all families, or none when
        ``instances`` are given; the sizes above).
    instances : sequence, optional
        Problems of your own (JSON files in ``fedalign solve``'s format, or problems; see
        :class:`BenchConfig`).
    progress, plots : bool
        Progress bar; PNG plots.
    log : callable, optional
        Where skip notices go (default ``print``); None silences them.
    """
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds: expected an int >= 1, got {seeds!r}")
    if families is None:
        families = () if instances else tuple(FAMILIES)
    config = BenchConfig(
        families=tuple(families),
        sizes=tuple(sizes) if sizes is not None else (QUICK_SIZES if quick else DEFAULT_SIZES),
        seeds=tuple(range(seeds if seeds is not None else (2 if quick else 3))),
        solvers=None if solvers is None else tuple(solvers),
        time_limit=float(time_limit) if time_limit is not None else (2.0 if quick else 10.0),
        orlib=orlib,
        instances=tuple(instances),
    )
    config.solver_names()  # validate before running anything
    from .report import format_summary, write

    rows = run_benchmark(config, progress=progress, on_skip=log)
    write(rows, out, config, plots=plots)
    return rows, format_summary(rows)
