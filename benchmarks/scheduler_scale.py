"""Scale check for fedalign.Scheduler: registry memory and per-round planning time.

Registers ``--clients`` clients (default 10^6) for ``--experts`` experts (default 64), then
runs ``--rounds`` full rounds (plan, a report from every cohort client, end_round) with a
cohort of ``--cohort`` clients (default 10^4) for each solver in ``--solvers``, and prints
the figures quoted in docs/scheduler.md.

Two problem shapes, so each solver gets one it handles:

* ``flow``: every expert the same memory, so the memory row reduces to a count;
* other solvers: expert memory varies across experts (a real knapsack row).

Clients have heterogeneous memory (1-4 experts' worth) and ``max_experts`` 1-3.

Usage::

    .venv/bin/python benchmarks/scheduler_scale.py                 # the documented run
    .venv/bin/python benchmarks/scheduler_scale.py --clients 100000 --rounds 2   # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fedalign as fa


def rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size now, in MB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def build(n: int, e: int, solver: str, uniform: bool, seed: int) -> tuple[fa.Scheduler, float]:
    rng = np.random.default_rng(seed)
    mem = np.ones(e) if uniform else rng.uniform(0.5, 1.5, e)
    sched = fa.Scheduler(e, solver=solver, expert_memory=mem, usage_weight=0.5, seed=seed,
                         max_experts=None)
    t0 = time.perf_counter()
    chunk = 10_000
    kinds = [fa.ClientProfile(memory=float(m), max_experts=k) for m in (1.0, 2.0, 4.0) for k in (1, 2, 3)]
    for s in range(0, n, chunk):
        ids = range(s, min(n, s + chunk))
        # cold-start fitness: a random routing share per expert, so desirabilities differ
        shares = rng.random((len(ids), e)) ** 8
        shares /= shares.sum(axis=1, keepdims=True)
        sched.register_many(ids, kinds[(s // chunk) % len(kinds)], routing_shares=shares)
    return sched, time.perf_counter() - t0


def state_bytes(sched: fa.Scheduler) -> int:
    return int(sum(a.nbytes for a in sched._state(copy=False).to_dict()["arrays"].values()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1_000_000)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--cohort", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--solvers", default="flow,lagrangian")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", action=argparse.BooleanOptionalAction, default=True,
                    help="also time save/load of the whole registry")
    args = ap.parse_args(argv)

    print(f"fedalign {fa.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    base = current_rss_mb()
    sched, reg_s = build(args.clients, args.experts, args.solvers.split(",")[0],
                         args.solvers.split(",")[0] == "flow", args.seed)
    print(
        f"registry: {args.clients} clients x {args.experts} experts: register_many {reg_s:.2f} s, "
        f"state arrays {state_bytes(sched) / 2**20:.0f} MiB, RSS +{current_rss_mb() - base:.0f} MiB "
        f"over the bare process (process peak so far {rss_mb():.0f} MiB)"
    )
    t0 = time.perf_counter()
    f = sched.fitness
    print(f"fitness property: {f.shape} {f.dtype}, {time.perf_counter() - t0:.2f} s")
    del f

    rng = np.random.default_rng(args.seed)
    for name in args.solvers.split(","):
        uniform = name == "flow"
        # same registry, another solver (solver and expert_memory feed no tracker: only the
        # settings change, validated again by replace)
        changes: dict[str, object] = {"solver": name}
        if uniform != (args.solvers.split(",")[0] == "flow"):
            mem = np.ones(args.experts) if uniform else rng.uniform(0.5, 1.5, args.experts)
            changes["expert_memory"] = mem.tolist()
        sched._settings = dataclasses.replace(sched._settings, **changes)
        plans, reports = [], []
        for _ in range(args.rounds):
            cohort = rng.choice(args.clients, size=args.cohort, replace=False).tolist()
            t0 = time.perf_counter()
            plan = sched.plan(cohort)
            plans.append((time.perf_counter() - t0, plan.solution.runtime))
            t0 = time.perf_counter()
            for c, experts in plan.assignment.items():
                sched.report(c, fa.Feedback(samples=32, rewards={e: float(rng.random()) for e in experts}))
            sched.end_round()
            reports.append(time.perf_counter() - t0)
            gap = plan.solution.gap
            print(
                f"  {name:<11} round {plan.round}: plan {plans[-1][0]:.2f} s (solver {plans[-1][1]:.2f} s), "
                f"objective {plan.solution.objective:.1f}, gap {'n/a' if gap is None else f'{gap:.2%}'}, "
                f"{sum(len(v) for v in plan.assignment.values())} pairs; "
                f"{args.cohort} reports + end_round {reports[-1]:.2f} s"
            )
        med = float(np.median([p[0] for p in plans]))
        print(f"{name}: median plan time {med:.2f} s for a cohort of {args.cohort}")
    if args.save:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "scheduler.fas"
            t0 = time.perf_counter()
            sched.save(path)
            t_save = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = fa.Scheduler.load(path)
            t_load = time.perf_counter() - t0
            print(
                f"save {t_save:.2f} s, load {t_load:.2f} s, file {path.stat().st_size / 2**20:.0f} MiB, "
                f"same plan after load: {again.plan(cohort).assignment == sched.plan(cohort).assignment}"
            )
    print(f"process peak RSS {rss_mb():.0f} MiB (includes the fitness copy and save/load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
