"""Generate ``examples/cohort.json``: a seeded 200-client x 16-expert alignment problem.

The cohort mimics one round of the scheduler (docs/scheduler.md): each client's fitness peaks on the experts of
its data domain, recent usage is skewed towards a few popular experts, and desirability is
``fitness - 0.3 * normalised usage``. Clients come in three device tiers (memory and the
number of experts they may train); experts have unequal sizes, so the memory row is a real
knapsack. Every expert must be trained by at least 4 clients and at most 40.

Usage::

    python examples/make_cohort.py                 # rewrites examples/cohort.json
    python examples/make_cohort.py --seed 1 --out /tmp/cohort.json
    fedalign solve examples/cohort.json --solver greedy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

N_CLIENTS = 200
N_EXPERTS = 16
N_DOMAINS = 4


def build_cohort(seed: int = 0) -> dict[str, Any]:
    """The cohort problem's JSON fields (AlignmentProblem keyword arguments)."""
    rng = np.random.default_rng(seed)
    domain = rng.integers(0, N_DOMAINS, N_CLIENTS)
    expert_domain = np.arange(N_EXPERTS) % N_DOMAINS
    fitness = np.where(domain[:, None] == expert_domain[None, :], 0.7, 0.2)
    fitness = np.clip(fitness + rng.normal(0.0, 0.1, (N_CLIENTS, N_EXPERTS)), 0.0, 1.0)
    usage = rng.gamma(1.0, 1.0, N_EXPERTS)
    usage_norm = usage / usage.max()
    desirability = np.round(fitness - 0.3 * usage_norm[None, :], 4)

    tier = rng.choice(3, N_CLIENTS, p=[0.5, 0.35, 0.15])  # phone, laptop, server
    client_memory = np.array([1.0, 2.5, 6.0])[tier] * rng.uniform(0.8, 1.2, N_CLIENTS)
    max_experts = np.array([1, 2, 4])[tier]
    expert_memory = np.round(rng.uniform(0.4, 1.6, N_EXPERTS), 2)
    return {
        "client_ids": [f"client-{i:03d}" for i in range(N_CLIENTS)],
        "expert_ids": [f"expert-{j:02d}" for j in range(N_EXPERTS)],
        "desirability": desirability.tolist(),
        "max_experts": max_experts.tolist(),
        "min_experts": 0,
        "expert_memory": expert_memory.tolist(),
        "client_memory": np.round(client_memory, 2).tolist(),
        "expert_min_clients": 4,
        "expert_max_clients": 40,
    }


def dumps(fields: dict[str, Any]) -> str:
    """JSON with one matrix row per line (readable diffs, modest size)."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            rows = ",\n    ".join(json.dumps(row) for row in value)
            parts.append(f'  "{key}": [\n    {rows}\n  ]')
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("cohort.json"))
    args = parser.parse_args()
    args.out.write_text(dumps(build_cohort(args.seed)), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
