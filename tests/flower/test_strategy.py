"""FedAlign on constructed Messages: per-node instructions, per-expert averaging, dropouts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

import fedalign as fa  # noqa: E402
from fedalign.flower import FedAlign, read_train_task, train_reply  # noqa: E402
from fedalign.flower.records import arrays_to_numpy, numpy_to_arrays  # noqa: E402

pytestmark = pytest.mark.flower

# Flower node ids are unsigned 64-bit: mix small ones with ones above 2**63.
NODES = [101, 202, 2**63 + 17, 2**64 - 5]


class Recording:
    """A real Scheduler that also records every call the strategy makes (accepted ones)."""

    def __init__(self, inner: fa.Scheduler) -> None:
        self.inner = inner
        self.registered: dict[Any, Any] = {}
        self.reports: list[tuple[Any, Any, int | None]] = []
        self.plans: list[Any] = []
        self.rounds_closed = 0

    @property
    def client_ids(self) -> list[Any]:
        return self.inner.client_ids

    def register(self, client_id: Any, profile: Any) -> None:
        self.inner.register(client_id, profile)
        self.registered[client_id] = profile

    def plan(self, clients: Any, round: int | None = None) -> Any:
        plan = self.inner.plan(clients, round)
        self.plans.append(plan)
        return plan

    def report(self, client_id: Any, feedback: Any, round: int | None = None) -> None:
        self.inner.report(client_id, feedback, round=round)
        self.reports.append((client_id, feedback, round))

    def credited_samples(self) -> dict[Any, float]:
        return self.inner.credited_samples()

    def end_round(self) -> None:
        self.inner.end_round()
        self.rounds_closed += 1

    def feedback_of(self, node: int) -> Any:
        found = [fb for cid, fb, _ in self.reports if cid == node]
        assert len(found) == 1, f"node {node} reported {len(found)} times"
        return found[0]


def make_strategy(
    fake_grid: Any,
    *,
    nodes: list[int] = NODES,
    max_experts: int = 1,
    n_experts: int = 3,
    silent: tuple[int, ...] = (),
    **kwargs: Any,
) -> tuple[FedAlign, Recording, Any]:
    sched = Recording(
        fa.Scheduler(n_experts, seed=0, min_experts=1, max_experts=max_experts, solver="flow")
    )
    configs = {
        n: {"partition-id": k, "memory": 8.0, "compute": 100.0 + k} for k, n in enumerate(nodes)
    }
    grid = fake_grid(configs, silent=silent)
    kwargs = {"min_train_nodes": 2, "min_available_nodes": 2, "seed": 1, **kwargs}
    strategy = FedAlign(sched, **kwargs)
    return strategy, sched, grid


def reply_with(msg: Message, delta: float, weight: int, reward: float = 0.8) -> Message:
    """A well-formed reply: every received array shifted by ``delta``."""
    task = read_train_task(msg)
    trained = {k: (v + delta).astype(v.dtype) for k, v in task.state().items()}
    return train_reply(
        msg,
        trained,
        num_examples=weight,
        rewards=[reward] * len(task.expert_ids),
        duration=2.0,
        loss=0.5,
    )


def sent_experts(messages: list[Message]) -> dict[int, list[int]]:
    return {m.metadata.dst_node_id: read_train_task(m).expert_ids for m in messages}


def expected_average(
    state: dict[str, np.ndarray],
    messages: list[Message],
    deltas: dict[int, float],
    weights: dict[int, int],
) -> dict[str, np.ndarray]:
    """Hand computation: each key averaged over the accepted nodes that received it."""
    out = {}
    for key, value in state.items():
        holders = [m.metadata.dst_node_id for m in messages if key in m.content["arrays"].keys()]
        holders = [n for n in holders if n in deltas]
        if not holders:
            out[key] = value
            continue
        w = np.array([weights[n] for n in holders], dtype=float)
        d = np.array([deltas[n] for n in holders])
        avg = value.astype(np.float64) + float(w @ d / w.sum())
        out[key] = (np.rint(avg) if value.dtype.kind == "i" else avg).astype(value.dtype)
    return out


# ------------------------------------------------------------------ configure_train


def test_configure_train_sends_each_node_only_shared_layers_and_its_experts(
    fake_grid, arrays, state
):
    strategy, sched, grid = make_strategy(fake_grid, max_experts=2)
    config = ConfigRecord({"lr": 0.1})
    messages = list(strategy.configure_train(1, arrays, config, grid))

    assert sorted(m.metadata.dst_node_id for m in messages) == NODES
    assert all(m.metadata.message_type == MessageType.TRAIN for m in messages)
    assert len({id(m.content) for m in messages}) == len(messages)  # one RecordDict per node
    assert dict(config) == {"lr": 0.1}  # the caller's config is not modified
    plan = sched.plans[-1]
    shared = {k for k in state if not k.startswith("experts.")}
    for m in messages:
        node = m.metadata.dst_node_id
        cfg = m.content["config"]
        assert cfg["expert-ids"] == [int(e) for e in plan.assignment[node]]
        assert cfg["server-round"] == 1 and cfg["lr"] == 0.1
        expected_keys = shared | {
            k for k in state for e in cfg["expert-ids"] if k.startswith(f"experts.{e}.")
        }
        assert set(m.content["arrays"].keys()) == expected_keys
        for key in expected_keys:
            np.testing.assert_array_equal(m.content["arrays"][key].numpy(), state[key])


def test_unseen_nodes_are_registered_from_their_profile_answer(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid)
    list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert set(sched.registered) == set(NODES)
    assert sched.registered[NODES[2]].compute == pytest.approx(102.0)
    assert sched.registered[NODES[2]].memory == pytest.approx(8.0)
    assert strategy.node_info[NODES[3]]["partition-id"] == 3
    queries = [m for m in grid.sent if m.metadata.message_type == MessageType.QUERY]
    assert sorted(m.metadata.dst_node_id for m in queries) == NODES

    strategy.aggregate_train(1, [])
    grid.sent.clear()
    list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert not [m for m in grid.sent if m.metadata.message_type == MessageType.QUERY]


def test_node_silent_on_the_profile_query_sits_out_and_is_asked_again(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, silent=(NODES[0],))
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert NODES[0] not in {m.metadata.dst_node_id for m in messages}
    assert NODES[0] not in sched.registered
    strategy.aggregate_train(1, [])
    grid.silent.clear()
    messages = list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert NODES[0] in {m.metadata.dst_node_id for m in messages}


def test_profile_fn_replaces_the_query(fake_grid, arrays):
    seen = []

    def profile_fn(node, info):
        seen.append((node, dict(info)))
        return fa.ClientProfile(memory=1.0, max_experts=1)

    strategy, sched, grid = make_strategy(fake_grid, profile_fn=profile_fn, query_profiles=False)
    list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert sorted(n for n, _ in seen) == NODES and all(info == {} for _, info in seen)
    assert not grid.sent
    assert all(p.memory == 1.0 for p in sched.registered.values())


@pytest.mark.parametrize(
    ("fraction", "min_nodes", "expected"), [(0.5, 2, 4), (0.1, 3, 3), (1.0, 2, 8)]
)
def test_cohort_size_follows_fraction_and_minimum(fake_grid, arrays, fraction, min_nodes, expected):
    nodes = list(range(1, 9))
    strategy, sched, grid = make_strategy(
        fake_grid, nodes=nodes, fraction_train=fraction, min_train_nodes=min_nodes
    )
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert len(messages) == expected
    assert len(sched.plans[-1].assignment) == expected


def test_cohort_fn_chooses_the_nodes(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, cohort_fn=lambda rnd, nodes: nodes[:2])
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == sorted(NODES)[:2]
    bad, _, grid2 = make_strategy(fake_grid, cohort_fn=lambda rnd, nodes: [999])
    with pytest.raises(ValueError, match="cohort_fn"):
        list(bad.configure_train(1, arrays, ConfigRecord(), grid2))


def test_fraction_train_zero_sends_nothing(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, fraction_train=0.0)
    assert list(strategy.configure_train(1, arrays, ConfigRecord(), grid)) == []
    assert strategy.aggregate_train(1, []) == (None, None)


def test_model_without_an_assigned_experts_arrays_is_rejected(fake_grid, make_state):
    # 4 nodes, 4 experts, at most one node per expert: every expert is assigned, expert 3 too.
    sched = fa.Scheduler(4, seed=0, solver="flow", expert_max_clients=1)
    grid = fake_grid({n: {"partition-id": k} for k, n in enumerate(NODES)})
    strategy = FedAlign(sched, seed=0)
    arrays = numpy_to_arrays(make_state(n_experts=3))  # expert 3 has no arrays
    with pytest.raises(ValueError, match="arrays: the scheduler assigned expert 3"):
        list(strategy.configure_train(1, arrays, ConfigRecord(), grid))


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="fraction_train"):
        FedAlign(None, fraction_train=1.5)
    with pytest.raises(ValueError, match="min_train_nodes"):
        FedAlign(None, min_train_nodes=-1)
    with pytest.raises(ValueError, match="query_timeout"):
        FedAlign(None, query_timeout=0)


def test_client_key_maps_nodes_to_preregistered_clients_across_restarts(fake_grid, arrays):
    inner = fa.Scheduler(3, seed=0, solver="flow")
    for k in range(4):
        inner.register(k, fa.ClientProfile(memory=8.0))
    sched = Recording(inner)
    configs = {n: {"partition-id": k} for k, n in enumerate(NODES)}
    grid = fake_grid(configs)
    strategy = FedAlign(sched, client_key="partition-id", seed=0)

    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert sched.registered == {}  # every client was known already
    assert strategy.client_of == {n: k for k, n in enumerate(NODES)}
    assert set(sched.plans[-1].assignment) == {0, 1, 2, 3}
    strategy.aggregate_train(1, [reply_with(m, 1.0, 3) for m in messages])
    assert sorted(cid for cid, _, _ in sched.reports) == [0, 1, 2, 3]
    assert strategy.history[-1].clients == {n: k for k, n in enumerate(NODES)}

    # Node 101 restarts as node 909 (same partition); node 505 claims partition 1 too.
    grid.node_configs = {909: {"partition-id": 0}, 505: {"partition-id": 1}, **configs}
    del grid.node_configs[NODES[0]]
    messages = list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert inner.n_clients == 4
    assert strategy.client_of[909] == 0
    sent_to = {m.metadata.dst_node_id for m in messages}
    assert 909 in sent_to and NODES[0] not in sent_to
    assert len({strategy.client_of[n] for n in sent_to}) == len(sent_to) == 4


def test_node_without_the_client_key_sits_out(fake_grid, arrays):
    sched = Recording(fa.Scheduler(3, seed=0, solver="flow"))
    grid = fake_grid({1: {"partition-id": 0}, 2: {"memory": 1.0}, 3: {"partition-id": 2}})
    strategy = FedAlign(sched, client_key="partition-id", seed=0)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 3]
    assert sorted(sched.registered) == [0, 2]
    with pytest.raises(ValueError, match="client_key"):
        FedAlign(sched, client_key="partition-id", query_profiles=False)


def test_dropout_duration_is_reported(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, dropout_duration=12.5)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    strategy.aggregate_train(1, [reply_with(m, 1.0, 3) for m in messages[1:]])
    fb = sched.feedback_of(messages[0].metadata.dst_node_id)
    assert not fb.completed and fb.duration == 12.5


# ------------------------------------------------------------------ aggregate_train


def test_each_expert_is_averaged_over_the_nodes_that_trained_it(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(fake_grid, max_experts=2)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    deltas = {n: float(k + 1) for k, n in enumerate(NODES)}
    weights = {n: 10 * (k + 1) for k, n in enumerate(NODES)}
    replies = [
        reply_with(m, deltas[m.metadata.dst_node_id], weights[m.metadata.dst_node_id])
        for m in messages
    ]

    new, metrics = strategy.aggregate_train(1, replies)

    got = arrays_to_numpy(new)
    want = expected_average(state, messages, deltas, weights)
    assert list(got) == list(state)  # every key, in order
    for key in state:
        assert got[key].dtype == state[key].dtype
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    # Shared arrays moved by the weighted mean delta over all nodes.
    w = np.array(list(weights.values()), float)
    d = np.array(list(deltas.values()))
    np.testing.assert_allclose(
        got["trunk.weight"] - state["trunk.weight"], w @ d / w.sum(), rtol=1e-5
    )
    record = strategy.history[-1]
    by_expert: dict[int, list[int]] = {}
    for node, experts in sent_experts(messages).items():
        for e in experts:
            by_expert.setdefault(e, []).append(node)
    assert record.trained_by == {e: sorted(n) for e, n in sorted(by_expert.items())}
    assert metrics["num-examples"] == sum(weights.values())
    assert metrics["nodes-completed"] == 4 and metrics["nodes-failed"] == 0
    assert metrics["loss"] == pytest.approx(0.5)


def test_untrained_expert_keeps_its_previous_value(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(
        fake_grid, nodes=NODES[:2]
    )  # 2 nodes x 1 expert, 3 experts
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    trained = {e for m in messages for e in read_train_task(m).expert_ids}
    untrained = sorted(set(range(3)) - trained)
    assert untrained
    new, _ = strategy.aggregate_train(1, [reply_with(m, 1.0, 5) for m in messages])
    got = arrays_to_numpy(new)
    for e in untrained:
        for key in (f"experts.{e}.0.weight", f"experts.{e}.0.bias"):
            np.testing.assert_array_equal(got[key], state[key])


def test_feedback_reaches_the_scheduler(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    plan_round = sched.plans[-1].round
    strategy.aggregate_train(1, [reply_with(m, 1.0, 7, reward=1.0) for m in messages])
    for m in messages:
        node = m.metadata.dst_node_id
        fb = sched.feedback_of(node)
        assert fb.completed and fb.samples == 7 and fb.duration == 2.0
        assert fb.rewards == {e: 1.0 for e in read_train_task(m).expert_ids}
    assert all(r == plan_round for _, _, r in sched.reports)
    assert sched.rounds_closed == 1
    # A reward of 1 above the prior raised the trained pairs' fitness; usage went to trained experts.
    fitness = sched.inner.fitness
    rows = {cid: k for k, cid in enumerate(sched.inner.client_ids)}
    for node, experts in sent_experts(messages).items():
        assert all(fitness[rows[node], e] > 0.5 for e in experts)
    trained = {e for es in sent_experts(messages).values() for e in es}
    usage = sched.inner.usage
    assert all(usage[e] > 0 for e in trained)
    assert all(usage[e] == 0 for e in set(range(3)) - trained)


def test_error_reply_and_missing_node_are_dropouts_and_not_averaged(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(fake_grid, max_experts=2)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    failed, missing = NODES[0], NODES[1]
    deltas = {n: float(k + 1) for k, n in enumerate(NODES) if n not in (failed, missing)}
    weights = {n: 3 for n in deltas}
    replies = []
    for m in messages:
        node = m.metadata.dst_node_id
        if node == failed:
            replies.append(Message(Error(code=0, reason="ClientApp raised ValueError"), reply_to=m))
        elif node != missing:
            replies.append(reply_with(m, deltas[node], weights[node]))

    new, metrics = strategy.aggregate_train(1, replies)

    got = arrays_to_numpy(new)
    want = expected_average(state, messages, deltas, weights)
    for key in state:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    record = strategy.history[-1]
    assert set(record.dropouts) == {failed, missing}
    assert "ClientApp raised" in record.dropouts[failed] and record.dropouts[missing] == "no reply"
    assert all(failed not in nodes and missing not in nodes for nodes in record.trained_by.values())
    for node in (failed, missing):
        fb = sched.feedback_of(node)
        assert not fb.completed and fb.rewards == {}
    assert metrics["nodes-failed"] == 2 and metrics["nodes-completed"] == 2


def test_all_nodes_failing_returns_no_model_and_closes_the_round(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    new, metrics = strategy.aggregate_train(
        1, [Message(Error(code=1, reason="x"), reply_to=m) for m in messages]
    )
    assert new is None
    assert metrics["nodes-failed"] == len(messages)
    assert sched.rounds_closed == 1 and sched.inner.round is None
    list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert sched.plans[-1].round == sched.plans[0].round + 1


def _tamper(kind: str, msg: Message) -> Message:
    """A reply from ``msg``'s node that is wrong in one way (``kind``)."""
    task = read_train_task(msg)
    state = {k: v + 1 for k, v in task.state().items()}
    rewards: list[Any] = [0.5] * len(task.expert_ids)
    metrics: dict[str, Any] = {"num-examples": 4, "rewards": rewards}
    other = next(e for e in range(3) if e not in task.expert_ids)
    if kind == "extra expert":
        state[f"experts.{other}.0.bias"] = np.zeros(2, np.float32)
    elif kind == "missing expert array":
        del state[f"experts.{task.expert_ids[0]}.0.weight"]
    elif kind == "missing shared array":
        del state["trunk.weight"]
    elif kind == "unknown key":
        state["decoder.weight"] = np.zeros(1, np.float32)
    elif kind == "wrong shape":
        state["gate.bias"] = np.zeros(7, np.float32)
    elif kind == "wrong dtype":
        state["trunk.weight"] = state["trunk.weight"].astype(np.float64)
    elif kind == "nan":
        state["trunk.weight"][0, 0] = np.nan
    elif kind == "rewards too short":
        metrics["rewards"] = []
    elif kind == "reward above 1":
        metrics["rewards"] = [1.5] * len(task.expert_ids)
    elif kind == "weight is a list":
        metrics["num-examples"] = [4, 4]
    elif kind == "negative weight":
        metrics["num-examples"] = -1
    elif kind == "no weight":
        del metrics["num-examples"]
    elif kind == "echo differs":
        metrics["expert-ids"] = [other]
    elif kind == "echo nan":
        metrics["expert-ids"] = [float("nan")] * len(task.expert_ids)
    elif kind == "weight 1e308":
        metrics["num-examples"] = 1e308
    elif kind == "weight inf":
        metrics["num-examples"] = float("inf")
    elif kind == "reward nan":
        metrics["rewards"] = [float("nan")] * len(task.expert_ids)
    records: dict[str, Any] = {"arrays": numpy_to_arrays(state), "metrics": MetricRecord(metrics)}
    if kind == "two array records":
        records["more"] = numpy_to_arrays(state)
    elif kind == "no metrics":
        del records["metrics"]
    elif kind == "no arrays":
        del records["arrays"]
    return Message(RecordDict(records), reply_to=msg)


TAMPERINGS = [
    "extra expert",
    "missing expert array",
    "missing shared array",
    "unknown key",
    "wrong shape",
    "wrong dtype",
    "nan",
    "rewards too short",
    "reward above 1",
    "weight is a list",
    "negative weight",
    "no weight",
    "echo differs",
    "echo nan",
    "weight 1e308",
    "weight inf",
    "reward nan",
    "two array records",
    "no metrics",
    "no arrays",
]


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_malformed_reply_is_a_dropout_and_contributes_nothing(fake_grid, arrays, state, kind):
    strategy, sched, grid = make_strategy(fake_grid)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    bad = messages[0].metadata.dst_node_id
    deltas = {m.metadata.dst_node_id: 2.0 for m in messages[1:]}
    weights = {n: 5 for n in deltas}
    replies = [_tamper(kind, messages[0])] + [reply_with(m, 2.0, 5) for m in messages[1:]]

    new, _ = strategy.aggregate_train(1, replies)

    got = arrays_to_numpy(new)
    want = expected_average(state, messages, deltas, weights)
    for key in state:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    record = strategy.history[-1]
    assert list(record.dropouts) == [bad] and record.dropouts[bad].startswith("invalid reply")
    assert not sched.feedback_of(bad).completed


def test_reply_from_an_unasked_node_and_a_second_reply_are_ignored(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(fake_grid, nodes=NODES[:2])
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    stranger = Message(
        RecordDict({"arrays": numpy_to_arrays(state), "config": ConfigRecord({"expert-ids": [0]})}),
        dst_node_id=999,
        message_type=MessageType.TRAIN,
    )
    replies = [reply_with(m, 1.0, 5) for m in messages]
    replies += [reply_with(stranger, 100.0, 5), reply_with(messages[0], 100.0, 5)]
    new, metrics = strategy.aggregate_train(1, replies)
    got = arrays_to_numpy(new)
    np.testing.assert_allclose(got["trunk.weight"], state["trunk.weight"] + 1.0, rtol=1e-6)
    assert metrics["nodes-completed"] == 2
    assert [cid for cid, _, _ in sched.reports].count(messages[0].metadata.dst_node_id) == 1


def test_keys_with_zero_total_weight_keep_their_global_value(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(fake_grid, nodes=NODES[:2])
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    replies = [reply_with(m, float(k + 1), 0) for k, m in enumerate(messages)]
    new, _ = strategy.aggregate_train(1, replies)
    got = arrays_to_numpy(new)
    for key in state:
        np.testing.assert_array_equal(got[key], state[key])
    record = strategy.history[-1]
    assert set(record.completed) == {m.metadata.dst_node_id for m in messages}
    assert record.trained_by == {}


def test_aggregate_without_configure_does_nothing(fake_grid):
    strategy, sched, grid = make_strategy(fake_grid)
    assert strategy.aggregate_train(3, []) == (None, None)
    assert sched.rounds_closed == 0


def test_round_configured_but_never_aggregated_is_closed_as_dropouts(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid)
    first = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert sched.rounds_closed == 1
    assert set(strategy.history[0].dropouts) == {m.metadata.dst_node_id for m in first}


# ------------------------------------------------------------------ evaluation and the loop


def test_configure_evaluate_sends_the_full_model(fake_grid, arrays, state):
    strategy, sched, grid = make_strategy(fake_grid, fraction_evaluate=0.5)
    messages = list(strategy.configure_evaluate(2, arrays, ConfigRecord({"batch": 8}), grid))
    assert len(messages) == 2
    for m in messages:
        assert m.metadata.message_type == MessageType.EVALUATE
        assert set(m.content["arrays"].keys()) == set(state)
        assert m.content["config"]["server-round"] == 2 and m.content["config"]["batch"] == 8
    off, _, grid = make_strategy(fake_grid, fraction_evaluate=0.0)
    assert list(off.configure_evaluate(2, arrays, ConfigRecord(), grid)) == []


def test_aggregate_evaluate_weighted_mean_skips_failures(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid)
    messages = list(strategy.configure_evaluate(1, arrays, ConfigRecord(), grid))
    replies = [
        Message(
            RecordDict({"m": MetricRecord({"num-examples": 10, "accuracy": 0.5})}),
            reply_to=messages[0],
        ),
        Message(
            RecordDict({"m": MetricRecord({"num-examples": 30, "accuracy": 0.9})}),
            reply_to=messages[1],
        ),
        Message(Error(code=2, reason="boom"), reply_to=messages[2]),
        Message(RecordDict({"m": MetricRecord({"accuracy": 0.0})}), reply_to=messages[3]),
    ]
    out = strategy.aggregate_evaluate(1, replies)
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["num-examples"] == 40
    assert strategy.aggregate_evaluate(1, replies[2:]) is None


def test_start_runs_rounds_end_to_end_on_a_fake_grid(fake_grid, arrays, state):
    """Flower's own round loop (Strategy.start) drives FedAlign; one node always fails."""
    flaky = NODES[3]

    def responder(messages):
        out = []
        for m in messages:
            if m.metadata.message_type != MessageType.TRAIN:
                continue
            if m.metadata.dst_node_id == flaky:
                out.append(Message(Error(code=0, reason="timeout"), reply_to=m))
            else:
                out.append(reply_with(m, 1.0, 10, reward=0.9))
        return out

    sched = Recording(fa.Scheduler(3, seed=0, solver="flow"))
    configs = {n: {"partition-id": k} for k, n in enumerate(NODES)}
    grid = fake_grid(configs, responder=responder)
    strategy = FedAlign(sched, fraction_evaluate=0.0, seed=0)
    evaluated = []

    def evaluate_fn(rnd: int, arr: ArrayRecord) -> MetricRecord:
        evaluated.append(rnd)
        return MetricRecord(
            {"shift": float(np.mean(arr["trunk.weight"].numpy() - state["trunk.weight"]))}
        )

    result = strategy.start(grid, arrays, num_rounds=3, evaluate_fn=evaluate_fn)

    assert evaluated == [0, 1, 2, 3]
    assert result.evaluate_metrics_serverapp[3]["shift"] == pytest.approx(3.0, rel=1e-5)
    assert len(strategy.history) == 3 and sched.rounds_closed == 3
    assert all(set(r.dropouts) == {flaky} for r in strategy.history)
    assert all(flaky not in nodes for r in strategy.history for nodes in r.trained_by.values())
    assert result.train_metrics_clientapp[2]["nodes-failed"] == 1


def test_import_fedalign_does_not_import_flwr():
    code = "import sys, fedalign; assert 'flwr' not in sys.modules, 'flwr imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ the round driver underneath


def test_history_counts_bytes_and_the_aggregation_hook_reaches_flower(fake_grid, arrays, state):
    groups = []

    def keep_first(reference, updates, weights, *, expert):
        groups.append(expert)
        return dict(updates[0])

    strategy, sched, grid = make_strategy(fake_grid, max_experts=2, aggregate=keep_first)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    replies = [reply_with(m, float(k + 1), 5) for k, m in enumerate(messages)]
    new, _ = strategy.aggregate_train(1, replies[:-1])  # the last node stays silent

    record = strategy.history[-1]
    sent = sum(a.numpy().nbytes for m in messages for a in m.content["arrays"].values())
    back = sum(a.numpy().nbytes for m in messages[:-1] for a in m.content["arrays"].values())
    assert record.bytes_sent == sent and record.bytes_received == back
    assert record.to_dict()["bytes_sent"] == sent
    assert groups[0] is None and groups[1:] == sorted(record.trained_by)
    got = arrays_to_numpy(new)
    np.testing.assert_allclose(got["trunk.weight"], state["trunk.weight"] + 1.0, rtol=1e-6)


def test_zero_dimensional_arrays_keep_their_shape(fake_grid, make_state):
    state = {**make_state(), "gate.count": np.array(3, dtype=np.int64)}
    strategy, sched, grid = make_strategy(fake_grid)
    messages = list(strategy.configure_train(1, numpy_to_arrays(state), ConfigRecord(), grid))
    new, _ = strategy.aggregate_train(1, [reply_with(m, 2.0, 4) for m in messages])
    got = arrays_to_numpy(new)
    assert got["gate.count"].shape == () and int(got["gate.count"]) == 5


@pytest.mark.parametrize(
    "bad",
    [{"max-experts": float("inf")}, {"max-experts": float("nan")}, {"memory": float("inf")},
     {"compute": -5.0}, {"max-experts": 2.5}, {"bandwidth-up": "fast"}],
)
def test_a_hostile_profile_answer_never_breaks_configure_train(fake_grid, arrays, bad):
    """Such a node is registered with an unknown profile (and the warning says so)."""
    strategy, sched, grid = make_strategy(fake_grid)
    grid.node_configs[NODES[0]].update(bad)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert NODES[0] in sched.registered and sched.registered[NODES[0]] == fa.ClientProfile()
    assert {m.metadata.dst_node_id for m in messages} == set(NODES)
    new, _ = strategy.aggregate_train(1, [reply_with(m, 1.0, 3) for m in messages])
    assert new is not None
