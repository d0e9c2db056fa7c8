"""The federated round protocol, framework-neutral: plan, send, collect, report, average.

:class:`RoundDriver` runs one round of federated MoE training over a
:class:`fedalign.Scheduler` on a global state held as numpy arrays; a transport (the PyTorch
harness :mod:`fedalign.sim`, the Flower strategy :mod:`fedalign.flower`) only moves payloads
and replies. numpy only: nothing here imports torch, flwr or any adapter.

* :mod:`~fedalign.rounds.naming` -- shared versus ``experts.<j>.*`` parameter names;
  :class:`ModelLayout`;
* :mod:`~fedalign.rounds.aggregate` -- per-expert weighted averaging, the
  :class:`Aggregator` hook;
* :mod:`~fedalign.rounds.robust` -- robust per-expert aggregation (median, trimmed and
  clipped means, a weight cap) and the :class:`ReplyScreen` that judges replies;
* :mod:`~fedalign.rounds.replies` -- the checks a reply passes before it is used;
* :mod:`~fedalign.rounds.driver` -- :class:`RoundDriver`, :class:`ActiveRound`,
  :class:`RoundSummary`.
"""

from __future__ import annotations

from .aggregate import (
    Aggregator,
    aggregate_partial,
    expert_update_counts,
    weighted_mean,
    weighted_mean_array,
)
from .driver import ActiveRound, Dropout, Reply, ReplyStatus, RoundDriver, RoundSummary
from .naming import (
    EXPERT_PREFIX,
    ExpertOfKey,
    ModelLayout,
    expert_keys,
    expert_of_key,
    shared_keys,
)
from .replies import InvalidReply
from .robust import (
    AGGREGATION_RULES,
    ReplyScreen,
    RobustAggregator,
    ScreenReport,
    cap_shares,
    coordinate_median,
    trimmed_mean,
)

__all__ = [
    "AGGREGATION_RULES",
    "EXPERT_PREFIX",
    "Aggregator",
    "Dropout",
    "ExpertOfKey",
    "InvalidReply",
    "ModelLayout",
    "ActiveRound",
    "Reply",
    "ReplyScreen",
    "ReplyStatus",
    "RobustAggregator",
    "RoundDriver",
    "RoundSummary",
    "ScreenReport",
    "aggregate_partial",
    "cap_shares",
    "coordinate_median",
    "expert_keys",
    "expert_of_key",
    "expert_update_counts",
    "shared_keys",
    "trimmed_mean",
    "weighted_mean",
    "weighted_mean_array",
]
