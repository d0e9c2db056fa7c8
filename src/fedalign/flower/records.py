"""The wire format shared by the fedalign strategy and its ClientApp helper.

Both sides of a Flower run must agree on record names, metric keys and how a state-dict key
names its expert. This module holds that agreement and nothing else, so the server strategy
(:mod:`fedalign.flower.strategy`) and the client helper (:mod:`fedalign.flower.client`) import
it instead of repeating string literals.

A training instruction carries

* an :class:`~flwr.app.ArrayRecord` under ``"arrays"``: the shared layers and only the
  experts the node was given (``experts.<j>.*`` keys);
* a :class:`~flwr.app.ConfigRecord` under ``"config"``: ``"expert-ids"`` (list of int),
  ``"server-round"`` (int) and whatever the server app adds;
* with ``FedAlign(survey=True)``, a second ArrayRecord under ``"survey-arrays"``: every
  other expert, to evaluate (not to train), and ``"survey-ids"`` (list of int) in the config.

A training reply carries the trained arrays (same keys as received) and a
:class:`~flwr.app.MetricRecord` under ``"metrics"``: ``"num-examples"`` (samples trained on),
``"rewards"`` (one value in [0, 1] per expert, in the order of ``"expert-ids"``), optionally
``"expert-ids"`` (echo), ``"duration"`` (seconds), ``"loss"``, ``"reward-epsilon"`` (the
rewards carry local-differential-privacy noise for this ε, and may leave [0, 1]; see
:func:`fedalign.privacy.privatize_rewards`) and ``"reward-variance"`` (that noise's variance
per reward, :func:`fedalign.privacy.noise_variance`; needs ``"reward-epsilon"``), and
``"survey-ids"`` with ``"survey"`` (rewards of experts evaluated but not trained, one per id:
``Feedback.survey``; they ride with the rewards' ``"reward-epsilon"``).

A profile query (``MessageType.QUERY`` with ``config["fedalign-request"] == "profile"``) is
answered with a ConfigRecord under ``"profile"`` holding the node's capacity
(:data:`PROFILE_FIELDS`) and identity (``"partition-id"``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The key convention is the core's (``experts.<j>.<rest>``), shared with every runtime.
from ..rounds.naming import EXPERT_PREFIX, expert_of_key

__all__ = [
    "ARRAYS",
    "CONFIG",
    "DURATION",
    "EPSILON",
    "EXPERT_IDS",
    "EXPERT_PREFIX",
    "LOSS",
    "METRICS",
    "NUM_EXAMPLES",
    "PROFILE",
    "PROFILE_FIELDS",
    "PROFILE_REQUEST",
    "REQUEST",
    "REWARDS",
    "SERVER_ROUND",
    "SURVEY",
    "SURVEY_ARRAYS",
    "SURVEY_IDS",
    "VARIANCE",
    "arrays_to_numpy",
    "expert_of_key",
    "numpy_to_arrays",
    "profile_from_mapping",
]

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
PROFILE = "profile"

EXPERT_IDS = "expert-ids"
SERVER_ROUND = "server-round"
NUM_EXAMPLES = "num-examples"
REWARDS = "rewards"
DURATION = "duration"
EPSILON = "reward-epsilon"
VARIANCE = "reward-variance"
LOSS = "loss"
SURVEY_ARRAYS = "survey-arrays"
SURVEY_IDS = "survey-ids"
SURVEY = "survey"

REQUEST = "fedalign-request"
PROFILE_REQUEST = "profile"

#: Wire name (``node_config`` / ConfigRecord key) -> :class:`fedalign.ClientProfile` field.
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


def arrays_to_numpy(record: Any) -> dict[str, np.ndarray]:
    """Decode an :class:`~flwr.app.ArrayRecord` into ``{key: ndarray}`` (keys in order)."""
    return {key: array.numpy() for key, array in record.items()}


def numpy_to_arrays(state: Mapping[str, Any]) -> Any:
    """Encode ``{key: ndarray or torch.Tensor}`` as an :class:`~flwr.app.ArrayRecord`."""
    from flwr.app import Array, ArrayRecord

    out: dict[str, Any] = {}
    for key, value in state.items():
        if hasattr(value, "detach"):  # a torch tensor, without importing torch
            value = value.detach().cpu().numpy()
        # order="C", not np.ascontiguousarray: that one turns a 0-d array into shape (1,)
        out[key] = Array(np.asarray(value, order="C"))
    return ArrayRecord(out)


def profile_from_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`fedalign.ClientProfile` keyword arguments found in ``values``.

    Parameters
    ----------
    values : mapping
        A node's ``node_config`` or a profile ConfigRecord; wire names as in
        :data:`PROFILE_FIELDS` (``"bandwidth-up"``; ``"bandwidth_up"`` is accepted too).
        Other keys are ignored.

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
                if field == "max_experts":
                    if not (np.isfinite(raw) and float(raw).is_integer()):
                        raise ValueError(f"{name}: expected a whole number, got {raw!r}")
                    out[field] = int(raw)
                else:
                    out[field] = float(raw)
                break
    return out
