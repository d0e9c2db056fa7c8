"""The wire format shared by :class:`~fedalign.nvflare.FedAlignController` and its sites.

Both sides of an NVIDIA FLARE job must agree on the task name and on the keys of the
``FLModel.meta`` dict that carry fedalign's instruction and report. This module holds that
agreement and nothing else (no nvflare import), so the controller and the Client API helper
(:mod:`fedalign.nvflare.client`) import it instead of repeating string literals.

A training task (server -> site) is an ``FLModel`` with

* ``params``: the shared arrays and only the arrays of the site's experts
  (``experts.<j>.*`` keys), as numpy arrays, ``params_type`` FULL;
* ``current_round`` / ``total_rounds``: NVFlare's round counter (from 0) and round count;
* ``meta``: :data:`EXPERT_IDS` (list of int), :data:`ROUND` (the scheduler's round),
  :data:`CONFIG` (a dict of training settings: the controller's ``train_config`` plus
  per-site entries).

A training reply (site -> server) is an ``FLModel`` with ``params`` holding exactly the keys
received (same shapes and dtypes, FULL, not a DIFF) and ``meta`` holding :data:`SAMPLES`
(int >= 0: the scheduler's ``Feedback.samples`` and, unless :data:`WEIGHT` is given, the
averaging weight), :data:`REWARDS` (one value in [0, 1] per expert, in :data:`EXPERT_IDS`
order), optionally :data:`EXPERT_IDS` (echo), :data:`DURATION` (seconds), :data:`WEIGHT`
and :data:`EPSILON` (the rewards carry local-differential-privacy noise for this ε and may
leave [0, 1]) with :data:`VARIANCE` (that noise's variance per reward); ``metrics`` is free
(e.g. ``{"loss": ...}``).

A site that cannot train answers with an ``FLModel`` whose ``meta`` holds :data:`ERROR` (a
sentence) and no params: the controller records a dropout with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The key convention is the core's (``experts.<j>.<rest>``), shared with every runtime.
from ..rounds.naming import EXPERT_PREFIX, expert_of_key

__all__ = [
    "CONFIG",
    "DURATION",
    "EPSILON",
    "ERROR",
    "EXPERT_IDS",
    "EXPERT_PREFIX",
    "PROFILE_FIELDS",
    "REWARDS",
    "ROUND",
    "SAMPLES",
    "SIMULATED_SECONDS",
    "SIMULATE_DROPOUT",
    "TASK_TRAIN",
    "VARIANCE",
    "WEIGHT",
    "expert_of_key",
    "profile_from_mapping",
]

#: NVFlare's name of the training task (``AppConstants.TASK_TRAIN``), which the Client API
#: executor answers by default.
TASK_TRAIN = "train"

# server -> site (FLModel.meta)
EXPERT_IDS = "fedalign.expert_ids"
ROUND = "fedalign.round"
CONFIG = "fedalign.config"

# site -> server (FLModel.meta)
SAMPLES = "fedalign.samples"
REWARDS = "fedalign.rewards"
DURATION = "fedalign.duration"
EPSILON = "fedalign.reward_epsilon"
VARIANCE = "fedalign.reward_variance"
WEIGHT = "fedalign.weight"
ERROR = "fedalign.error"

#: Keys of the instruction's :data:`CONFIG` that :func:`fedalign.nvflare.client.train_moe`
#: understands for simulated fleets: report these seconds as the duration; answer with an
#: error instead of training (the site vanished or missed the deadline in the simulation).
SIMULATED_SECONDS = "simulated-seconds"
SIMULATE_DROPOUT = "simulate-dropout"

#: Name in a site's profile mapping -> :class:`fedalign.ClientProfile` field (the names of
#: ``fedalign.flower``'s ``node_config``; the field names themselves are accepted too).
PROFILE_FIELDS: dict[str, str] = {
    "memory": "memory",
    "compute": "compute",
    "bandwidth-up": "bandwidth_up",
    "bandwidth-down": "bandwidth_down",
    "latency": "latency",
    "availability": "availability",
    "max-experts": "max_experts",
    "samples": "samples",
}


def profile_from_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`fedalign.ClientProfile` keyword arguments found in ``values``.

    Parameters
    ----------
    values : mapping
        A site's capacity, with the names of :data:`PROFILE_FIELDS` (``"max-experts"``) or
        the field names (``"max_experts"``). Other keys are ignored.

    Returns
    -------
    dict
        ``{field: value}`` for the fields present, ``max_experts`` as int, others as float.

    Raises
    ------
    ValueError
        If a present field is not a number.
    """
    out: dict[str, Any] = {}
    for wire, field in PROFILE_FIELDS.items():
        for name in (wire, field):
            if name in values:
                raw = values[name]
                if isinstance(raw, bool) or not isinstance(raw, (int, float, np.number)):
                    raise ValueError(f"{name}: expected a number, got {raw!r}")
                out[field] = int(raw) if field == "max_experts" else float(raw)
                break
    return out
