"""The server workflow: FedAlignController with this example's model and a central test set.

:class:`~fedalign.nvflare.FedAlignController` does the rounds (plan, one task per site with
the shared layers and its experts, checks, per-expert averaging); this subclass only says
where the initial model comes from and evaluates the global model on the held-out test set
after every round (the accuracy lands in the JSON summary next to each round).
"""

from __future__ import annotations

from typing import Any

import moe_task
import numpy as np

from fedalign.nvflare import FedAlignController
from fedalign.rounds import RoundSummary


class MoEController(FedAlignController):
    """FedAlignController for the ``fedalign.sim`` MoE model on ``digits``.

    Parameters
    ----------
    settings : dict
        The world's settings (:data:`moe_task.DEFAULTS`), the same the sites get.
    **kwargs
        :class:`~fedalign.nvflare.FedAlignController`'s arguments.
    """

    def __init__(self, *args: Any, settings: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = dict(settings or {})
        self._model: Any = None

    def initial_state(self) -> dict[str, np.ndarray]:
        world = moe_task.world(self.settings)
        self._model = moe_task.new_model(world)
        return {k: v.numpy().copy() for k, v in world.initial_state.items()}

    def after_round(
        self, round_index: int, state: dict[str, np.ndarray], summary: RoundSummary
    ) -> dict[str, Any]:
        from fedalign.sim.model import load_partial_state
        from fedalign.sim.server import evaluate

        load_partial_state(self._model, state)
        accuracy, _ = evaluate(self._model, moe_task.world(self.settings).partition)
        self.info(f"round {round_index}: accuracy {accuracy:.3f} on the held-out test set")
        return {"accuracy": accuracy}
