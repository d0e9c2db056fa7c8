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

:func:`train_moe` / :func:`evaluate_moe` do the work for :mod:`fedalign.sim`'s MoE model
(extra ``sim``), and :func:`make_moe_client_app` wraps them into a complete ClientApp.
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
    "MoENode",
    "TrainTask",
    "evaluate_moe",
    "make_moe_client_app",
    "profile_reply",
    "read_train_task",
    "train_moe",
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
    survey_ids : list of int
        Experts sent to be evaluated, not trained (``FedAlign(survey=True)``); empty
        otherwise. Their rewards go back as ``train_reply(survey=...)``.
    survey_arrays : ArrayRecord or None
        Their arrays.
    """

    expert_ids: list[int]
    server_round: int
    arrays: ArrayRecord
    config: dict[str, Any] = field(default_factory=dict)
    survey_ids: list[int] = field(default_factory=list)
    survey_arrays: ArrayRecord | None = None

    def state(self) -> dict[str, np.ndarray]:
        """The received arrays as ``{key: ndarray}``."""
        return rec.arrays_to_numpy(self.arrays)

    def survey_state(self) -> dict[str, np.ndarray]:
        """The arrays of the experts to evaluate as ``{key: ndarray}`` (empty: none sent)."""
        return {} if self.survey_arrays is None else rec.arrays_to_numpy(self.survey_arrays)


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
    survey_arrays = content.array_records.get(rec.SURVEY_ARRAYS)
    trained = [k for k in content.array_records if k != rec.SURVEY_ARRAYS]
    if len(trained) != 1:
        raise ValueError(
            f"message: expected one ArrayRecord besides '{rec.SURVEY_ARRAYS}', got {len(trained)}"
        )
    config = content.config_records.get(rec.CONFIG)
    if config is None and len(content.config_records) == 1:
        config = next(iter(content.config_records.values()))
    if config is None or rec.EXPERT_IDS not in config:
        raise ValueError(f"message: no ConfigRecord with '{rec.EXPERT_IDS}'")
    raw: Any = config[rec.EXPERT_IDS]
    experts = raw if isinstance(raw, list) else [raw]
    own = (rec.EXPERT_IDS, rec.SERVER_ROUND, rec.SURVEY_IDS)
    rest = {k: v for k, v in config.items() if k not in own}
    server_round: Any = config.get(rec.SERVER_ROUND, 0)
    raw_survey: Any = config.get(rec.SURVEY_IDS, [])
    survey_ids = raw_survey if isinstance(raw_survey, list) else [raw_survey]
    return TrainTask(
        expert_ids=[int(e) for e in experts],
        server_round=int(server_round),
        arrays=content.array_records[trained[0]],
        config=rest,
        survey_ids=[int(e) for e in survey_ids] if survey_arrays is not None else [],
        survey_arrays=survey_arrays,
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
    epsilon: float | None = None,
    reward_variance: float | None = None,
    survey: Mapping[int, float] | None = None,
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
    epsilon : float > 0, optional
        The rewards are already privatized for this ε (:func:`fedalign.privatize_rewards`);
        sent as ``"reward-epsilon"`` so that the server accepts rewards outside [0, 1]
        (its scheduler needs ``noisy_rewards=True``).
    reward_variance : float > 0, optional
        The variance of that noise per reward (``Feedback.reward_variance`` of
        :func:`fedalign.privatize`), sent as ``"reward-variance"``: the scheduler weighs the
        rewards by it (without it, it assumes the Laplace mechanism's for ``epsilon``).
    survey : mapping of expert id to float, optional
        Rewards of experts evaluated but not trained (``TrainTask.survey_ids``; privatized
        with the rewards when ``epsilon`` is given), sent as ``"survey-ids"`` and
        ``"survey"``: the scheduler's ``Feedback.survey``.

    Returns
    -------
    Message
        The reply, with ``"arrays"`` and ``"metrics"`` records.

    Raises
    ------
    ValueError
        If ``rewards`` does not name exactly the experts of the instruction, or ``survey``
        names one of them.
    """
    experts = read_train_task(message).expert_ids
    out = MetricRecord(
        {
            rec.NUM_EXAMPLES: int(num_examples),
            rec.REWARDS: _reward_list(rewards, experts),
            rec.EXPERT_IDS: list(experts),
        }
    )
    survey_ids, survey_values = _survey_lists(survey or {}, experts)
    optional = {
        rec.DURATION: duration,
        rec.LOSS: loss,
        rec.EPSILON: epsilon,
        rec.VARIANCE: reward_variance,
    }
    for key, value in optional.items():
        if value is not None:
            out[key] = float(value)
    if survey_ids:
        out[rec.SURVEY_IDS] = survey_ids
        out[rec.SURVEY] = survey_values
    for key, value in (metrics or {}).items():
        out[key] = value
    record = arrays if isinstance(arrays, ArrayRecord) else rec.numpy_to_arrays(arrays)
    return Message(RecordDict({rec.ARRAYS: record, rec.METRICS: out}), reply_to=message)


def _reward_list(rewards: Mapping[int, float] | Sequence[float], experts: list[int]) -> list[float]:
    """One reward per expert, in ``experts`` order (a sequence is taken in that order)."""
    if isinstance(rewards, Mapping):
        by_id = {int(k): float(v) for k, v in rewards.items()}
        if sorted(by_id) != sorted(experts):
            raise ValueError(
                f"rewards: experts {sorted(by_id)} differ from the experts received {experts}"
            )
        return [by_id[e] for e in experts]
    reward_list = [float(r) for r in rewards]
    if len(reward_list) != len(experts):
        raise ValueError(f"rewards: {len(reward_list)} values for {len(experts)} experts")
    return reward_list


def _survey_lists(
    survey: Mapping[int, float], experts: list[int]
) -> tuple[list[int], list[float]]:
    """The survey's ids (sorted) and rewards; none of them may be an expert to train."""
    by_id = {int(k): float(v) for k, v in survey.items()}
    trained = sorted(set(by_id) & set(experts))
    if trained:
        raise ValueError(
            f"survey: experts {trained} were given to train; their rewards go in rewards"
        )
    ids = sorted(by_id)
    return ids, [by_id[e] for e in ids]


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


@dataclass
class MoENode:
    """What one node brings to :func:`train_moe`: a model to train in, its data, its identity.

    Attributes
    ----------
    model : fedalign.sim.model.MoEModel
        A model of the federation's architecture (its weights are overwritten by what the
        server sends).
    train_data : (x, y) pair or TensorDataset
        The node's local data.
    test_data : (x, y) pair, optional
        Data for federated evaluation (default: ``train_data``).
    client_index : int
        Mixed into the training seed, so every node trains differently but reproducibly.
    profile : mapping, optional
        Capacity fields sent in the profile answer on top of ``node_config``.
    """

    model: Any
    train_data: Any
    test_data: Any = None
    client_index: int = 0
    profile: Mapping[str, Any] | None = None


#: Instruction config keys :func:`train_moe` understands (all optional).
SIMULATED_SECONDS = "simulated-seconds"
SIMULATE_DROPOUT = "simulate-dropout"


def train_moe(
    message: Message,
    node: MoENode,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    reward: str = "accuracy",
) -> Message:
    """Train the experts of a :class:`~fedalign.flower.FedAlign` instruction; build the reply.

    Loads the received shared layers and experts into ``node.model``, runs
    :func:`fedalign.sim.client.local_train` (rewards measured on the experts as received),
    and replies with the trained arrays, ``num-examples`` (samples x epochs, the load the
    local simulator reports), one reward per expert, the loss and the duration.

    The instruction's config may set ``local-epochs``, ``lr``, ``batch-size`` and, for
    simulated fleets, ``simulated-seconds`` (reported as the duration instead of the measured
    one) and ``simulate-dropout`` (reply with an error instead of training: the node vanished
    or missed the deadline in the simulated fleet; the strategy counts it as a dropout).
    Experts sent to be evaluated (``FedAlign(survey=True)``) are evaluated as received and
    their rewards sent as ``survey``.

    The local seed is ``seed * 1_000_003 + (server_round - 1) * 1009 + node.client_index``,
    the same as :func:`fedalign.sim.server.run_strategy` uses, so both engines train alike.
    """
    import torch

    from ..sim.client import local_train
    from ..sim.model import load_partial_state

    task = read_train_task(message)
    if task.config.get(SIMULATE_DROPOUT):
        from flwr.app import Error
        from flwr.common.constant import ErrorCode

        reason = f"client {node.client_index} drops out of round {task.server_round} (simulated)"
        return Message(Error(code=ErrorCode.NODE_UNAVAILABLE, reason=reason), reply_to=message)
    torch.set_num_threads(1)
    load_partial_state(node.model, task.state())
    n_epochs = int(task.config.get("local-epochs", epochs))
    kind = str(task.config.get("reward", reward))
    start = time.perf_counter()
    survey = _survey_rewards(node, task, kind)
    state, metrics = local_train(
        node.model,
        task.expert_ids,
        node.train_data,
        epochs=n_epochs,
        lr=float(task.config.get("lr", lr)),
        batch_size=int(task.config.get("batch-size", batch_size)),
        seed=int(seed) * 1_000_003 + (task.server_round - 1) * 1009 + int(node.client_index),
        reward=kind,
    )
    elapsed = time.perf_counter() - start
    simulated = task.config.get(SIMULATED_SECONDS)
    return train_reply(
        message,
        {k: state[k] for k in task.arrays.keys()},
        num_examples=int(metrics["samples"]) * n_epochs,
        rewards={int(e): float(r) for e, r in metrics["rewards"].items()},
        duration=float(simulated) if isinstance(simulated, (int, float)) else elapsed,
        loss=float(metrics["loss"]),
        survey=survey,
    )


def _survey_rewards(node: MoENode, task: TrainTask, kind: str) -> dict[int, float]:
    """Rewards of the experts sent to be evaluated (``FedAlign(survey=True)``), measured as
    received like the trained experts' (none for ``loss-reduction``, measured after training)."""
    if task.survey_arrays is None or not task.survey_ids or kind == "loss-reduction":
        return {}
    from ..sim.client import as_tensors, expert_rewards
    from ..sim.model import load_partial_state

    load_partial_state(node.model, task.survey_state())
    x, y = as_tensors(node.train_data)
    return expert_rewards(node.model, task.survey_ids, x, y, kind)


def evaluate_moe(message: Message, node: MoENode) -> Message:
    """Evaluate the full model of an ``evaluate`` instruction on the node's test data.

    Replies with ``num-examples``, ``accuracy`` and ``loss``.
    """
    import torch

    from ..sim.client import as_tensors
    from ..sim.model import load_partial_state

    arrays = next(iter(message.content.array_records.values()))
    load_partial_state(node.model, rec.arrays_to_numpy(arrays))
    x, y = as_tensors(node.test_data if node.test_data is not None else node.train_data)
    node.model.eval()
    with torch.no_grad():
        logp = node.model(x)
        loss = float(torch.nn.functional.nll_loss(logp, y))
        acc = float((logp.argmax(dim=1) == y).float().mean())
    out = MetricRecord({rec.NUM_EXAMPLES: int(len(y)), "accuracy": acc, rec.LOSS: loss})
    return Message(RecordDict({rec.METRICS: out}), reply_to=message)


def make_moe_client_app(
    setup: Callable[[Context], MoENode],
    *,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    reward: str = "accuracy",
) -> Any:
    """A complete ClientApp for :mod:`fedalign.sim`'s MoE model (extra ``sim``).

    Parameters
    ----------
    setup : callable
        ``setup(context) -> MoENode`` for the node running the message (e.g. its data
        partition from ``context.node_config["partition-id"]``). Called for every message;
        cache inside it if building is expensive.
    epochs, lr, batch_size, seed, reward
        Passed to :func:`train_moe`.

    Returns
    -------
    flwr.clientapp.ClientApp
        With ``train`` (:func:`train_moe`), ``evaluate`` (:func:`evaluate_moe`) and
        ``query`` (:func:`profile_reply`) handlers.
    """
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return train_moe(
            msg,
            setup(context),
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            reward=reward,
        )

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        return evaluate_moe(msg, setup(context))

    @app.query()
    def _query(msg: Message, context: Context) -> Message:
        return profile_reply(msg, context, profile=setup(context).profile)

    return app
