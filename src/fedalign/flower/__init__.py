"""fedalign on Flower (extra ``flower``): a Message-API strategy, a ClientApp helper, an engine.

* :class:`FedAlign` (:mod:`fedalign.flower.strategy`): a ``flwr.serverapp.strategy.Strategy``
  whose rounds are planned by a :class:`fedalign.Scheduler`: one RecordDict per node with the
  shared layers and only its experts, and per-expert averaging over the nodes that trained it.
* :mod:`fedalign.flower.client`: what a ClientApp needs to answer it (read the instruction,
  reply with arrays, ``num-examples``, one reward per expert, duration; answer the profile
  query from ``node_config``), plus a ready ClientApp for the :mod:`fedalign.sim` model.
* :func:`run_flower_experiment` (:mod:`fedalign.flower.engine`): ``fedalign simulate
  --engine flower``, the simulation harness's experiment on Flower's simulation engine.

Importing this package needs ``flwr``; ``import fedalign`` never does.
"""

from __future__ import annotations

from typing import Any

try:
    import flwr  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if exc.name != "flwr":
        raise
    raise ModuleNotFoundError(
        "fedalign.flower needs Flower: pip install 'fedalign[flower]'", name="flwr"
    ) from exc

from .client import TrainTask, profile_reply, read_train_task, train_reply
from .records import expert_of_key
from .strategy import FedAlign, RoundRecord

__all__ = [
    "FedAlign",
    "RoundRecord",
    "TrainTask",
    "expert_of_key",
    "profile_reply",
    "read_train_task",
    "run_flower_experiment",
    "train_reply",
]


def __getattr__(name: str) -> Any:
    # The engine needs torch (extra ``sim``); load it only when asked for.
    if name == "run_flower_experiment":
        from .engine import run_flower_experiment

        return run_flower_experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
