"""Site side of :class:`~fedalign.nvflare.FedAlignController`: NVFlare Client API helpers.

A training script run by NVFlare's ``ScriptRunner`` (Client API, ``nvflare.client``) needs
three steps per round: read which experts it trains, train them, send the arrays back with
the samples, one reward per expert and the duration. :func:`run_site` is that loop::

    from fedalign.nvflare import client as fc

    def train(task: fc.TrainTask):
        state = task.state()                    # shared arrays + task.expert_ids' arrays
        rewards = {j: accuracy_of_expert(state, j) for j in task.expert_ids}  # as received
        trained, n = train_locally(state, task.expert_ids, task.config)
        return fc.train_reply(task, trained, samples=n, rewards=rewards)

    fc.run_site(train)                          # flare.init(), receive, train, send ...

An exception raised by ``train`` becomes an error reply (the controller records the site as
a dropout with the exception as the reason) and the loop goes on with the next round; the
wall-clock seconds of ``train`` are reported as the duration unless the reply has its own.

:func:`train_moe` does the work for :mod:`fedalign.sim`'s MoE model (extra ``sim``), and
:func:`moe_site_main` is the script ``fedalign simulate --engine nvflare`` runs on each site.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType

from . import wire

__all__ = [
    "MoESite",
    "TrainTask",
    "error_reply",
    "moe_site_main",
    "read_task",
    "run_site",
    "train_moe",
    "train_reply",
]


@dataclass(frozen=True)
class TrainTask:
    """One training instruction from :class:`~fedalign.nvflare.FedAlignController`.

    Attributes
    ----------
    expert_ids : list of int
        Experts this site trains this round (in the order rewards are expected).
    round : int
        The scheduler's round.
    current_round : int
        NVFlare's round counter (from 0).
    params : dict
        Shared arrays plus the arrays of ``expert_ids`` (numpy arrays with the ``NUMPY``
        exchange format; tensors with ``PYTORCH``).
    config : dict
        Training settings (the controller's ``train_config`` and per-site entries).
    model : FLModel
        The received model, untouched.
    """

    expert_ids: list[int]
    round: int
    current_round: int
    params: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    model: Any = None

    def state(self) -> dict[str, np.ndarray]:
        """The received arrays as ``{key: ndarray}``."""
        out: dict[str, np.ndarray] = {}
        for key, value in self.params.items():
            if hasattr(value, "detach"):  # a torch tensor, without importing torch
                value = value.detach().cpu().numpy()
            out[key] = np.asarray(value)
        return out


def read_task(model: Any) -> TrainTask:
    """Read a training instruction.

    Parameters
    ----------
    model : FLModel
        What ``flare.receive()`` returned for a ``train`` task of the controller.

    Returns
    -------
    TrainTask

    Raises
    ------
    ValueError
        The model has no params dict, or its meta lacks the expert ids (it was not sent by
        :class:`~fedalign.nvflare.FedAlignController`).
    """
    meta = getattr(model, "meta", None) or {}
    raw = meta.get(wire.EXPERT_IDS)
    if raw is None:
        raise ValueError(f"model: meta has no '{wire.EXPERT_IDS}' (not a fedalign task)")
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping):
        raise ValueError(f"model: params must be a dict of arrays, got {type(params).__name__}")
    experts = raw if isinstance(raw, (list, tuple)) else [raw]
    config = meta.get(wire.CONFIG) or {}
    current = getattr(model, "current_round", None)
    return TrainTask(
        expert_ids=[int(e) for e in experts],
        round=int(meta.get(wire.ROUND, 0)),
        current_round=int(current) if current is not None else 0,
        params=dict(params),
        config=dict(config),
        model=model,
    )


def train_reply(
    task: TrainTask,
    params: Mapping[str, Any],
    *,
    samples: int,
    rewards: Mapping[int, float] | Sequence[float],
    duration: float | None = None,
    weight: float | None = None,
    loss: float | None = None,
    metrics: Mapping[str, Any] | None = None,
    epsilon: float | None = None,
    reward_variance: float | None = None,
) -> FLModel:
    """Build the reply to a training instruction.

    Parameters
    ----------
    task : TrainTask
        The instruction being answered.
    params : mapping of str to array
        The trained arrays: exactly the keys received, same shapes and dtypes, in the
        exchange format of the site's ``ScriptRunner`` (numpy arrays for ``NUMPY``).
    samples : int >= 0
        Samples trained on: the scheduler's ``Feedback.samples`` and, unless ``weight`` is
        given, the averaging weight.
    rewards : mapping of expert id to float, or sequence
        One reward in [0, 1] per expert received (e.g. the expert's accuracy on the site's
        data *as received*); a sequence is in ``task.expert_ids`` order.
    duration : float, optional
        Seconds the work took; feeds the scheduler's capacity profiler. :func:`run_site`
        fills in the measured time when it is None.
    weight : float, optional
        Averaging weight, if it is not ``samples``.
    loss : float, optional
        Training loss, sent as ``metrics["loss"]``.
    metrics : mapping, optional
        Other metrics to send.
    epsilon : float > 0, optional
        The rewards are already privatized for this ε (:func:`fedalign.privatize_rewards`):
        sent as ``meta[EPSILON]`` so that the controller accepts rewards outside [0, 1] (its
        scheduler needs ``noisy_rewards=True``).
    reward_variance : float > 0, optional
        The variance of that noise per reward (``Feedback.reward_variance`` of
        :func:`fedalign.privatize`), sent as ``meta[VARIANCE]``: the scheduler weighs the
        rewards by it (without it, it assumes the Laplace mechanism's for ``epsilon``).

    Returns
    -------
    FLModel
        ``params`` (FULL) and the report in ``meta``.

    Raises
    ------
    ValueError
        ``rewards`` does not name exactly the experts of the instruction.
    """
    experts = list(task.expert_ids)
    if isinstance(rewards, Mapping):
        given = sorted(int(k) for k in rewards)
        if given != sorted(experts):
            raise ValueError(f"rewards: experts {given} differ from the experts received {experts}")
        reward_list = [float(rewards[e]) for e in experts]
    else:
        reward_list = [float(r) for r in rewards]
        if len(reward_list) != len(experts):
            raise ValueError(f"rewards: {len(reward_list)} values for {len(experts)} experts")
    meta: dict[str, Any] = {
        wire.SAMPLES: int(samples),
        wire.REWARDS: reward_list,
        wire.EXPERT_IDS: experts,
    }
    if duration is not None:
        meta[wire.DURATION] = float(duration)
    if weight is not None:
        meta[wire.WEIGHT] = float(weight)
    if epsilon is not None:
        meta[wire.EPSILON] = float(epsilon)
    if reward_variance is not None:
        meta[wire.VARIANCE] = float(reward_variance)
    out_metrics = dict(metrics or {})
    if loss is not None:
        out_metrics["loss"] = float(loss)
    return FLModel(
        params_type=ParamsType.FULL,
        params=dict(params),
        metrics=out_metrics or None,
        current_round=task.current_round,
        meta=meta,
    )


def error_reply(reason: str, task: TrainTask | None = None) -> FLModel:
    """A reply saying this site could not train this round (the controller drops it).

    Parameters
    ----------
    reason : str
        Kept as the dropout's reason (``"error: <reason>"``).
    task : TrainTask, optional
        The instruction being answered (its round is echoed).
    """
    # No params: nothing of this reply can be averaged. An empty metrics dict, because the
    # Client API refuses to send a model with neither params nor metrics.
    return FLModel(
        metrics={},
        current_round=None if task is None else task.current_round,
        meta={wire.ERROR: str(reason)},
    )


def run_site(
    train: Callable[[TrainTask], Any],
    *,
    flare: Any = None,
    on_other_task: Callable[[Any], Any] | None = None,
) -> int:
    """Serve the controller's tasks until the job ends (the Client API loop).

    Parameters
    ----------
    train : callable
        ``train(task: TrainTask) -> FLModel`` (build it with :func:`train_reply`). An
        exception it raises is sent as an :func:`error_reply` naming it; the loop goes on.
    flare : module, optional
        The Client API (default ``nvflare.client``; tests pass a stand-in).
    on_other_task : callable, optional
        ``on_other_task(model) -> FLModel`` for tasks other than training (e.g.
        ``validate``); default: answer with an error reply.

    Returns
    -------
    int
        Number of tasks answered.
    """
    if flare is None:
        import nvflare.client

        flare = nvflare.client
    flare.init()
    answered = 0
    while flare.is_running():
        model = flare.receive()
        if model is None:  # the job ended while waiting
            break
        if not flare.is_train():
            if on_other_task is not None:
                reply = on_other_task(model)
            else:
                reply = error_reply(f"task {flare.get_task_name()!r} is not handled by this site")
            flare.send(reply)
            answered += 1
            continue
        start = time.perf_counter()
        try:
            task = read_task(model)
        except ValueError as exc:
            flare.send(error_reply(str(exc)))
            answered += 1
            continue
        try:
            reply = train(task)
            if not isinstance(reply, FLModel):
                raise TypeError(f"train returned a {type(reply).__name__}, not an FLModel")
        except Exception as exc:  # noqa: BLE001 - a failing round is a dropout, not a crash
            reply = error_reply(f"{type(exc).__name__}: {exc}", task)
        meta = reply.meta if reply.meta is not None else {}
        if wire.ERROR not in meta and meta.get(wire.DURATION) is None:
            meta[wire.DURATION] = time.perf_counter() - start
            reply.meta = meta
        flare.send(reply)
        answered += 1
    return answered


# ---------------------------------------------------------------------- the fedalign.sim model


@dataclass
class MoESite:
    """What one site brings to :func:`train_moe`: a model to train in, its data, its index.

    Attributes
    ----------
    model : fedalign.sim.model.MoEModel
        A model of the federation's architecture (its weights are overwritten by what the
        server sends).
    train_data : (x, y) pair or TensorDataset
        The site's local data.
    client_index : int
        Mixed into the training seed, so every site trains differently but reproducibly.
    """

    model: Any
    train_data: Any
    client_index: int = 0


def train_moe(
    task: TrainTask,
    site: MoESite,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    reward: str = "accuracy",
) -> FLModel:
    """Train the experts of an instruction with :mod:`fedalign.sim`'s trainer; build the reply.

    Loads the received shared layers and experts into ``site.model``, runs
    :func:`fedalign.sim.client.local_train` (rewards measured on the experts as received)
    and replies with the trained arrays, ``samples`` = local samples x epochs, the local
    sample count as the averaging weight (what :func:`fedalign.sim.server.run_strategy`
    uses), one reward per expert, the loss and the duration.

    The instruction's config may set ``local-epochs``, ``lr``, ``batch-size``, ``reward``
    and, for simulated fleets, :data:`~fedalign.nvflare.wire.SIMULATED_SECONDS` (reported as
    the duration) and :data:`~fedalign.nvflare.wire.SIMULATE_DROPOUT` (answer with an error
    instead of training). The local seed is ``seed * 1_000_003 + current_round * 1009 +
    client_index``, the local runner's, so both engines train alike.
    """
    import torch

    from ..sim.client import local_train
    from ..sim.model import load_partial_state

    if task.config.get(wire.SIMULATE_DROPOUT):
        return error_reply(
            f"client {site.client_index} drops out of round {task.current_round} (simulated)", task
        )
    torch.set_num_threads(1)
    load_partial_state(site.model, task.state())
    n_epochs = int(task.config.get("local-epochs", epochs))
    start = time.perf_counter()
    state, metrics = local_train(
        site.model,
        task.expert_ids,
        site.train_data,
        epochs=n_epochs,
        lr=float(task.config.get("lr", lr)),
        batch_size=int(task.config.get("batch-size", batch_size)),
        seed=int(seed) * 1_000_003 + task.current_round * 1009 + int(site.client_index),
        reward=str(task.config.get("reward", reward)),
    )
    elapsed = time.perf_counter() - start
    simulated = task.config.get(wire.SIMULATED_SECONDS)
    return train_reply(
        task,
        {k: state[k].detach().cpu().numpy() for k in task.params},
        samples=int(metrics["samples"]) * n_epochs,
        weight=float(metrics["samples"]),
        rewards={int(e): float(r) for e, r in metrics["rewards"].items()},
        duration=float(simulated) if isinstance(simulated, (int, float)) else elapsed,
        loss=float(metrics["loss"]),
    )


def moe_site_main(argv: Sequence[str] | None = None) -> int:
    """The site script of ``fedalign simulate --engine nvflare`` (``--world WORLD.json``).

    Rebuilds the seed's world from the JSON file the engine wrote (the simulation's
    settings and seed), takes the partition of its site (``site-<i>`` holds client ``i``)
    and serves training tasks with :func:`train_moe` until the job ends.
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=moe_site_main.__doc__)
    parser.add_argument("--world", required=True, help="JSON: {'config': {...}, 'seed': N}")
    args = parser.parse_args(argv)
    with open(args.world, encoding="utf-8") as f:
        world = json.load(f)

    from ..sim.config import SimConfig
    from ..sim.model import MoEModel
    from ..sim.server import make_setup

    config = SimConfig(**world["config"])
    seed = int(world["seed"])
    setup = make_setup(config, seed)
    model = MoEModel(
        setup.data.n_features,
        setup.data.n_classes,
        config.n_experts,
        expert_hidden=config.expert_hidden,
        trunk_hidden=config.trunk_hidden,
        top_k=config.top_k,
    )
    model.load_state_dict(setup.initial_state)

    import nvflare.client as flare

    sites: dict[int, MoESite] = {}

    def train(task: TrainTask) -> FLModel:
        index = site_index(flare.get_site_name())
        if index not in sites:
            sites[index] = MoESite(model, setup.partition.clients[index], client_index=index)
        return train_moe(
            task,
            sites[index],
            epochs=config.local_epochs,
            lr=config.lr,
            batch_size=config.batch_size,
            seed=seed,
            reward=config.reward,
        )

    return run_site(train, flare=flare)


def site_index(name: str) -> int:
    """The client index of a site named ``site-<i>`` (the engine's naming)."""
    prefix, _, number = str(name).rpartition("-")
    if prefix != "site" or not number.isdigit():
        raise ValueError(f"site name: expected 'site-<index>', got {name!r}")
    return int(number)
