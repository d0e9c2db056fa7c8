"""The cross-device tables of docs/experiments.md that ``summary.md`` does not print.

Reads one ``fedalign simulate --scenario cross-device`` ``results.json`` and prints, as
markdown:

* **the curve**: per strategy, mean over seeds of the peak accuracy, the accuracy at rounds
  60 and 100 (where run), the final one and the mean of the last ten rounds;
* **the rounds**: per strategy, means over seeds of the clients trained per round, experts
  per trained client, the bytes moved (down and up) against the round's budget, the late and vanished
  clients over the run, and the share of rounds that lasted the whole deadline;
* **the goal**: time to the run's target per seed for each ``load-balanced/<solver>`` and
  ``balanced`` against the paper's top-k (``load-balanced``), as the harness counts it (the
  first round at or above the target) and sustained (the first round at which the mean of
  the last 10 rounds is), each with the ratio of the means over the seeds both strategies
  reach; and the final accuracies seed by seed.

    python benchmarks/cross_device_tables.py results/cross-device-full/results.json
    python benchmarks/cross_device_tables.py results/cross-device-quick5/results.json \
        --local results/cross-device-local/results.json     # global vs local gate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "load-balanced"
WINDOW = 10


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def curve_table(results: dict[str, Any]) -> str:
    """Peak, rounds 60 / 100, final and last-ten accuracy, means over seeds."""
    lines = ["| strategy | peak | round 60 | round 100 | final | last 10 rounds |", "|---|---|---|---|---|---|"]
    for name, e in results["strategies"].items():
        acc = np.asarray(e["accuracy"], dtype=float)  # seeds x rounds
        cells = [_pct(acc.max(axis=1).mean())]
        cells += [_pct(acc[:, r - 1].mean()) if acc.shape[1] >= r else "–" for r in (60, 100)]
        cells += [_pct(acc[:, -1].mean()), _pct(acc[:, -10:].mean())]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rounds_table(results: dict[str, Any]) -> str:
    """What the rounds looked like, from each strategy's per-round records."""
    deadline = float(results["config"]["deadline_seconds"])
    lines = [
        "| strategy | clients trained per round | experts per trained client | bytes / budget "
        "| late / vanished (per seed) | rounds that lasted the deadline |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in results["strategies"].items():
        recs = [r for seed in e["rounds"] for r in seed]
        seeds = len(e["rounds"])
        trained = sum(r["trained_clients"] for r in recs)
        trainings = sum(int(np.sum(t)) for t in e["per_seed"]["trained_load"])
        used = np.mean([(r["bytes_down"] + r["bytes_up"]) / r["byte_budget"] for r in recs if r["byte_budget"]])
        full = np.mean([r["round_seconds"] - r["planning_seconds"] >= deadline - 1e-6 for r in recs])
        late = sum(r["late"] for r in recs) / seeds
        vanished = sum(r["vanished"] for r in recs) / seeds
        lines.append(
            f"| {name} | {trained / len(recs):.1f} | {trainings / max(trained, 1):.2f} | {100 * used:.0f} % "
            f"| {late:.0f} / {vanished:.0f} | {100 * full:.0f} % |"
        )
    return "\n".join(lines)


def sustained_minutes(accuracy: list[float], seconds: list[float], target: float) -> float | None:
    """Simulated minutes until the mean of the last ``WINDOW`` rounds first reaches ``target``
    (None if it never does): a crossing one lucky round cannot make."""
    acc = np.asarray(accuracy, dtype=float)
    if acc.size < WINDOW:
        return None
    means = np.convolve(acc, np.ones(WINDOW) / WINDOW, mode="valid")  # rounds WINDOW.. end
    hit = np.flatnonzero(means >= target - 1e-12)
    return None if not hit.size else float(seconds[hit[0] + WINDOW - 1]) / 60


def _ratio(mine: list[float | None], base: list[float | None]) -> str:
    both = [(m, b) for m, b in zip(mine, base, strict=True) if m is not None and b is not None]
    return f"{np.mean([m for m, _ in both]) / np.mean([b for _, b in both]):.2f}×" if both else "–"


def _fmt(values: list[float | None]) -> str:
    return " / ".join("never" if v is None else f"{v:.0f}" for v in values)


def goal_table(results: dict[str, Any]) -> str:
    """Minutes to the target per seed against top-k's (first round at or above it, and first
    time the mean of the last ``WINDOW`` rounds is), the ratio of the means over the seeds
    both reach, and the final accuracies."""
    ref = results["strategies"][REFERENCE]
    seeds = ", ".join(map(str, ref["per_seed"]["seed"]))
    target = results["target_accuracy"]

    def first(e: dict[str, Any]) -> list[float | None]:
        return [None if t is None else t / 60 for t in e["time_to_target"]]

    def sustained(e: dict[str, Any]) -> list[float | None]:
        pairs = zip(e["accuracy"], e["per_seed"]["seconds"], strict=True)
        return [sustained_minutes(a, s, target) for a, s in pairs]

    lines = [
        f"| strategy | minutes to {100 * target:.0f} % (seeds {seeds}) | ratio | "
        f"minutes until the {WINDOW}-round mean is {100 * target:.0f} % | ratio | "
        "final accuracy per seed (%) |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in results["strategies"].items():
        if name != REFERENCE and not (name.startswith("load-balanced/") or name == "balanced"):
            continue
        finals = " / ".join(f"{100 * a:.1f}" for a in e["per_seed"]["final_accuracy"])
        cells = [_fmt(first(e)), _ratio(first(e), first(ref))]
        cells += [_fmt(sustained(e)), _ratio(sustained(e), sustained(ref)), finals]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gate_table(global_run: dict[str, Any], local_run: dict[str, Any]) -> str:
    """Each ``NAME@local`` strategy of ``local_run`` beside ``NAME`` of ``global_run`` on the
    seeds of the local run: final accuracy, mean accuracy over the rounds, clients trained
    per round, dropouts per seed (means and sample std over those seeds)."""
    lines = [
        "| strategy | gate | final accuracy (%) | mean accuracy over the rounds (%) "
        "| clients trained per round | dropouts |",
        "|---|---|---|---|---|---|",
    ]
    for local_name, e_local in local_run["strategies"].items():
        name, _, gate = local_name.partition("@")
        if gate != "local" or name not in global_run["strategies"]:
            continue
        e_global = global_run["strategies"][name]
        seeds = e_local["per_seed"]["seed"]
        rows = [e_global["per_seed"]["seed"].index(s) for s in seeds]
        for label, e, pick in (("global", e_global, rows), ("local", e_local, range(len(seeds)))):
            acc = np.asarray([e["accuracy"][i] for i in pick], dtype=float)
            recs = [r for i in pick for r in e["rounds"][i]]
            drops = [sum(r["dropouts"] for r in e["rounds"][i]) for i in pick]
            lines.append(
                f"| {name} | {label} | {100 * acc[:, -1].mean():.1f} ± {100 * acc[:, -1].std(ddof=1):.1f} "
                f"| {100 * acc.mean():.1f} | {np.mean([r['trained_clients'] for r in recs]):.1f} "
                f"| {np.mean(drops):.0f} ± {np.std(drops, ddof=1):.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a cross-device run")
    parser.add_argument(
        "--local", metavar="RESULTS", help="results.json of a --gate local run: print the gate table"
    )
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    if results.get("scenario") != "cross-device":
        parser.error(f"results: {args.results} is not a cross-device run")
    if args.local:
        print(gate_table(results, json.loads(Path(args.local).read_text())))
        return 0
    for title, table in (("The curve", curve_table), ("The rounds", rounds_table), ("The goal", goal_table)):
        print(f"## {title}\n\n{table(results)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
