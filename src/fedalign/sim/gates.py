"""Where the gate lives, and how a model is scored in the ``cross-device`` scenario.

With ``gate="global"`` the gate is a shared part like the trunk: sent, trained and averaged.
With ``gate="local"`` each client keeps its own gate (as FLEX-MoE and pFedMoE do): the
server never sends, receives or averages it; a client starts from the initial gate and keeps
what its local training made of it (:class:`LocalGates`).

**The metric** (:func:`domain_accuracy`): the accuracy of the model a client of each domain
would use, on held-out data of that domain, averaged over domains (equal weight). With the
global gate every client uses the same model, so it is the global model's accuracy on each
domain's held-out set, averaged -- the usual test accuracy, since every domain holds as many
test samples. With local gates a fixed evaluation panel of clients per domain (drawn once
per seed, whether or not they ever train) is scored: each with its own gate and the global
trunk and experts, on its domain's held-out set; a domain's score is its panel's mean.
Routing is the model's top-k over the gate, as at inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from .model import MoEModel

__all__ = ["GATE_PREFIX", "LocalGates", "domain_accuracy", "gate_keys"]

GATE_PREFIX = "gate."
"""Keys of the gate's parameters in :class:`~fedalign.sim.model.MoEModel`'s state."""


def gate_keys(state: Mapping[str, object]) -> list[str]:
    """Keys of ``state`` that belong to the gate."""
    return [k for k in state if k.startswith(GATE_PREFIX)]


class LocalGates:
    """Each client's own gate: never sent, never averaged.

    Parameters
    ----------
    initial : mapping of str to array
        The gate every client starts from (the initial model's ``gate.*`` arrays).
    """

    def __init__(self, initial: Mapping[str, NDArray[np.float32]]) -> None:
        self.initial = {k: np.array(v) for k, v in initial.items()}
        self._own: dict[int, dict[str, NDArray[np.float32]]] = {}

    def __len__(self) -> int:
        """Clients whose gate left the initial one."""
        return len(self._own)

    def get(self, client: int) -> dict[str, NDArray[np.float32]]:
        """``client``'s gate (the initial one until it trains)."""
        return self._own.get(int(client), self.initial)

    def keep(self, client: int, arrays: Mapping[str, object]) -> None:
        """Store the gate arrays of ``arrays`` (a trained partial state) as ``client``'s."""
        self._own[int(client)] = {
            k: np.array(torch.as_tensor(arrays[k]).detach().numpy()) for k in self.initial
        }


@torch.no_grad()
def domain_accuracy(
    model: MoEModel,
    x_test: NDArray[np.float32],
    y_test: NDArray[np.int64],
    test_group: NDArray[np.int64],
    gates: Sequence[Sequence[Mapping[str, NDArray[np.float32]]]] | None = None,
) -> list[float]:
    """Per domain, the accuracy of its clients' models on its held-out data.

    Parameters
    ----------
    model : MoEModel
        Holds the global trunk and experts (and gate, used when ``gates`` is None).
    x_test, y_test, test_group : arrays
        Held-out samples and the domain of each.
    gates : per domain, a sequence of gate states, optional
        The panel's own gates (``gate="local"``); None scores the model's own gate.

    Returns
    -------
    list of float
        One accuracy per domain (the panel's mean with ``gates``).
    """
    out = []
    for d in range(int(test_group.max()) + 1):
        rows = test_group == d
        x = torch.as_tensor(x_test[rows])
        y = torch.as_tensor(y_test[rows])
        h = model.trunk(x.reshape(x.shape[0], -1))
        # every expert on every sample once; each gate then only picks among them
        expert_logp = torch.stack([torch.log_softmax(e(h), dim=-1) for e in model.experts], 1)
        panel = [None] if gates is None else list(gates[d])
        scores = [_routed_accuracy(model, h, expert_logp, y, g) for g in panel]
        out.append(float(np.mean(scores)))
    return out


def _routed_accuracy(
    model: MoEModel,
    h: torch.Tensor,
    expert_logp: torch.Tensor,
    y: torch.Tensor,
    gate: Mapping[str, NDArray[np.float32]] | None,
) -> float:
    """Accuracy of top-k routing by ``gate`` (None: the model's) over precomputed experts."""
    if gate is None:
        logits = model.gate(h)
    else:
        w = torch.as_tensor(gate[GATE_PREFIX + "weight"])
        b = torch.as_tensor(gate[GATE_PREFIX + "bias"])
        logits = h @ w.T + b
    logp = torch.log_softmax(logits, dim=-1)
    top_logp, top_idx = torch.topk(logp, model.top_k, dim=-1)
    top_logp = top_logp - torch.logsumexp(top_logp, dim=-1, keepdim=True)
    picked = expert_logp.gather(1, top_idx[:, :, None].expand(-1, -1, expert_logp.shape[-1]))
    mixture = torch.logsumexp(top_logp[:, :, None] + picked, dim=1)
    return float((mixture.argmax(1) == y).float().mean())
