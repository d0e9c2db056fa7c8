"""``fedalign simulate`` and ``fedalign demo`` write well-formed outputs (tiny runs)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from fedalign.cli import main  # noqa: E402


def test_simulate_tiny_run(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(
        [
            "simulate", "--quick", "--rounds", "2", "--seeds", "1", "--seed", "3", "--lr", "0.02",
            "--strategies", "greedy,load-balanced/lagrangian", "--out", str(out), "--no-progress",
        ]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "| greedy |" in printed and "| load-balanced/lagrangian |" in printed
    data = json.loads((out / "results.json").read_text())
    assert list(data["strategies"]) == ["greedy", "load-balanced/lagrangian"]
    assert data["config"]["rounds"] == 2 and data["config"]["seeds"] == [3]
    assert data["config"]["lr"] == 0.02
    assert data["config"]["engine"] == "local"
    for entry in data["strategies"].values():
        assert len(entry["accuracy"]) == 1 and len(entry["accuracy"][0]) == 2
        for key in ("final_accuracy", "rounds_to_target", "bytes_up", "bytes_down",
                    "simulated_seconds", "expert_load"):  # fmt: skip
            assert key in entry
    assert data["ordering"]["holds"] is None  # random was not run
    assert (out / "summary.md").read_text().startswith("| strategy |")
    assert (out / "accuracy_vs_round.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--strategies", "greedy,best"], "--strategies"),
        (["--strategies", "load-balanced/nope"], "--strategies"),
        (["--seeds", "0"], "--seeds"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_simulate_bad_flags(tmp_path, capsys, argv, flag):
    status = main(["simulate", "--rounds", "1", "--out", str(tmp_path), "--no-progress", *argv])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("fedalign simulate: error: ") and flag in err
    assert "Traceback" not in err


def test_demo_is_registered(capsys):
    assert main(["demo", "--help"]) == 0
    assert "digits" in capsys.readouterr().out


def test_simulate_on_fake_cifar10_folder(tmp_path, capsys):
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 8) for i in range(1, 6)), ("test_batch", 10)]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    out = tmp_path / "out"
    argv = ["simulate", "--dataset", "cifar10", "--data-root", str(tmp_path), "--rounds", "1", "--seeds", "1",
            "--strategies", "greedy", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["dataset"] == "cifar10" and data["config"]["trunk_hidden"] == 128
    # the domain partition's test set is CIFAR-10's test batch seen through 4 domains
    assert len(data["strategies"]["greedy"]["per_seed"]["domain_accuracy"][0][0]) == 4
    missing = main(
        [
            "simulate",
            "--dataset",
            "cifar10",
            "--data-root",
            str(tmp_path / "nope"),
            "--out",
            str(out),
        ]
    )
    assert missing == 2 and "--data-root" in capsys.readouterr().err


def test_flower_engine_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fedalign.flower", None)  # as if not installed
    status = main(["simulate", "--engine", "flower", "--rounds", "1", "--seeds", "1",
                   "--strategies", "greedy", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "fedalign.flower" in err and "pip install" in err


def test_flower_engine_hands_its_runner_to_the_experiment(tmp_path, capsys, monkeypatch):
    import sys
    import types

    from fedalign.sim.server import run_strategy

    calls = []

    def flower_run_strategy(setup, strategy, *, on_round=None):
        calls.append(strategy.name)
        return run_strategy(setup, strategy, on_round=on_round)

    # stands in for fedalign.flower.engine (Ray start-up is tests/flower/test_engine.py's job)
    package = types.ModuleType("fedalign.flower")
    package.engine = types.SimpleNamespace(run_strategy=flower_run_strategy)
    monkeypatch.setitem(sys.modules, "fedalign.flower", package)
    out = tmp_path / "run"
    status = main(["simulate", "--engine", "flower", "--rounds", "1", "--seeds", "1",
                   "--strategies", "greedy", "--out", str(out), "--no-progress"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert calls == ["greedy"]
    assert json.loads((out / "results.json").read_text())["config"]["engine"] == "flower"


def test_nvflare_engine_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fedalign.nvflare", None)  # as if not installed
    status = main(["simulate", "--engine", "nvflare", "--rounds", "1", "--seeds", "1",
                   "--strategies", "greedy", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "fedalign.nvflare" in err and "pip install 'fedalign[nvflare,sim]'" in err


def test_nvflare_engine_hands_its_runner_to_the_experiment(tmp_path, capsys, monkeypatch):
    import sys
    import types

    from fedalign.sim.server import run_strategy

    calls = []

    def nvflare_run_strategy(setup, strategy, *, on_round=None):
        calls.append(strategy.name)
        return run_strategy(setup, strategy, on_round=on_round)

    # stands in for fedalign.nvflare.engine (the simulator is tests/nvflare/test_engine.py's job)
    package = types.ModuleType("fedalign.nvflare")
    package.engine = types.SimpleNamespace(run_strategy=nvflare_run_strategy)
    monkeypatch.setitem(sys.modules, "fedalign.nvflare", package)
    out = tmp_path / "run"
    status = main(["simulate", "--engine", "nvflare", "--rounds", "1", "--seeds", "1",
                   "--strategies", "greedy", "--out", str(out), "--no-progress"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert calls == ["greedy"]
    assert json.loads((out / "results.json").read_text())["config"]["engine"] == "nvflare"
