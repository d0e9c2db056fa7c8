"""Compare strategies over seeds: the runs behind ``fedalign simulate`` and ``fedalign demo``.

:func:`run_experiment` runs every strategy under every seed (the same data, initial model,
devices, cohorts and device luck per seed), then writes into ``out_dir``:

* ``results.json`` -- the names outside tools read (docs/experiments.md): under
  ``strategies``, per strategy name, ``final_accuracy`` (mean over seeds of the accuracy after the last round),
  ``accuracy`` (per seed, per round), ``rounds_to_target`` (per seed, the first round reaching
  ``target_accuracy``, null if never), ``bytes_up``, ``bytes_down``, ``simulated_seconds``
  (totals, mean over seeds), ``expert_load`` (client x expert assignment counts, summed over
  seeds); per seed ``time_to_target`` and ``bytes_to_target`` (null if never reached),
  ``planning_seconds`` (total), ``dropouts`` (total) and ``rounds`` (one record per round:
  ``round``, ``planning_seconds``, ``round_seconds``, ``bytes_down``, ``bytes_up``,
  ``byte_budget``, ``online``, ``trained_clients``, ``dropouts``, and in ``cross-device``
  the dropouts by cause and the per-tier counts), plus ``trained_share`` and
  ``tier_participation`` in ``cross-device`` (:func:`accounting_fields`); plus per-seed
  detail under ``per_seed``. With a
  :class:`~fedalign.sim.threats.ThreatConfig` (every local ``fedalign simulate``), also
  ``attack``, ``attackers``, ``defense``, ``participation``, ``jain_index``,
  ``idle_violations`` and, when asked for, ``leakage`` and ``epsilon_spent``
  (:func:`threat_entries`). At top level: ``scenario``, ``target_accuracy``, ``config``
  (every setting, seeds, strategies, engine) and ``ordering`` (per seed, whether
  load-balanced > greedy > random held).
* ``summary.md`` -- the markdown table of :func:`fedalign.sim.report.markdown_table`;
* the figures of :func:`fedalign.sim.report.write_plots`;
* while a run of several seeds goes, ``results.partial.json``: ``results.json``'s content
  for the seeds finished so far (:data:`PARTIAL_RESULTS`), removed at the end.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HerdingWarning
from .config import DEFAULT_STRATEGIES, SimConfig, Strategy, parse_strategy
from .parallel import run_seeds, scenario_runner
from .threats import ThreatConfig

__all__ = [
    "ENGINES",
    "Runner",
    "accounting_fields",
    "build_results",
    "compare_engines",
    "compare_engines_main",
    "ordering_by_seed",
    "run_experiment",
    "default_strategies",
    "demo",
    "simulate",
    "with_gates",
    "summary_text",
    "threat_entries",
    "write_outputs",
]

ENGINES = ("local", "flower", "nvflare")
"""Runtimes :func:`run_experiment` can use."""

PAPER_ORDER = ("load-balanced", "greedy", "random")
"""The ordering of the paper's Fig. 3, best first."""


Runner = Callable[..., Any]
"""One (strategy, seed) run: ``runner(setup, strategy, *, on_round=None) -> RunResult``.

The local one is :func:`fedalign.sim.server.run_strategy`; the Flower one,
``fedalign.flower.engine.run_strategy``, is passed in from above (the CLI, or
``fedalign.flower.engine.run_flower_experiment``): this package never imports
``fedalign.flower``.
"""


def run_experiment(
    config: SimConfig,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: Sequence[int] = (0, 1),
    *,
    out_dir: str | Path | None = None,
    engine: str = "local",
    runner: Runner | None = None,
    progress: bool = True,
    plots: bool = True,
    threats: ThreatConfig | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run every strategy under every seed and collect ``results.json``'s content.

    Parameters
    ----------
    config : SimConfig
    strategies : sequence of str
        ``random``, ``greedy``, ``load-balanced``, ``load-balanced/<solver>``.
    seeds : sequence of int
        At least one; distinct.
    out_dir : str or Path, optional
        Where to write ``results.json``, ``summary.md`` and the figures (None: write nothing);
        with several seeds, also ``results.partial.json`` as each seed finishes (the seeds
        done so far), removed once ``results.json`` is written.
    engine : {"local", "flower", "nvflare"}
        The runtime, recorded as ``config.engine`` in ``results.json``. ``flower`` and
        ``nvflare`` need ``runner``.
    runner : callable, optional
        Runs one (strategy, seed): ``runner(setup, strategy, *, on_round=None)`` returning a
        :class:`~fedalign.sim.server.RunResult` (:data:`Runner`). Default
        :func:`fedalign.sim.server.run_strategy`, the harness in this process. For
        ``engine="flower"`` pass ``fedalign.flower.engine.run_strategy`` (same setup, same
        outputs; ``fedalign.flower.engine.run_flower_experiment`` does this), for
        ``engine="nvflare"`` ``fedalign.nvflare.engine.run_strategy``.
    progress : bool, default True
        Show a tqdm progress bar (on stderr).
    plots : bool, default True
        Write the figures (needs matplotlib).
    threats : ThreatConfig, optional
        Attack, defenses, fairness floor, reward privacy and audit
        (:mod:`fedalign.sim.threats`); only with the local engine (the default runner), in
        both scenarios.
    jobs : int, default 1
        Seeds run side by side in this many worker processes (:mod:`fedalign.sim.parallel`;
        the same results as one after another); local engine only.

    Returns
    -------
    dict
        The content of ``results.json``.

    Raises
    ------
    ValueError
        Unknown strategy or engine, another engine than ``"local"`` without ``runner``, no seeds,
        duplicates, or an active ``threats`` with another runner.
    TypeError
        ``runner`` is not callable.
    """
    parsed, seed_list = _checked(config, strategies, seeds, engine, runner, threats, jobs)
    partial = None if out_dir is None else _PartialResults(config, parsed, out_dir, engine, threats)
    runs, groups = _run_all(
        config, parsed, seed_list, runner=runner, threats=threats, jobs=jobs, progress=progress,
        on_seed=None if partial is None or len(seed_list) == 1 else partial.add,
    )  # fmt: skip
    results = build_results(config, parsed, seed_list, runs, groups, engine=engine, threats=threats)
    if out_dir is not None:
        write_outputs(results, out_dir, plots=plots)
        assert partial is not None
        partial.path.unlink(missing_ok=True)  # the run is complete: results.json holds it all
    return results


def _run_all(
    config: SimConfig,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    *,
    runner: Runner | None,
    threats: ThreatConfig | None,
    jobs: int,
    progress: bool,
    on_seed: Callable[[int, list[int], list[Any]], None] | None,
) -> tuple[dict[str, list[Any]], list[list[int]]]:
    """Every strategy under every seed, in worker processes or here, under one progress bar."""
    import torch

    torch.set_num_threads(1)
    from tqdm.auto import tqdm

    total = len(seeds) * len(strategies) * config.rounds
    with warnings.catch_warnings(), tqdm(
        total=total, disable=not progress, unit="round", dynamic_ncols=True
    ) as bar:
        # the paper's strategies herd by design (balance_weight=0): the harness measures it
        # (load CV, per-expert loads); a warning per round would bury the progress bar
        warnings.simplefilter("ignore", HerdingWarning)
        if jobs > 1 and len(seeds) > 1:
            return run_seeds(
                config, strategies, seeds, jobs=jobs, bar=bar, threats=threats, on_seed=on_seed
            )
        return _run_here(config, strategies, seeds, runner, bar, threats, on_seed)


#: What a run with ``out_dir`` keeps while it goes: the seeds finished so far.
PARTIAL_RESULTS = "results.partial.json"


class _PartialResults:
    """``results.partial.json``: ``results.json``'s content for the seeds finished so far,
    rewritten (atomically) as each seed finishes, so that a stopped long run keeps them;
    removed once ``results.json`` is written."""

    def __init__(
        self,
        config: SimConfig,
        strategies: Sequence[Strategy],
        out_dir: str | Path,
        engine: str,
        threats: ThreatConfig | None,
    ) -> None:
        self.config, self.strategies, self.engine, self.threats = config, strategies, engine, threats
        self.path = Path(out_dir) / PARTIAL_RESULTS
        self.done: dict[int, tuple[list[int], list[Any]]] = {}

    def add(self, seed: int, groups: list[int], runs: list[Any]) -> None:
        """Record a finished seed (one run per strategy, in order) and rewrite the file."""
        self.done[seed] = (groups, runs)
        seeds = sorted(self.done)
        by_name = {
            s.name: [self.done[seed][1][i] for seed in seeds] for i, s in enumerate(self.strategies)
        }
        results = build_results(
            self.config, self.strategies, seeds, by_name, [self.done[s][0] for s in seeds],
            engine=self.engine, threats=self.threats,
        )  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, allow_nan=False))
        tmp.replace(self.path)


def _checked(
    config: SimConfig,
    strategies: Sequence[str],
    seeds: Sequence[int],
    engine: str,
    runner: Runner | None,
    threats: ThreatConfig | None,
    jobs: int,
) -> tuple[list[Strategy], list[int]]:
    """:func:`run_experiment`'s arguments checked: the parsed strategies and the seeds."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if runner is not None and not callable(runner):
        raise TypeError(f"runner: expected a callable, got {type(runner).__name__}")
    if engine != "local" and runner is None:
        raise ValueError(
            f"engine: {engine!r} needs runner (fedalign.{engine}.engine.run_strategy; "
            f"fedalign.{engine}.engine.run_{engine}_experiment passes it)"
        )
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, got {jobs!r}")
    if jobs > 1 and runner is not None:
        raise ValueError(f"jobs: seeds run in worker processes on the local engine only, not {engine!r}")
    if threats is not None and runner is not None and threats != ThreatConfig():
        raise ValueError(
            "attack: attacks, defenses, --max-idle-rounds, --ldp-epsilon and --audit run "
            "only on the local engine"
        )
    if (
        threats is not None
        and threats.ldp_epsilon is not None
        and threats.ldp_mechanism == "best-expert"
        and config.reward == "loss-reduction"
    ):
        raise ValueError(
            "ldp_mechanism: 'best-expert' compares every expert as received, which "
            "reward='loss-reduction' (measured after training) cannot; use 'accuracy' or 'routing'"
        )
    names = list(strategies)
    if not names:
        raise ValueError("strategies: name at least one strategy")
    if len(set(names)) != len(names):
        raise ValueError(f"strategies: duplicates in {names}")
    parsed = [parse_strategy(n, config.usage_weight, config.gate) for n in names]
    _check_scenario(config, parsed, engine)
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds: expected distinct seeds, at least one, got {seed_list}")
    return parsed, seed_list


def _run_here(
    config: SimConfig,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    runner: Runner | None,
    bar: Any,
    threats: ThreatConfig | None,
    on_seed: Callable[[int, list[int], list[Any]], None] | None = None,
) -> tuple[dict[str, list[Any]], list[list[int]]]:
    """Every strategy under every seed in this process, one after another (``runner``, or the
    scenario's own); the same ``(runs, groups)`` as :func:`fedalign.sim.parallel.run_seeds`,
    and the same ``on_seed`` calls."""
    make, run_local = scenario_runner(config)
    run_one: Runner = run_local if runner is None else runner
    extra = {} if threats is None or runner is not None else {"threats": threats}
    runs: dict[str, list[Any]] = {s.name: [] for s in strategies}
    groups: list[list[int]] = []
    for seed in seeds:
        setup = make(config, seed)
        groups.append(setup.partition.client_group.tolist())
        for strategy in strategies:
            bar.set_description(f"seed {seed} {strategy.name}")

            def tick(_round: int, accuracy: float) -> None:
                bar.update(1)
                bar.set_postfix(acc=f"{accuracy:.3f}")

            runs[strategy.name].append(run_one(setup, strategy, on_round=tick, **extra))
        if on_seed is not None:
            on_seed(seed, groups[-1], [runs[s.name][-1] for s in strategies])
    return runs, groups


def _check_scenario(config: SimConfig, strategies: Sequence[Strategy], engine: str) -> None:
    """Refuse what a scenario cannot run (the message names the flag)."""
    if config.scenario == "cross-device":
        if engine != "local":
            raise ValueError(f"engine: the cross-device scenario runs locally, not on {engine!r}")
        with_rows = [s for s in strategies if s.balanced]
        if with_rows:
            from .crossdevice import solvers_for_rows

            supported = solvers_for_rows(config)
            for s in with_rows:
                if s.solver not in supported:
                    raise ValueError(
                        f"strategies: {s.name!r}: solver {s.solver!r} does not support the "
                        f"cross-device rows (byte budget, per-expert bounds); these do: {supported}"
                    )
        return
    for s in strategies:
        if s.selection == "oort":
            raise ValueError(f"strategies: {s.name!r} needs --scenario cross-device")
        if s.gate == "local":
            raise ValueError(f"gate: {s.name!r} keeps local gates, which need --scenario cross-device")


def _rounds_to(acc: list[float], target: float) -> int | None:
    hit = np.flatnonzero(np.asarray(acc) >= target - 1e-12)
    return int(hit[0]) + 1 if hit.size else None


def build_results(
    config: SimConfig,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    runs: dict[str, list[Any]],
    client_groups: list[list[int]],
    *,
    engine: str = "local",
    threats: ThreatConfig | None = None,
) -> dict[str, Any]:
    """``results.json``'s content from the runs (one :class:`RunResult` per strategy and seed)."""
    finals = {name: [r.accuracy[-1] for r in rs] for name, rs in runs.items()}
    target = config.target_accuracy
    if target is None:  # 90 % of the best strategy's mean final accuracy, floored to 0.01
        best = max(float(np.mean(v)) for v in finals.values())
        target = math.floor(0.9 * best * 100) / 100
    out: dict[str, Any] = {}
    for strategy in strategies:
        rs = runs[strategy.name]
        out[strategy.name] = {
            "solver": strategy.solver,
            "usage_weight": strategy.usage_weight,
            "final_accuracy": float(np.mean(finals[strategy.name])),
            "final_accuracy_std": float(np.std(finals[strategy.name], ddof=1))
            if len(rs) > 1
            else 0.0,
            "accuracy": [list(map(float, r.accuracy)) for r in rs],
            "rounds_to_target": [_rounds_to(r.accuracy, target) for r in rs],
            "bytes_up": float(np.mean([r.bytes_up[-1] for r in rs])),
            "bytes_down": float(np.mean([r.bytes_down[-1] for r in rs])),
            "simulated_seconds": float(np.mean([r.seconds[-1] for r in rs])),
            "expert_load": np.sum([r.expert_load for r in rs], axis=0).astype(int).tolist(),
            "per_seed": {
                "seed": list(seeds),
                "final_accuracy": finals[strategy.name],
                "bytes_up": [list(map(int, r.bytes_up)) for r in rs],
                "bytes_down": [list(map(int, r.bytes_down)) for r in rs],
                "seconds": [list(map(float, r.seconds)) for r in rs],
                "expert_load": [r.expert_load.astype(int).tolist() for r in rs],
                "trained_load": [r.trained_load.astype(int).tolist() for r in rs],
                "round_load": [r.round_load for r in rs],
                "dropouts": [list(map(int, r.dropouts)) for r in rs],
                "domain_accuracy": [r.domain_accuracy for r in rs],
                "solver_seconds": [list(map(float, r.solver_seconds)) for r in rs],
                "client_group": client_groups,
            },
        }
        out[strategy.name].update(accounting_fields(rs, target, config))
        if threats is not None and all(r.threats for r in rs):
            out[strategy.name].update(threat_entries(threats, [r.threats for r in rs]))
            out[strategy.name]["per_seed"]["threats"] = [r.threats for r in rs]
    results = {
        "scenario": config.scenario,
        "target_accuracy": float(target),
        "config": {
            **config.to_dict(),
            "seeds": list(seeds),
            "strategies": [s.name for s in strategies],
            "engine": engine,
            **({} if threats is None else {"threats": threats.to_dict()}),
        },
        "strategies": out,
    }
    results["ordering"] = ordering_by_seed(results)
    return results


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def threat_entries(threats: ThreatConfig, per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A strategy's threat names of ``results.json`` from its runs' figures (one per seed).

    ``attack`` (kind or null), ``attackers`` (share), ``defense`` (list), ``participation``
    (per client index, rounds offered and trained, summed over seeds), ``jain_index`` (of the
    clients' trained/offered rates, mean over seeds: per tier where the fleet has several
    tiers, else one number), ``jain_index_overall``, ``idle_violations`` (summed over
    seeds), ``screened``, ``screened_attackers`` and ``bounded`` (replies left out of the
    averages, those of them sent by attackers, replies whose weight was bounded; summed over
    seeds); ``leakage``
    (``accuracy`` and ``chance``, means over seeds) with ``audit``; ``epsilon_spent`` (max
    over clients and seeds) with ``ldp_epsilon``; ``over_assigned_rounds`` and
    ``last_over_assigned_round`` (means over seeds and liars) under ``capacity-lie``.
    """
    n = max(len(t["participation"]) for t in per_seed)
    offered = np.zeros(n, dtype=np.int64)
    trained = np.zeros(n, dtype=np.int64)
    for t in per_seed:
        k = len(t["participation"])
        offered[:k] += [p["offered"] for p in t["participation"]]
        trained[:k] += [p["trained"] for p in t["participation"]]
    tiers = sorted({name for t in per_seed for name in t["jain_index"]})
    overall = _mean([t["jain_index_overall"] for t in per_seed])
    jain: Any = (
        {name: _mean([t["jain_index"].get(name) for t in per_seed]) for name in tiers}
        if len(tiers) > 1
        else overall
    )
    out: dict[str, Any] = {
        "attack": threats.attack,
        "attackers": threats.attackers,
        "defense": list(threats.defenses),
        "participation": [
            {"offered": int(o), "trained": int(t)} for o, t in zip(offered, trained, strict=True)
        ],
        "jain_index": jain,
        "jain_index_overall": overall,
        "idle_violations": int(sum(t["idle_violations"] for t in per_seed)),
        "screened": int(sum(t["screened"] for t in per_seed)),
        "screened_attackers": int(sum(t["screened_attackers"] for t in per_seed)),
        "bounded": int(sum(t["bounded"] for t in per_seed)),
    }
    if threats.audit:
        out["leakage"] = {
            "accuracy": _mean([t["leakage"]["accuracy"] for t in per_seed]),
            "chance": _mean([t["leakage"]["chance"] for t in per_seed]),
        }
    if threats.ldp_epsilon is not None:
        out["epsilon_spent"] = float(max(t["epsilon_spent"] for t in per_seed))
    if threats.attack == "capacity-lie":
        liars = [t for t in per_seed if t["over_assigned_rounds"]]
        out["over_assigned_rounds"] = _mean(
            [float(np.mean(t["over_assigned_rounds"])) for t in liars]
        )
        # the last round (0-based, -1: never) a liar was over-assigned: how long the lie pays
        out["last_over_assigned_round"] = _mean(
            [float(np.mean(t["last_over_assigned_round"])) for t in liars]
        )
    return out


def _first(values: list[float] | list[int], acc: list[float], target: float) -> float | None:
    """``values`` at the first round whose accuracy reaches ``target`` (None if none does)."""
    hit = _rounds_to(acc, target)
    return None if hit is None else float(values[hit - 1])


def accounting_fields(runs: list[Any], target: float, config: SimConfig) -> dict[str, Any]:
    """Per seed: time and bytes to ``target``, planning, dropouts, rounds, participation.

    ``time_to_target`` is the simulated clock (``cross-device``: planning included) after
    the first round reaching the target, ``bytes_to_target`` the bytes moved (up + down) by
    then; both None when never reached. ``rounds`` holds every round's record. With tiers
    (``cross-device``): ``trained_share``, the share of online client-rounds that trained,
    and ``tier_participation``, the same per device tier.
    """
    moved = [[u + d for u, d in zip(r.bytes_up, r.bytes_down, strict=True)] for r in runs]
    out: dict[str, Any] = {
        "time_to_target": [_first(r.seconds, r.accuracy, target) for r in runs],
        "bytes_to_target": [_first(m, r.accuracy, target) for r, m in zip(runs, moved, strict=True)],
        "planning_seconds": [float(np.sum(r.solver_seconds)) for r in runs],
        "dropouts": [int(np.sum(r.dropouts)) for r in runs],
        "rounds": [list(r.records) for r in runs],
    }
    if config.scenario == "cross-device":
        online = [np.sum([x["online_by_tier"] for x in r.records], axis=0) for r in runs]
        trained = [np.sum([x["trained_by_tier"] for x in r.records], axis=0) for r in runs]
        out["trained_share"] = [
            float(t.sum() / max(o.sum(), 1)) for o, t in zip(online, trained, strict=True)
        ]
        out["tier_participation"] = [
            {name: float(t[k] / max(o[k], 1)) for k, name in enumerate(config.tier_names)}
            for o, t in zip(online, trained, strict=True)
        ]
    return out


def ordering_by_seed(results: dict[str, Any], order: Sequence[str] = PAPER_ORDER) -> dict[str, Any]:
    """Per seed, whether final accuracy is strictly ordered as ``order`` (best first).

    Returns ``{"order": [...], "holds": [bool per seed] or None}``; None when a strategy of
    ``order`` was not run.
    """
    strategies = results["strategies"]
    if not all(name in strategies for name in order):
        return {"order": list(order), "holds": None}
    finals = np.array([strategies[n]["per_seed"]["final_accuracy"] for n in order])
    holds = np.all(finals[:-1] > finals[1:], axis=0)
    return {"order": list(order), "holds": holds.tolist()}


def write_outputs(results: dict[str, Any], out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write ``results.json``, ``summary.md`` and (optionally) the figures; returns the folder."""
    from .report import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, allow_nan=False))
    tmp.replace(out / "results.json")
    (out / "summary.md").write_text(summary_text(results))
    if plots:
        write_plots(results, out)
    return out


def summary_text(results: dict[str, Any]) -> str:
    """The markdown table plus one line on the paper's ordering."""
    from .report import markdown_table

    text = markdown_table(results)
    holds = results.get("ordering", {}).get("holds")
    if holds is not None:
        text += (
            f"\nload-balanced > greedy > random in final accuracy on {sum(holds)}/{len(holds)} "
            f"seed(s) ({', '.join(str(s) for s, h in zip(results['config']['seeds'], holds, strict=True) if h) or 'none'}).\n"
        )
    return text


def simulate(
    *,
    quick: bool = False,
    seed: int = 0,
    seeds: int | None = None,
    strategies: Sequence[str] | None = None,
    engine: str = "local",
    runner: Runner | None = None,
    dataset: str | None = None,
    partition: str | None = None,
    rounds: int | None = None,
    data_root: str | None = None,
    lr: float | None = None,
    out: str | Path = "fedalign-results",
    progress: bool = True,
    echo: Any = print,
    threats: ThreatConfig | None = None,
    scenario: str = "fig3",
    gate: str = "global",
    jobs: int = 1,
) -> dict[str, Any]:
    """``fedalign simulate``: run the comparison, write the outputs, print the table.

    Parameters
    ----------
    quick : bool
        The quick scenario (:func:`~fedalign.sim.config.preset` ``"quick"``: 40 rounds,
        2 seeds by default) instead of the full one (80 rounds, 5 seeds by default); in
        ``cross-device``, 60 rounds, 1 seed and fewer strategies
        (:func:`default_strategies`) instead of 150 rounds and 5 seeds.
    seed : int
        First seed; the run uses ``seed, seed + 1, ..., seed + seeds - 1``.
    seeds : int, optional
        Number of seeds (default 5 full; quick 2, or 1 in ``cross-device``).
    strategies : sequence of str, optional
        Default :data:`~fedalign.sim.config.DEFAULT_STRATEGIES`.
    engine : {"local", "flower", "nvflare"}
    runner : callable, optional
        As in :func:`run_experiment` (needed for any engine but ``"local"``).
    dataset, partition, rounds, data_root, lr : optional overrides of the preset (``lr``:
        the clients' local learning rate, :attr:`SimConfig.lr`)
    scenario : {"fig3", "cross-device"}
    gate : {"global", "local", "both"}
        Gate placement of the strategies named without ``@global``/``@local``; ``both`` runs
        each of them twice, as ``name`` (global) and ``name@local``.
    jobs : int, default 1
        Seeds run side by side in this many worker processes (``--jobs``; local engine).
    out : str or Path
        Output folder.
    progress : bool
        Progress bar on stderr.
    echo : callable
        Where the table goes (``print``).
    threats : ThreatConfig, optional
        Attack, defenses, fairness floor, reward privacy and audit (``--attack``,
        ``--attackers``, ``--defense``, ``--max-idle-rounds``, ``--ldp-epsilon``, ``--audit``);
        default a clean run whose participation and fairness are still reported (local
        engine).

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from .config import preset

    given = {"dataset": dataset, "partition": partition, "rounds": rounds, "data_root": data_root, "lr": lr}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if rounds is not None:
        changes["rounds"] = int(rounds)
    if data_root is not None:
        changes["data_root"] = str(data_root)
    if scenario != "fig3":
        changes["scenario"] = scenario
    config = preset("quick" if quick else "full", **changes)
    k = _default_seeds(config, quick) if seeds is None else int(seeds)
    if k < 1:
        raise ValueError(f"seeds: expected a count >= 1, got {seeds!r}")
    names = list(strategies) if strategies else default_strategies(config, quick=quick)
    results = run_experiment(
        config,
        with_gates(names, gate),
        [int(seed) + s for s in range(k)],
        out_dir=out,
        engine=engine,
        runner=runner,
        progress=progress,
        threats=threats if threats is not None or engine != "local" else ThreatConfig(),
        jobs=jobs,
    )
    echo(summary_text(results))
    echo(f"results, summary and plots written to {Path(out).resolve()}")
    return results


def _default_seeds(config: SimConfig, quick: bool) -> int:
    """Seeds unless told: 5 full; quick 2, or 1 in ``cross-device`` (one seed of its six
    strategies takes 4.5 to 7 minutes on a shared 2-core machine; docs/experiments.md)."""
    if not quick:
        return 5
    return 1 if config.scenario == "cross-device" else 2


def with_gates(names: Sequence[str], gate: str) -> list[str]:
    """Strategy names for a gate placement: ``global`` keeps them, ``local`` suffixes
    ``@local``, ``both`` lists each twice; names already suffixed are kept as they are."""
    if gate not in ("global", "local", "both"):
        raise ValueError(f"gate: expected 'global', 'local' or 'both', got {gate!r}")
    plain = [n for n in names if "@" not in n]
    local = [f"{n}@local" for n in plain] if gate in ("local", "both") else []
    kept = [n for n in names if "@" in n or gate != "local"]
    return [*kept, *local]


def default_strategies(config: SimConfig, *, quick: bool = False) -> list[str]:
    """What ``fedalign simulate`` compares unless told otherwise.

    ``fig3``: :data:`~fedalign.sim.config.DEFAULT_STRATEGIES`. ``cross-device``: the paper's
    three, ``oort``, ``balanced``, and ``load-balanced/<solver>`` for every solver whose
    declarations support the scenario's rows (:func:`fedalign.solvers_for`; not ``auto``,
    which ``balanced`` uses, nor ``random``); ``quick`` keeps ``random``, ``greedy``,
    ``load-balanced``, ``oort``, ``balanced`` and the first of ``lp``, ``lagrangian``,
    ``greedy`` that is supported (a solver with a bound at heuristic speed; the exact ones
    cost seconds a round).
    """
    if config.scenario != "cross-device":
        return list(DEFAULT_STRATEGIES)
    from .crossdevice import solvers_for_rows

    supported = solvers_for_rows(config)
    solvers = [s for s in supported if s not in ("auto", "random")]
    balanced = ["balanced"] if "auto" in supported else []
    if quick:
        first = [s for s in ("lp", "lagrangian", "greedy") if s in solvers][:1]
        lb = [f"load-balanced/{s}" for s in first]
        return ["random", "greedy", "load-balanced", "oort", *balanced, *lb]
    return ["random", "greedy", "load-balanced", "oort", *balanced, *(f"load-balanced/{s}" for s in solvers)]


def demo(
    out: str | Path = "fedalign-demo", *, progress: bool = True, echo: Any = print
) -> dict[str, Any]:
    """``fedalign demo``: the quick comparison on the default data (digits), into ``out``."""
    return simulate(quick=True, out=out, progress=progress, echo=echo)


def compare_engines(
    config: SimConfig,
    strategies: Sequence[str],
    seed: int,
    *,
    engine: str,
    runner: Runner,
) -> list[dict[str, Any]]:
    """Run each strategy under ``seed`` locally and through ``runner``; one row per strategy.

    Rows: ``strategy``, ``local`` and ``<engine>`` final accuracy, ``max_round_diff``
    (largest per-round accuracy difference), ``same_expert_load``, ``local_seconds`` and
    ``<engine>_seconds`` (wall clock). What ``fedalign.flower.engine.compare_engines`` and
    ``fedalign.nvflare.engine.compare_engines`` return.
    """
    import time

    from .server import make_setup
    from .server import run_strategy as run_local

    setup = make_setup(config, seed)
    rows = []
    for name in strategies:
        strategy = parse_strategy(name, config.usage_weight)
        start = time.perf_counter()
        local = run_local(setup, strategy)
        local_s = time.perf_counter() - start
        start = time.perf_counter()
        remote = runner(setup, strategy)
        remote_s = time.perf_counter() - start
        rows.append(
            {
                "strategy": name,
                "local": local.accuracy[-1],
                engine: remote.accuracy[-1],
                "max_round_diff": float(np.max(np.abs(np.subtract(local.accuracy, remote.accuracy)))),
                "same_expert_load": bool(np.array_equal(local.expert_load, remote.expert_load)),
                "local_seconds": local_s,
                f"{engine}_seconds": remote_s,
            }
        )
    return rows


def compare_engines_main(
    engine: str, compare: Callable[..., list[dict[str, Any]]], argv: Sequence[str] | None
) -> None:
    """``python -m fedalign.<engine>.engine``: parse the options, compare, print a table."""
    import argparse

    from .config import preset

    parser = argparse.ArgumentParser(description=f"compare the local and the {engine} engine")
    parser.add_argument("--preset", default="quick", choices=["quick", "full", "tiny"])
    parser.add_argument("--strategies", default="load-balanced,greedy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = compare(preset(args.preset), args.strategies.split(","), args.seed)
    print(
        f"| strategy | local | {engine} | max per-round diff | same expert load | local s | {engine} s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['local']:.3f} | {r[engine]:.3f} | {r['max_round_diff']:.3f} "
            f"| {r['same_expert_load']} | {r['local_seconds']:.0f} | {r[f'{engine}_seconds']:.0f} |"
        )
