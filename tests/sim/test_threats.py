"""Attacks, defenses, the fairness floor and reward privacy in the harness (tiny runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedalign import ClientProfile  # noqa: E402
from fedalign.cli import main  # noqa: E402
from fedalign.sim.config import parse_strategy, preset  # noqa: E402
from fedalign.sim.experiments import run_experiment  # noqa: E402
from fedalign.sim.server import make_setup, run_strategy  # noqa: E402
from fedalign.sim.threats import (  # noqa: E402
    ATTACKS,
    Adversary,
    Defenses,
    ThreatConfig,
    ThreatRun,
    jain_index,
    parse_defenses,
)

TINY = preset("tiny").replace(rounds=3, n_clients=10, n_domains=2)
FLOW = parse_strategy("load-balanced/flow", TINY.usage_weight)


@pytest.fixture(scope="module")
def setup():
    return make_setup(TINY, seed=0)


# ------------------------------------------------------------------ settings


def test_parse_defenses():
    assert parse_defenses("all") == ("median", "weight-cap", "screen", "validation", "trust")
    assert parse_defenses("trust, median") == ("median", "trust")
    assert parse_defenses(None) == parse_defenses("none") == ()
    with pytest.raises(ValueError, match="defense: unknown defense 'krum'"):
        parse_defenses("krum")
    with pytest.raises(ValueError, match="one aggregation rule"):
        parse_defenses("median,trimmed-mean")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"attack": "sybil"}, "attack"),
        ({"attackers": 1.5}, "attackers"),
        ({"defenses": "nope"}, "defense"),
        ({"max_idle_rounds": 0}, "max_idle_rounds"),
        ({"ldp_epsilon": 0.0}, "ldp_epsilon"),
        ({"ldp_mechanism": "gauss"}, "ldp_mechanism"),
        ({"exploration_weight": -1.0}, "exploration_weight"),
    ],
)
def test_threat_config_refuses(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        ThreatConfig(**kwargs)


def test_defenses_build_the_driver_parts():
    d = Defenses(parse_defenses("trimmed-mean,weight-cap,screen,trust,reward-check"))
    agg = d.aggregator()
    assert agg is not None and agg.rule == "trimmed-mean" and agg.max_share == 0.25
    assert d.screen() is not None
    assert d.scheduler_settings() == {"trust_rate": 0.3, "reward_z": 3.5}
    assert Defenses(()).aggregator() is None and Defenses(()).screen() is None


def test_adversary_draw_is_seeded():
    a = Adversary.draw("poison", 0.2, 20, 4, seed=3)
    assert len(a.attackers) == 4 and a.attackers == tuple(sorted(a.attackers))
    assert a == Adversary.draw("poison", 0.2, 20, 4, seed=3)
    assert not Adversary.draw(None, 0.2, 20, 4, seed=3).active
    assert not Adversary.draw("poison", 0.0, 20, 4, seed=3).active


def test_jain_index():
    assert jain_index([1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([]) is None and jain_index([0, 0]) is None


# ------------------------------------------------------------------ what attackers send


def _reply(kind):
    adv = Adversary(kind, (1,), target=2)
    sent = {"experts.0.w": np.ones(3, np.float32), "gate.step": np.array([4])}
    trained = {"experts.0.w": np.full(3, 1.5, np.float32), "gate.step": np.array([5])}
    return adv, adv.tamper(1, [0], sent, trained, {0: 0.6}, 100, 100.0)


def test_poison_scales_and_flips_the_update():
    _, (arrays, rewards, samples, weight) = _reply("poison")
    assert np.allclose(arrays["experts.0.w"], 1 - 10 * 0.5)  # sent - 10 x (trained - sent)
    assert arrays["gate.step"][0] == 5  # integer arrays are left as trained
    assert rewards == {0: 0.6} and samples == 100_000 and weight == 100_000.0


def test_free_ride_returns_what_it_was_sent():
    _, (arrays, rewards, samples, weight) = _reply("free-ride")
    assert np.array_equal(arrays["experts.0.w"], np.ones(3)) and rewards == {0: 1.0}
    assert samples == 1000 and weight == 1000.0


def test_reward_inflation_reports_one_for_the_target_only():
    adv, (arrays, rewards, _, _) = _reply("reward-inflation")
    assert rewards == {0: 0.0}
    assert adv.tamper(1, [2, 0], {}, {}, {2: 0.1, 0: 0.9}, 1, 1.0)[1] == {2: 1.0, 0: 0.0}
    assert np.allclose(arrays["experts.0.w"], 1.5)  # it trains honestly


def test_capacity_lie_overstates_the_profile():
    adv = Adversary("capacity-lie", (1,))
    honest = ClientProfile(memory=10.0, compute=2.0, bandwidth_up=3.0, max_experts=1)
    lie = adv.profile(1, honest, largest_memory=50.0, most_experts=4)
    assert (lie.memory, lie.max_experts, lie.compute, lie.bandwidth_up) == (80.0, 4, 16.0, 24.0)
    assert adv.profile(0, honest, 50.0, 4) is honest
    assert adv.tamper(1, [0], {}, {"a": np.ones(1)}, {0: 0.5}, 7, 7.0)[1:] == ({0: 0.5}, 7, 7.0)


# ------------------------------------------------------------------ in the harness


def _run(setup, cfg=None, **kwargs):
    return run_strategy(
        setup if cfg is None else make_setup(cfg, 0), FLOW, threats=ThreatConfig(**kwargs)
    )


def test_clean_threat_run_changes_nothing(setup):
    plain = run_strategy(setup, FLOW)
    counted = _run(setup)
    assert counted.accuracy == plain.accuracy
    assert np.array_equal(counted.expert_load, plain.expert_load)
    t = counted.threats
    assert t["adversary"] == {"kind": None, "attackers": [], "target": None}
    assert sum(p["offered"] for p in t["participation"]) == TINY.rounds * TINY.n_clients
    trained = np.array([p["trained"] for p in t["participation"]])
    assert np.array_equal(trained, (counted.trained_load.sum(axis=1)))  # one expert each
    assert t["idle_violations"] == 0 and t["screened"] == 0
    assert set(t["jain_index"]) <= {"phone", "laptop", "workstation"}
    assert "leakage" not in t and "epsilon_spent" not in t


def test_poison_is_bounded_without_defenses_and_screened_with_them(setup):
    bare = _run(setup, attack="poison", attackers=0.2)
    attackers = bare.threats["adversary"]["attackers"]
    assert len(attackers) == 2
    assert bare.threats["bounded"] > 0  # the claimed 1000 x samples are never credited
    assert bare.threats["screened"] == 0
    guarded = _run(setup, attack="poison", attackers=0.2, defenses="median,weight-cap,screen,trust")
    assert guarded.threats["screened_attackers"] > 0
    trust = np.array(guarded.threats["trust"])
    honest = np.setdiff1d(np.arange(TINY.n_clients), attackers)
    # every attacker below the typical honest client (the screen has false positives too)
    assert trust[attackers].max() < np.median(trust[honest])


def test_free_ride_is_screened(setup):
    r = _run(setup, attack="free-ride", attackers=0.2, defenses="screen")
    assert r.threats["screened_attackers"] >= 1


def test_reward_inflation_runs_with_the_reward_test(setup):
    r = _run(setup, attack="reward-inflation", attackers=0.2, defenses="trust,reward-check")
    assert r.threats["adversary"]["target"] in range(TINY.n_experts)
    assert len(r.accuracy) == TINY.rounds


def test_validation_defense_scores_experts_on_the_server_sample(setup):
    from fedalign.sim.model import model_for

    run = ThreatRun(ThreatConfig(defenses="validation"), setup, lambda: model_for(TINY, setup.data))
    screen = run.driver_options()["screen"]
    assert screen.validate is run.validator and run.validator is not None
    state = {k: v.numpy() for k, v in setup.initial_state.items()}
    score = run.validator(0, state)
    assert 0.0 <= score <= 1.0 and run.validator.calls == 1
    broken = {k: (v * 0 if k.startswith("experts.0.") else v) for k, v in state.items()}
    assert run.validator(0, broken) <= score  # a zeroed expert scores no better
    r = _run(setup, attack="poison", attackers=0.2, defenses="validation")
    assert len(r.accuracy) == TINY.rounds


def test_capacity_liars_are_over_assigned_and_run_out_of_memory():
    cfg = TINY.replace(max_experts=None, expert_capacity_slack=None, rounds=4)
    s = make_setup(cfg, 0)
    r = run_strategy(s, FLOW, threats=ThreatConfig(attack="capacity-lie", attackers=0.3))
    liars = r.threats["adversary"]["attackers"]
    memory = s.fleet.max_experts
    assert len(r.threats["over_assigned_rounds"]) == len(liars)
    # a liar whose device holds fewer than 4 experts is given more than it holds at first
    small = [k for k, c in enumerate(liars) if memory[c] < 4]
    assert small and all(r.threats["over_assigned_rounds"][k] >= 1 for k in small)
    honest = np.setdiff1d(np.arange(cfg.n_clients), liars)
    assert np.all(r.expert_load[honest].sum(axis=1) <= cfg.rounds * memory[honest])


def test_ldp_rewards_spend_epsilon_and_the_audit_reports(setup):
    r = _run(setup, ldp_epsilon=0.5, audit=True, max_idle_rounds=2)
    trained = max(p["trained"] for p in r.threats["participation"])
    assert r.threats["epsilon_spent"] == pytest.approx(0.5 * trained)
    leak = r.threats["leakage"]
    assert 0.0 <= leak["accuracy"] <= 1.0 and leak["chance"] == pytest.approx(0.5)
    assert r.threats["idle_violations"] == 0


def test_ldp_noise_reaches_the_scheduler(setup, built_feedback):
    _run(setup, ldp_epsilon=1.0)
    noisy = [f for f in built_feedback if f.epsilon is not None]
    assert noisy and any(v < 0 or v > 1 for f in noisy for v in f.rewards.values())


def test_best_expert_reports_cover_every_expert_and_count_the_downloads(
    setup, monkeypatch, built_feedback
):
    surveyed = []
    survey = ThreatRun.survey

    def spy_survey(self, model, experts, x, y, kind, layout):
        given = set(experts)
        others = [j for j in range(TINY.n_experts) if j not in given]
        surveyed.append(sum(layout.expert_nbytes[j] for j in others))
        return survey(self, model, experts, x, y, kind, layout)

    monkeypatch.setattr(ThreatRun, "survey", spy_survey)
    r = _run(setup, ldp_epsilon=1.0, ldp_mechanism="best-expert")
    private = [f for f in built_feedback if f.epsilon is not None]
    assert private and len(private) == len(surveyed)
    for f in private:  # one hit: the reported expert gets (1 - q) / (p - q), the others -q / (p - q)
        values = {**f.rewards, **f.survey}
        assert sorted(values) == list(range(TINY.n_experts))
        assert sum(v > 0 for v in values.values()) == 1
    assert r.threats["epsilon_spent"] == pytest.approx(max(p["trained"] for p in r.threats["participation"]))
    # the evaluated experts' downloads are in bytes_down, round by round: the same run with
    # them left uncounted downloads exactly that much less
    assert sum(rec["bytes_down"] for rec in r.records) == r.bytes_down[-1]
    counted = sum(surveyed)
    monkeypatch.setattr(ThreatRun, "take_survey_bytes", lambda self: 0)
    uncounted = _run(setup, ldp_epsilon=1.0, ldp_mechanism="best-expert")
    assert uncounted.accuracy == r.accuracy
    assert r.bytes_down[-1] - uncounted.bytes_down[-1] == counted > 0


def test_best_expert_needs_a_reward_measured_before_training():
    cfg = TINY.replace(reward="loss-reduction")
    with pytest.raises(ValueError, match="best-expert"):
        run_experiment(
            cfg, ["load-balanced/flow"], seeds=[0], progress=False, plots=False,
            threats=ThreatConfig(ldp_epsilon=1.0, ldp_mechanism="best-expert"),
        )  # fmt: skip


# ------------------------------------------------------------------ results.json and the CLI


def test_results_json_names(tmp_path):
    cfg = TINY.replace(rounds=2)
    threats = ThreatConfig(
        attack="poison", attackers=0.2, defenses="all", ldp_epsilon=1.0, audit=True
    )
    res = run_experiment(cfg, ["greedy"], [0, 1], progress=False, plots=False, threats=threats)
    e = res["strategies"]["greedy"]
    assert e["attack"] == "poison" and e["attackers"] == 0.2
    assert e["defense"] == ["median", "weight-cap", "screen", "validation", "trust"]
    assert len(e["participation"]) == cfg.n_clients
    assert set(e["participation"][0]) == {"offered", "trained"}
    assert sum(p["offered"] for p in e["participation"]) == 2 * 2 * cfg.n_clients
    assert isinstance(e["jain_index"], dict) and e["idle_violations"] == 0
    assert set(e["leakage"]) == {"accuracy", "chance"} and e["epsilon_spent"] > 0
    assert res["config"]["threats"]["defense"] == e["defense"]
    json.dumps(res, allow_nan=False)


def test_uniform_fleet_has_one_jain_index():
    cfg = TINY.replace(rounds=1, device_tiers="uniform")
    res = run_experiment(cfg, ["greedy"], [0], progress=False, plots=False, threats=ThreatConfig())
    assert isinstance(res["strategies"]["greedy"]["jain_index"], float)


@pytest.mark.parametrize("attack", ATTACKS)
def test_cli_attack_flags(tmp_path, capsys, attack):
    out = tmp_path / attack
    argv = [
        "simulate", "--quick", "--rounds", "1", "--seeds", "1", "--strategies", "greedy",
        "--attack", attack, "--attackers", "0.25", "--defense", "median,screen",
        "--max-idle-rounds", "5", "--ldp-epsilon", "2", "--audit", "--out", str(out),
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    e = json.loads((out / "results.json").read_text())["strategies"]["greedy"]
    assert e["attack"] == attack and e["attackers"] == 0.25 and e["defense"] == ["median", "screen"]
    for key in ("participation", "jain_index", "idle_violations", "leakage", "epsilon_spent"):
        assert key in e


def test_cli_clean_run_reports_participation(tmp_path):
    out = tmp_path / "clean"
    argv = ["simulate", "--quick", "--rounds", "1", "--seeds", "1", "--strategies", "greedy",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    e = json.loads((out / "results.json").read_text())["strategies"]["greedy"]
    assert e["attack"] is None and e["defense"] == [] and "leakage" not in e


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--defense", "krum"], "--defense"),
        (["--attack", "poison", "--attackers", "2"], "--attackers"),
        (["--max-idle-rounds", "0"], "--max-idle-rounds"),
        (["--ldp-epsilon", "-1"], "--ldp-epsilon"),
        (["--attack", "poison", "--engine", "flower"], "--engine local"),
        (["--attackers", "0.3"], "--attackers: needs --attack"),
    ],
)
def test_cli_bad_threat_flags(tmp_path, capsys, argv, flag):
    status = main(["simulate", "--rounds", "1", "--out", str(tmp_path), "--no-progress", *argv])
    assert status == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_results_json_reports_how_long_a_capacity_lie_pays():
    cfg = TINY.replace(rounds=3, max_experts=None, expert_capacity_slack=None)
    threats = ThreatConfig(attack="capacity-lie", attackers=0.3)
    res = run_experiment(cfg, ["greedy"], [0], progress=False, plots=False, threats=threats)
    e = res["strategies"]["greedy"]
    assert 0 < e["over_assigned_rounds"] <= cfg.rounds
    assert 0 <= e["last_over_assigned_round"] < cfg.rounds
