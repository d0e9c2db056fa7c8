"""Turn ``results.json`` into a markdown table and the figures of the comparison.

Figures (PNG, matplotlib's Agg backend, nothing shown on screen):

* ``accuracy_vs_round.png`` -- mean test accuracy per round with the min-max band over seeds;
* ``accuracy_vs_bytes.png`` -- mean accuracy against cumulative bytes moved (up + down);
* ``accuracy_vs_time.png`` -- mean accuracy against the simulated clock (planning included in
  ``cross-device``);
* ``expert_load_heatmaps.png`` -- client x expert assignment counts per strategy (the first
  seed; expert numbering is arbitrary across seeds), clients grouped by domain: the paper's
  Fig. 3 picture;
* ``expert_load_cv.png`` -- coefficient of variation of the per-round expert load (trainings
  per expert), mean over seeds: 0 is perfectly balanced.

Only needs numpy and matplotlib; works on the JSON alone, so figures can be redrawn from a
saved run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_cv", "markdown_table", "write_plots"]


def _fmt_pm(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64) * scale
    if arr.size == 0:
        return "never"
    if arr.size == 1:
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The summary table: one row per strategy, mean ± std over seeds.

    Columns: final accuracy (%), rounds to the target accuracy (and how many seeds reached
    it), MB up and down, simulated minutes, expert-load CV, dropouts.
    """
    if results.get("scenario") == "cross-device":
        return _cross_device_table(results)
    target = results.get("target_accuracy")
    head = (
        "| strategy | final accuracy (%) | rounds to "
        + (f"{100 * target:.0f}%" if target is not None else "target")
        + " | MB up | MB down | simulated min | load CV | dropouts |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, entry in results["strategies"].items():
        seeds = entry["per_seed"]
        finals = seeds["final_accuracy"]
        reached = [r for r in entry["rounds_to_target"] if r is not None]
        rtt = _fmt_pm([float(r) for r in reached], digits=1)
        if len(reached) < len(entry["rounds_to_target"]):
            rtt += f" ({len(reached)}/{len(entry['rounds_to_target'])} seeds)"
        cv = [float(np.mean(load_cv(r))) for r in seeds["round_load"]]
        rows.append(
            f"| {name} | {_fmt_pm(finals, 100)} | {rtt} | "
            f"{_fmt_pm([b[-1] for b in seeds['bytes_up']], 1e-6, 2)} | "
            f"{_fmt_pm([b[-1] for b in seeds['bytes_down']], 1e-6, 2)} | "
            f"{_fmt_pm([s[-1] for s in seeds['seconds']], 1 / 60, 2)} | "
            f"{_fmt_pm(cv, 1, 2)} | {_fmt_pm([float(sum(d)) for d in seeds['dropouts']], 1, 0)} |"
        )
    return head + "\n".join(rows) + "\n"


def _reached(values: list[float | None], scale: float, digits: int) -> str:
    """Mean ± std over the seeds that reached the target, and how many did."""
    text = _fmt_pm([v for v in values if v is not None], scale, digits)
    hit = sum(v is not None for v in values)
    return text if hit == len(values) else f"{text} ({hit}/{len(values)} seeds)"


def _cross_device_table(results: dict[str, Any]) -> str:
    """The ``cross-device`` table: time and bytes to the target, planning, participation."""
    target = results.get("target_accuracy")
    pct = f"{100 * target:.0f}%" if target is not None else "target"
    tiers = results["config"]["tier_names"]
    head = (
        f"| strategy | final accuracy (%) | min to {pct} | MB to {pct} | rounds to {pct} | "
        "simulated min | planning s | dropouts | trained/online (%) | "
        + " / ".join(tiers)
        + " (%) |\n|" + "---|" * 10 + "\n"
    )
    rows = []
    for name, entry in results["strategies"].items():
        seeds = entry["per_seed"]
        share = entry.get("tier_participation", [])
        per_tier = " / ".join(
            _fmt_pm([s[t] for s in share], 100, 0) for t in tiers
        )
        rows.append(
            f"| {name} | {_fmt_pm(seeds['final_accuracy'], 100)} | "
            f"{_reached(entry['time_to_target'], 1 / 60, 1)} | "
            f"{_reached(entry['bytes_to_target'], 1e-6, 1)} | "
            f"{_reached(entry['rounds_to_target'], 1, 1)} | "
            f"{_fmt_pm([s[-1] for s in seeds['seconds']], 1 / 60, 1)} | "
            f"{_fmt_pm(entry['planning_seconds'], 1, 1)} | "
            f"{_fmt_pm([float(d) for d in entry['dropouts']], 1, 0)} | "
            f"{_fmt_pm(entry.get('trained_share', []), 100, 1)} | {per_tier} |"
        )
    return head + "\n".join(rows) + "\n"


def load_cv(round_load: list[list[int]]) -> np.ndarray:
    """Per round, the coefficient of variation (std / mean) of trainings per expert."""
    load = np.asarray(round_load, dtype=np.float64)
    mean = load.mean(axis=1)
    return np.where(mean > 0, load.std(axis=1) / np.where(mean > 0, mean, 1.0), 0.0)


def write_plots(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the five figures into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(results["strategies"])
    colours = {n: plt.get_cmap("tab10")(k % 10) for k, n in enumerate(names)}
    cfg = results["config"]
    split = "cross-device" if results.get("scenario") == "cross-device" else f"{cfg['partition']} partition"
    title = f"{cfg['dataset']}, {split}, {len(cfg['seeds'])} seed(s)"
    figures = (_accuracy_vs_round, _accuracy_vs_bytes, _accuracy_vs_time, _load_heatmaps, _load_cv_plot)
    return [figure(results, out, colours, title) for figure in figures]


def _accuracy_vs_round(results: dict[str, Any], out: Path, colours: dict[str, Any], title: str) -> Path:
    """Mean accuracy per round, min-max band over seeds, the target line."""
    import matplotlib.pyplot as plt

    strategies = results["strategies"]
    names = list(strategies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        acc = np.asarray(strategies[name]["accuracy"], dtype=np.float64)
        rounds = np.arange(1, acc.shape[1] + 1)
        ax.plot(rounds, acc.mean(0), label=name, color=colours[name])
        ax.fill_between(rounds, acc.min(0), acc.max(0), alpha=0.2, color=colours[name])
    if results.get("target_accuracy") is not None:
        ax.axhline(results["target_accuracy"], ls=":", color="grey", label="target")
    ax.set(xlabel="round", ylabel="test accuracy", title=f"Accuracy per round ({title})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out / "accuracy_vs_round.png")


def _accuracy_vs_bytes(results: dict[str, Any], out: Path, colours: dict[str, Any], title: str) -> Path:
    """Mean accuracy against the cumulative bytes moved (up + down)."""
    import matplotlib.pyplot as plt

    strategies = results["strategies"]
    names = list(strategies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        seeds = strategies[name]["per_seed"]
        acc = np.asarray(strategies[name]["accuracy"], dtype=np.float64).mean(0)
        moved = (
            np.asarray(seeds["bytes_up"], dtype=np.float64)
            + np.asarray(seeds["bytes_down"], dtype=np.float64)
        ).mean(0)
        ax.plot(moved / 1e6, acc, label=name, color=colours[name])
    ax.set(
        xlabel="MB moved (up + down, cumulative)", ylabel="test accuracy", title="Accuracy vs bytes"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out / "accuracy_vs_bytes.png")


def _accuracy_vs_time(results: dict[str, Any], out: Path, colours: dict[str, Any], title: str) -> Path:
    """Mean accuracy against the simulated clock (planning included in cross-device)."""
    import matplotlib.pyplot as plt

    strategies = results["strategies"]
    names = list(strategies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        acc = np.asarray(strategies[name]["accuracy"], dtype=np.float64).mean(0)
        clock = np.asarray(strategies[name]["per_seed"]["seconds"], dtype=np.float64).mean(0)
        ax.plot(clock / 60, acc, label=name, color=colours[name])
    if results.get("target_accuracy") is not None:
        ax.axhline(results["target_accuracy"], ls=":", color="grey", label="target")
    ax.set(
        xlabel="simulated minutes (planning included in cross-device)",
        ylabel="test accuracy",
        title="Accuracy vs simulated time",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out / "accuracy_vs_time.png")


def _load_heatmaps(results: dict[str, Any], out: Path, colours: dict[str, Any], title: str) -> Path:
    """Client x expert assignment counts of the first seed, clients grouped by domain."""
    import matplotlib.pyplot as plt

    strategies = results["strategies"]
    names = list(strategies)
    cfg = results["config"]
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        seeds = strategies[name]["per_seed"]
        load = np.asarray(seeds["expert_load"][0], dtype=np.float64)
        group = np.asarray(seeds["client_group"][0])
        order = np.argsort(group, kind="stable")
        im = ax.imshow(load[order], aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set(
            xlabel="expert",
            ylabel="client (grouped by domain)" if group.max() >= 0 else "client",
            title=f"{name} (seed {cfg['seeds'][0]})",
        )
        ax.set_xticks(range(load.shape[1]))
        step = max(1, len(order) // 20)
        ax.set_yticks(range(0, len(order), step))
        ax.set_yticklabels([str(c) for c in order[::step]], fontsize=7)
        if group.max() >= 0:
            edges = np.flatnonzero(np.diff(group[order])) + 0.5
            for y in edges:
                ax.axhline(y, color="white", lw=0.8)
        fig.colorbar(im, ax=ax, fraction=0.046, label="rounds assigned")
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("Client x expert assignment counts")
    return _save(fig, out / "expert_load_heatmaps.png")


def _load_cv_plot(results: dict[str, Any], out: Path, colours: dict[str, Any], title: str) -> Path:
    """Per round, the coefficient of variation of trainings per expert (mean over seeds)."""
    import matplotlib.pyplot as plt

    strategies = results["strategies"]
    names = list(strategies)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        cv = np.stack([load_cv(r) for r in strategies[name]["per_seed"]["round_load"]])
        ax.plot(np.arange(1, cv.shape[1] + 1), cv.mean(0), label=name, color=colours[name])
    ax.set(
        xlabel="round",
        ylabel="CV of trainings per expert",
        title="Expert-load imbalance (0 = balanced)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out / "expert_load_cv.png")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
