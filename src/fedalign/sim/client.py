"""One client's round: measure rewards of the received experts, train them, return them.

The reward of an expert is measured on the expert **as received**, before local training
(docs/experiments.md): an expert just trained on the client's data always looks good,
which would hide the herding that makes fitness-only greedy overload a popular expert. Two such rewards are
offered (``"accuracy"``, ``"routing"``), plus ``"loss-reduction"`` (after training), the
alternative the design mentions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import REWARDS
from .model import MoEModel, partial_state

__all__ = ["REWARDS", "as_tensors", "expert_rewards", "local_train"]


def as_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """``(x, y)`` float32 / int64 tensors from a ``(x, y)`` pair or a ``TensorDataset``."""
    if hasattr(dataset, "tensors"):
        x, y = dataset.tensors[:2]
    else:
        x, y = dataset
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(
        np.asarray(y), dtype=torch.int64
    )


@torch.no_grad()
def _expert_losses_and_accuracy(
    model: MoEModel, experts: list[int], x: Tensor, y: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per expert alone: mean NLL and accuracy on ``(x, y)``."""
    losses, accs = np.zeros(len(experts)), np.zeros(len(experts))
    for pos, j in enumerate(experts):
        logp = model.expert_log_probs(x, j)
        losses[pos] = float(nn.functional.nll_loss(logp, y))
        accs[pos] = float((logp.argmax(dim=1) == y).float().mean())
    return losses, accs


@torch.no_grad()
def expert_rewards(
    model: MoEModel, experts: list[int], x: Tensor, y: Tensor, kind: str
) -> dict[int, float]:
    """Rewards in [0, 1] of ``experts`` on ``(x, y)`` as the model stands now.

    Parameters
    ----------
    model : MoEModel
    experts : list of int
    x, y : Tensor
        The client's data.
    kind : {"accuracy", "routing"}
        ``accuracy``: share of the samples expert j alone classifies correctly.
        ``routing``: share of the samples the gate routes to j (its top-1 choice).
    """
    if kind == "accuracy":
        _, accs = _expert_losses_and_accuracy(model, experts, x, y)
        return {j: float(a) for j, a in zip(experts, accs, strict=True)}
    if kind == "routing":
        top = model.routing(x).argmax(dim=1)
        share = torch.bincount(top, minlength=model.n_experts).double() / max(1, len(top))
        return {j: float(share[j]) for j in experts}
    raise ValueError(f"kind: must be 'accuracy' or 'routing' here, got {kind!r}")


def local_train(
    model: MoEModel,
    expert_ids: list[int] | tuple[int, ...],
    dataset: Any,
    *,
    epochs: int = 2,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    reward: str = "accuracy",
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Train the assigned experts (with trunk and gate) on one client's data.

    The gate is masked to the assigned experts, so the forward pass uses only them; the
    mixture keeps the gate's full softmax, so training also teaches the gate to route this
    client's inputs to them. The model is modified in place.

    Parameters
    ----------
    model : MoEModel
        Holds the global shared part and (at least) the assigned experts.
    expert_ids : sequence of int
        Experts this client trains this round (non-empty, distinct).
    dataset : (x, y) pair of arrays / tensors, or a ``TensorDataset``
    epochs, lr, batch_size : training settings (Adam, fresh each round)
    seed : int
        Seeds the batch order.
    reward : {"accuracy", "routing", "loss-reduction"}, default "accuracy"
        ``accuracy`` and ``routing`` are measured on the experts as received (before
        training); ``loss-reduction`` is each expert's relative loss reduction on the
        client's data, ``(L_before - L_after) / L_before`` clipped to [0, 1].

    Returns
    -------
    partial_state : dict of str to Tensor
        Shared parameters and the assigned experts after training.
    metrics : dict
        ``samples`` (int, size of the local dataset), ``rewards`` ({expert_id: float in
        [0, 1]}), ``loss`` (mean training loss of the last epoch), ``loss_sq`` (mean squared
        per-sample training loss of the last epoch), ``loss_before`` (loss of
        the received model, masked to the assigned experts), ``steps`` (optimiser steps).
    """
    experts = [int(j) for j in expert_ids]
    if not experts:
        raise ValueError("expert_ids: must name at least one expert")
    if len(set(experts)) != len(experts):
        raise ValueError(f"expert_ids: duplicates in {experts}")
    bad = [j for j in experts if not 0 <= j < model.n_experts]
    if bad:
        raise ValueError(f"expert_ids: {bad[0]} is not in 0..{model.n_experts - 1}")
    if reward not in REWARDS:
        raise ValueError(f"reward: must be one of {REWARDS}, got {reward!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")
    x, y = as_tensors(dataset)
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("dataset: is empty")

    mask = torch.zeros(model.n_experts, dtype=torch.bool)
    mask[experts] = True
    k = len(experts)

    model.eval()
    losses_before, _ = _expert_losses_and_accuracy(model, experts, x, y)
    rewards = expert_rewards(model, experts, x, y, reward) if reward != "loss-reduction" else {}
    with torch.no_grad():
        loss_before = float(
            -model(x, mask, top_k=k, renormalise=False).gather(1, y[:, None]).mean()
        )

    params = [*model.trunk.parameters(), *model.gate.parameters()]
    for j in experts:
        params.extend(model.experts[j].parameters())
    optimiser = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    model.train()
    steps, last_epoch_loss, last_epoch_sq = 0, 0.0, 0.0
    for _ in range(int(epochs)):
        order = torch.randperm(n, generator=generator)
        total = squares = 0.0
        for start in range(0, n, int(batch_size)):
            idx = order[start : start + int(batch_size)]
            logp = model(x[idx], mask, top_k=k, renormalise=False)
            loss = -logp.gather(1, y[idx, None]).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
            # per-sample squared losses (Oort's statistical utility); no effect on training
            squares += float((logp.detach().gather(1, y[idx, None]) ** 2).sum())
            steps += 1
        last_epoch_loss, last_epoch_sq = total / n, squares / n
    model.eval()

    if reward == "loss-reduction":
        losses_after, _ = _expert_losses_and_accuracy(model, experts, x, y)
        rel = (losses_before - losses_after) / np.maximum(losses_before, 1e-12)
        rewards = {j: float(r) for j, r in zip(experts, np.clip(rel, 0.0, 1.0), strict=True)}

    metrics: dict[str, Any] = {
        "samples": n,
        "rewards": rewards,
        "loss": last_epoch_loss,
        "loss_sq": last_epoch_sq,
        "loss_before": loss_before,
        "steps": steps,
    }
    return partial_state(model, experts), metrics
