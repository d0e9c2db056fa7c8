"""Consecutive rounds at scale: cold vs warm-started solves, and the scheduler's own overhead.

A :class:`fedalign.Scheduler` with ``--registered`` clients (default 10^6) and ``--experts``
experts (default 128) plans ``--rounds`` rounds (default 20). Each round's cohort of
``--cohort`` clients (default 10^5) keeps ``--overlap`` of the previous cohort (default half)
and draws the rest from the registry. Clients differ in memory (1-4 experts' worth of very
unequal experts), compute, bandwidth, latency, samples and ``max_experts`` (1-4); the round has a
memory row, a deadline row (Oort-style: the 60th percentile of the time a client needs for a
full load) and per-expert caps at 1.15x the fair load. After each round every cohort client
reports a reward per trained expert (its hidden affinity plus noise), so the fitness the
desirability is made of drifts as the scheduler's EMA moves, and usage moves with the load.

Per round it measures

* **warm**: :meth:`Scheduler.plan` (the scheduler passes its previous round's solution as a
  warm start by default), solver seconds to ``--gap`` (default 0.5 %) proven gap;
* **cold**: the same round's problem (``plan.problem``) solved again without a warm start;
* **overhead**: plan seconds minus solver seconds (building the problem: desirability,
  profiles, rows; matching the warm start), and the seconds of the round's reports and
  ``end_round`` (not part of planning, shown apart).

It prints p50 / p95 over the rounds (the first round is cold in both columns, so it is left
out of the warm figures), the process's peak memory, and whether the marks hold:
warm p50 <= 1 s to the gap, cold p50 <= 3 s to the gap, peak memory <= 1.5 GB.

Run (one command; ``--registered 100000 --cohort 20000`` for a quicker, smaller check)::

    python benchmarks/rounds.py [--registered 1000000] [--cohort 100000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import fedalign as fa

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def make_scheduler(args: argparse.Namespace, rng: np.random.Generator) -> tuple[fa.Scheduler, np.ndarray]:
    """The scheduler with its registry, and each client's hidden affinity to each expert (low-rank)."""
    e = args.experts
    # Experts of unequal size: memory and bytes vary threefold.
    size = rng.uniform(0.5, 1.5, e)
    fair = 2.5 * args.cohort / e  # mean of max_experts 1-4, over the experts
    sched = fa.Scheduler(
        e,
        solver=args.solver,
        expert_memory=size,
        expert_bytes=(20e6 * size).tolist(),
        expert_cost=size.tolist(),
        deadline_percentile=60.0,
        max_experts=None,
        min_experts=1,
        expert_max_clients=int(np.ceil(1.15 * fair)),
        usage_weight=0.3,
        time_limit=args.time_limit,
        solver_options={"gap_tol": args.gap} if args.solver == "lagrangian" else None,
        seed=args.seed,
    )
    kinds = [
        fa.ClientProfile(memory=float(m), compute=float(c), bandwidth_up=float(b), bandwidth_down=4 * float(b),
                         latency=float(lat), max_experts=int(k), samples=float(s))
        for m, c, b, lat, k, s in zip(
            rng.uniform(1.0, 4.0, 64), rng.lognormal(np.log(300), 0.6, 64), rng.lognormal(np.log(2e6), 0.7, 64),
            rng.uniform(0.05, 0.5, 64), rng.integers(1, 5, 64), rng.integers(50, 400, 64), strict=True,
        )
    ]
    # Hidden affinity: a few latent domains per client, so fitness is structured, not noise.
    rank = 6
    client_f = rng.dirichlet(np.full(rank, 0.3), args.registered).astype(np.float32)
    expert_f = rng.dirichlet(np.full(rank, 0.3), e).astype(np.float32)
    chunk = 50_000
    for s in range(0, args.registered, chunk):
        ids = range(s, min(args.registered, s + chunk))
        affinity = client_f[s : s + len(ids)] @ expert_f.T
        shares = affinity / affinity.sum(axis=1, keepdims=True)
        profiles = [kinds[k] for k in rng.integers(0, len(kinds), len(ids))]
        sched.register_many(ids, profiles, routing_shares=np.clip(shares, 0.0, 1.0))
    return sched, (client_f, expert_f)


def report_round(sched: fa.Scheduler, plan: fa.Plan, hidden: Any, rng: np.random.Generator) -> None:
    """Every client reports: samples, a reward per trained expert (affinity + noise), duration."""
    client_f, expert_f = hidden
    ids = np.fromiter(plan.assignment.keys(), dtype=np.int64, count=len(plan.assignment))
    affinity = np.clip(3.0 * (client_f[ids] @ expert_f.T), 0.0, 1.0)
    noise = rng.normal(0.0, 0.05, affinity.shape)
    reward = np.clip(affinity + noise, 0.0, 1.0)
    for k, (cid, experts) in enumerate(plan.assignment.items()):
        sched.report(cid, fa.Feedback(samples=100, rewards={j: float(reward[k, j]) for j in experts}))
    sched.end_round()


def next_cohort(prev: np.ndarray | None, args: argparse.Namespace, rng: np.random.Generator) -> np.ndarray:
    """Keep ``overlap`` of the previous cohort, draw the rest from the rest of the registry."""
    if prev is None:
        return rng.choice(args.registered, size=args.cohort, replace=False)
    keep = rng.choice(prev, size=int(args.overlap * args.cohort), replace=False)
    mask = np.ones(args.registered, dtype=bool)
    mask[keep] = False
    new = rng.choice(np.flatnonzero(mask), size=args.cohort - keep.size, replace=False)
    return rng.permutation(np.concatenate([keep, new]))


def warm_reused(info: dict[str, Any]) -> str | None:
    """What the solver reused from the warm start (its ``info["warm_start"]["reused"]``), or None."""
    note = info.get("warm_start")
    reused = note.get("reused") if isinstance(note, dict) else None
    return None if reused in (None, "nothing") else str(reused)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registered", type=int, default=1_000_000)
    ap.add_argument("--cohort", type=int, default=100_000)
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--solver", default="lagrangian")
    ap.add_argument("--gap", type=float, default=0.005, help="target proven gap (default 0.5 %%)")
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per solve")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold solves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "rounds-results.json"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    started = load()
    t0 = time.perf_counter()
    sched, hidden = make_scheduler(args, rng)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"load {started}")
    print(f"registry: {args.registered:,} clients x {args.experts} experts in {time.perf_counter() - t0:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    records = []
    cohort = None
    for r in range(args.rounds):
        cohort = next_cohort(cohort, args, rng)
        before = load()
        t_plan, c_plan = time.perf_counter(), time.process_time()
        try:
            plan = sched.plan(cohort.tolist())
        except fa.InfeasibleError as exc:  # no plan within the limit: recorded, and the run stops
            records.append({"round": r, "failed": str(exc), "plan_seconds": time.perf_counter() - t_plan,
                            "load": [before, load()], "peak_rss_mb": peak_rss_mb()})
            print(json.dumps(records[-1]), flush=True)
            break
        t_plan, c_plan = time.perf_counter() - t_plan, time.process_time() - c_plan
        warm = plan.solution
        rec: dict[str, Any] = {
            "round": r,
            "warm_seconds": warm.runtime,
            "warm_gap": warm.gap,
            "warm_iterations": warm.info.get("iterations"),
            "warm_started": warm_reused(warm.info),
            "plan_seconds": t_plan,
            "plan_cpu_seconds": c_plan,
            "overhead_seconds": t_plan - warm.runtime,
        }
        if not args.no_cold:
            c0 = time.process_time()
            cold = fa.solve(plan.problem, args.solver, time_limit=args.time_limit, seed=r, gap_tol=args.gap)
            rec.update(cold_seconds=cold.runtime, cold_cpu_seconds=time.process_time() - c0,
                       cold_gap=cold.gap, cold_iterations=cold.info.get("iterations"))
            del cold
        t0 = time.perf_counter()
        report_round(sched, plan, hidden, rng)
        rec["report_seconds"] = time.perf_counter() - t0
        rec["load"] = [before, load()]
        rec["peak_rss_mb"] = peak_rss_mb()
        del plan, warm
        records.append(rec)
        print(json.dumps(rec), flush=True)

    failed = [r for r in records if "failed" in r]
    records_ok = [r for r in records if "failed" not in r]
    warm_s = [r["warm_seconds"] for r in records_ok[1:]] + [r["plan_seconds"] for r in failed]
    warm_ok = [r["warm_gap"] is not None and r["warm_gap"] <= args.gap for r in records_ok[1:]] + [False] * len(failed)
    cold_s = [r["cold_seconds"] for r in records if "cold_seconds" in r]
    cold_ok = [r["cold_gap"] is not None and r["cold_gap"] <= args.gap for r in records if "cold_seconds" in r]
    over = [r["overhead_seconds"] for r in records_ok]
    peak = peak_rss_mb()
    summary = {
        "warm_p50": pct(warm_s, 50), "warm_p95": pct(warm_s, 95), "warm_reached_gap": f"{sum(warm_ok)}/{len(warm_ok)}",
        "cold_p50": pct(cold_s, 50), "cold_p95": pct(cold_s, 95), "cold_reached_gap": f"{sum(cold_ok)}/{len(cold_ok)}",
        "overhead_p50": pct(over, 50), "overhead_p95": pct(over, 95),
        "report_p50": pct([r["report_seconds"] for r in records_ok], 50),
        "failed_rounds": len(failed),
        "peak_rss_mb": peak, "load_start": started, "load_end": load(),
    }
    marks = {
        "warm p50 <= 1 s to the gap": bool(warm_s) and summary["warm_p50"] <= 1.0 and all(warm_ok),
        "cold p50 <= 3 s to the gap": bool(cold_s) and summary["cold_p50"] <= 3.0 and all(cold_ok),
        "peak memory <= 1.5 GB": peak <= 1536,
    }
    print(json.dumps(summary, indent=1))
    for name, ok in marks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    payload = {"args": vars(args), "command": "python benchmarks/rounds.py " + " ".join(argv or sys.argv[1:]),
               "records": records, "summary": summary, "marks": marks}
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
