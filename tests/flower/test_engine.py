"""``--engine flower``: the harness's experiment through Flower's simulation engine (Ray).

One tiny comparison run through Flower and locally under the same seed: the Flower run must
reproduce the local one (same cohorts, device luck, plans and training seeds), including the
simulated dropouts, which travel through Flower as error replies.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")
pytest.importorskip("torch")

from fedalign.flower.engine import run_flower_experiment  # noqa: E402
from fedalign.sim.config import preset  # noqa: E402
from fedalign.sim.experiments import run_experiment  # noqa: E402

pytestmark = [pytest.mark.flower, pytest.mark.slow, pytest.mark.torch]


def test_flower_engine_reproduces_the_local_run(tmp_path):
    config = preset("tiny", rounds=3, n_clients=6, n_domains=3, n_experts=3)
    strategies = ["load-balanced"]
    local = run_experiment(config, strategies, [0], engine="local", progress=False, plots=False)
    flower = run_flower_experiment(
        config, strategies, [0], out_dir=tmp_path, progress=False, plots=False
    )

    written = json.loads((tmp_path / "results.json").read_text())
    assert written["config"]["engine"] == "flower"
    assert local["config"]["engine"] == "local"
    a = local["strategies"]["load-balanced"]
    b = written["strategies"]["load-balanced"]
    # Same seed: accuracy within a point in every round (in practice identical).
    np.testing.assert_allclose(b["accuracy"], a["accuracy"], atol=0.01)
    assert b["per_seed"]["expert_load"] == a["per_seed"]["expert_load"]
    assert b["per_seed"]["trained_load"] == a["per_seed"]["trained_load"]
    assert b["per_seed"]["bytes_down"] == a["per_seed"]["bytes_down"]
    assert b["per_seed"]["bytes_up"] == a["per_seed"]["bytes_up"]
    assert b["per_seed"]["dropouts"] == a["per_seed"]["dropouts"]
    # The scenario has simulated dropouts, so the error-reply path was exercised.
    assert sum(a["per_seed"]["dropouts"][0]) > 0
    assert flower["strategies"]["load-balanced"]["final_accuracy"] == b["final_accuracy"]
