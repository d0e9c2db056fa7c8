"""A federated MoE job on NVIDIA FLARE whose rounds fedalign plans; runs on the simulator.

    python job.py                                  # 3 sites, 3 rounds on the simulator
    python job.py --rounds 5 --fail site-2:1       # site-2 raises in round 1 (from 0)
    python job.py --export jobs/                   # write the job for `nvflare job submit`

Server: :class:`moe_controller.MoEController` (fedalign's ``FedAlignController`` with this
example's model and a central evaluation). Sites: ``moe_client.py`` under NVFlare's Client
API, one ``ScriptRunner`` per site with its data partition.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from moe_controller import MoEController
from nvflare.job_config.api import FedJob
from nvflare.job_config.script_runner import FrameworkType, ScriptRunner

HERE = Path(__file__).resolve().parent


def build_job(
    *,
    sites: int = 3,
    rounds: int = 3,
    seed: int = 0,
    n_experts: int = 3,
    max_experts: int = 1,
    expert_max_clients: int | None = None,
    profiles: dict[str, dict[str, Any]] | None = None,
    fail: dict[str, list[int]] | None = None,
    train_timeout: int = 600,
    summary_path: str | None = None,
) -> FedJob:
    """The job: ``site-1`` .. ``site-<sites>``, site ``site-<i>`` holding partition ``i - 1``.

    Parameters
    ----------
    sites, rounds, seed, n_experts
        Federation size, rounds, the seed of data, model and scheduler, experts.
    max_experts, expert_max_clients
        Experts per site and round (unless its profile says otherwise); sites per expert
        and round (None: the sites' expert slots divided evenly among the experts, rounded
        up).
    profiles : dict, optional
        Capacity per site, e.g. ``{"site-1": {"max-experts": 2}}``.
    fail : dict, optional
        Rounds (from 0) in which a site raises, e.g. ``{"site-2": [1]}``.
    train_timeout : int
        Seconds a site has per round.
    summary_path : str, optional
        Where the controller writes its JSON summary of every round.
    """
    names = [f"site-{i}" for i in range(1, sites + 1)]
    if expert_max_clients is None:
        # A balanced plan needs a cap per expert: with equal fitness (every first round)
        # nothing else stops the solver from giving one expert to everybody.
        slots = sum(int((profiles or {}).get(n, {}).get("max-experts", max_experts)) for n in names)
        expert_max_clients = math.ceil(slots / n_experts)
    settings = {"num-sites": sites, "n-experts": n_experts, "seed": seed}
    job = FedJob(name="nvflare-moe", min_clients=sites)
    job.set_app_packages(["fedalign"])  # installed on every site: not copied into the job
    job.to_server(
        MoEController(
            settings=settings,
            num_rounds=rounds,
            scheduler_args={
                "n_experts": n_experts,
                "solver": "flow",
                "usage_weight": 0.5,
                "max_experts": max_experts,
                "expert_max_clients": expert_max_clients,
                "seed": seed,
            },
            client_ids={name: i for i, name in enumerate(names)},  # the partition index
            profiles=profiles,
            train_config={"local-epochs": 1, "lr": 0.01, "batch-size": 32, "reward": "accuracy"},
            train_timeout=train_timeout,
            summary_path=summary_path,
            seed=seed,
            persistor_id="",  # the initial model comes from moe_task, see MoEController
        )
    )
    world_args = " ".join(f"--{k} {v}" for k, v in settings.items())
    for i, name in enumerate(names):
        failing = (fail or {}).get(name, [])
        extra = f" --fail-rounds {' '.join(map(str, failing))}" if failing else ""
        job.to(
            ScriptRunner(
                script=str(HERE / "moe_client.py"),
                script_args=f"{world_args} --partition {i}{extra}",
                framework=FrameworkType.NUMPY,  # the controller sends and expects numpy arrays
            ),
            name,
        )
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-experts", type=int, default=1)
    parser.add_argument("--expert-max-clients", type=int, default=None, help="default: balanced")
    parser.add_argument("--profiles", type=json.loads, default=None, help='JSON: {"site-1": {"max-experts": 2}}')
    parser.add_argument("--fail", action="append", default=[], metavar="SITE:ROUND", help="e.g. site-2:1")
    parser.add_argument("--summary", default=None, help="write the per-round JSON summary here")
    parser.add_argument("--workspace", default="/tmp/nvflare/nvflare-moe", help="simulator workspace")
    parser.add_argument("--export", default=None, metavar="DIR", help="export the job instead of running it")
    args = parser.parse_args()
    fail: dict[str, list[int]] = {}
    for item in args.fail:
        site, _, rnd = item.partition(":")
        fail.setdefault(site, []).append(int(rnd))
    job = build_job(
        sites=args.sites,
        rounds=args.rounds,
        seed=args.seed,
        max_experts=args.max_experts,
        expert_max_clients=args.expert_max_clients,
        profiles=args.profiles,
        fail=fail,
        summary_path=str(Path(args.summary).resolve()) if args.summary else None,
    )
    if args.export:
        job.export_job(args.export)
        print(f"exported to {Path(args.export) / 'nvflare-moe'}")
        return
    status = job.simulator_run(args.workspace)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
