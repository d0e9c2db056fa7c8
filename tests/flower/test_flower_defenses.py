"""FedAlign's defenses on constructed Messages: a poisoned node with a huge sample count, the
weight bound, the reply screen, and rewards carrying local-differential-privacy noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord  # noqa: E402

import fedalign as fa  # noqa: E402
from fedalign.flower import FedAlign, read_train_task, train_reply  # noqa: E402
from fedalign.flower.records import arrays_to_numpy  # noqa: E402
from fedalign.rounds import ReplyScreen, RobustAggregator  # noqa: E402
from fedalign.scores import FitnessTracker  # noqa: E402

pytestmark = pytest.mark.flower

NODES = [11, 22, 33, 44, 55, 2**63 + 1, 2**64 - 2]
POISONER = NODES[2]


def _strategy(fake_grid: Any, **kwargs: Any) -> tuple[FedAlign, fa.Scheduler, Any]:
    sched_kwargs = kwargs.pop("scheduler", {})
    sched = fa.Scheduler(3, seed=0, max_experts=3, solver="flow", **sched_kwargs)
    configs = {n: {"partition-id": k, "samples": 50.0} for k, n in enumerate(NODES)}
    strategy = FedAlign(sched, min_train_nodes=2, min_available_nodes=2, seed=1, **kwargs)
    return strategy, sched, fake_grid(configs)


def _reply(msg: Message, *, poisoned: bool = False, **extra: Any) -> Message:
    task = read_train_task(msg)
    node = msg.metadata.dst_node_id
    rng = np.random.default_rng(node % 1000)
    out = {}
    for k, v in task.state().items():
        if v.dtype.kind == "f":
            change = rng.normal(0.1, 0.01, v.shape)
            out[k] = (v - 10 * change if poisoned else v + change).astype(v.dtype)
        else:
            out[k] = v.copy()
    examples = 10**12 if poisoned else 50
    rewards = extra.pop("rewards", [1.0 if poisoned else 0.6] * len(task.expert_ids))
    return train_reply(msg, out, num_examples=examples, rewards=rewards, duration=1.0, **extra)


def _round(strategy, grid, arrays, **reply_kwargs):
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    replies = [
        _reply(m, poisoned=m.metadata.dst_node_id == POISONER, **reply_kwargs) for m in messages
    ]
    new, metrics = strategy.aggregate_train(1, replies)
    return (None if new is None else arrays_to_numpy(new)), metrics


def _moved(got: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(got[k] - state[k])) for k in state if state[k].dtype.kind == "f"}


def test_fedavg_bounds_a_claim_of_10_to_the_12_samples(fake_grid, arrays, state):
    strategy, _, grid = _strategy(fake_grid)
    got, _ = _round(strategy, grid, arrays)
    record = strategy.history[-1]
    assert record.bounded == {POISONER: 500.0}  # 10 x its declared 50 samples
    # bounded, not defended: 500 of 800 in every group, the model moves the wrong way
    assert all(m < 0 for m in _moved(got, state).values())


@pytest.mark.parametrize(
    "defenses",
    [
        {"aggregate": RobustAggregator("median")},
        {"aggregate": RobustAggregator("trimmed-mean")},
        {"aggregate": RobustAggregator("mean", max_share=0.2), "screen": ReplyScreen()},
        {"aggregate": RobustAggregator("clipped-mean", max_share=0.2)},
    ],
    ids=["median", "trimmed-mean", "screen+cap", "clipped+cap"],
)
def test_defenses_keep_the_model_from_a_poisoned_node(fake_grid, arrays, state, defenses):
    strategy, sched, grid = _strategy(fake_grid, scheduler={"trust_rate": 0.5}, **defenses)
    got, metrics = _round(strategy, grid, arrays)
    moved = _moved(got, state)
    assert all(0.0 < m < 0.2 for m in moved.values()), moved
    assert metrics["nodes-completed"] == len(NODES)
    if "screen" in defenses:
        record = strategy.history[-1]
        assert list(record.screened) == [POISONER]
        assert POISONER not in [n for ns in record.trained_by.values() for n in ns]
        assert sched.trust[sched.client_ids.index(POISONER)] == pytest.approx(0.5)


def test_ldp_rewards_travel_with_their_epsilon(fake_grid, arrays):
    noisy = [1.7, -0.4, 0.9]
    strategy, sched, grid = _strategy(fake_grid)
    _round(strategy, grid, arrays, rewards=noisy, epsilon=1.0)
    record = strategy.history[-1]
    assert record.completed == []  # the scheduler was not told: every node is refused
    assert all("noisy_rewards=True" in r for r in record.dropouts.values())

    strategy, sched, grid = _strategy(fake_grid, scheduler={"noisy_rewards": True})
    _round(strategy, grid, arrays, rewards=noisy, epsilon=1.0)
    record = strategy.history[-1]
    assert sorted(record.completed) == sorted(NODES)
    # one step of the unclipped, noise-aware average: no variance sent, so the Laplace
    # mechanism's for epsilon 1 and 3 rewards, 2 x 3**2; gain 0.25 / (0.25 + R0 + 18)
    r0 = FitnessTracker(1, ema=sched.config.fitness_ema, decay=sched.config.fitness_decay).intrinsic_variance
    gain = 0.25 / (0.25 + r0 + 18.0)
    expected = 0.5 + gain * (np.array(noisy) - 0.5)
    assert np.allclose(sched.fitness, [expected] * len(NODES))

    # with the variance sent ("reward-variance"), the scheduler weighs by it
    strategy, sched, grid = _strategy(fake_grid, scheduler={"noisy_rewards": True})
    _round(strategy, grid, arrays, rewards=noisy, epsilon=1.0, reward_variance=1.0)
    gain = 0.25 / (1.25 + r0)
    assert np.allclose(sched.fitness, [0.5 + gain * (np.array(noisy) - 0.5)] * len(NODES))


def test_a_bad_epsilon_metric_is_a_dropout(fake_grid, arrays):
    strategy, _, grid = _strategy(fake_grid, scheduler={"noisy_rewards": True})
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    replies = [_reply(m) for m in messages]
    replies[0].content["metrics"]["reward-epsilon"] = 0.0
    strategy.aggregate_train(1, replies)
    reason = strategy.history[-1].dropouts[messages[0].metadata.dst_node_id]
    assert "epsilon" in reason


def _training_grid(fake_grid: Any, goal: dict[str, np.ndarray]) -> Any:
    """A grid whose nodes train: each honest node moves every float array halfway to
    ``goal``; POISONER moves it 10 x as far the other way and claims 10**12 examples."""

    def responder(messages: list[Message]) -> list[Message]:
        out = []
        for m in messages:
            if m.metadata.message_type != MessageType.TRAIN:
                continue
            task = read_train_task(m)
            node = m.metadata.dst_node_id
            poisoned = node == POISONER
            noise = np.random.default_rng(node % 1000)
            new = {}
            for k, v in task.state().items():
                if v.dtype.kind != "f":
                    new[k] = v.copy()
                    continue
                step = 0.5 * (goal[k] - v) * noise.uniform(0.9, 1.1)
                new[k] = (v - 10 * step if poisoned else v + step).astype(v.dtype)
            out.append(
                train_reply(
                    m,
                    new,
                    num_examples=10**12 if poisoned else 50,
                    rewards=[1.0 if poisoned else 0.6] * len(task.expert_ids),
                    duration=1.0,
                )
            )
        return out

    configs = {n: {"partition-id": k, "samples": 50.0} for k, n in enumerate(NODES)}
    return fake_grid(configs, responder=responder)


@pytest.mark.parametrize("defended", [False, True])
def test_a_poisoned_node_with_a_huge_sample_count_over_many_rounds(fake_grid, arrays, state, defended):
    """Flower's own round loop (Strategy.start) over six rounds, one node poisoning every
    round with 10**12 examples: undefended (only the default weight bound) the model is
    driven away from where the honest nodes take it; with median, a weight cap, the reply
    screen and trust it converges as if the poisoner were absent."""
    goal = {k: (v * 0 + 1).astype(v.dtype) for k, v in state.items() if v.dtype.kind == "f"}
    start = max(float(np.abs(state[k] - goal[k]).max()) for k in goal)
    defenses: dict[str, Any] = (
        {"aggregate": RobustAggregator("median", max_share=0.25), "screen": ReplyScreen()}
        if defended
        else {}
    )
    sched = fa.Scheduler(3, seed=0, max_experts=3, solver="flow", trust_rate=0.5 if defended else 0.0)
    strategy = FedAlign(sched, fraction_evaluate=0.0, min_train_nodes=2, seed=1, **defenses)
    errors: list[float] = []

    def evaluate_fn(rnd: int, arr: ArrayRecord) -> MetricRecord:
        got = arrays_to_numpy(arr)
        errors.append(max(float(np.abs(got[k] - goal[k]).max()) for k in goal))
        return MetricRecord({"error": errors[-1]})

    strategy.start(_training_grid(fake_grid, goal), arrays, num_rounds=6, evaluate_fn=evaluate_fn)

    assert len(errors) == 7 and errors[0] == pytest.approx(start)
    assert all(POISONER in r.bounded or POISONER in r.screened for r in strategy.history)
    if defended:
        assert all(np.isfinite(errors)) and errors[-1] < 0.05 * start, errors
        assert all(list(r.screened) == [POISONER] for r in strategy.history)
        assert sched.trust[sched.client_ids.index(POISONER)] < 0.05
    else:
        assert errors[-1] > 10 * start, errors  # what the defenses prevent
