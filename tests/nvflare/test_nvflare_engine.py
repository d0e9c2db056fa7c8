"""``--engine nvflare``: the harness's experiment through NVFlare's simulator reproduces the
local run (accuracy every round, expert loads, bytes, dropouts) and records its engine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nvflare")
pytest.importorskip("torch")

from fedalign.sim.config import parse_strategy, preset  # noqa: E402
from fedalign.sim.server import make_setup  # noqa: E402
from fedalign.sim.server import run_strategy as run_local  # noqa: E402

# xdist_group: the end-to-end runs share one worker (make test: --dist loadgroup)
pytestmark = [pytest.mark.nvflare, pytest.mark.slow, pytest.mark.torch, pytest.mark.xdist_group("e2e")]


def test_the_nvflare_engine_reproduces_the_local_run(tmp_path):
    from fedalign.nvflare.engine import run_strategy

    config = preset("tiny", rounds=3, n_clients=6, n_domains=3, n_experts=3)
    setup = make_setup(config, 0)
    strategy = parse_strategy("load-balanced", config.usage_weight)
    local = run_local(setup, strategy)
    seen: list[tuple[int, float]] = []
    remote = run_strategy(
        setup, strategy, workspace=tmp_path, on_round=lambda r, a: seen.append((r, a))
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

