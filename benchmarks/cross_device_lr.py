"""Probe of the cross-device full run's long-run decay: 150 rounds per client learning rate.

At the clients' learning rate 0.01 the full cross-device run peaks by round 20-50 and then
loses accuracy (docs/experiments.md, "Why the clients' learning rate is 0.003"). This
script reruns the full scenario for the given strategies and client learning rates
(``SimConfig.lr``; the scenario's default is 0.003, chosen with this probe) and
prints, per run, the peak accuracy and its round, the accuracy at rounds 40, 60 and 100,
the final one and the mean of the last ten rounds. Each run writes the harness's own
outputs (results.json, plots) under ``--out``/lr<LR>-<strategy>/.

    python benchmarks/cross_device_lr.py --lr 0.01,0.003,0.001 \\
        --strategies load-balanced/greedy,load-balanced --out results/xd-lr

One strategy x 150 rounds takes about two minutes on the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fedalign.sim.config import preset
from fedalign.sim.experiments import run_experiment


def curve_summary(accuracy: list[float]) -> dict[str, float]:
    """Peak (and its 1-based round), rounds 40 / 60 / 100 where run, final, last-ten mean."""
    a = np.asarray(accuracy, dtype=float)
    out = {"peak": float(a.max()), "peak_round": int(a.argmax()) + 1}
    for r in (40, 60, 100):
        if a.size >= r:
            out[f"round_{r}"] = float(a[r - 1])
    out["final"] = float(a[-1])
    out["last10"] = float(a[-10:].mean())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", default="0.01,0.003,0.001", help="comma-separated client learning rates")
    parser.add_argument("--strategies", default="load-balanced/greedy,load-balanced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: the full run's 150)")
    parser.add_argument("--out", default="results/xd-lr")
    args = parser.parse_args(argv)
    rows = []
    for lr in (float(v) for v in args.lr.split(",")):
        for strategy in (s.strip() for s in args.strategies.split(",") if s.strip()):
            changes = {"scenario": "cross-device", "lr": lr}
            if args.rounds is not None:
                changes["rounds"] = args.rounds
            out = Path(args.out) / f"lr{lr:g}-{strategy.replace('/', '_')}"
            res = run_experiment(preset("full", **changes), strategies=[strategy], seeds=[args.seed],
                                 out_dir=out, progress=False)  # fmt: skip
            acc = json.loads((out / "results.json").read_text())["strategies"][strategy]["accuracy"]
            rows.append({"lr": lr, "strategy": strategy, **curve_summary(acc[0] if isinstance(acc[0], list) else acc)})
            del res
    print("| lr | strategy | peak (round) | round 40 | round 60 | round 100 | final | last 10 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]:.1f} %" if k in r else "–" for k in ("round_40", "round_60", "round_100")]
        print(f"| {r['lr']:g} | {r['strategy']} | {100 * r['peak']:.1f} % ({r['peak_round']}) | "
              + " | ".join(cells) + f" | {100 * r['final']:.1f} % | {100 * r['last10']:.1f} % |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "lr-summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
