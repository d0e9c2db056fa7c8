"""Client side of :class:`~fedalign.flower.FedAlign`: what a ClientApp reads and replies.

Use the three helpers in any ClientApp, whatever the framework::

    from flwr.clientapp import ClientApp
    from fedalign.flower import client as fc

    app = ClientApp()

    @app.train()
    def train(msg, context):
        task = fc.read_train_task(msg)          # task.expert_ids, task.arrays, task.config
        ...                                     # train the shared layers and task.expert_ids
        return fc.train_reply(msg, new_arrays, num_examples=n, rewards=r, duration=s)

    @app.query()
    def query(msg, context):
        return fc.profile_reply(msg, context)   # capacity from context.node_config

:func:`make_moe_client_app` builds a complete ClientApp for the :mod:`fedalign.sim` model
(extra ``sim``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from . import records as rec

__all__ = [
    "TrainTask",
    "make_moe_client_app",
    "profile_reply",
    "read_train_task",
    "train_reply",
]


@dataclass(frozen=True)
class TrainTask:
    """One training instruction from :class:`~fedalign.flower.FedAlign`.

    Attributes
    ----------
    expert_ids : list of int
        Experts this node trains this round (in the order rewards are expected).
    server_round : int
        Flower's round number.
    arrays : ArrayRecord
        Shared arrays plus the arrays of ``expert_ids``.
    config : dict
        Every other entry of the instruction's ConfigRecord (e.g. ``lr``, ``local-epochs``).
    """

    expert_ids: list[int]
    server_round: int
    arrays: ArrayRecord
    config: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, np.ndarray]:
        """The received arrays as ``{key: ndarray}``."""
        return rec.arrays_to_numpy(self.arrays)


def read_train_task(message: Message) -> TrainTask:
    """Read a training instruction.

    Parameters
    ----------
    message : Message
        A ``train`` message sent by :class:`~fedalign.flower.FedAlign`.

    Returns
    -------
    TrainTask

    Raises
    ------
    ValueError
        If the message lacks its ArrayRecord, its ConfigRecord or the ``expert-ids`` list.
    """
    content = message.content
    if len(content.array_records) != 1:
        raise ValueError(f"message: expected one ArrayRecord, got {len(content.array_records)}")
    config = content.config_records.get(rec.CONFIG)
    if config is None and len(content.config_records) == 1:
        config = next(iter(content.config_records.values()))
    if config is None or rec.EXPERT_IDS not in config:
        raise ValueError(f"message: no ConfigRecord with '{rec.EXPERT_IDS}'")
    raw: Any = config[rec.EXPERT_IDS]
    experts = raw if isinstance(raw, list) else [raw]
    rest = {k: v for k, v in config.items() if k not in (rec.EXPERT_IDS, rec.SERVER_ROUND)}
    server_round: Any = config.get(rec.SERVER_ROUND, 0)
    return TrainTask(
        expert_ids=[int(e) for e in experts],
        server_round=int(server_round),
        arrays=next(iter(content.array_records.values())),
        config=rest,
    )


def train_reply(
    message: Message,
    arrays: ArrayRecord | Mapping[str, Any],
    *,
    num_examples: int,
    rewards: Mapping[int, float] | Sequence[float],
    duration: float | None = None,
    loss: float | None = None,
    metrics: Mapping[str, float | int] | None = None,
) -> Message:
    """Build the reply to a training instruction.

    Parameters
    ----------
    message : Message
        The instruction being answered.
    arrays : ArrayRecord or mapping of str to array
        The trained arrays: exactly the keys received (numpy arrays or torch tensors).
    num_examples : int
        Samples trained on (the averaging weight and the scheduler's ``samples``).
    rewards : mapping of expert id to float, or sequence
        One reward in [0, 1] per expert received; a sequence is in ``expert-ids`` order.
    duration : float, optional
        Seconds the work took (measured or simulated); feeds the capacity profiler.
    loss : float, optional
        Training loss, averaged by the server.
    metrics : mapping, optional
        Extra scalar metrics to include.

    Returns
    -------
    Message
        The reply, with ``"arrays"`` and ``"metrics"`` records.

    Raises
    ------
    ValueError
        If ``rewards`` does not name exactly the experts of the instruction.
    """
    experts = read_train_task(message).expert_ids
    if isinstance(rewards, Mapping):
        given = sorted(int(k) for k in rewards)
        if given != sorted(experts):
            raise ValueError(f"rewards: experts {given} differ from the experts received {experts}")
        reward_list = [float(rewards[e]) for e in experts]
    else:
        reward_list = [float(r) for r in rewards]
        if len(reward_list) != len(experts):
            raise ValueError(f"rewards: {len(reward_list)} values for {len(experts)} experts")
    record = arrays if isinstance(arrays, ArrayRecord) else rec.numpy_to_arrays(arrays)
    out = MetricRecord(
        {
            rec.NUM_EXAMPLES: int(num_examples),
            rec.REWARDS: reward_list,
            rec.EXPERT_IDS: list(experts),
        }
    )
    if duration is not None:
        out[rec.DURATION] = float(duration)
    if loss is not None:
        out[rec.LOSS] = float(loss)
    for key, value in (metrics or {}).items():
        out[key] = value
    return Message(RecordDict({rec.ARRAYS: record, rec.METRICS: out}), reply_to=message)


def profile_reply(
    message: Message,
    context: Context,
    *,
    profile: Mapping[str, Any] | None = None,
) -> Message:
    """Answer :class:`~fedalign.flower.FedAlign`'s profile query.

    Parameters
    ----------
    message : Message
        The ``query`` message.
    context : Context
        The ClientApp's context; every scalar of ``context.node_config`` is sent (capacity
        fields such as ``memory`` or ``bandwidth-up`` and identity such as ``partition-id``).
    profile : mapping, optional
        Values that override or add to ``node_config`` (wire names of
        :data:`fedalign.flower.records.PROFILE_FIELDS`, e.g. a measured ``compute``).

    Returns
    -------
    Message
        The reply, with a ConfigRecord ``"profile"``.
    """
    values: dict[str, Any] = {}
    for key, value in dict(context.node_config).items():
        if isinstance(value, (bool, int, float, str)):
            values[key] = value
    for key, value in (profile or {}).items():
        values[key] = value
    values = {k: v for k, v in values.items() if v is not None}
    return Message(RecordDict({rec.PROFILE: ConfigRecord(values)}), reply_to=message)


def make_moe_client_app(
    setup: Callable[[Context], Any],
    *,
    epochs: int = 1,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
) -> Any:
    """A ClientApp that trains :mod:`fedalign.sim`'s MoE model on the experts it is given.

    Parameters
    ----------
    setup : callable
        ``setup(context) -> ClientSetup``-like object with attributes ``model`` (a
        :class:`fedalign.sim.model.MoEModel`), ``train_data`` (the node's dataset for
        :func:`fedalign.sim.client.local_train`), optional ``test_data`` (for federated
        evaluation), optional ``profile`` (mapping of wire-named capacity fields) and optional
        ``duration_fn(samples, expert_ids) -> float`` (simulated seconds; default: measured).
        Called once per message; cache inside it if building is expensive.
    epochs, lr, batch_size, seed
        Local training settings; the instruction's config may override them with
        ``local-epochs``, ``lr``, ``batch-size``. The seed is combined with the round and the
        node so every round trains differently but reproducibly.

    Returns
    -------
    flwr.clientapp.ClientApp
    """
    from flwr.clientapp import ClientApp

    from ..sim.client import local_train
    from ..sim.model import load_partial_state

    app = ClientApp()

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        task = read_train_task(msg)
        node = setup(context)
        model = node.model
        load_partial_state(model, task.state())
        start = time.perf_counter()
        state, metrics = local_train(
            model,
            task.expert_ids,
            node.train_data,
            epochs=int(task.config.get("local-epochs", epochs)),
            lr=float(task.config.get("lr", lr)),
            batch_size=int(task.config.get("batch-size", batch_size)),
            seed=int(seed) * 1_000_003 + task.server_round * 7919 + int(context.node_id) % 104729,
        )
        elapsed = time.perf_counter() - start
        duration_fn = getattr(node, "duration_fn", None)
        duration = (
            float(duration_fn(int(metrics["samples"]), task.expert_ids)) if duration_fn else elapsed
        )
        return train_reply(
            msg,
            {k: state[k] for k in task.arrays.keys()},
            num_examples=int(metrics["samples"]),
            rewards={int(e): float(r) for e, r in metrics["rewards"].items()},
            duration=duration,
            loss=float(metrics["loss"]) if metrics.get("loss") is not None else None,
        )

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        import torch

        node = setup(context)
        model = node.model
        arrays = next(iter(msg.content.array_records.values()))
        load_partial_state(model, rec.arrays_to_numpy(arrays))
        data = getattr(node, "test_data", None) or node.train_data
        x, y = data.tensors if hasattr(data, "tensors") else data
        model.eval()
        with torch.no_grad():
            logp = model(x)
            loss = float(torch.nn.functional.nll_loss(logp, y))
            acc = float((logp.argmax(dim=1) == y).float().mean())
        out = MetricRecord({rec.NUM_EXAMPLES: int(len(y)), "accuracy": acc, rec.LOSS: loss})
        return Message(RecordDict({rec.METRICS: out}), reply_to=msg)

    @app.query()
    def _query(msg: Message, context: Context) -> Message:
        node = setup(context)
        return profile_reply(msg, context, profile=getattr(node, "profile", None))

    return app
