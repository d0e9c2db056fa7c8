"""Fixtures for the Flower tests: an in-memory Grid, a toy MoE model as arrays, a clock.

Strategies are exercised on constructed Messages, as Flower's own strategy tests do: no
engine, no network. A reply is built with ``Message(content, reply_to=instruction)``, so its
``src_node_id`` is the instruction's destination, exactly as on a real SuperLink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

try:
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fedalign.flower.records import numpy_to_arrays
except ModuleNotFoundError as exc:  # without the flower extra these tests are not collected
    if exc.name is None or not exc.name.startswith("flwr"):
        raise
    collect_ignore_glob = ["test_*.py"]

N_EXPERTS = 3


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages created outside a Flower process need a run/task/node identity."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)


def model_state(n_experts: int = N_EXPERTS, seed: int = 0) -> dict[str, np.ndarray]:
    """A toy MoE state dict: shared trunk and gate, experts named ``experts.<j>.*``."""
    rng = np.random.default_rng(seed)
    state = {
        "trunk.weight": rng.normal(size=(4, 3)).astype(np.float32),
        "gate.bias": rng.normal(size=(n_experts,)).astype(np.float32),
        "gate.steps": np.array([5], dtype=np.int64),
    }
    for j in range(n_experts):
        state[f"experts.{j}.0.weight"] = rng.normal(size=(2, 4)).astype(np.float32)
        state[f"experts.{j}.0.bias"] = rng.normal(size=(2,)).astype(np.float32)
    return state


class FakeGrid:
    """A Grid stand-in: fixed node ids; queries answered from per-node ``node_config``.

    ``send_and_receive`` answers ``query`` messages with a profile reply for each node whose
    ``node_config`` is known (other nodes stay silent) and hands every other message to
    ``responder`` (default: no replies).
    """

    def __init__(
        self,
        node_configs: dict[int, dict[str, Any]],
        responder: Callable[[list[Message]], Iterable[Message]] | None = None,
        silent: Iterable[int] = (),
    ) -> None:
        self.node_configs = node_configs
        self.responder = responder
        self.silent = set(silent)
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(self.node_configs)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        messages = list(messages)
        self.sent.extend(messages)
        queries = [m for m in messages if m.metadata.message_type == MessageType.QUERY]
        others = [m for m in messages if m.metadata.message_type != MessageType.QUERY]
        replies = [
            Message(
                RecordDict({"profile": ConfigRecord(self.node_configs[m.metadata.dst_node_id])}),
                reply_to=m,
            )
            for m in queries
            if m.metadata.dst_node_id not in self.silent
        ]
        if others and self.responder is not None:
            replies.extend(self.responder(others))
        return replies


@pytest.fixture
def state() -> dict[str, np.ndarray]:
    return model_state()


@pytest.fixture
def arrays(state: dict[str, np.ndarray]) -> Any:
    return numpy_to_arrays(state)


@pytest.fixture
def fake_grid() -> type[FakeGrid]:
    """The :class:`FakeGrid` class, for tests that build their own."""
    return FakeGrid


@pytest.fixture
def make_state() -> Callable[..., dict[str, np.ndarray]]:
    """The :func:`model_state` builder."""
    return model_state
