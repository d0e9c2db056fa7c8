"""Attacks, defenses, the fairness floor and reward privacy in the cross-device scenario, on
its digits variant (tiny runs): the same ThreatRun hooks as fig3's, in the cross-device loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedalign.cli import main  # noqa: E402
from fedalign.sim.config import parse_strategy, preset  # noqa: E402
from fedalign.sim.crossdevice import (  # noqa: E402
    _Run,
    make_cross_device_setup,
    run_cross_device,
)
from fedalign.sim.experiments import run_experiment  # noqa: E402
from fedalign.sim.threats import ThreatConfig  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::fedalign.errors.HerdingWarning")

TINY = preset("tiny", scenario="cross-device", rounds=5)
PLANNED = parse_strategy("load-balanced/greedy", TINY.usage_weight)  # the whole online cohort
ADMITTED = parse_strategy("greedy", TINY.usage_weight)  # admission in check-in order


@pytest.fixture(scope="module")
def setup():
    return make_cross_device_setup(TINY, seed=0)


def _run(setup, strategy=PLANNED, **kwargs):
    return run_cross_device(setup, strategy, threats=ThreatConfig(**kwargs))


def _honest(setup, attackers):
    return np.setdiff1d(np.arange(setup.config.n_clients), attackers)


@pytest.mark.parametrize("strategy", [PLANNED, ADMITTED], ids=["planned", "admitted"])
def test_a_clean_threat_run_changes_nothing_and_counts_the_online_clients(setup, strategy):
    plain = run_cross_device(setup, strategy)
    counted = _run(setup, strategy)
    assert counted.accuracy == plain.accuracy
    assert np.array_equal(counted.expert_load, plain.expert_load)
    assert not plain.threats  # no ThreatConfig: no figures
    t = counted.threats
    offered = np.array([p["offered"] for p in t["participation"]])
    assert np.array_equal(offered, setup.timeline.online.sum(axis=0))  # offered = online
    trained = np.array([p["trained"] for p in t["participation"]])
    assert trained.sum() == sum(r["trained_clients"] for r in counted.records)
    assert np.all(trained <= offered)
    assert set(t["jain_index"]) == {"phone", "laptop", "workstation"}
    assert all(0.0 < v <= 1.0 for v in t["jain_index"].values())
    assert t["idle_violations"] == 0 and t["screened"] == 0 and t["bounded"] == 0


def test_poison_is_bounded_undefended_and_screened_and_distrusted_defended(setup):
    clean = _run(setup)
    bare = _run(setup, attack="poison", attackers=0.2)
    attackers = bare.threats["adversary"]["attackers"]
    assert len(attackers) == round(0.2 * TINY.n_clients)
    assert bare.threats["bounded"] > 0  # the claimed 1000 x samples are never credited
    assert bare.threats["screened"] == 0
    assert bare.accuracy != clean.accuracy  # the poisoned replies reach the averages
    guarded = _run(setup, attack="poison", attackers=0.2, defenses="all")
    assert guarded.threats["screened_attackers"] > 0
    trust = np.array(guarded.threats["trust"])
    # attackers that trained at least once sit below the typical honest client
    trained = np.array([p["trained"] for p in guarded.threats["participation"]])
    active = [c for c in attackers if trained[c] > 0]
    assert active and np.median(trust[active]) < np.median(trust[_honest(setup, attackers)])


def test_free_riders_are_screened(setup):
    r = _run(setup, attack="free-ride", attackers=0.2, defenses="screen")
    assert r.threats["screened_attackers"] >= 1


def test_reward_inflation_reaches_the_scheduler_and_raises_the_target(setup, monkeypatch):
    from fedalign import Scheduler

    reports = []
    original = Scheduler.report

    def spy(self, client_id, feedback, round=None):
        reports.append((client_id, dict(feedback.rewards)))
        return original(self, client_id, feedback, round=round)

    def fitness(**kwargs):
        run = _Run(setup, PLANNED, ThreatConfig(**kwargs))
        for number in range(TINY.rounds):
            rnd = run.check_in(number)
            run.plan(rnd)
            run.play(rnd)
        run.sched.end_round()
        return run, np.asarray(run.sched.fitness)

    monkeypatch.setattr(Scheduler, "report", spy)
    run, lied = fitness(attack="reward-inflation", attackers=0.2)
    adv = run.threats.adversary
    lies = [r for c, r in reports if adv.attacks(c)]
    assert lies and all(r == {j: float(j == adv.target) for j in r} for r in lies)
    assert any(r != {j: float(j == adv.target) for j in r} for c, r in reports if not adv.attacks(c))
    _, honest = fitness()
    liars = np.array(adv.attackers)
    # the lie steers the liars' fitness toward the target
    assert lied[liars, adv.target].mean() > honest[liars, adv.target].mean()


def test_capacity_liars_register_and_report_the_lie_and_are_over_assigned(setup):
    run = _Run(setup, PLANNED, ThreatConfig(attack="capacity-lie", attackers=0.3))
    liars = run.threats.adversary.attackers
    pop = setup.population
    for c in liars:
        p = run.sched.profile(c)
        assert p.memory >= pop.memory.max() and p.compute == pytest.approx(8 * pop.compute[c])
    rnd = run.check_in(0)
    lying = [c for c in liars if c in rnd.conditions]
    assert lying and all(
        rnd.conditions[c].bandwidth_up
        == pytest.approx(8 * pop.bandwidth_up[c] * setup.timeline.fading[0, c])
        for c in lying
    )
    r = _run(setup, attack="capacity-lie", attackers=0.3)
    t = r.threats
    assert len(t["over_assigned_rounds"]) == len(liars)
    assert sum(t["over_assigned_rounds"]) >= 1
    honest = _honest(setup, liars)
    # no honest device is given more than its memory holds, round after round
    for client, experts in ((c, np.flatnonzero(r.expert_load[c])) for c in honest):
        assert setup.expert_memory[experts].max(initial=0.0) <= pop.memory[client] + 1e-6


def test_a_client_given_more_than_its_memory_fails_out_of_memory(setup):
    run = _Run(setup, PLANNED, ThreatConfig(attack="capacity-lie", attackers=0.3))
    x = np.ones((1, TINY.n_experts), dtype=bool)
    small = int(np.argmin(setup.population.memory))
    assert not run.threats.fits([small], x)[0]
    assert run.threats.fits([small], np.zeros_like(x))[0]


def test_the_idle_floor_binds_and_is_met(setup):
    floored = 0
    run = _Run(setup, PLANNED, ThreatConfig(max_idle_rounds=1))
    for number in range(TINY.rounds):
        rnd = run.check_in(number)
        run.plan(rnd)
        if rnd.current is not None:
            floored += len(rnd.current.plan.floored)
            assert rnd.current.plan.idle_violations == []
        run.play(rnd)
    assert floored > 0  # clients compete for the budget: the floor changes plans
    r = _run(setup, max_idle_rounds=1)
    assert r.threats["idle_violations"] == 0
    assert not np.array_equal(r.expert_load, _run(setup).expert_load)


def test_ldp_rewards_spend_epsilon_and_the_audit_reports(setup):
    r = _run(setup, ldp_epsilon=0.5, audit=True)
    trained = max(p["trained"] for p in r.threats["participation"])
    assert r.threats["epsilon_spent"] == pytest.approx(0.5 * trained)
    leak = r.threats["leakage"]
    assert 0.0 <= leak["accuracy"] <= 1.0
    # chance: the largest domain's share of the clients the observer saw given an expert
    seen = setup.partition.client_group[r.expert_load.sum(axis=1) > 0]
    assert leak["chance"] == pytest.approx(np.bincount(seen).max() / seen.size)


def test_best_expert_reports_survey_every_expert_and_are_counted_in_bytes(
    setup, monkeypatch, built_feedback
):
    from fedalign.sim.threats import ThreatRun

    surveyed = []
    take = ThreatRun.take_survey_bytes

    def spy_take(self):
        surveyed.append(take(self))
        return surveyed[-1]

    monkeypatch.setattr(ThreatRun, "take_survey_bytes", spy_take)
    r = _run(setup, ldp_epsilon=1.0, ldp_mechanism="best-expert")
    private = [f for f in built_feedback if f.epsilon is not None]
    assert private
    for f in private:  # every expert is in the report, exactly one of them reported best
        values = {**f.rewards, **f.survey}
        assert sorted(values) == list(range(TINY.n_experts))
        assert sum(v > 0 for v in values.values()) == 1
    # the downloads of the experts evaluated only are in the round's bytes down: the same
    # run with them left uncounted downloads exactly that much less
    assert sum(surveyed) > 0
    assert sum(rec["bytes_down"] for rec in r.records) == r.bytes_down[-1]
    monkeypatch.setattr(ThreatRun, "take_survey_bytes", lambda self: 0)
    uncounted = _run(setup, ldp_epsilon=1.0, ldp_mechanism="best-expert")
    assert uncounted.accuracy == r.accuracy
    assert r.bytes_down[-1] - uncounted.bytes_down[-1] == sum(surveyed)


def test_results_json_names_in_the_cross_device_scenario(tmp_path):
    cfg = TINY.replace(rounds=2)
    threats = ThreatConfig(
        attack="poison", attackers=0.2, defenses="all", max_idle_rounds=2, ldp_epsilon=1.0,
        audit=True,
    )  # fmt: skip
    res = run_experiment(
        cfg, ["load-balanced/greedy", "oort"], [0, 1], progress=False, plots=False,
        threats=threats,
    )  # fmt: skip
    for e in res["strategies"].values():
        assert e["attack"] == "poison" and e["attackers"] == 0.2
        assert e["defense"] == ["median", "weight-cap", "screen", "validation", "trust"]
        assert len(e["participation"]) == cfg.n_clients
        assert set(e["jain_index"]) == {"phone", "laptop", "workstation"}
        assert e["idle_violations"] == 0
        assert set(e["leakage"]) == {"accuracy", "chance"} and e["epsilon_spent"] > 0
        assert len(e["per_seed"]["threats"]) == 2
    assert res["config"]["threats"]["max_idle_rounds"] == 2
    json.dumps(res, allow_nan=False)
    # the same seeds in two worker processes (--jobs 2): the same runs, threats included
    twin = run_experiment(
        cfg, ["load-balanced/greedy", "oort"], [0, 1], progress=False, plots=False,
        threats=threats, jobs=2,
    )  # fmt: skip
    for name, e in res["strategies"].items():
        other = twin["strategies"][name]
        assert other["accuracy"] == e["accuracy"] and other["expert_load"] == e["expert_load"]
        assert other["participation"] == e["participation"]
        assert other["leakage"] == e["leakage"] and other["epsilon_spent"] == e["epsilon_spent"]


def test_cli_runs_attacks_in_the_cross_device_scenario(tmp_path):
    out = tmp_path / "xd"
    argv = [
        "simulate", "--scenario", "cross-device", "--dataset", "digits", "--rounds", "2",
        "--seeds", "1", "--strategies", "balanced", "--attack", "free-ride",
        "--attackers", "0.2", "--defense", "screen", "--max-idle-rounds", "5",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    e = json.loads((out / "results.json").read_text())["strategies"]["balanced"]
    assert e["attack"] == "free-ride" and e["defense"] == ["screen"]
    for key in ("participation", "jain_index", "idle_violations"):
        assert key in e
