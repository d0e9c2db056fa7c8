"""How model parameters are named: shared parts versus ``experts.<j>.<rest>``.

Every runtime relies on this contract: expert ``j``'s parameters are named
``experts.<j>.<rest>`` and everything else (trunk, gate, ...) is shared. So a client can
receive and return only the shared part plus its experts, and a server can tell which
expert a returned array belongs to. :class:`ModelLayout` applies the contract to one model
state once (which keys are shared, which belong to each expert, and their sizes), so a round
does not ask :func:`expert_of_key` again for every client.

numpy only: the round driver, the PyTorch harness and the Flower strategy all use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "EXPERT_PREFIX",
    "ExpertOfKey",
    "ModelLayout",
    "expert_keys",
    "expert_of_key",
    "shared_keys",
]

EXPERT_PREFIX = "experts."

#: Maps a parameter name to its expert id, or None for a shared parameter.
ExpertOfKey = Callable[[str], int | None]


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


@dataclass(frozen=True)
class ModelLayout:
    """Which keys of a model state are shared, which belong to each expert, and their bytes.

    Build it with :meth:`of`.

    Attributes
    ----------
    expert_of : dict of str to int or None
        Every key of the state, in the state's order, with its expert (None = shared).
    shared : tuple of str
        The shared keys, in the state's order.
    by_expert : dict of int to tuple of str
        Each expert's keys, in the state's order; experts in increasing order.
    shared_nbytes : int
        Bytes of the shared arrays.
    expert_nbytes : dict of int to int
        Bytes of each expert's arrays.
    """

    expert_of: Mapping[str, int | None]
    shared: tuple[str, ...]
    by_expert: Mapping[int, tuple[str, ...]]
    shared_nbytes: int
    expert_nbytes: Mapping[int, int]

    @classmethod
    def of(
        cls, state: Mapping[str, Any], expert_of_key: ExpertOfKey = expert_of_key
    ) -> ModelLayout:
        """The layout of ``state`` under a naming.

        Parameters
        ----------
        state : mapping of str to array
            A full model state; only key names and array sizes are read.
        expert_of_key : callable, default :func:`expert_of_key`
            Maps a key to its expert id (an int) or None for a shared key.

        Raises
        ------
        ValueError
            A key the naming rejects, or an expert id that is not an int.
        """
        expert_of: dict[str, int | None] = {}
        by_expert: dict[int, list[str]] = {}
        for key in state:
            e = expert_of_key(key)
            if e is not None:
                if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
                    raise ValueError(f"expert_of_key: key {key!r} maps to {e!r}, not an int")
                e = int(e)
                by_expert.setdefault(e, []).append(key)
            expert_of[key] = e
        nbytes = {key: int(np.asarray(value).nbytes) for key, value in state.items()}
        shared = tuple(k for k, e in expert_of.items() if e is None)
        return cls(
            expert_of=expert_of,
            shared=shared,
            by_expert={e: tuple(by_expert[e]) for e in sorted(by_expert)},
            shared_nbytes=sum(nbytes[k] for k in shared),
            expert_nbytes={e: sum(nbytes[k] for k in by_expert[e]) for e in sorted(by_expert)},
        )

    @property
    def experts(self) -> tuple[int, ...]:
        """The experts that own at least one key, in increasing order."""
        return tuple(self.by_expert)

    def keys_for(self, experts: Iterable[int]) -> list[str]:
        """What a client given ``experts`` receives: the shared keys, then each expert's.

        Raises
        ------
        KeyError
            An expert that owns no key.
        """
        return [*self.shared, *(k for e in experts for k in self.by_expert[e])]

    def nbytes_for(self, experts: Iterable[int]) -> int:
        """Bytes of :meth:`keys_for`'s arrays."""
        return self.shared_nbytes + sum(self.expert_nbytes[e] for e in experts)
