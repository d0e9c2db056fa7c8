"""How ``scheduler-v1.fas`` and ``scheduler-v1-problems.npz`` were made (kept for the record).

Run from the repository root at commit ab3fda0 (format version 1, before the scheduler became
a package): ``PYTHONPATH=src python tests/data/make_scheduler_v1.py``. Rerunning it later
rewrites the files with the code of the day, which defeats their purpose: don't.
"""

from __future__ import annotations

import numpy as np

import fedalign as fa


def main() -> None:
    s = fa.Scheduler(
        3, solver="greedy", seed=7, exploration_weight=0.1, expert_ids=["a", "b", "c"],
        expert_memory=[1.0, 2.0, 1.5], expert_bytes=[10.0, 20.0, 30.0], expert_cost=[1.0, 2.0, 0.5],
        expert_max_clients=[5, 6, 7], expert_min_clients=[0, 1, 0],
        samples_per_round=10, deadline_percentile=90, time_weight=0.2, usage_norm="mean",
        max_experts=2, profile_bounds=fa.ProfileBounds(latency=(0.0, 60.0)), profile_window=4,
        dropout_inflation=1.5,
    )
    rng = np.random.default_rng(7)
    for c in range(8):
        profile = fa.ClientProfile(compute=float(rng.uniform(5, 20)), memory=3.0,
                                   bandwidth_up=1e3, latency=0.1 * c, availability=0.9)
        s.register(c if c % 2 else f"s{c}", profile,
                   routing_shares=rng.uniform(0, 1, 3) if c < 4 else None)
    s.register("quiet")
    ids = s.client_ids
    for _ in range(3):
        plan = s.plan(ids[:7])
        for c, es in plan.assignment.items():
            if c != ids[0]:  # ids[0] stays silent; ids[3] drops out
                s.report(c, fa.Feedback(samples=10, rewards={e: float(rng.random()) for e in es},
                                        duration=float(rng.uniform(0.5, 3)), completed=c != ids[3]))
        s.end_round()
    plan = s.plan(ids[2:])  # saved mid-round, with one report in
    first = ids[2]
    s.report(first, fa.Feedback(samples=4, rewards={e: 0.7 for e in plan.assignment[first]},
                                duration=1.0))
    s.save("tests/data/scheduler-v1.fas")

    s = fa.Scheduler.load("tests/data/scheduler-v1.fas")
    out = {}
    for tag in ("open", "closed"):
        if tag == "closed":
            s.end_round()
        p, terms = s.build_problem(s.client_ids)
        for name in ("desirability", "max_experts", "min_experts", "client_memory", "train_time",
                     "deadline", "expert_max_clients"):
            out[f"{tag}.{name}"] = getattr(p, name)
        for k, v in terms.items():
            out[f"{tag}.terms.{k}"] = v
    np.savez("tests/data/scheduler-v1-problems.npz", **out)


if __name__ == "__main__":
    main()
