"""``--engine nvflare``: the harness's experiment through NVFlare's simulator reproduces the
local run (accuracy every round, expert loads, bytes, dropouts) and records its engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nvflare")
pytest.importorskip("torch")

from fedalign.sim.config import parse_strategy, preset  # noqa: E402
from fedalign.sim.server import make_setup  # noqa: E402
from fedalign.sim.server import run_strategy as run_local  # noqa: E402

pytestmark = [pytest.mark.nvflare, pytest.mark.slow, pytest.mark.torch]


def test_the_nvflare_engine_reproduces_the_local_run(tmp_path):
    from fedalign.nvflare.engine import run_strategy

    config = preset("tiny", rounds=3, n_clients=6, n_domains=3, n_experts=3)
    setup = make_setup(config, 0)
    strategy = parse_strategy("load-balanced", config.usage_weight)
    local = run_local(setup, strategy)
    seen: list[tuple[int, float]] = []
    remote = run_strategy(
        setup,
        strategy,
        workspace=tmp_path,
        on_round=lambda r, a: seen.append((r, a)),
        timeout=900,  # fail, never hang, if the simulator stalls
    )
    assert remote.accuracy == local.accuracy
    assert seen == list(enumerate(local.accuracy))
    assert np.array_equal(remote.expert_load, local.expert_load)
    assert np.array_equal(remote.trained_load, local.trained_load)
    assert remote.round_load == local.round_load
    assert remote.dropouts == local.dropouts and sum(local.dropouts) > 0  # the failure path ran
    assert remote.bytes_up == local.bytes_up and remote.bytes_down == local.bytes_down
    assert remote.seconds == local.seconds
    assert (tmp_path / "simulator.log").exists()


def test_a_site_that_does_not_start_is_detected_from_the_log(tmp_path):
    from fedalign.nvflare.engine import _site_start_failure

    log = tmp_path / "simulator.log"
    log.write_text("2026 - INFO - fine\n")
    assert _site_start_failure(log) == ""
    log.write_text(
        "2026 - INFO - fine\n"
        "2026 - ERROR - Communication error with client site-1: [Errno 104] Connection reset\n"
    )
    assert "site-1" in _site_start_failure(log)
    assert _site_start_failure(tmp_path / "missing.log") == ""


def test_a_failed_start_is_tried_again_and_progress_reported_once(tmp_path, monkeypatch):
    from fedalign.nvflare import engine

    calls: list[Path] = []

    def fake_run(setup, strategy, folder, on_round, timeout, round_timeout):
        calls.append(folder)
        on_round(0, 0.5)
        if len(calls) == 1:
            raise engine.SiteStartFailure("a site of the run did not start (x); tail")
        on_round(0, 0.5)
        on_round(1, 0.6)
        return "result"

    monkeypatch.setattr(engine, "_run", fake_run)
    seen: list[tuple[int, float]] = []
    strategy = parse_strategy("greedy", 0.2)
    out = engine.run_strategy(None, strategy, workspace=tmp_path, on_round=lambda r, a: seen.append((r, a)))
    assert out == "result"
    assert calls == [tmp_path, tmp_path / "attempt-2"]
    assert seen == [(0, 0.5), (1, 0.6)]

    calls.clear()

    def always_fails(setup, strategy, folder, on_round, timeout, round_timeout):
        calls.append(folder)
        raise engine.SiteStartFailure("x")

    monkeypatch.setattr(engine, "_run", always_fails)
    with pytest.raises(engine.SiteStartFailure):
        engine.run_strategy(None, strategy, workspace=tmp_path, attempts=1)
    assert calls == [tmp_path]

