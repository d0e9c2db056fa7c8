"""Does every solver honour ``time_limit``? Runtime against the limit, per solver, family and size.

Each solver runs once per (family, size) of :mod:`fedalign.bench.families` (seed 0) under
each ``--limits`` value; the run meets the contract when it returns (a checked solution, or
``InfeasibleError`` saying the limit was hit) within ``max(10 %, 0.2 s)`` of the limit. The
table shows the wall-clock seconds, the overrun beyond the limit and the outcome; the last
lines say PASS or FAIL per solver. Results also go to ``benchmarks/time-limits-results.json``.

A native call that ignores its own clock (HiGHS' MIP set-up, OR-Tools' min-cost flow) is
run in a worker process that is stopped at the limit (:mod:`fedalign.solvers._worker`),
so its overrun is the cost of stopping it.

Run::

    python benchmarks/time_limits.py                       # sizes up to 100,000 x 128
    python benchmarks/time_limits.py --sizes 1000x32,20000x64 --solvers greedy,lagrangian
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import fedalign as fa
from fedalign.bench import FAMILIES, make_instance

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "100x8,1000x32,20000x64,100000x128"
DEFAULT_FAMILIES = "uniform,deadline,no-knapsack"


def tolerance(limit: float) -> float:
    """How far past the limit a run may end: max(10 %, 0.2 s)."""
    return max(0.1 * limit, 0.2)


def run_one(problem: fa.AlignmentProblem, solver: str, limit: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        sol = fa.solve(problem, solver, time_limit=limit, seed=0)
        outcome = f"{sol.status}" + ("" if sol.gap is None else f", gap {sol.gap:.2%}")
    except fa.UnsupportedProblemError:
        return {"outcome": "unsupported"}
    except fa.InfeasibleError as exc:
        outcome = "InfeasibleError: " + str(exc)[:90]
    seconds = time.perf_counter() - t0
    over = seconds - limit
    return {
        "seconds": round(seconds, 3),
        "overrun": round(over, 3),
        "ok": over <= tolerance(limit),
        "outcome": outcome,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", default=",".join(s for s in fa.available_solvers()))
    ap.add_argument("--families", default=DEFAULT_FAMILIES)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated NxE")
    ap.add_argument("--limits", default="1.0", help="comma-separated seconds")
    ap.add_argument("--out", default=str(HERE / "time-limits-results.json"))
    args = ap.parse_args(argv)
    solvers = [s for s in args.solvers.split(",") if s]
    families = [f for f in args.families.split(",") if f]
    for f in families:
        if f not in FAMILIES:
            ap.error(f"--families: unknown family {f!r}")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    limits = [float(v) for v in args.limits.split(",") if v]
    # one-off imports are not the solvers' time
    tiny = make_instance("uniform", 30, 4, 0)
    for s in solvers:
        try:
            fa.solve(tiny, s, time_limit=5.0, seed=0)
        except fa.AlignmentError:
            pass
    rows = []
    print(f"load average {os.getloadavg()[0]:.2f}; a run passes when it ends within max(10 %, 0.2 s) of its limit")
    print(f"{'solver':<11} {'family':<12} {'size':>11} {'limit':>6} {'seconds':>8} {'overrun':>8}  outcome")
    for n, e in sizes:
        for family in families:
            problem = make_instance(family, n, e, 0)
            for limit in limits:
                for solver in solvers:
                    res = run_one(problem, solver, limit)
                    if res["outcome"] == "unsupported":
                        continue
                    row = {"solver": solver, "family": family, "size": f"{n}x{e}", "limit": limit,
                           "load": round(os.getloadavg()[0], 2), **res}
                    rows.append(row)
                    flag = "" if res["ok"] else "  OVERRUN"
                    print(f"{solver:<11} {family:<12} {row['size']:>11} {limit:>6.2f} {res['seconds']:>8.2f} "
                          f"{res['overrun']:>+8.2f}  {res['outcome']}{flag}", flush=True)
            del problem
    verdict = {}
    for solver in solvers:
        mine = [r for r in rows if r["solver"] == solver]
        worst = max((r["overrun"] for r in mine), default=0.0)
        verdict[solver] = {"runs": len(mine), "overruns": sum(not r["ok"] for r in mine), "worst_overrun": worst}
    print()
    for solver, v in verdict.items():
        status = "PASS" if v["overruns"] == 0 else "FAIL"
        print(f"{status}  {solver:<11} {v['runs']} runs, {v['overruns']} past the tolerance, worst overrun {v['worst_overrun']:+.2f} s")
    Path(args.out).write_text(json.dumps({
        "command": "python benchmarks/time_limits.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows, "verdict": verdict,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
