"""Sparse, certified ``flow`` against OR-Tools min-cost flow over every allowed pair.

Builds one large count-only alignment problem (default 100,000 clients x 128 experts, each
client takes 1-4 experts, every expert capped near its fair share of the load, about 10 %
of pairs forbidden, desirability = a client's own taste plus a shared popularity so the
caps bind), then solves it twice with the ``flow`` solver: on the sparse candidate graph
(``dense=False``, the default at this size) and with ``dense=True`` (one OR-Tools
min-cost flow over every allowed pair).
Prints both wall-clock times, their ratio, the sparse solver's rounds and graph size, and
checks that both reach the same optimum.

``--load`` adds a soft per-expert load row (in-round load balancing): each expert's load
above 90 % of the fair share costs 0.05, 0.1, then 0.2 per client, which the network models
with parallel expert -> sink arcs. ``--sparse-only`` skips the dense solve.

Run::

    .venv/bin/python benchmarks/flow_scale.py [--clients 100000] [--experts 128] [--seed 0]
        [--load] [--sparse-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import fedalign as fa
from fedalign.solvers import get_solver


def make_problem(n_clients: int, n_experts: int, seed: int, load: bool = False) -> fa.AlignmentProblem:
    """A large count-only problem whose expert caps bind (and a soft load row with ``load``)."""
    rng = np.random.default_rng(seed)
    popularity = rng.gamma(2.0, 0.5, n_experts)
    taste = rng.random((n_clients, n_experts))
    desirability = taste + 0.5 * popularity[None, :] - 0.6
    max_experts = rng.integers(1, 5, n_clients)
    allowed = rng.random((n_clients, n_experts)) >= 0.10
    fair = max_experts.sum() / n_experts
    expert_max = np.full(n_experts, int(np.ceil(1.1 * fair)))
    rows = []
    if load:
        rows.append(fa.Row("load", "expert", 1.0, upper=np.floor(0.9 * fair), penalty=[0.05, 0.1, 0.2]))
    return fa.AlignmentProblem(
        desirability,
        max_experts=max_experts,
        min_experts=1,
        expert_max_clients=expert_max,
        allowed=allowed,
        rows=rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", action="store_true", help="add a soft per-expert load row")
    parser.add_argument("--sparse-only", action="store_true", help="skip the dense solve")
    args = parser.parse_args()

    problem = make_problem(args.clients, args.experts, args.seed, load=args.load)
    flow = get_solver("flow")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average {load}, "
        f"python {platform.python_version()}"
    )
    print(f"problem: {args.clients} clients x {args.experts} experts, "
          f"{int(problem.allowed.sum())} allowed pairs" + (", soft load row" if args.load else ""))

    t0 = time.perf_counter()
    sparse = flow.solve(problem, dense=False)
    t_sparse = time.perf_counter() - t0
    if args.sparse_only:
        print(f"sparse flow : {t_sparse:8.2f} s  objective {sparse.objective:.6f}  "
              f"rounds {sparse.info['rounds']}  pairs {sparse.info['candidate_pairs']}  "
              f"fell back to dense: {sparse.info['dense']}")
        return
    t0 = time.perf_counter()
    dense = flow.solve(problem, dense=True)
    t_dense = time.perf_counter() - t0

    tol = max(sparse.info["tolerance"], dense.info["tolerance"])
    print(f"sparse flow : {t_sparse:8.2f} s  objective {sparse.objective:.6f}  "
          f"rounds {sparse.info['rounds']}  pairs {sparse.info['candidate_pairs']}  "
          f"fell back to dense: {sparse.info['dense']}")
    print(f"dense flow  : {t_dense:8.2f} s  objective {dense.objective:.6f}  "
          f"pairs {dense.info['candidate_pairs']}")
    print(f"ratio sparse/dense: {t_sparse / t_dense:.3f}")
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    same = abs(sparse.objective - dense.objective) <= 2 * tol + 1e-9 * abs(dense.objective)
    print(f"same optimum (within {2 * tol:.2e}): {same}")


if __name__ == "__main__":
    main()
