"""Write a benchmark's rows: results.csv, results.json, plots, and a summary table.

Plots use matplotlib's Agg backend (no display needed):

``pareto-<family>.png``
    Per family, every solver run as a point: runtime (s) against the gap to the best proven
    bound of its instance, both on log axes; lower-left is better. Gaps of zero are drawn at
    the floor ``1e-6`` so they stay visible.
``scaling.png``
    Median runtime against the number of clients, one line per solver (generated families).
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_text_atomic
from .runner import BenchConfig, Row, summarise

__all__ = ["COLUMNS", "format_summary", "plot_pareto", "plot_scaling", "write"]

#: results.csv columns, in order.
COLUMNS = (
    "family",
    "instance",
    "n_clients",
    "n_experts",
    "seed",
    "solver",
    "objective",
    "bound",
    "gap",
    "best_known",
    "runtime",
    "status",
    "gap_to_best_bound",
    "note",
)

_GAP_FLOOR = 1e-6


def _machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write(
    rows: Sequence[Row],
    out: str | Path,
    config: BenchConfig,
    *,
    plots: bool = True,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write results.csv, results.json and (with ``plots``) the PNGs into ``out``.

    The CSV and JSON files are each written whole through an exclusive temporary file
    (:func:`fedalign._files.write_text_atomic`). Returns the paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = out / "results.csv"
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        d = r.as_dict()
        writer.writerow({k: "" if d[k] is None else d[k] for k in COLUMNS})
    write_text_atomic(csv_path, buffer.getvalue())
    written.append(csv_path)
    json_path = out / "results.json"
    cfg = {
        "families": list(config.families),
        "sizes": [list(s) for s in config.sizes],
        "seeds": list(config.seeds),
        "solvers": config.solver_names(),
        "time_limit": config.time_limit,
        "orlib": None if config.orlib is None else str(config.orlib),
        "max_pairs": dict(config.max_pairs),
    }
    payload = {
        "config": cfg,
        "machine": _machine(),
        "rows": [r.as_dict() for r in rows],
        "summary": summarise(rows),
        **(extra or {}),
    }
    write_text_atomic(json_path, json.dumps(payload, indent=1))
    written.append(json_path)
    if plots:
        for family in sorted({r.family for r in rows}):
            path = out / f"pareto-{family}.png"
            if plot_pareto(rows, family, path):
                written.append(path)
        path = out / "scaling.png"
        if plot_scaling(rows, path):
            written.append(path)
    return written


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _solver_styles(solvers: Collection[str]) -> dict[str, tuple[str, str]]:
    markers = "osD^v<>pPX*h"
    cmap = [f"C{k}" for k in range(10)]
    return {s: (cmap[k % 10], markers[k % len(markers)]) for k, s in enumerate(sorted(solvers))}


def plot_pareto(rows: Sequence[Row], family: str, path: str | Path) -> bool:
    """Runtime vs gap to the best bound for one family (log-log); False if nothing to draw."""
    pts = [
        r for r in rows
        if r.family == family and r.runtime is not None and r.gap_to_best_bound is not None
    ]
    if not pts:
        return False
    plt = _pyplot()
    styles = _solver_styles({r.solver for r in rows})
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for solver in sorted({r.solver for r in pts}):
        rs = [r for r in pts if r.solver == solver]
        x = [max(r.runtime, 1e-4) for r in rs]  # type: ignore[type-var]
        y = [max(r.gap_to_best_bound, _GAP_FLOOR) for r in rs]  # type: ignore[type-var]
        color, marker = styles[solver]
        ax.scatter(x, y, label=solver, color=color, marker=marker, s=22, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("runtime (s)")
    ax.set_ylabel("gap to best proven bound")
    ax.set_title(f"{family}: optimality vs latency")
    ax.axhline(_GAP_FLOOR, color="0.8", lw=0.8, ls=":")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_scaling(rows: Sequence[Row], path: str | Path) -> bool:
    """Median runtime vs number of clients per solver (generated families); False if empty."""
    pts = [r for r in rows if r.family != "orlib-gap" and r.runtime is not None]
    if not pts:
        return False
    plt = _pyplot()
    styles = _solver_styles({r.solver for r in rows})
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for solver in sorted({r.solver for r in pts}):
        rs = [r for r in pts if r.solver == solver]
        sizes = sorted({r.n_clients for r in rs})
        med = [float(np.median([r.runtime for r in rs if r.n_clients == n])) for n in sizes]
        color, marker = styles[solver]
        ax.plot(sizes, np.maximum(med, 1e-4), label=solver, color=color, marker=marker, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients")
    ax.set_ylabel("median runtime (s)")
    ax.set_title("scaling (all generated families)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_summary(rows: Sequence[Row]) -> str:
    """A plain-text table: per family and solver, runs, gaps, runtimes, statuses."""
    summary = sorted(summarise(rows), key=lambda s: (s["family"], s["solver"]))
    head = (
        f"{'family':<14} {'solver':<11} {'runs':>4} {'opt':>4} {'best':>4} {'fail':>4} "
        f"{'skip':>4} {'mean gap':>9} {'max gap':>9} {'mean s':>8} {'max s':>8}"
    )
    lines = [head, "-" * len(head)]
    for s in summary:
        lines.append(
            f"{s['family']:<14} {s['solver']:<11} {s['runs']:>4} {s['optimal']:>4} "
            f"{s['at_best_known']:>4} {s['failed']:>4} {s['skipped']:>4} "
            f"{_fmt(s['mean_gap_to_best_bound'], '9.2%'):>9} "
            f"{_fmt(s['max_gap_to_best_bound'], '9.2%'):>9} "
            f"{_fmt(s['mean_runtime'], '8.3f'):>8} {_fmt(s['max_runtime'], '8.3f'):>8}"
        )
    return "\n".join(lines)
