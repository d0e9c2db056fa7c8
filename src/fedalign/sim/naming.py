"""How model parameters are named: shared parts versus ``experts.<j>.<rest>``.

torch-free, so the aggregator and the Flower strategy can use it on plain numpy dicts.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["EXPERT_PREFIX", "expert_keys", "expert_of_key", "shared_keys"]

EXPERT_PREFIX = "experts."


def expert_of_key(name: str) -> int | None:
    """The expert a ``state_dict`` key belongs to, or None for a shared parameter.

    Parameters
    ----------
    name : str
        A key of the model's ``state_dict``, e.g. ``"experts.3.0.weight"`` or ``"gate.bias"``.

    Returns
    -------
    int or None
        ``3`` for ``"experts.3.0.weight"``; None for keys outside ``experts.``.

    Raises
    ------
    ValueError
        If the key starts with ``experts.`` but no integer expert index follows.
    """
    if not name.startswith(EXPERT_PREFIX):
        return None
    head = name[len(EXPERT_PREFIX) :].split(".", 1)[0]
    if not head.isdigit():
        raise ValueError(f"name: key {name!r} starts with 'experts.' but has no expert index")
    return int(head)


def shared_keys(state: Mapping[str, object]) -> list[str]:
    """Keys of ``state`` that belong to no expert (trunk, gate, ...)."""
    return [k for k in state if expert_of_key(k) is None]


def expert_keys(state: Mapping[str, object], expert: int) -> list[str]:
    """Keys of ``state`` that belong to expert ``expert``."""
    return [k for k in state if expert_of_key(k) == expert]
