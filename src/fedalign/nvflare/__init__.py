"""fedalign on NVIDIA FLARE (extra ``nvflare``): a server workflow, Client API helpers, an engine.

* :class:`FedAlignController` (:mod:`fedalign.nvflare.controller`): an NVFlare
  ``ModelController`` workflow whose rounds are planned by a :class:`fedalign.Scheduler`:
  one task per site with the shared arrays and only its experts (expert ids and round in the
  ``FLModel`` meta), and per-expert averaging over the sites that trained it, through the
  core round driver.
* :mod:`fedalign.nvflare.client`: what a site's Client API script needs (read the task,
  reply with arrays, samples, one reward per expert, duration; :func:`run_site` is the whole
  loop), plus :func:`~fedalign.nvflare.client.train_moe` for the :mod:`fedalign.sim` model.
* :func:`run_nvflare_experiment` (:mod:`fedalign.nvflare.engine`): ``fedalign simulate
  --engine nvflare``, the simulation harness's experiment on NVFlare's simulator.
* :mod:`fedalign.nvflare.wire`: the task and reply format both sides share.

Importing this package needs ``nvflare``; ``import fedalign`` never does.
"""

from __future__ import annotations

from typing import Any

try:
    import nvflare  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if exc.name != "nvflare":
        raise
    raise ModuleNotFoundError(
        "fedalign.nvflare needs NVIDIA FLARE: pip install 'fedalign[nvflare]'", name="nvflare"
    ) from exc

from .client import TrainTask, error_reply, read_task, run_site, train_reply
from .controller import BadReply, FedAlignController, SiteError, read_reply

__all__ = [
    "BadReply",
    "FedAlignController",
    "SiteError",
    "TrainTask",
    "error_reply",
    "read_reply",
    "read_task",
    "run_nvflare_experiment",
    "run_site",
    "train_reply",
]


def __getattr__(name: str) -> Any:
    # The engine needs torch (extra ``sim``); load it only when asked for.
    if name == "run_nvflare_experiment":
        from .engine import run_nvflare_experiment

        return run_nvflare_experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
