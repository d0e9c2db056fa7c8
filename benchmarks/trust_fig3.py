"""Attacks, defenses, the fairness floor and reward privacy on the fig3 quick scenario.

Runs ``load-balanced/flow`` on the quick digits scenario (``fedalign simulate --quick``)
under every scenario below, for each seed, and writes one JSON summary (final accuracy per
seed and its mean, the threat figures of ``results.json``) and a bar plot. Each scenario is
what one ``fedalign simulate`` command runs (the command is in the JSON); ``capacity-lie``
is measured twice, in the quick scenario (one expert per client, as fig3) and with the
device's memory alone deciding (``max_experts=None``, not a CLI flag), where a liar can be
given more experts than its device holds.

Run::

    nice -n 10 .venv/bin/python benchmarks/trust_fig3.py [--seeds 5] [--first-seed 0]
        [--rounds 40] [--only "NAME;..."] [--privacy] [--out benchmarks/trust-results.json]
        [--plot docs/img/trust_fig3.png] [--replot] [--table] [--jobs 2]

``--privacy`` runs only the privacy arms (every scenario with ``ldp`` in its name) and
their noise-free baselines, into ``benchmarks/trust-privacy-results.json`` and
``docs/img/trust_privacy.png`` unless ``--out`` / ``--plot`` say otherwise; ``--first-seed``
shifts the seeds (e.g. 5 for held-out seeds 5-9).
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

from fedalign.sim.config import preset
from fedalign.sim.experiments import run_experiment
from fedalign.sim.threats import ATTACKS, ThreatConfig

STRATEGY = "load-balanced/flow"
SHARE = 0.2


def scenarios() -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """``(name, ThreatConfig arguments, SimConfig changes, CLI flags)`` of every scenario."""
    out: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
        ("clean", {"audit": True}, {}, "--audit"),
        ("clean + all", {"defenses": "all"}, {}, "--defense all"),
    ]
    for a in ATTACKS:
        flags = f"--attack {a} --attackers {SHARE}"
        out.append((a, {"attack": a, "attackers": SHARE}, {}, flags))
        out.append(
            (
                f"{a} + all",
                {"attack": a, "attackers": SHARE, "defenses": "all"},
                {},
                flags + " --defense all",
            )
        )
    out += [
        (
            "reward-inflation + trust,reward-check",
            {"attack": "reward-inflation", "attackers": SHARE, "defenses": "trust,reward-check"},
            {},
            f"--attack reward-inflation --attackers {SHARE} --defense trust,reward-check",
        ),
        ("max_idle_rounds=5", {"max_idle_rounds": 5}, {}, "--max-idle-rounds 5"),
        ("ldp eps=1", {"ldp_epsilon": 1.0, "audit": True}, {}, "--ldp-epsilon 1 --audit"),
        (
            "ldp eps=1 duchi",
            {"ldp_epsilon": 1.0, "ldp_mechanism": "duchi", "audit": True},
            {},
            "--ldp-epsilon 1 --ldp-mechanism duchi --audit",
        ),
        ("ldp eps=2", {"ldp_epsilon": 2.0, "audit": True}, {}, "--ldp-epsilon 2 --audit"),
        (
            "ldp eps=2 duchi",
            {"ldp_epsilon": 2.0, "ldp_mechanism": "duchi", "audit": True},
            {},
            "--ldp-epsilon 2 --ldp-mechanism duchi --audit",
        ),
        ("ldp eps=4", {"ldp_epsilon": 4.0, "audit": True}, {}, "--ldp-epsilon 4 --audit"),
        *(
            (
                f"ldp eps={eps:g} best-expert",
                {"ldp_epsilon": eps, "ldp_mechanism": "best-expert", "audit": True},
                {},
                f"--ldp-epsilon {eps:g} --ldp-mechanism best-expert --audit",
            )
            # ε = 50 replaces the true best expert with probability ~6e-22: the same
            # report and downloads without the noise, to tell the two apart
            for eps in (0.5, 1.0, 2.0, 50.0)
        ),
        ("clean, rounds=80", {"audit": True}, {"rounds": 80}, "--rounds 80 --audit"),
        (
            "ldp eps=1, rounds=80",
            {"ldp_epsilon": 1.0, "audit": True},
            {"rounds": 80},
            "--ldp-epsilon 1 --rounds 80 --audit",
        ),
        (
            "exploration=1",
            {"exploration_weight": 1.0, "audit": True},
            {},
            "--exploration-weight 1 --audit",
        ),
        (
            "ldp eps=1, exploration=1",
            {"ldp_epsilon": 1.0, "exploration_weight": 1.0, "audit": True},
            {},
            "--ldp-epsilon 1 --exploration-weight 1 --audit",
        ),
        ("clean, memory caps", {}, {"max_experts": None}, "(max_experts=None)"),
        (
            "capacity-lie, memory caps",
            {"attack": "capacity-lie", "attackers": SHARE},
            {"max_experts": None},
            f"--attack capacity-lie --attackers {SHARE} (max_experts=None)",
        ),
        (
            "capacity-lie + all, memory caps",
            {"attack": "capacity-lie", "attackers": SHARE, "defenses": "all"},
            {"max_experts": None},
            f"--attack capacity-lie --attackers {SHARE} --defense all (max_experts=None)",
        ),
    ]
    return out


def privacy_scenarios() -> set[str]:
    """``--privacy``: the ldp scenarios and the noise-free runs they are compared with."""
    names = {name for name, *_ in scenarios()}
    ldp = {n for n in names if "ldp" in n}
    suffixes = {n.rsplit(", ", 1)[-1] for n in ldp if ", " in n}
    return ldp | {"clean"} | {f"clean, {x}" for x in suffixes if f"clean, {x}" in names} | (
        {"exploration=1"} & names
    )


PRIVACY = privacy_scenarios()

KEEP = (
    "attack", "attackers", "defense", "jain_index", "jain_index_overall", "idle_violations",
    "screened", "screened_attackers", "bounded", "leakage", "epsilon_spent", "over_assigned_rounds", "last_over_assigned_round",
)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    p.add_argument("--only", default=None, help="scenario names separated by semicolons")
    p.add_argument("--jobs", type=int, default=1, help="seeds in parallel worker processes")
    p.add_argument(
        "--privacy", action="store_true",
        help="only the ldp scenarios and their noise-free baselines, merged into --out",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="default benchmarks/trust-results.json")
    p.add_argument("--plot", default=None, help="default docs/img/trust_fig3.png")
    p.add_argument("--replot", action="store_true", help="only plot the JSON of --out")
    p.add_argument("--table", action="store_true", help="only print the JSON of --out as markdown")
    args = p.parse_args()
    stem = "trust-privacy" if args.privacy else "trust"
    args.out = args.out or f"benchmarks/{stem}-results.json"
    args.plot = args.plot or ("docs/img/trust_privacy.png" if args.privacy else "docs/img/trust_fig3.png")
    if args.replot:
        plot(json.loads(Path(args.out).read_text())["scenarios"], args.plot)
        return
    if args.table:
        print(table(json.loads(Path(args.out).read_text())["scenarios"]))
        return
    wanted = None if args.only is None else {s.strip() for s in args.only.split(";")}
    if args.privacy:
        wanted = (wanted or set()) | PRIVACY
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    rows: dict[str, Any] = {}
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (2-core CI machine, shared with other jobs)",
        "seeds": seeds,
        "strategy": STRATEGY,
        "scenarios": rows,
    }
    for name, threat, changes, flags in scenarios():
        if wanted is not None and name not in wanted:
            continue
        cfg = preset("quick", **changes, **({} if args.rounds is None else {"rounds": args.rounds}))
        start = time.perf_counter()
        res = run_experiment(
            cfg, [STRATEGY], seeds, progress=False, plots=False,
            threats=ThreatConfig(**threat), jobs=args.jobs,
        )  # fmt: skip
        entry = res["strategies"][STRATEGY]
        rows[name] = {
            "command": f"fedalign simulate --quick --seeds {_seed_flag(seeds)} --strategies {STRATEGY} {flags}",
            "final_accuracy": entry["final_accuracy"],
            "per_seed": entry["per_seed"]["final_accuracy"],
            **{k: entry[k] for k in KEEP if k in entry},
            "mb_down": round(entry["bytes_down"] / 1e6, 2),
            "wall_seconds": round(time.perf_counter() - start, 1),
        }
        Path(args.out).write_text(json.dumps(summary, indent=1))  # after each: partial runs keep
        print(
            f"{name:40s} {100 * entry['final_accuracy']:.1f} %  ({rows[name]['wall_seconds']} s)",
            flush=True,
        )
    Path(args.out).write_text(json.dumps(summary, indent=1))
    plot(rows, args.plot)


def _seed_flag(seeds: list[int]) -> str:
    """``--seeds`` as ``fedalign simulate`` takes it: a count from 0, or a list."""
    if seeds == list(range(len(seeds))):
        return str(len(seeds))
    return f"{len(seeds)} (seeds {seeds[0]}-{seeds[-1]}: benchmarks/trust_fig3.py --first-seed {seeds[0]})"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def table(rows: dict[str, Any]) -> str:
    """Markdown: final accuracy (mean ± std over seeds, change against the clean run of the
    same settings) and the threat figures per scenario."""

    def baseline(name: str) -> float | None:
        """The clean run of the same settings (``clean, <suffix>``), else ``clean``."""
        suffix = name.rsplit(", ", 1)[-1] if ", " in name else None
        key = f"clean, {suffix}" if suffix and f"clean, {suffix}" in rows else "clean"
        return rows.get(key, {}).get("final_accuracy")

    out = [
        "| scenario | final accuracy % (± std) | vs clean | screened (attackers) | idle violations "
        "| Jain overall | leakage acc. / chance | ε spent | over-assigned rounds | MB down |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        acc = np.asarray(r["per_seed"])
        clean = baseline(name)
        delta = "—" if clean is None else f"{100 * (acc.mean() - clean):+.1f}"
        leak = r.get("leakage")
        leak_s = "—" if not leak else f"{_pct(leak['accuracy'])} / {_pct(leak['chance'])}"
        eps = r.get("epsilon_spent")
        over = r.get("over_assigned_rounds")
        out.append(
            f"| {name} | {100 * acc.mean():.1f} (± {100 * acc.std(ddof=1):.1f}) | {delta} "
            f"| {r.get('screened', 0)} ({r.get('screened_attackers', '—')}) "
            f"| {r.get('idle_violations', '—')} | {r.get('jain_index_overall') or 0:.3f} "
            f"| {leak_s} | {'—' if eps is None else f'{eps:g}'} "
            f"| {'—' if over is None else f'{over:.1f}'}"
            f"{'' if r.get('last_over_assigned_round') is None else ' (last: round ' + format(r['last_over_assigned_round'] + 1, '.1f') + ')'} "
            f"| {r['mb_down'] if 'mb_down' in r else '—'} |"
        )
    return "\n".join(out)


def plot(rows: dict[str, Any], path: str) -> None:
    """Bars of final accuracy (mean and per-seed points) per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    means = [100 * rows[n]["final_accuracy"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(
        y,
        means,
        color=[
            "tab:red" if rows[n].get("attack") and not rows[n].get("defense") else "tab:blue"
            for n in names
        ],
    )
    for k, n in enumerate(names):
        ax.plot([100 * v for v in rows[n]["per_seed"]], [k] * len(rows[n]["per_seed"]), "k.", ms=3)
    if "clean" in rows:
        ax.axvline(
            100 * rows["clean"]["final_accuracy"] - 3,
            color="gray",
            ls="--",
            lw=1,
            label="clean - 3 points",
        )
        ax.legend(loc="lower right")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("final test accuracy (%), load-balanced/flow, fig3 quick")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
