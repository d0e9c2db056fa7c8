"""The cross-device scenario on its digits variant: plans within memory, deadlines and the
byte budget; stragglers credited nothing; the clock and bytes as accounted; local gates."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedalign.cli import main  # noqa: E402
from fedalign.sim.accounting import client_times  # noqa: E402
from fedalign.sim.config import parse_strategy, preset  # noqa: E402
from fedalign.sim.crossdevice import (  # noqa: E402
    _Run,
    make_cross_device_setup,
    run_cross_device,
    solvers_for_rows,
)
from fedalign.sim.experiments import run_experiment  # noqa: E402
from fedalign.sim.gates import gate_keys  # noqa: E402

# the paper's top-k herds by design; run_cross_device silences it, the stepped rounds here too
pytestmark = pytest.mark.filterwarnings("ignore::fedalign.errors.HerdingWarning")

TINY = preset("tiny", scenario="cross-device", rounds=4)
ARRIVAL = ["random", "greedy", "load-balanced", "oort"]
ROWS = [f"load-balanced/{s}" for s in solvers_for_rows(TINY) if s not in ("auto", "random")]
WITH_ROWS = pytest.mark.skipif(not ROWS, reason="no solver supports the byte-budget row yet")


@pytest.fixture(scope="module")
def setup():
    return make_cross_device_setup(TINY, seed=0)


@pytest.fixture(scope="module")
def exact():
    """No hidden slowdown, no jitter, nobody vanishes: the scheduler's model is the truth."""
    cfg = TINY.replace(hidden_slowdown_sigma=0.0, jitter_sigma=0.0, tier_vanish=(0.0, 0.0, 0.0))
    return make_cross_device_setup(cfg, seed=1)


def _rounds(setup, name):
    """Step a strategy's rounds; yields (run, round, plan, record, summary) after each, with
    ``run.slowdown``: the slowdowns the scheduler had learned when it planned the round."""
    run = _Run(setup, parse_strategy(name, setup.config.usage_weight))
    for number in range(setup.config.rounds):
        rnd = run.check_in(number)
        run.plan(rnd)
        plan = None if rnd.current is None else rnd.current.plan
        planned = [] if plan is None else list(plan.assignment)
        run.slowdown = {c: run.sched.estimates(c)["slowdown"] for c in planned}
        record, summary = run.play(rnd)
        yield run, rnd, plan, record, summary


def _planned(setup, plan):
    """The plan's clients and their (m, E) assignment."""
    ids = np.array(list(plan.assignment), dtype=np.int64)
    x = np.zeros((ids.size, setup.config.n_experts), dtype=bool)
    for pos, c in enumerate(ids.tolist()):
        x[pos, plan.assignment[c]] = True
    return ids, x


def _predicted(setup, run, number, ids, x, gate="global"):
    """Seconds the scheduler expects from the reported profile, this round's reported fading
    and the slowdown it learned (which scales the whole round, as the profiler does)."""
    pop, fade = setup.population, setup.timeline.fading[number, ids]
    slow = np.array([run.slowdown[int(c)] for c in ids])
    return client_times(
        x, expert_bytes=setup.expert_bytes, shared_bytes=setup.shared_bytes[gate],
        expert_cost=setup.expert_cost, samples=setup.samples[ids], compute=pop.compute[ids],
        bandwidth_down=pop.bandwidth_down[ids] * fade, bandwidth_up=pop.bandwidth_up[ids] * fade,
        latency=pop.latency[ids], jitter=slow,
    ).total  # fmt: skip


@pytest.mark.parametrize("name", ARRIVAL + ROWS)
def test_no_client_is_planned_beyond_its_memory_or_its_reported_deadline(setup, name):
    planned = 0
    for run, rnd, plan, _, _ in _rounds(setup, name):
        if plan is None:
            continue
        ids, x = _planned(setup, plan)
        assert set(ids.tolist()) <= set(rnd.online.tolist())  # only who is online
        assert np.all(x.sum(axis=1) <= setup.config.max_experts)
        mem = x @ setup.expert_memory
        assert np.all(mem <= setup.population.memory[ids] * (1 + 1e-9))
        busy = x.any(axis=1)
        t = _predicted(setup, run, rnd.number, ids[busy], x[busy])
        assert np.all(t <= setup.deadline * (1 + 1e-9))
        planned += int(busy.sum())
    assert planned > 0


@pytest.mark.parametrize("name", ARRIVAL + ROWS)
def test_when_the_profile_is_the_truth_nobody_is_late(exact, name):
    result = run_cross_device(exact, parse_strategy(name, exact.config.usage_weight))
    assert sum(r["trained_clients"] for r in result.records) > 0
    assert all(r["dropouts"] == 0 and r["late"] == 0 for r in result.records)


@pytest.mark.parametrize("name", ARRIVAL + ROWS + ["oort@local"])
def test_the_bytes_actually_moved_stay_within_the_budget(setup, name):
    result = run_cross_device(setup, parse_strategy(name, setup.config.usage_weight))
    budget = setup.round_bytes
    assert budget is not None
    moved = [r["bytes_down"] + r["bytes_up"] for r in result.records]
    assert max(moved) <= budget and max(moved) > 0
    assert all(r["byte_budget"] == budget for r in result.records)


@WITH_ROWS
@pytest.mark.parametrize("name", ROWS)
def test_planned_pairs_never_exceed_the_budget_with_shared_parts_counted(setup, name):
    for _, _, plan, record, _ in _rounds(setup, name):
        if plan is None:
            continue
        _, x = _planned(setup, plan)
        cost = 2 * (setup.expert_bytes + setup.shared_bytes["global"])
        assert (x @ cost).sum() <= setup.round_bytes * (1 + 1e-9)
        assert record.bytes_down + record.bytes_up <= (x @ cost).sum()


def test_stragglers_are_credited_nothing_but_their_download_counts():
    cfg = TINY.replace(hidden_slowdown_sigma=1.5, jitter_sigma=0.5, rounds=6)
    setup = make_cross_device_setup(cfg, seed=2)
    run = _Run(setup, parse_strategy("load-balanced", cfg.usage_weight))
    for number in range(cfg.rounds):
        rnd = run.check_in(number)
        run.plan(rnd)
        fitness, usage = run.sched.fitness, run.sched.usage
        record, summary = run.play(rnd)
        if record.late:
            break
    else:
        pytest.fail("no straggler in any round")
    late = [c for c, why in summary.dropouts.items() if why == "missed the deadline"]
    assert record.late == len(late) and record.dropouts == len(summary.dropouts)
    assert not set(late) & set(summary.completed)
    assert not any(set(late) & set(cs) for cs in summary.trained_by.values())
    # no reward: a straggler's fitness only drifts toward the prior, like any untrained pair
    prior, d = cfg.fitness_prior, cfg.fitness_decay
    after = run.sched.fitness
    for c in late:
        np.testing.assert_allclose(after[c], prior + (1 - d) * (fitness[c] - prior), rtol=1e-6)
    # usage takes the completed clients' samples only
    load = np.zeros(cfg.n_experts)
    for c in summary.completed:
        load[summary.assignment[c]] += setup.samples[c]
    rho = cfg.usage_decay
    np.testing.assert_allclose(run.sched.usage, rho * usage + (1 - rho) * load)
    # bytes: every payload sent counts; only completed clients' replies come back
    shared = setup.shared_bytes["global"]
    size = {c: shared + setup.expert_bytes[e].sum() for c, e in summary.assignment.items() if e}
    assert record.bytes_down == sum(size.values())
    assert record.bytes_up == sum(size[c] for c in summary.completed)
    # and the server waited for the stragglers until the deadline
    assert record.round_seconds == pytest.approx(record.planning_seconds + setup.deadline)


def test_the_round_clock_is_planning_plus_the_slowest_client(exact):
    seen = 0
    for _, rnd, plan, record, summary in _rounds(exact, "greedy"):
        if plan is None:
            continue
        ids, x = _planned(exact, plan)
        busy = x.any(axis=1)
        pop, line = exact.population, exact.timeline
        fade = line.fading[rnd.number, ids[busy]]
        actual = client_times(
            x[busy], expert_bytes=exact.expert_bytes, shared_bytes=exact.shared_bytes["global"],
            expert_cost=exact.expert_cost, samples=exact.samples[ids[busy]],
            compute=pop.compute[ids[busy]], bandwidth_down=pop.bandwidth_down[ids[busy]] * fade,
            bandwidth_up=pop.bandwidth_up[ids[busy]] * fade, latency=pop.latency[ids[busy]],
        ).total  # fmt: skip
        assert record.planning_seconds > 0
        assert record.round_seconds == pytest.approx(record.planning_seconds + actual.max())
        assert record.trained_clients == len(summary.completed) == int(busy.sum())
        seen += 1
    assert seen > 0


def test_local_gates_stay_on_the_clients(setup):
    run = None
    for run, _, plan, record, summary in _rounds(setup, "greedy@local"):
        assert not gate_keys(run.state)
        if plan is not None:
            shared = setup.shared_bytes["local"]
            size = {c: shared + setup.expert_bytes[e].sum() for c, e in summary.assignment.items() if e}
            assert record.bytes_down == sum(size.values())
    assert run is not None and run.gates is not None and len(run.gates) > 0
    trained = next(iter(run.gates._own))
    assert not np.allclose(run.gates.get(trained)["gate.weight"], run.gates.initial["gate.weight"])
    acc = run.evaluate()
    assert len(acc) == setup.config.n_domains and all(0.0 <= a <= 1.0 for a in acc)


def test_global_gate_metric_is_the_test_accuracy(setup):
    from fedalign.sim.server import evaluate

    run = _Run(setup, parse_strategy("greedy", 0.0))
    per_domain = run.evaluate()
    total, by_domain = evaluate(run.worker, setup.partition)
    np.testing.assert_allclose(per_domain, by_domain)
    assert np.mean(per_domain) == pytest.approx(total)


def test_runs_repeat_under_a_seed(setup):
    strategy = parse_strategy("oort", setup.config.usage_weight)
    a, b = run_cross_device(setup, strategy), run_cross_device(setup, strategy)
    assert a.accuracy == b.accuracy and np.array_equal(a.expert_load, b.expert_load)
    assert [r["bytes_down"] for r in a.records] == [r["bytes_down"] for r in b.records]


def test_experiment_outputs(tmp_path):
    names = ["random", "oort", "greedy@local"]
    res = run_experiment(TINY.replace(rounds=2), names, seeds=[0, 1], out_dir=tmp_path, progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(res))
    assert data["scenario"] == "cross-device" and 0 < data["target_accuracy"] <= 1
    assert data["config"]["scenario"] == "cross-device" and data["config"]["seeds"] == [0, 1]
    for entry in data["strategies"].values():
        for key in ("time_to_target", "bytes_to_target", "planning_seconds", "dropouts",
                    "trained_share", "tier_participation", "rounds"):  # fmt: skip
            assert len(entry[key]) == 2
        assert entry["simulated_seconds"] > 0
        for seed_rounds, seconds in zip(entry["rounds"], entry["per_seed"]["seconds"], strict=True):
            assert [r["round"] for r in seed_rounds] == [0, 1]
            for key in ("planning_seconds", "round_seconds", "bytes_down", "bytes_up",
                        "byte_budget", "online", "trained_clients", "dropouts"):  # fmt: skip
                assert key in seed_rounds[0]
            assert sum(r["round_seconds"] for r in seed_rounds) == pytest.approx(seconds[-1])
        for t, moved, acc in zip(entry["time_to_target"], entry["bytes_to_target"], entry["accuracy"], strict=True):
            assert (t is None) == (moved is None) == (max(acc) < data["target_accuracy"] - 1e-12)
        assert set(entry["tier_participation"][0]) == {"phone", "laptop", "workstation"}
    for f in ("summary.md", "accuracy_vs_time.png", "accuracy_vs_bytes.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "min to" in (tmp_path / "summary.md").read_text()


def test_cli_runs_the_scenario_with_both_gates(tmp_path, capsys):
    out = tmp_path / "xd"
    status = main([
        "simulate", "--scenario", "cross-device", "--dataset", "digits", "--rounds", "1",
        "--seeds", "1", "--strategies", "load-balanced,oort", "--gate", "both",
        "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert status == 0
    data = json.loads((out / "results.json").read_text())
    assert list(data["strategies"]) == ["load-balanced", "oort", "load-balanced@local", "oort@local"]
    assert "| oort@local |" in capsys.readouterr().out


def test_cli_gate_local_keeps_every_gate_on_the_clients(tmp_path):
    out = tmp_path / "local"
    status = main([
        "simulate", "--scenario", "cross-device", "--dataset", "digits", "--rounds", "1",
        "--seeds", "1", "--strategies", "greedy,random@global", "--gate", "local",
        "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert status == 0
    data = json.loads((out / "results.json").read_text())
    # the suffixed name keeps its gate; the plain one runs with local gates only
    assert list(data["strategies"]) == ["random@global", "greedy@local"]
    assert data["config"]["gate"] == "global" and data["scenario"] == "cross-device"


def test_cli_refuses_what_the_scenarios_cannot_run(tmp_path, capsys):
    assert main(["simulate", "--strategies", "oort", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--strategies" in capsys.readouterr().err
    assert main(["simulate", "--gate", "local", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--gate" in capsys.readouterr().err
    if "flow" not in solvers_for_rows(TINY):
        argv = ["simulate", "--scenario", "cross-device", "--dataset", "digits", "--rounds", "1",
                "--strategies", "load-balanced/flow", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
        assert main(argv) == 2
        assert "does not support the cross-device rows" in capsys.readouterr().err


def test_the_quick_run_compares_every_kind_of_strategy():
    from fedalign.sim.experiments import _default_seeds, default_strategies

    quick = preset("quick", scenario="cross-device")
    names = default_strategies(quick, quick=True)
    for name in ("random", "greedy", "load-balanced", "oort", "balanced"):
        assert name in names
    assert any(n.startswith("load-balanced/") for n in names)
    full = default_strategies(preset("full", scenario="cross-device"))
    assert {f"load-balanced/{s}" for s in solvers_for_rows(quick) if s not in ("auto", "random")} <= set(full)
    assert _default_seeds(quick, True) == 1 and _default_seeds(quick, False) == 5
    assert _default_seeds(preset("quick"), True) == 2


def test_balanced_is_the_schedulers_own_defaults_and_the_others_the_papers(setup):
    import inspect

    from fedalign import Scheduler
    from fedalign.sim.crossdevice import make_cross_device_scheduler

    default = inspect.signature(Scheduler).parameters["balance_weight"].default
    own = make_cross_device_scheduler(setup, parse_strategy("balanced", 0.2))
    paper = make_cross_device_scheduler(setup, parse_strategy("load-balanced/greedy", 0.2))
    assert own._settings.balance_weight == default
    assert paper._settings.balance_weight == 0.0
