"""FedAlignController's defenses through the round driver: a poisoned site with a huge sample
count, the weight bound, robust aggregation and the screen from JSON-friendly arguments, and
rewards carrying local-differential-privacy noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from nvflare_helpers import model_state, reply, trained

from fedalign.nvflare import FedAlignController, read_reply, wire
from fedalign.nvflare.client import read_task
from fedalign.nvflare.client import train_reply as site_reply
from fedalign.rounds import ReplyScreen, RobustAggregator

pytestmark = pytest.mark.nvflare

SITES = [f"site-{k}" for k in range(1, 8)]
SCHEDULER = {"n_experts": 3, "solver": "flow", "seed": 0, "max_experts": 3, "trust_rate": 0.5}


def poison_site_3(site: str, task: Any, model: Any) -> Any:
    delta = 0.1 * (1 + int(site[-1]) / 100)
    if site == "site-3":
        return reply(model, samples=10**12, delta=-10.0)
    return reply(model, samples=10, delta=delta)


def _moved(state: dict[str, np.ndarray]) -> list[float]:
    start = model_state()
    return [float(np.mean(state[k] - start[k])) for k in start if start[k].dtype.kind == "f"]


def test_the_weight_bound_holds_by_default(harness):
    ctrl = harness(poison_site_3, sites=SITES, num_rounds=1, scheduler_args=SCHEDULER).run()
    assert ctrl.history[0].bounded == {"site-3": 100.0}  # 10 x the median weight 10
    assert all(m < 0 for m in _moved(ctrl.states[0]))  # bounded, not defended


@pytest.mark.parametrize(
    "defenses",
    [
        {"aggregation": {"rule": "median"}},
        {"aggregation": {"rule": "trimmed-mean", "trim": 0.2}},
        {"aggregation": {"rule": "mean", "max_share": 0.2}, "screen": {}},
    ],
    ids=["median", "trimmed-mean", "screen+cap"],
)
def test_defenses_keep_the_model_from_a_poisoned_site(harness, defenses):
    ctrl = harness(
        poison_site_3, sites=SITES, num_rounds=2, scheduler_args=SCHEDULER, **defenses
    ).run()
    for state in ctrl.states:
        assert all(m > 0 for m in _moved(state))
    if "screen" in defenses:
        assert [list(s.screened) for s in ctrl.history] == [["site-3"], ["site-3"]]
        assert ctrl.scheduler.trust[ctrl.scheduler.client_ids.index("site-3")] == pytest.approx(0.25)


def test_build_driver_turns_the_arguments_into_the_drivers_defenses():
    ctrl = FedAlignController(
        scheduler_args={"n_experts": 2},
        aggregation={"rule": "median", "max_share": 0.5},
        screen={"norm_ratio": 3.0},
    )
    driver = ctrl.build_driver(object())
    assert isinstance(driver.aggregate, RobustAggregator) and driver.aggregate.max_share == 0.5
    assert isinstance(driver.screen, ReplyScreen) and driver.screen.norm_ratio == 3.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"aggregation": {"rule": "mode"}}, ValueError, "aggregation: RobustAggregator.rule"),
        ({"aggregation": {"colour": 1}}, TypeError, "aggregation:"),
        ({"screen": {"norm_ratio": 0.5}}, ValueError, "screen: ReplyScreen.norm_ratio"),
        ({"screen": [1]}, TypeError, "screen: expected a dict"),
    ],
)
def test_bad_defense_arguments_fail_when_the_controller_is_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        FedAlignController(**kwargs)


def test_read_reply_carries_the_reward_epsilon():
    task_model = type("M", (), {})()
    params = model_state()
    task_model.params = {k: v for k, v in params.items() if not k.startswith("experts.1")}
    task_model.meta = {wire.EXPERT_IDS: [0, 2], wire.ROUND: 0, wire.CONFIG: {}}
    task_model.current_round = 0
    task_model.total_rounds = 1
    task = read_task(task_model)
    fl = site_reply(task, trained(task_model), samples=5, rewards=[1.6, -0.3], epsilon=0.5)
    _, feedback, _ = read_reply(fl, [0, 2])
    assert feedback.epsilon == 0.5 and feedback.rewards == {0: 1.6, 2: -0.3}
    assert feedback.reward_variance is None
    fl = site_reply(
        task, trained(task_model), samples=5, rewards=[1.6, -0.3], epsilon=0.5, reward_variance=3.0
    )
    assert read_reply(fl, [0, 2])[1].reward_variance == 3.0
