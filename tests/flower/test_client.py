"""The ClientApp side: reading instructions, building replies, the MoE trainer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict  # noqa: E402

from fedalign.flower import client as fc  # noqa: E402
from fedalign.flower.records import numpy_to_arrays, profile_from_mapping  # noqa: E402

pytestmark = pytest.mark.flower


def instruction(state: dict, experts: list[int], **config) -> Message:
    keys = [k for k in state if not k.startswith("experts.") or int(k.split(".")[1]) in experts]
    cfg = ConfigRecord({"expert-ids": experts, "server-round": 3, **config})
    content = RecordDict({"arrays": numpy_to_arrays({k: state[k] for k in keys}), "config": cfg})
    return Message(content=content, dst_node_id=42, message_type=MessageType.TRAIN)


def context(node_config: dict) -> Context:
    return Context(run_id=7, node_id=42, node_config=node_config, state=RecordDict(), run_config={})


def test_read_train_task(state):
    task = fc.read_train_task(instruction(state, [2, 0], lr=0.1))
    assert task.expert_ids == [2, 0] and task.server_round == 3 and task.config == {"lr": 0.1}
    assert set(task.state()) == {k for k in state if not k.startswith("experts.1.")}
    np.testing.assert_array_equal(task.state()["trunk.weight"], state["trunk.weight"])


def test_read_train_task_rejects_incomplete_instructions(state):
    no_ids = Message(
        content=RecordDict({"arrays": numpy_to_arrays(state), "config": ConfigRecord({"lr": 1.0})}),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )
    with pytest.raises(ValueError, match="expert-ids"):
        fc.read_train_task(no_ids)
    no_arrays = Message(
        content=RecordDict({"config": ConfigRecord({"expert-ids": [0]})}),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )
    with pytest.raises(ValueError, match="ArrayRecord"):
        fc.read_train_task(no_arrays)


def test_train_reply_aligns_rewards_with_the_expert_ids(state):
    msg = instruction(state, [2, 0])
    reply = fc.train_reply(
        msg, fc.read_train_task(msg).state(), num_examples=9, rewards={0: 0.1, 2: 0.7}
    )
    metrics = reply.content["metrics"]
    assert metrics["rewards"] == [0.7, 0.1] and metrics["expert-ids"] == [2, 0]
    assert metrics["num-examples"] == 9
    assert reply.metadata.src_node_id == 42
    with pytest.raises(ValueError, match="rewards: experts"):
        fc.train_reply(msg, {}, num_examples=1, rewards={0: 0.1})
    with pytest.raises(ValueError, match="rewards: 1 values for 2 experts"):
        fc.train_reply(msg, {}, num_examples=1, rewards=[0.5])


def test_profile_reply_sends_node_config_and_overrides():
    query = Message(
        content=RecordDict({"config": ConfigRecord({"fedalign-request": "profile"})}),
        dst_node_id=42,
        message_type=MessageType.QUERY,
    )
    reply = fc.profile_reply(
        query, context({"partition-id": 3, "memory": 2.0}), profile={"compute": 50.0}
    )
    assert dict(reply.content["profile"]) == {"partition-id": 3, "memory": 2.0, "compute": 50.0}


def test_profile_from_mapping():
    got = profile_from_mapping({"memory": 4, "bandwidth-up": 1e6, "max-experts": 2.0, "other": "x"})
    assert got == {"memory": 4.0, "bandwidth_up": 1e6, "max_experts": 2}
    with pytest.raises(ValueError, match="latency"):
        profile_from_mapping({"latency": "slow"})


@pytest.fixture
def moe_node():
    torch = pytest.importorskip("torch")
    from fedalign.sim.model import MoEModel

    torch.manual_seed(0)
    model = MoEModel(6, 3, 3, expert_hidden=4)
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(20, 6)).astype(np.float32), rng.integers(0, 3, 20))
    return fc.MoENode(model=model, train_data=data, client_index=5)


@pytest.mark.torch
def test_train_moe_trains_the_experts_it_is_sent(moe_node):
    state = {k: v.numpy().copy() for k, v in moe_node.model.state_dict().items()}
    msg = instruction(state, [1], **{"local-epochs": 2, "simulated-seconds": 12.5})
    reply = fc.train_moe(msg, moe_node, lr=0.05, batch_size=8)
    arrays = reply.content["arrays"]
    metrics = reply.content["metrics"]
    assert set(arrays.keys()) == set(msg.content["arrays"].keys())
    assert metrics["num-examples"] == 40  # 20 samples x 2 epochs
    assert metrics["duration"] == 12.5 and metrics["expert-ids"] == [1]
    assert 0.0 <= metrics["rewards"][0] <= 1.0
    assert not np.allclose(arrays["experts.1.0.weight"].numpy(), state["experts.1.0.weight"])


@pytest.mark.torch
def test_train_moe_evaluates_the_experts_sent_to_survey(moe_node):
    from fedalign.sim.client import as_tensors, expert_rewards

    state = {k: v.numpy().copy() for k, v in moe_node.model.state_dict().items()}
    msg = instruction(state, [1], **{"survey-ids": [0, 2]})
    others = {k: state[k] for k in state if k.startswith(("experts.0.", "experts.2."))}
    msg.content["survey-arrays"] = numpy_to_arrays(others)
    # the rewards of the evaluated experts as received, before any training
    x, y = as_tensors(moe_node.train_data)
    expected = expert_rewards(moe_node.model, [0, 2], x, y, "accuracy")
    reply = fc.train_moe(msg, moe_node, lr=0.05, batch_size=8)
    metrics = reply.content["metrics"]
    assert metrics["survey-ids"] == [0, 2]
    assert metrics["survey"] == pytest.approx([expected[0], expected[2]])
    assert set(reply.content["arrays"].keys()) == set(msg.content["arrays"].keys())
    task = fc.read_train_task(msg)
    assert task.survey_ids == [0, 2] and set(task.survey_state()) == set(others)
    assert "survey-ids" not in task.config


@pytest.mark.torch
def test_train_moe_answers_a_simulated_dropout_with_an_error(moe_node):
    state = {k: v.numpy().copy() for k, v in moe_node.model.state_dict().items()}
    reply = fc.train_moe(instruction(state, [0], **{"simulate-dropout": True}), moe_node)
    assert reply.has_error() and "simulated" in reply.error.reason


@pytest.mark.torch
def test_evaluate_moe(moe_node):
    state = {k: v.numpy().copy() for k, v in moe_node.model.state_dict().items()}
    msg = Message(
        content=RecordDict({"arrays": numpy_to_arrays(state), "config": ConfigRecord({})}),
        dst_node_id=42,
        message_type=MessageType.EVALUATE,
    )
    metrics = fc.evaluate_moe(msg, moe_node).content["metrics"]
    assert metrics["num-examples"] == 20 and 0.0 <= metrics["accuracy"] <= 1.0
