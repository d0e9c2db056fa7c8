"""FedAlign(survey=True): every other expert sent to be evaluated, survey rewards back.

The wire side of the best-expert report (docs/trust.md, "Privacy"): the instruction's
``"survey-arrays"`` and ``"survey-ids"``, the reply's ``"survey-ids"`` and ``"survey"``, and
the bytes counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from test_strategy import make_strategy, reply_with  # noqa: E402

import fedalign as fa  # noqa: E402
from fedalign.flower import read_train_task, train_reply  # noqa: E402
from fedalign.flower import records as rec  # noqa: E402

pytestmark = pytest.mark.flower


def _reply(msg: Message, survey: dict[int, float] | None = None, **kwargs: Any) -> Message:
    task = read_train_task(msg)
    trained = {k: (v + 1.0).astype(v.dtype) for k, v in task.state().items()}
    if survey is None:
        survey = {e: 0.9 for e in task.survey_ids}
    return train_reply(
        msg, trained, num_examples=5, rewards=[0.2] * len(task.expert_ids), survey=survey, **kwargs
    )


def test_every_other_expert_is_sent_to_evaluate_and_counted_in_bytes(fake_grid, arrays):
    plain, _, grid = make_strategy(fake_grid)
    plain_msgs = list(plain.configure_train(1, arrays, ConfigRecord(), grid))
    strategy, _, grid = make_strategy(fake_grid, survey=True)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    extra = 0
    for m in messages:
        task = read_train_task(m)
        assert task.survey_ids == [e for e in range(3) if e not in task.expert_ids]
        keys = set(task.survey_state())
        assert keys and all(rec.expert_of_key(k) in task.survey_ids for k in keys)
        assert not keys & set(task.state())  # trained arrays and evaluated ones apart
        assert rec.SURVEY_IDS not in task.config
        extra += sum(a.numpy().nbytes for a in m.content[rec.SURVEY_ARRAYS].values())
    strategy.aggregate_train(1, [_reply(m) for m in messages])
    plain.aggregate_train(1, [reply_with(m, 1.0, 5) for m in plain_msgs])
    assert strategy.history[-1].bytes_sent == plain.history[-1].bytes_sent + extra > extra > 0


def test_survey_rewards_reach_the_scheduler_and_move_fitness_only(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, survey=True)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    strategy.aggregate_train(1, [_reply(m) for m in messages])
    fitness, usage = sched.inner.fitness, sched.inner.usage
    rows = {cid: k for k, cid in enumerate(sched.inner.client_ids)}
    trained = set()
    for m in messages:
        node, task = m.metadata.dst_node_id, read_train_task(m)
        fb = sched.feedback_of(node)
        assert fb.survey == {e: 0.9 for e in task.survey_ids}
        assert all(fitness[rows[node], e] > 0.5 for e in task.survey_ids)  # toward 0.9
        assert all(fitness[rows[node], e] < 0.5 for e in task.expert_ids)  # toward 0.2
        trained |= set(task.expert_ids)
    assert all(usage[e] == 0 for e in set(range(3)) - trained)  # evaluating is not training


def test_privatized_best_expert_reports_travel_with_their_epsilon(fake_grid, arrays):
    strategy, sched, grid = make_strategy(fake_grid, survey=True)
    sched.inner = fa.Scheduler(3, seed=0, min_experts=1, max_experts=1, solver="flow", noisy_rewards=True)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    rng = np.random.default_rng(0)
    replies = []
    for m in messages:
        task = read_train_task(m)
        fb = fa.Feedback(
            samples=5,
            rewards={e: 0.2 for e in task.expert_ids},
            survey={e: 0.9 for e in task.survey_ids},
        )
        private = fa.privatize(fb, 1.0, rng=rng, mechanism="best-expert")
        trained = {k: (v + 1.0).astype(v.dtype) for k, v in task.state().items()}
        replies.append(
            train_reply(
                m, trained, num_examples=5, rewards=private.rewards, survey=private.survey,
                epsilon=private.epsilon, reward_variance=private.reward_variance,
            )  # fmt: skip
        )
    strategy.aggregate_train(1, replies)
    record = strategy.history[-1]
    assert sorted(record.completed) == sorted(m.metadata.dst_node_id for m in messages)
    for m in messages:
        fb = sched.feedback_of(m.metadata.dst_node_id)
        assert fb.epsilon == 1.0 and len(fb.rewards) + len(fb.survey) == 3


def _with_metrics(msg: Message, **changes: Any) -> Message:
    """``msg``'s reply with its metrics changed (None: removed)."""
    reply = _reply(msg)
    metrics = dict(reply.content[rec.METRICS])
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            metrics.pop(key, None)
        else:
            metrics[key] = value
    arrays = reply.content[rec.ARRAYS]
    return Message(RecordDict({rec.ARRAYS: arrays, rec.METRICS: MetricRecord(metrics)}), reply_to=msg)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"survey": None}, "survey-ids"),  # ids without values
        ({"survey_ids": [0.5, 1.5]}, "whole numbers"),
        ({"survey_ids": [0, 0], "survey": [0.1, 0.2]}, "twice"),
        ({"survey_ids": [7], "survey": [0.1]}, "not an expert id"),
        ({"survey": [2.0, 0.5]}, "survey"),  # outside [0, 1] without an epsilon
    ],
)
def test_a_bad_survey_makes_the_reply_a_dropout(fake_grid, arrays, changes, why):
    strategy, _, grid = make_strategy(fake_grid, survey=True)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    bad, good = messages[0], messages[1:]
    strategy.aggregate_train(1, [_with_metrics(bad, **changes), *(_reply(m) for m in good)])
    record = strategy.history[-1]
    node = bad.metadata.dst_node_id
    assert node not in record.completed and why in record.dropouts[node]


def test_train_reply_refuses_a_survey_of_a_trained_expert(fake_grid, arrays):
    strategy, _, grid = make_strategy(fake_grid, survey=True)
    msg = next(iter(strategy.configure_train(1, arrays, ConfigRecord(), grid)))
    task = read_train_task(msg)
    with pytest.raises(ValueError, match="survey: experts"):
        train_reply(msg, task.state(), num_examples=1, rewards=[0.5], survey={task.expert_ids[0]: 0.5})


def test_survey_must_be_a_bool():
    from fedalign.flower import FedAlign

    with pytest.raises(ValueError, match="survey"):
        FedAlign(fa.Scheduler(2), survey="yes")
