"""Two-round smoke simulations of the server loop and the experiment outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedalign.sim.config import SimConfig, parse_strategy, preset  # noqa: E402
from fedalign.sim.experiments import ordering_by_seed, run_experiment  # noqa: E402
from fedalign.sim.server import make_setup, run_strategy  # noqa: E402

TINY = preset("tiny")  # 2 rounds, 8 clients, 1 local epoch


@pytest.fixture(scope="module")
def setup():
    return make_setup(TINY, seed=0)


@pytest.mark.parametrize("name", ["random", "greedy", "load-balanced", "load-balanced/flow"])
def test_two_round_smoke(setup, name):
    strategy = parse_strategy(name, TINY.usage_weight)
    ticks = []
    r = run_strategy(setup, strategy, on_round=lambda k, a: ticks.append((k, a)))
    assert [k for k, _ in ticks] == [0, 1]
    assert len(r.accuracy) == len(r.seconds) == len(r.bytes_up) == TINY.rounds
    assert all(0.0 <= a <= 1.0 for a in r.accuracy)
    # one expert per client and round (max_experts=1); each assignment costs shared + expert bytes
    per_client = setup.fleet.shared_bytes + setup.fleet.expert_bytes
    assigned = int(r.expert_load.sum())
    assert r.expert_load.sum(axis=1).max() <= TINY.rounds
    assert r.bytes_down[-1] == assigned * per_client
    completed = int(r.trained_load.sum())
    assert r.bytes_up[-1] == completed * per_client
    assert np.all(r.trained_load <= r.expert_load)
    assert completed + sum(r.dropouts) == assigned
    assert np.sum(r.round_load) == completed
    assert np.all(np.diff(r.seconds) > 0)
    # identical setup and strategy: identical run
    again = run_strategy(setup, strategy)
    assert again.accuracy == r.accuracy and np.array_equal(again.expert_load, r.expert_load)


def test_round_changes_only_trained_experts():
    cfg = TINY.replace(
        rounds=1, n_clients=4, n_domains=2, device_tiers="uniform", slowdown_sigma=0.0
    )
    s = make_setup(cfg, seed=1)
    r = run_strategy(s, parse_strategy("greedy", 0.0))
    # 4 clients, 4 experts, one each: every trained expert got at least one update
    assert int(r.trained_load.sum()) == 4 and sum(r.dropouts) == 0


def test_experiment_outputs(tmp_path):
    cfg = TINY.replace(n_clients=6, n_domains=2)
    names = ["random", "greedy", "load-balanced", "load-balanced/flow"]
    res = run_experiment(cfg, names, seeds=[0, 1], out_dir=tmp_path, progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(res))
    assert set(data["strategies"]) == set(names)
    assert 0.0 < data["target_accuracy"] <= 1.0
    assert data["config"]["seeds"] == [0, 1] and data["config"]["dataset"] == "digits"
    for entry in data["strategies"].values():
        assert len(entry["accuracy"]) == 2 and all(len(a) == cfg.rounds for a in entry["accuracy"])
        assert entry["final_accuracy"] == pytest.approx(np.mean([a[-1] for a in entry["accuracy"]]))
        assert len(entry["rounds_to_target"]) == 2
        assert all(r is None or 1 <= r <= cfg.rounds for r in entry["rounds_to_target"])
        assert np.array(entry["expert_load"]).shape == (cfg.n_clients, cfg.n_experts)
        assert entry["bytes_down"] >= entry["bytes_up"] > 0 and entry["simulated_seconds"] > 0
    assert len(data["ordering"]["holds"]) == 2
    for f in (
        "summary.md",
        "accuracy_vs_round.png",
        "accuracy_vs_bytes.png",
        "expert_load_heatmaps.png",
        "expert_load_cv.png",
    ):
        assert (tmp_path / f).stat().st_size > 0
    assert "| load-balanced/flow |" in (tmp_path / "summary.md").read_text()


def test_runner_is_injected_and_engine_recorded():
    cfg = TINY.replace(rounds=1, n_clients=4, n_domains=2)
    calls = []

    def runner(setup, strategy, *, on_round=None):
        calls.append((setup.seed, strategy.name))
        return run_strategy(setup, strategy, on_round=on_round)

    names = ["greedy", "load-balanced"]
    res = run_experiment(cfg, names, [0, 1], engine="flower", runner=runner, progress=False)
    assert calls == [(0, "greedy"), (0, "load-balanced"), (1, "greedy"), (1, "load-balanced")]
    assert res["config"]["engine"] == "flower"
    local = run_experiment(cfg, names, [0, 1], progress=False)
    assert local["config"]["engine"] == "local"
    for name in names:  # the injected runner's results are the ones reported
        assert res["strategies"][name]["accuracy"] == local["strategies"][name]["accuracy"]


def _same_runs(a, b):
    """The parts of two results that do not hold wall-clock times."""
    for name, entry in a["strategies"].items():
        other = b["strategies"][name]
        assert entry["accuracy"] == other["accuracy"]
        assert entry["expert_load"] == other["expert_load"]
        assert entry["per_seed"]["bytes_down"] == other["per_seed"]["bytes_down"]
        assert entry["per_seed"]["client_group"] == other["per_seed"]["client_group"]


def test_seeds_in_worker_processes_match_one_after_another():
    cfg = TINY.replace(n_clients=6, n_domains=2)
    names = ["greedy", "load-balanced/flow"]
    serial = run_experiment(cfg, names, [0, 1, 2], progress=False, plots=False)
    parallel = run_experiment(cfg, names, [0, 1, 2], progress=False, plots=False, jobs=2)
    assert parallel["config"]["seeds"] == [0, 1, 2]
    _same_runs(serial, parallel)


def test_a_failing_seed_fails_the_run_with_its_own_error(tmp_path):
    cfg = TINY.replace(dataset="cifar10", data_root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError):
        run_experiment(cfg, ["greedy"], [0, 1], progress=False, plots=False, jobs=2)


@pytest.mark.parametrize("jobs", [1, 2])
def test_finished_seeds_are_kept_while_the_run_goes(tmp_path, monkeypatch, jobs):
    import fedalign.sim.experiments as ex

    cfg = TINY.replace(n_clients=6, n_domains=2)
    names = ["greedy", "load-balanced/flow"]
    kept = []
    add = ex._PartialResults.add

    def spy(self, seed, groups, runs):
        add(self, seed, groups, runs)
        kept.append(json.loads(self.path.read_text()))

    monkeypatch.setattr(ex._PartialResults, "add", spy)
    full = run_experiment(cfg, names, [0, 1], out_dir=tmp_path, progress=False, plots=False, jobs=jobs)
    assert not (tmp_path / ex.PARTIAL_RESULTS).exists()  # the run ended: results.json has it all
    assert [k["config"]["seeds"] for k in kept] in ([[0], [0, 1]], [[1], [0, 1]])
    alone = run_experiment(cfg, names, kept[0]["config"]["seeds"], progress=False, plots=False)
    _same_runs(alone, kept[0])  # what a stopped run keeps is that seed's run
    _same_runs(full, kept[1])


def test_a_stopped_run_keeps_the_seeds_it_finished(tmp_path):
    def runner(setup, strategy, *, on_round=None):
        if setup.seed == 1:
            raise KeyboardInterrupt  # the user stops the run during seed 1
        return run_strategy(setup, strategy, on_round=on_round)

    cfg = TINY.replace(n_clients=6, n_domains=2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            cfg, ["greedy"], [0, 1], out_dir=tmp_path, progress=False, plots=False, runner=runner
        )
    kept = json.loads((tmp_path / "results.partial.json").read_text())
    assert kept["config"]["seeds"] == [0] and not (tmp_path / "results.json").exists()
    assert len(kept["strategies"]["greedy"]["accuracy"]) == 1


def test_jobs_is_checked():
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="jobs"):
            run_experiment(TINY, ["greedy"], jobs=bad)
    with pytest.raises(ValueError, match="jobs: .*local engine"):
        run_experiment(TINY, ["greedy"], engine="flower", runner=run_strategy, jobs=2)


def test_ordering_by_seed():
    def entry(finals):
        return {"per_seed": {"final_accuracy": finals}}

    res = {
        "strategies": {
            "load-balanced": entry([0.9, 0.8]),
            "greedy": entry([0.8, 0.85]),
            "random": entry([0.7, 0.6]),
        }
    }
    assert ordering_by_seed(res)["holds"] == [True, False]
    assert ordering_by_seed({"strategies": {"greedy": entry([1.0])}})["holds"] is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="strategies"):
        parse_strategy("best", 0.5)
    with pytest.raises(ValueError, match="strategies"):
        parse_strategy("load-balanced/magic", 0.5)
    with pytest.raises(ValueError, match="engine"):
        run_experiment(TINY, ["greedy"], engine="ray")
    with pytest.raises(ValueError, match="seeds"):
        run_experiment(TINY, ["greedy"], seeds=[1, 1])
    with pytest.raises(ValueError, match="engine: 'flower' needs runner"):
        run_experiment(TINY, ["greedy"], engine="flower")
    with pytest.raises(TypeError, match="runner"):
        run_experiment(TINY, ["greedy"], runner="flower")
    with pytest.raises(ValueError, match="cohort_size"):
        SimConfig(cohort_size=100)
    with pytest.raises(ValueError, match="reward"):
        SimConfig(reward="vibes")
    with pytest.raises(ValueError, match="dataset"):
        SimConfig(dataset="imagenet")
    with pytest.raises(ValueError, match="partition"):
        SimConfig(partition="iid")
    with pytest.raises(ValueError, match="max_experts"):
        SimConfig(max_experts=0)


def test_compare_engines_rows_and_table(capsys):
    """The engine comparison both adapters print: the local runner against itself agrees."""
    from fedalign.sim.experiments import compare_engines, compare_engines_main

    rows = compare_engines(TINY, ["greedy"], 0, engine="same", runner=run_strategy)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"strategy", "local", "same", "max_round_diff", "same_expert_load",
                        "local_seconds", "same_seconds"}
    assert row["max_round_diff"] == 0.0 and row["same_expert_load"]
    assert row["local"] == row["same"]

    def compare(config, strategies, seed):
        return [dict(row, strategy=s) for s in strategies]

    compare_engines_main("same", compare, ["--preset", "tiny", "--strategies", "greedy,random"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| strategy | local | same |") and len(out) == 4
    assert out[3].startswith("| random |")
