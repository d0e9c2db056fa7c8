"""The federated Mixture-of-Experts model: shared trunk, gate, and E addressable experts.

Parameter naming is a contract other runtimes rely on (the Flower strategy, the aggregator):

* shared parts (``trunk.*``, ``gate.*``) have names that do **not** start with ``experts.``;
* expert ``j``'s parameters are named ``experts.<j>.<rest>`` in the ``state_dict``.

So a client can receive and return only the shared part plus its assigned experts
(:func:`partial_state`, :func:`load_partial_state`), and :func:`expert_of_key` tells which
expert a tensor belongs to.

Routing is top-k over the gate's softmax. A client that trains only some experts masks the
gate to them (``expert_mask``), so its forward pass uses only what it received.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from .naming import EXPERT_PREFIX, expert_keys, expert_of_key, shared_keys

if TYPE_CHECKING:
    from .config import SimConfig
    from .data import Dataset

__all__ = [
    "EXPERT_PREFIX",
    "MoEModel",
    "expert_of_key",
    "expert_keys",
    "expert_widths",
    "load_partial_state",
    "model_for",
    "partial_state",
    "shared_keys",
    "state_nbytes",
]


class MoEModel(nn.Module):
    """A small classifier: shared trunk, linear gate, ``n_experts`` MLP experts, top-k routing.

    Parameters
    ----------
    in_features : int
        Input dimension (inputs are flattened).
    n_classes : int
        Number of output classes.
    n_experts : int
        Number of experts E.
    expert_hidden : int or sequence of int, default 16
        Hidden units of each expert (one hidden layer): one width for all, or one per expert
        (experts of different sizes differ in memory, compute and bytes). Small on purpose:
        one expert should not be able to hold every domain (docs/experiments.md).
    trunk_hidden : int or None, default None
        Width of the shared trunk (Linear + ReLU). None keeps the trunk parameter-free
        (identity); the gate is then the only shared learned part.
    top_k : int, default 1
        Experts used per sample at inference.

    Notes
    -----
    The forward pass returns the log-likelihood mixture
    ``log sum_{j in top-k} p_j(x) softmax(expert_j(h))``, where ``p`` is the gate's softmax
    over the *allowed* experts (the mask), renormalised over the selected top-k. Training on
    its negative trains each expert on its share of the data and the gate to route to the
    experts that explain it best.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        n_experts: int,
        *,
        expert_hidden: int | Sequence[int] = 16,
        trunk_hidden: int | None = None,
        top_k: int = 1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("n_classes", n_classes),
            ("n_experts", n_experts),
            ("top_k", top_k),
        ):
            if int(value) < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        widths = expert_widths(expert_hidden, int(n_experts))
        if top_k > n_experts:
            raise ValueError(f"top_k: must be <= n_experts={n_experts}, got {top_k}")
        if trunk_hidden is not None and trunk_hidden < 1:
            raise ValueError(f"trunk_hidden: must be None or >= 1, got {trunk_hidden}")
        self.in_features = int(in_features)
        self.n_classes = int(n_classes)
        self.n_experts = int(n_experts)
        self.top_k = int(top_k)
        if trunk_hidden is None:
            self.trunk: nn.Module = nn.Identity()
            width = self.in_features
        else:
            self.trunk = nn.Sequential(nn.Linear(self.in_features, trunk_hidden), nn.ReLU())
            width = int(trunk_hidden)
        self.gate = nn.Linear(width, self.n_experts)
        self.expert_hidden = widths
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(width, h), nn.ReLU(), nn.Linear(h, n_classes)) for h in widths
        )

    # ------------------------------------------------------------------ routing
    def gate_log_probs(
        self, h: Tensor, expert_mask: Tensor | None = None, renormalise: bool = True
    ) -> Tensor:
        """Log-softmax of the gate over experts; masked-out experts get ``-inf``.

        With ``renormalise`` the softmax runs over the allowed experts only; without it, over
        all experts (so the allowed ones hold less than all the mass).
        """
        logits = self.gate(h)
        if expert_mask is None:
            return torch.log_softmax(logits, dim=-1)
        if renormalise:
            return torch.log_softmax(logits.masked_fill(~expert_mask, float("-inf")), dim=-1)
        return torch.log_softmax(logits, dim=-1).masked_fill(~expert_mask, float("-inf"))

    def forward(
        self,
        x: Tensor,
        expert_mask: Tensor | None = None,
        top_k: int | None = None,
        renormalise: bool = True,
    ) -> Tensor:
        """Class log-probabilities of the routed mixture, shape ``(batch, n_classes)``.

        Parameters
        ----------
        x : Tensor
            Inputs, ``(batch, ...)``; flattened to ``in_features``.
        expert_mask : bool Tensor of shape (E,), optional
            Experts the forward may use; the gate is renormalised over them, and only the
            experts selected from them are evaluated. Default: all experts.
        top_k : int, optional
            Experts per sample (default ``self.top_k``, capped at the number allowed).
        renormalise : bool, default True
            Renormalise the gate over the allowed experts and the weights of the selected
            top-k to sum to one (a proper distribution). Local training passes False: the
            mixture then keeps the gate's full softmax, so minimising the loss also teaches the
            gate to route this client's inputs to the experts it trains (with one allowed
            expert a renormalised gate would get no gradient at all).
        """
        h = self.trunk(x.reshape(x.shape[0], -1))
        logp = self.gate_log_probs(h, expert_mask, renormalise)
        n_allowed = self.n_experts if expert_mask is None else int(expert_mask.sum())
        k = min(self.top_k if top_k is None else int(top_k), n_allowed)
        top_logp, top_idx = torch.topk(logp, k, dim=-1)
        if renormalise:  # weights of the selected experts sum to one (standard top-k MoE)
            top_logp = top_logp - torch.logsumexp(top_logp, dim=-1, keepdim=True)
        out = torch.full((x.shape[0], k, self.n_classes), float("-inf"), device=x.device)
        # Loop over experts (the small dimension), evaluating each on the samples routed to it.
        for j in torch.unique(top_idx).tolist():
            rows, slots = (top_idx == j).nonzero(as_tuple=True)
            out[rows, slots] = torch.log_softmax(self.experts[j](h[rows]), dim=-1)
        return torch.logsumexp(top_logp.unsqueeze(-1) + out, dim=1)

    def expert_log_probs(self, x: Tensor, expert: int) -> Tensor:
        """Class log-probabilities of expert ``expert`` alone on ``x`` (no routing)."""
        h = self.trunk(x.reshape(x.shape[0], -1))
        return torch.log_softmax(self.experts[expert](h), dim=-1)

    def routing(self, x: Tensor) -> Tensor:
        """The gate's softmax over all experts, ``(batch, E)``."""
        h = self.trunk(x.reshape(x.shape[0], -1))
        return torch.softmax(self.gate(h), dim=-1)


def model_for(config: SimConfig, data: Dataset) -> MoEModel:
    """A fresh model of ``config``'s architecture for ``data``'s features and classes."""
    return MoEModel(
        data.n_features,
        data.n_classes,
        config.n_experts,
        expert_hidden=config.expert_hidden,
        trunk_hidden=config.trunk_hidden,
        top_k=config.top_k,
    )


def expert_widths(expert_hidden: int | Sequence[int], n_experts: int) -> tuple[int, ...]:
    """One hidden width per expert from ``expert_hidden`` (one width, or one per expert).

    Raises
    ------
    ValueError
        A width below 1, or a sequence whose length is not ``n_experts``.
    """
    if isinstance(expert_hidden, numbers.Integral):
        widths: tuple[int, ...] = (int(expert_hidden),) * n_experts
    else:
        widths = tuple(int(h) for h in cast(Sequence[int], expert_hidden))
        if len(widths) != n_experts:
            raise ValueError(
                f"expert_hidden: expected one width or {n_experts} widths, got {len(widths)}"
            )
    bad = [h for h in widths if h < 1]
    if bad:
        raise ValueError(f"expert_hidden: must be >= 1, got {bad[0]}")
    return widths


def partial_state(model: nn.Module, expert_ids: Iterable[int]) -> dict[str, Tensor]:
    """The shared parameters plus those of ``expert_ids``, detached copies.

    Parameters
    ----------
    model : MoEModel
        Any module whose expert parameters follow the ``experts.<j>.`` naming.
    expert_ids : iterable of int
        Experts to include.

    Returns
    -------
    dict of str to Tensor
        Cloned tensors, safe to keep after ``model`` changes.
    """
    wanted = {int(j) for j in expert_ids}
    n_experts = getattr(model, "n_experts", None)
    if n_experts is not None:
        bad = sorted(j for j in wanted if not 0 <= j < n_experts)
        if bad:
            raise ValueError(f"expert_ids: {bad[0]} is not in 0..{n_experts - 1}")
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        e = expert_of_key(key)
        if e is None or e in wanted:
            out[key] = value.detach().clone()
    return out


def load_partial_state(model: nn.Module, state: Mapping[str, Tensor | object]) -> None:
    """Copy the tensors in ``state`` into ``model``, leaving every other parameter untouched.

    Parameters
    ----------
    model : nn.Module
    state : mapping of str to Tensor or numpy array
        A subset of ``model.state_dict()``'s keys (e.g. from :func:`partial_state`).

    Raises
    ------
    KeyError
        If ``state`` holds a key the model does not have.
    ValueError
        If a tensor's shape differs from the model's.
    """
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise KeyError(f"state: key {unknown[0]!r} is not a parameter of the model")
    with torch.no_grad():
        for key, value in state.items():
            tensor = torch.as_tensor(value)
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"state: {key!r} has shape {tuple(tensor.shape)}, "
                    f"model expects {tuple(own[key].shape)}"
                )
            own[key].copy_(tensor)


def state_nbytes(state: Mapping[str, Tensor | object]) -> int:
    """Bytes of the tensors (or numpy arrays) in ``state``: what sending it costs."""
    total = 0
    for value in state.values():
        if isinstance(value, Tensor):
            total += value.numel() * value.element_size()
        else:
            total += int(getattr(value, "nbytes", 0))
    return total
