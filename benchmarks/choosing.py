"""Which solver for which round: every solver on the problems a ``Scheduler`` builds.

For cohorts of 100, 1,000, 10,000 and 100,000 clients (16, 32, 64 and 128 experts) and
three mixes of rows, builds the round's problem with :meth:`fedalign.Scheduler.build_problem`
(the scheduler's defaults: fitness from a cold start, the usage term, the soft in-round load
row) and solves it with every solver that accepts it, under one time limit:

``counts``
    Clients take 1-4 experts; no memory or deadline (memory unknown): every row reduces to
    counts, so ``flow`` is exact.
``memory+deadline``
    Experts of three sizes (memory and compute), clients of three device tiers, a round
    deadline: per-client knapsack rows.
``+bytes``
    The same and a server byte budget per round (a ``total`` row over the bytes each pair
    moves, ``round_bytes`` at 60 % of what the cohort could move).

Per solver: the objective (penalties subtracted), the solver's own proven bound, the gap to
the best bound any solver proved on the instance, the runtime and the status. Prints a
table per size and writes ``choosing-results.json`` (and ``choosing.png``: gap vs runtime)
into ``--out``.

Run::

    .venv/bin/python benchmarks/choosing.py [--sizes 100,1000,10000,100000] [--time-limit 5]
        [--solvers auto,flow,lagrangian,greedy,topk,lp,highs,milp,cpsat] [--out bench-choosing]
        [--plot-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

import fedalign as fa
from fedalign.solvers import get_solver

EXPERTS = {100: 16, 1_000: 32, 10_000: 64, 100_000: 128}
MIXES = ("counts", "memory+deadline", "+bytes")
#: Exact model solvers are skipped above this many pairs (their model alone takes longer).
MODEL_PAIRS = {"milp": 70_000, "highs": 70_000, "cpsat": 70_000, "lp": 2_000_000}
#: Device tiers: share, memory (bytes), compute (samples/s).
TIERS = ((0.6, (60e6, 200e6), (50.0, 200.0)), (0.3, (200e6, 800e6), (200.0, 800.0)),
         (0.1, (800e6, 4e9), (800.0, 3000.0)))


def scheduler_round(n: int, mix: str, seed: int) -> fa.AlignmentProblem:
    """The problem a default ``Scheduler`` builds for a cohort of ``n`` (see the module doc)."""
    e = EXPERTS[n]
    rng = np.random.default_rng(seed)
    sizes = rng.choice([20e6, 50e6, 120e6], e)  # three expert sizes (bytes)
    kwargs: dict[str, Any] = {}
    if mix != "counts":
        kwargs.update(expert_memory=sizes, expert_bytes=sizes, expert_cost=sizes / 20e6,
                      deadline=60.0, samples_per_round=500)
    if mix == "+bytes":
        # a budget at 60 % of the bytes the cohort could move if every slot were used
        kwargs["round_bytes"] = 0.6 * n * 2.5 * 2 * float(sizes.mean())
    sched = fa.Scheduler(e, solver="auto", max_experts=4, seed=seed, **kwargs)
    tier = rng.choice(3, n, p=[t[0] for t in TIERS])
    profiles = []
    for t in tier:
        _, mem, comp = TIERS[t]
        profiles.append(fa.ClientProfile(
            memory=float(rng.uniform(*mem)) if mix != "counts" else None,
            compute=float(rng.uniform(*comp)),
            max_experts=int(rng.integers(1, 5)),
        ))
    routing = rng.dirichlet(np.full(e, 0.3), n)  # each client's gate routing: a few experts
    ids = list(range(n))
    sched.register_many(ids, profiles, routing_shares=routing)
    problem, _ = sched.build_problem(ids)
    return problem


def run_one(problem: fa.AlignmentProblem, solver: str, limit: float, seed: int) -> dict[str, Any]:
    """One solver's run: objective, bound, runtime and status (skipped/unsupported/failed)."""
    pairs = problem.n_clients * problem.n_experts
    if pairs > MODEL_PAIRS.get(solver, pairs):
        return {"status": "skipped", "note": f"{pairs} pairs > {MODEL_PAIRS[solver]}"}
    reason = get_solver(solver).unsupported_reason(problem)
    if reason is not None:
        return {"status": "unsupported", "note": reason}
    t0 = time.perf_counter()
    try:
        sol = fa.solve(problem, solver, time_limit=limit, seed=seed)
    except fa.AlignmentError as exc:
        return {"status": "failed", "runtime": time.perf_counter() - t0,
                "note": f"{type(exc).__name__}: {exc}"[:200]}
    out = {"status": sol.status, "runtime": time.perf_counter() - t0,
           "objective": sol.objective, "bound": sol.bound}
    if solver == "auto":
        out["chose"] = sol.info.get("auto", {}).get("chosen") or sol.info.get("auto", {}).get("solver")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000,100000")
    ap.add_argument("--time-limit", type=float, default=5.0)
    ap.add_argument("--solvers", default="auto,flow,lagrangian,greedy,topk,lp,highs,milp,cpsat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-choosing")
    ap.add_argument("--plot-only", action="store_true",
                    help="redraw choosing.png from --out's choosing-results.json")
    args = ap.parse_args()
    if args.plot_only:
        saved = json.loads((Path(args.out) / "choosing-results.json").read_text())
        _plot(saved["rows"], Path(args.out) / "choosing.png")
        return
    available = set(fa.available_solvers())
    solvers = [s for s in args.solvers.split(",") if s in available]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    print(f"# {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for n in (int(x) for x in args.sizes.split(",")):
        for mix in MIXES:
            problem = scheduler_round(n, mix, args.seed)
            runs = {s: run_one(problem, s, args.time_limit, args.seed) for s in solvers}
            bounds = [r["bound"] for r in runs.values() if r.get("bound") is not None]
            best = min(bounds) if bounds else max(
                (r["objective"] for r in runs.values() if "objective" in r), default=None)
            for s, r in runs.items():
                if "objective" in r and best is not None:
                    r["gap_to_best_bound"] = (best - r["objective"]) / max(1.0, abs(best))
                rows.append({"clients": n, "experts": EXPERTS[n], "mix": mix, "solver": s,
                             "load": os.getloadavg()[0], **r})
                print(_line(n, mix, s, r), flush=True)
    (out / "choosing-results.json").write_text(json.dumps(
        {"time_limit": args.time_limit, "seed": args.seed, "machine": platform.platform(),
         "cores": os.cpu_count(), "rows": rows}, indent=1))
    _plot(rows, out / "choosing.png")


def _line(n: int, mix: str, solver: str, r: dict[str, Any]) -> str:
    """One printed row of the table."""
    if "objective" not in r:
        return f"{n:>7} {mix:<16} {solver:<11} {r['status']:<11} {r.get('note', '')[:70]}"
    gap = r.get("gap_to_best_bound", float("nan"))
    chose = f" (chose {r['chose']})" if r.get("chose") else ""
    return (f"{n:>7} {mix:<16} {solver:<11} {r['status']:<11} objective {r['objective']:>12.2f}"
            f"  gap {100 * gap:7.3f} %  {r['runtime']:7.2f} s{chose}")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Gap to the best bound vs runtime, one panel per row mix (zero gaps drawn at 1e-5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MIXES), figsize=(15, 4.5), sharey=True)
    solvers = sorted({r["solver"] for r in rows})
    marks = dict(zip(solvers, "osD^v<>xP", strict=False))
    colours = {s: plt.get_cmap("tab10")(k % 10) for k, s in enumerate(solvers)}  # one per solver
    for ax, mix in zip(axes, MIXES, strict=True):
        for s in solvers:
            pts = [r for r in rows if r["mix"] == mix and r["solver"] == s and "objective" in r]
            if pts:
                ax.scatter([r["runtime"] for r in pts],
                           [max(r["gap_to_best_bound"], 1e-5) for r in pts],
                           marker=marks[s], color=colours[s], label=s)
                for r in pts:
                    ax.annotate(f"{r['clients']:,}", (r["runtime"], max(r["gap_to_best_bound"], 1e-5)),
                                fontsize=6, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(mix)
        ax.set_xlabel("runtime (s)")
        ax.axhline(1e-5, color="grey", lw=0.5, ls=":")
    axes[0].set_ylabel("gap to the best proven bound (0 drawn at 1e-5)")
    seen: dict[str, Any] = {}
    for ax in axes:  # every solver once (flow appears in the counts panel only)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    axes[-1].legend(list(seen.values()), list(seen), fontsize=7)
    fig.suptitle("Scheduler rounds: every solver (labels: cohort size)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
