"""Issue 3's speed and quality targets, each measured beside its anchor in the same run.

    python benchmarks/targets.py                 # targets A-C, prints a table
    python benchmarks/targets.py --only ORLIB    # the OR-Library GAP runs (about 30 minutes)
    python benchmarks/targets.py --only B,C      # some of them
    python benchmarks/targets.py --highs B       # (re)compute the cached HiGHS optimum of B

Targets (instances from :mod:`fedalign.bench.families`, seed 0):

A  no knapsack rows, 100,000 x 128, 1-4 experts, caps, ~10 % forbidden pairs
   (``no-knapsack``): ``flow`` exact in <= 0.25x the time of OR-Tools' min-cost flow over
   every allowed pair (the dense anchor is built here, from arrays).
B  memory knapsack, 1,000 x 64, 1-4 experts, caps (``uniform``): ``lagrangian`` with a 1 s
   limit reaches >= 99 % of the optimum HiGHS proves; naive per-client greedy (``topk``)
   beside it. HiGHS needs minutes, so its result is cached in
   ``benchmarks/highs-optimum-<family>-<n>x<E>-s<seed>.json`` (rerun with ``--highs``).
C  memory knapsack, 100,000 x 128 (``uniform``): ``lagrangian`` with a 10 s limit within 2 %
   of its own bound and >= 1.10x the objective of ``topk``.
B-deadline, C-deadline: the same on the ``deadline`` family.
ORLIB  the OR-Library GAP files: ``auto`` (and milp, cpsat, lagrangian beside it) against the
   published values, 30 s per instance: every proven optimum of gap1-gap12 and gapa-gapc,
   and within 0.2 % of the best known on gapd.

Every solver is called once on a tiny instance first, so one-off imports (scipy.optimize,
OR-Tools) are not charged to the timed run; the load average before and after each
measurement is recorded, because the machine may be shared. Results also go to
``benchmarks/targets-results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import fedalign as fa
from fedalign.bench import make_instance

HERE = Path(__file__).resolve().parent


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _warm_up() -> None:
    for family in ("uniform", "deadline", "no-knapsack"):
        tiny = make_instance(family, 30, 4, 0)
        for solver in ("topk", "lagrangian", "milp"):
            fa.solve(tiny, solver, time_limit=2, seed=0)
    fa.solve(make_instance("no-knapsack", 30, 4, 0), "flow")
    _ortools_dense_flow(make_instance("no-knapsack", 30, 4, 0))


# --------------------------------------------------------------------------- anchors


def _ortools_dense_flow(problem: fa.AlignmentProblem, scale: float = 1e6) -> tuple[float, float]:
    """OR-Tools min-cost flow over every allowed pair; returns (objective, seconds).

    Graph: source -> client (two arcs: ``min_experts`` seats at a large negative cost, so
    minimums are met first, and ``max - min`` more at cost 0), client -> expert for every
    allowed pair (capacity 1, cost ``-round(d * scale)``), expert -> sink (capacity
    ``expert_max_clients``), and a source -> sink bypass for unused supply. Costs are
    int64, so the desirability is scaled and rounded here (the library's ``flow`` does the
    same). Valid for the target's instances: non-negative desirability, no expert minimums.
    """
    from ortools.graph.python import min_cost_flow

    t0 = time.perf_counter()
    n, e = problem.shape
    source, sink = n + e, n + e + 1
    rows, cols = np.nonzero(problem.fits)
    d = problem.desirability[rows, cols]
    big = int(np.rint(scale)) * (e + 2)
    tails = np.concatenate([np.full(n, source), np.full(n, source), rows, n + np.arange(e), [source]])
    heads = np.concatenate([np.arange(n), np.arange(n), n + cols, np.full(e, sink), [sink]])
    supply_total = int(problem.max_experts.sum())
    caps = np.concatenate(
        [
            problem.min_experts,
            problem.max_experts - problem.min_experts,
            np.ones(rows.size, dtype=np.int64),
            problem.expert_max_clients,
            [supply_total],
        ]
    ).astype(np.int64)
    costs = np.concatenate(
        [np.full(n, -big), np.zeros(n), -np.rint(d * scale), np.zeros(e), [0]]
    ).astype(np.int64)
    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int64), heads.astype(np.int64), caps, costs
    )
    supplies = np.zeros(n + e + 2, dtype=np.int64)
    supplies[source] = supply_total
    supplies[sink] = -supply_total
    smcf.set_nodes_supplies(np.arange(n + e + 2, dtype=np.int64), supplies)
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"OR-Tools min-cost flow: status {status}")
    flows = smcf.flows(arcs)
    pair_flow = flows[2 * n : 2 * n + rows.size] > 0
    x = np.zeros((n, e), dtype=bool)
    x[rows[pair_flow], cols[pair_flow]] = True
    seconds = time.perf_counter() - t0
    if fa.check(problem, x):
        raise RuntimeError("OR-Tools min-cost flow: the anchor's assignment is infeasible")
    return problem.objective(x), seconds


def _highs_optimum(family: str, n: int, e: int, seed: int, time_limit: float) -> dict[str, Any]:
    """Solve one instance with HiGHS (scipy.optimize.milp) and describe the result."""
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint, milp

    problem = make_instance(family, n, e, seed)
    pairs = n * e
    rows_client = sp.kron(sp.eye(n), np.ones((1, e)), format="csr")
    rows_expert = sp.kron(np.ones((1, n)), sp.eye(e), format="csr")
    cons = [
        LinearConstraint(rows_client, problem.min_experts, problem.max_experts),
        LinearConstraint(rows_expert, problem.expert_min_clients, problem.expert_max_clients),
    ]
    if problem.expert_memory is not None and problem.client_memory is not None:
        mem = sp.kron(sp.eye(n), problem.expert_memory[None, :], format="csr")
        cons.append(LinearConstraint(mem, -np.inf, problem.client_memory))
    if problem.train_time is not None and problem.deadline is not None:
        tt = sp.csr_matrix(
            (problem.train_time.ravel(), (np.repeat(np.arange(n), e), np.arange(pairs))),
            shape=(n, pairs),
        )
        cons.append(LinearConstraint(tt, -np.inf, problem.deadline))
    t0 = time.perf_counter()
    res = milp(
        -problem.desirability.ravel(),
        constraints=cons,
        integrality=np.ones(pairs),
        bounds=Bounds(0, problem.fits.ravel().astype(float)),
        options={"time_limit": time_limit, "mip_rel_gap": 1e-9},
    )
    seconds = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"HiGHS found no solution: {res.message}")
    x = np.round(res.x).astype(bool).reshape(n, e)
    return {
        "family": family,
        "n_clients": n,
        "n_experts": e,
        "seed": seed,
        "objective": problem.objective(x),
        "dual_bound": -float(res.mip_dual_bound) if res.mip_dual_bound is not None else None,
        "proven_optimal": res.status == 0,
        "message": res.message,
        "seconds": seconds,
        "time_limit": time_limit,
        "feasible": not fa.check(problem, x),
        "machine": _machine(),
        "load_after": _load(),
        "command": f"python benchmarks/targets.py --highs {family}",
    }


def _cache_path(family: str, n: int, e: int, seed: int) -> Path:
    return HERE / f"highs-optimum-{family}-{n}x{e}-s{seed}.json"


def cached_optimum(family: str, n: int, e: int, seed: int) -> dict[str, Any] | None:
    path = _cache_path(family, n, e, seed)
    return json.loads(path.read_text()) if path.exists() else None


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


# --------------------------------------------------------------------------- targets


def target_a() -> dict[str, Any]:
    problem = make_instance("no-knapsack", 100_000, 128, 0)
    before = _load()
    anchor_obj, anchor_s = _ortools_dense_flow(problem)
    sol = fa.solve(problem, "flow")
    floor = _flow_floor(problem)
    return {
        "target": "A",
        "instance": "no-knapsack 100000x128 s0",
        "flow_objective": sol.objective,
        "flow_seconds": sol.runtime,
        "flow_status": sol.status,
        "anchor_objective": anchor_obj,
        "anchor_seconds": anchor_s,
        "time_ratio": sol.runtime / anchor_s,
        "objective_matches": abs(sol.objective - anchor_obj) <= 1e-6 * max(1.0, abs(anchor_obj)) + 1e-3,
        "met": sol.status == "optimal" and sol.runtime <= 0.25 * anchor_s,
        # issue 14's mark for the exact flow, and the floor beside it: what any exact
        # solver pays to look at every pair once
        "met_issue14": sol.status == "optimal" and sol.runtime <= 0.12 * anchor_s,
        **floor,
        "floor_ratio": floor["floor_argpartition_seconds"] / anchor_s,
        "load_before": before,
        "load_after": _load(),
    }


def _flow_floor(problem: fa.AlignmentProblem) -> dict[str, float]:
    """Best of three: one read of the desirability matrix (a max over each row) and one
    ``argpartition`` of every row for the largest ``max_experts`` (each client's best
    experts, what ``topk`` does): the floor under any exact solver at this size."""
    d = problem.desirability
    k = max(1, int(problem.max_experts.max()))
    reads, parts = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        d.max(axis=1)
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.argpartition(d, d.shape[1] - k, axis=1)
        parts.append(time.perf_counter() - t0)
    return {"floor_read_seconds": min(reads), "floor_argpartition_seconds": min(parts)}


def target_b(family: str) -> dict[str, Any]:
    n, e, seed = 1_000, 64, 0
    problem = make_instance(family, n, e, seed)
    optimum = cached_optimum(family, n, e, seed)
    before = _load()
    lag = fa.solve(problem, "lagrangian", time_limit=1.0, seed=0)
    topk = fa.solve(problem, "topk")
    out: dict[str, Any] = {
        "target": "B" if family == "uniform" else f"B-{family}",
        "instance": f"{family} {n}x{e} s{seed}",
        "lagrangian_objective": lag.objective,
        "lagrangian_bound": lag.bound,
        "lagrangian_seconds": lag.runtime,
        "topk_objective": topk.objective,
        "topk_seconds": topk.runtime,
        "load_before": before,
        "load_after": _load(),
    }
    # The optimum lies between the best objective known and the smallest proven bound.
    upper = lag.bound
    if optimum is not None:
        out["highs"] = {k: optimum[k] for k in ("objective", "dual_bound", "proven_optimal", "seconds")}
        if optimum.get("dual_bound") is not None:
            upper = min(upper, optimum["dual_bound"])
        if optimum["proven_optimal"]:
            upper = min(upper, optimum["objective"])
    best = max(lag.objective, optimum["objective"] if optimum else -np.inf)
    out["optimum_interval"] = [best, upper]
    out["lagrangian_share_of_optimum_at_least"] = lag.objective / upper
    out["topk_share_of_optimum_at_most"] = topk.objective / best
    out["met"] = lag.objective >= 0.99 * upper and lag.runtime <= 1.0 + 0.05
    return out


def target_c(family: str) -> dict[str, Any]:
    n, e, seed = 100_000, 128, 0
    problem = make_instance(family, n, e, seed)
    before = _load()
    lag = fa.solve(problem, "lagrangian", time_limit=10.0, seed=0)
    mid = _load()
    topk = fa.solve(problem, "topk")
    return {
        "target": "C" if family == "uniform" else f"C-{family}",
        "instance": f"{family} {n}x{e} s{seed}",
        "lagrangian_objective": lag.objective,
        "lagrangian_bound": lag.bound,
        "lagrangian_gap": lag.gap,
        "lagrangian_seconds": lag.runtime,
        "lagrangian_iterations": lag.info.get("iterations"),
        "topk_objective": topk.objective,
        "topk_seconds": topk.runtime,
        "ratio_to_topk": lag.objective / topk.objective,
        "met": lag.gap is not None and lag.gap <= 0.02 and lag.runtime <= 10.5
        and lag.objective >= 1.10 * topk.objective,
        "load_before": before,
        "load_mid": mid,
        "load_after": _load(),
    }


def target_orlib(
    files: tuple[str, ...] = ("gap1", "gap2", "gap3", "gap4", "gap5", "gap6", "gap7", "gap8",
                              "gap9", "gap10", "gap11", "gap12", "gapa", "gapb", "gapc", "gapd"),
    solvers: tuple[str, ...] = ("auto", "milp", "cpsat", "lagrangian"),
    time_limit: float = 30.0,
) -> dict[str, Any]:
    """OR-Library GAP: per file and solver, how many published values are reached and the
    mean / max relative gap to them (costs for gapa-gapd), each run under ``time_limit``."""
    from fedalign.bench.orlib import bundled_dir, find_files, load_file

    orlib = bundled_dir()
    before = _load()
    per_file: dict[str, Any] = {}
    for path in find_files(orlib):
        if path.stem not in files:
            continue
        rows = {}
        for solver in solvers:
            gaps, hits, secs, proven = [], 0, [], 0
            for gap in load_file(path):
                try:
                    sol = fa.solve(gap.problem, solver, time_limit=time_limit, seed=0)
                except fa.AlignmentError:
                    gaps.append(None)
                    continue
                value = gap.reported(sol.objective)
                rel = abs(value - gap.best_known) / abs(gap.best_known)
                gaps.append(rel)
                hits += rel < 1e-9
                proven += sol.status == "optimal"
                secs.append(sol.runtime)
            found = [g for g in gaps if g is not None]
            rows[solver] = {
                "instances": len(gaps),
                "at_best_known": hits,
                "proven_optimal": proven,
                "failed": len(gaps) - len(found),
                "mean_gap": float(np.mean(found)) if found else None,
                "max_gap": float(np.max(found)) if found else None,
                "mean_seconds": float(np.mean(secs)) if secs else None,
                "max_seconds": float(np.max(secs)) if secs else None,
            }
            print(path.stem, solver, rows[solver], flush=True)
        per_file[path.stem] = rows
    return {
        "target": "ORLIB",
        "time_limit": time_limit,
        "per_file": per_file,
        "met": None if "auto" not in solvers else all(
            per_file[f]["auto"]["at_best_known"] == per_file[f]["auto"]["instances"]
            for f in per_file if f != "gapd"
        ) and ("gapd" not in per_file or (per_file["gapd"]["auto"]["mean_gap"] or 1) <= 0.002),
        "load_before": before,
        "load_after": _load(),
    }


TARGETS = {
    "A": target_a,
    "B": lambda: target_b("uniform"),
    "C": lambda: target_c("uniform"),
    "B-deadline": lambda: target_b("deadline"),
    "C-deadline": lambda: target_c("deadline"),
    "ORLIB": target_orlib,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(t for t in TARGETS if t != "ORLIB"),
        help="comma-separated targets (default: all but ORLIB, which takes about 30 minutes)",
    )
    parser.add_argument(
        "--highs", default=None, metavar="FAMILY",
        help="compute and cache HiGHS's optimum of target B's instance of FAMILY, then exit",
    )
    parser.add_argument("--highs-time-limit", type=float, default=1800.0, metavar="SEC")
    parser.add_argument("--out", default=str(HERE / "targets-results.json"))
    args = parser.parse_args(argv)
    if args.highs:
        family = "uniform" if args.highs == "B" else args.highs
        result = _highs_optimum(family, 1_000, 64, 0, args.highs_time_limit)
        path = _cache_path(family, 1_000, 64, 0)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return 0
    wanted = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown:
        parser.error(f"--only: unknown target {unknown[0]!r}; choose from {list(TARGETS)}")
    _warm_up()
    results = []
    for name in wanted:
        res = TARGETS[name]()
        results.append(res)
        print(json.dumps(res, indent=1), flush=True)
    payload = {
        "machine": _machine(),
        "command": "python benchmarks/targets.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print("\ntarget        met   summary")
    for r in results:
        print(f"{r['target']:<13} {str(r['met']):<5} {_summary(r)}")
    return 0


def _summary(r: dict[str, Any]) -> str:
    if r["target"] == "ORLIB":
        parts = []
        for f, rows in r["per_file"].items():
            a = rows.get("auto", {})
            parts.append(f"{f}: auto {a.get('at_best_known')}/{a.get('instances')}")
        return "; ".join(parts)
    if r["target"] == "A":
        return (
            f"flow {r['flow_seconds']:.2f}s vs OR-Tools dense {r['anchor_seconds']:.2f}s "
            f"(ratio {r['time_ratio']:.2f}), objectives match: {r['objective_matches']}; floor: "
            f"one read {r['floor_read_seconds']:.2f}s, argpartition {r['floor_argpartition_seconds']:.2f}s "
            f"(ratio {r['floor_ratio']:.2f}); issue 14's <= 0.12 met: {r['met_issue14']}"
        )
    if r["target"].startswith("B"):
        return (
            f"lagrangian {r['lagrangian_objective']:.1f} in {r['lagrangian_seconds']:.2f}s = "
            f">= {r['lagrangian_share_of_optimum_at_least']:.2%} of optimum; topk <= "
            f"{r['topk_share_of_optimum_at_most']:.2%}"
        )
    return (
        f"lagrangian gap {r['lagrangian_gap']:.2%} in {r['lagrangian_seconds']:.2f}s, "
        f"{r['ratio_to_topk']:.3f}x topk"
    )


if __name__ == "__main__":
    sys.exit(main())
