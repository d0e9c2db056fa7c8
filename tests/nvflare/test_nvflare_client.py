"""The Client API helpers: instruction parsing, replies, the site loop, the MoE trainer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils
from nvflare_helpers import model_state

from fedalign.nvflare import read_reply, wire
from fedalign.nvflare.client import (
    MoESite,
    TrainTask,
    error_reply,
    read_task,
    run_site,
    site_index,
    train_moe,
    train_reply,
)

pytestmark = pytest.mark.nvflare


def instruction(experts: list[int], config: dict[str, Any] | None = None, rnd: int = 2) -> FLModel:
    """A task as the controller builds it, after a trip through NVFlare's Shareable."""
    state = model_state()
    keys = ["trunk.weight", "gate.bias", "gate.steps"] + [
        k for k in state if any(k.startswith(f"experts.{j}.") for j in experts)
    ]
    model = FLModel(
        params_type=ParamsType.FULL,
        params={k: state[k] for k in keys},
        current_round=rnd,
        total_rounds=5,
        meta={wire.EXPERT_IDS: experts, wire.ROUND: 7, wire.CONFIG: config or {}},
    )
    return FLModelUtils.from_shareable(FLModelUtils.to_shareable(model))


def test_read_task_reads_experts_round_config_and_arrays():
    task = read_task(instruction([2, 0], {"lr": 0.5}))
    assert task.expert_ids == [2, 0]
    assert task.round == 7 and task.current_round == 2
    assert task.config == {"lr": 0.5}
    assert sorted(task.state()) == sorted(task.params)
    assert task.state()["gate.steps"].dtype == np.int64


@pytest.mark.parametrize(
    "model",
    [FLModel(params={"a": 1}), FLModel(metrics={"x": 1}, meta={wire.EXPERT_IDS: [0]})],
)
def test_read_task_refuses_what_the_controller_did_not_send(model):
    with pytest.raises(ValueError, match="model:"):
        read_task(model)


def test_train_reply_round_trips_through_the_controllers_reader():
    task = read_task(instruction([2, 0]))
    params = {k: v + 1 for k, v in task.state().items()}
    fl = train_reply(task, params, samples=40, rewards={0: 0.25, 2: 0.75}, duration=1.5, loss=0.3)
    back = FLModelUtils.from_shareable(FLModelUtils.to_shareable(fl))
    arrays, feedback, weight = read_reply(back, task.expert_ids)
    assert sorted(arrays) == sorted(params)
    assert dict(feedback.rewards) == {2: 0.75, 0: 0.25}  # in expert-ids order on the wire
    assert feedback.samples == 40 and feedback.duration == 1.5 and weight == 40
    assert back.metrics == {"loss": 0.3}


def test_train_reply_takes_a_reward_list_and_a_weight():
    task = read_task(instruction([1]))
    fl = train_reply(task, task.state(), samples=8, rewards=[0.5], weight=2.0)
    assert fl.meta[wire.WEIGHT] == 2.0 and fl.meta[wire.REWARDS] == [0.5]


@pytest.mark.parametrize("rewards", [{0: 0.5}, {1: 0.5, 2: 0.5}, [0.1, 0.2]])
def test_train_reply_refuses_rewards_for_other_experts(rewards):
    task = read_task(instruction([1]))
    with pytest.raises(ValueError, match="rewards"):
        train_reply(task, task.state(), samples=1, rewards=rewards)


def test_an_error_reply_survives_the_client_api_and_reads_as_a_site_error():
    fl = error_reply("no GPU", read_task(instruction([0])))
    back = FLModelUtils.from_shareable(FLModelUtils.to_shareable(fl))
    assert back.meta[wire.ERROR] == "no GPU" and back.params is None


class FakeFlare:
    """The ``nvflare.client`` functions :func:`run_site` calls, fed from a list of tasks."""

    def __init__(self, tasks: list[tuple[str, Any]]) -> None:
        self.tasks = list(tasks)
        self.sent: list[FLModel] = []
        self.current = ""
        self.initialised = False

    def init(self) -> None:
        self.initialised = True

    def is_running(self) -> bool:
        return bool(self.tasks)

    def receive(self) -> Any:
        self.current, model = self.tasks.pop(0)
        return model

    def is_train(self) -> bool:
        return self.current == "train"

    def get_task_name(self) -> str:
        return self.current

    def send(self, model: FLModel) -> None:
        self.sent.append(model)


def test_run_site_trains_fails_and_goes_on():
    flare = FakeFlare(
        [
            ("train", instruction([0], rnd=0)),
            ("train", instruction([1], rnd=1)),
            ("validate", instruction([0])),
            ("train", FLModel(params={"a": 1})),
            ("train", instruction([2], rnd=3)),
        ]
    )

    def train(task: TrainTask) -> FLModel:
        if task.current_round == 1:
            raise RuntimeError("cuda error")
        return train_reply(task, task.state(), samples=3, rewards=[0.5])

    assert run_site(train, flare=flare) == 5
    assert flare.initialised
    first, failed, other, unreadable, last = flare.sent
    assert first.meta[wire.DURATION] >= 0 and wire.ERROR not in first.meta  # measured
    assert failed.meta[wire.ERROR] == "RuntimeError: cuda error"
    assert "'validate' is not handled" in other.meta[wire.ERROR]
    assert "not a fedalign task" in unreadable.meta[wire.ERROR]
    assert last.meta[wire.EXPERT_IDS] == [2]


def test_run_site_keeps_a_reported_duration_and_refuses_a_non_model():
    flare = FakeFlare([("train", instruction([0])), ("train", instruction([0]))])
    answers = iter([None, "x"])

    def train(task: TrainTask) -> Any:
        answer = next(answers)
        if answer is None:
            return train_reply(task, task.state(), samples=1, rewards=[1.0], duration=42.0)
        return answer

    run_site(train, flare=flare)
    assert flare.sent[0].meta[wire.DURATION] == 42.0
    assert "train returned a str" in flare.sent[1].meta[wire.ERROR]


def test_site_index_reads_the_engines_site_names():
    assert site_index("site-0") == 0 and site_index("site-12") == 12
    with pytest.raises(ValueError, match="site-<index>"):
        site_index("hospital-a")


# ---------------------------------------------------------------------- the MoE trainer


@pytest.fixture
def moe_world() -> tuple[Any, Any]:
    pytest.importorskip("torch")
    from fedalign.sim.config import preset
    from fedalign.sim.model import MoEModel
    from fedalign.sim.server import make_setup

    setup = make_setup(preset("tiny", n_clients=3, n_domains=3, n_experts=3), 0)
    cfg = setup.config
    model = MoEModel(
        setup.data.n_features,
        setup.data.n_classes,
        cfg.n_experts,
        expert_hidden=cfg.expert_hidden,
        trunk_hidden=cfg.trunk_hidden,
        top_k=cfg.top_k,
    )
    model.load_state_dict(setup.initial_state)
    return setup, model


def _moe_instruction(setup: Any, experts: list[int], config: dict[str, Any]) -> TrainTask:
    from fedalign.sim.server import partial_state_of

    state = partial_state_of(setup.initial_state, experts)
    model = FLModel(
        params={k: v.numpy() for k, v in state.items()},
        current_round=0,
        meta={wire.EXPERT_IDS: experts, wire.ROUND: 0, wire.CONFIG: config},
    )
    return read_task(FLModelUtils.from_shareable(FLModelUtils.to_shareable(model)))


@pytest.mark.torch
def test_train_moe_trains_exactly_the_experts_sent(moe_world):
    setup, model = moe_world
    task = _moe_instruction(setup, [1], {"local-epochs": 2, wire.SIMULATED_SECONDS: 9.0})
    fl = train_moe(task, MoESite(model, setup.partition.clients[0], client_index=0))
    arrays, feedback, weight = read_reply(fl, [1])
    assert sorted(arrays) == sorted(task.params)
    n = len(setup.partition.clients[0][1])
    assert feedback.samples == 2 * n and weight == n
    assert feedback.duration == 9.0
    assert set(feedback.rewards) == {1}
    changed = [k for k in arrays if not np.array_equal(arrays[k], task.params[k])]
    assert any(k.startswith("experts.1.") for k in changed)
    assert all(arrays[k].dtype == task.params[k].dtype for k in arrays)


@pytest.mark.torch
def test_train_moe_answers_a_simulated_dropout_with_an_error(moe_world):
    setup, model = moe_world
    task = _moe_instruction(setup, [0], {wire.SIMULATE_DROPOUT: True})
    fl = train_moe(task, MoESite(model, setup.partition.clients[2], client_index=2))
    assert "drops out of round 0 (simulated)" in fl.meta[wire.ERROR]
