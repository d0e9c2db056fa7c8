"""FedAlign: a Flower Message-API strategy that lets the fedalign scheduler pick experts.

Flower's ``FedAvg`` sends one shared RecordDict to every node and rejects replies whose
ArrayRecords hold different keys. A Mixture-of-Experts round needs the opposite: every node
receives the shared layers plus *its own* experts, and each expert is averaged only over the
nodes that trained it. That round protocol is :class:`fedalign.rounds.RoundDriver`'s;
:class:`FedAlign` is its Flower transport:

``configure_train``
    samples a cohort of connected nodes, registers nodes it has not seen (capacity profile
    from a query round, i.e. the node's ``node_config``, or from ``profile_fn``), opens the
    driver's round over their client ids and builds one Message per node from the driver's
    payload keys.
``aggregate_train``
    reads every reply's wire format (one ArrayRecord, one MetricRecord, ``num-examples``,
    one reward per expert ...) into arrays and ``Feedback`` and hands it to the driver, which
    checks it against what the node was sent, reports it, and averages each expert over the
    nodes that returned it; failed, malformed and missing replies become dropouts.

The strategy only sees ArrayRecords and key names, so it is independent of the deep-learning
framework. The wire format is in :mod:`fedalign.flower.records`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from ..errors import InvalidFeedbackError
from ..plan import Feedback
from ..rounds import (
    ActiveRound,
    Aggregator,
    ReplyScreen,
    ReplyStatus,
    RoundDriver,
    RoundSummary,
    weighted_mean,
)
from . import records as rec

__all__ = ["FedAlign", "RoundRecord"]

ProfileFn = Callable[[int, Mapping[str, Any]], Any]
CohortFn = Callable[[int, Sequence[int]], Sequence[int]]


@dataclass
class RoundRecord:
    """What happened to one training round, kept in :attr:`FedAlign.history`.

    Attributes
    ----------
    server_round : int
        Flower's round number (from 1).
    scheduler_round : int
        The scheduler's ``plan.round``.
    assignment : dict of int to list of int
        Expert ids sent to each node (nodes given no expert are listed with ``[]``).
    completed : list of int
        Nodes whose reply was valid and aggregated.
    dropouts : dict of int to str
        Nodes that sent no usable reply, with the reason (error, malformed, no reply).
    trained_by : dict of int to list of int
        For each expert averaged this round, the nodes whose arrays went into it.
    num_examples : int
        Samples trained on by the completed nodes.
    clients : dict of int to hashable
        Scheduler client id of each node of the round.
    solver_seconds : float or None
        Wall-clock seconds the scheduler's solver took to plan the round.
    bytes_sent, bytes_received : int
        Bytes of the arrays sent to the nodes given experts, and of the completed replies.
    screened : dict of int to str
        Valid replies the strategy's ``screen`` left out of every average, with the reason.
    bounded : dict of int to float
        Replies whose averaging weight was scaled down to the samples the scheduler credits.
    """

    server_round: int
    scheduler_round: int
    assignment: dict[int, list[int]]
    completed: list[int] = field(default_factory=list)
    dropouts: dict[int, str] = field(default_factory=dict)
    trained_by: dict[int, list[int]] = field(default_factory=dict)
    num_examples: int = 0
    clients: dict[int, Hashable] = field(default_factory=dict)
    solver_seconds: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    screened: dict[int, str] = field(default_factory=dict)
    bounded: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (string keys)."""
        return {
            "server_round": self.server_round,
            "scheduler_round": self.scheduler_round,
            "assignment": {str(k): list(v) for k, v in self.assignment.items()},
            "completed": list(self.completed),
            "dropouts": {str(k): v for k, v in self.dropouts.items()},
            "trained_by": {str(k): list(v) for k, v in self.trained_by.items()},
            "num_examples": self.num_examples,
            "clients": {str(k): v for k, v in self.clients.items()},
            "solver_seconds": self.solver_seconds,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "screened": {str(k): v for k, v in self.screened.items()},
            "bounded": {str(k): v for k, v in self.bounded.items()},
        }


@dataclass
class _OpenRound:
    """Server-side state between ``configure_train`` and ``aggregate_train``."""

    server_round: int
    current: ActiveRound
    arrays: ArrayRecord  # the global model as received, reused for untouched arrays
    decoded: dict[str, np.ndarray]  # the same, as numpy arrays (the driver's state)
    client_of: dict[int, Hashable]  # node -> client id, every node of the cohort
    node_of: dict[Hashable, int]
    losses: dict[int, tuple[float | None, float]] = field(default_factory=dict)
    survey_bytes: int = 0  # experts sent to be evaluated only (FedAlign(survey=True))

    @property
    def sent(self) -> dict[int, list[int]]:
        """Experts sent to each node that was given some."""
        return {self.node_of[c]: self.current.experts(c) for c in self.current.sent}


class _BadReply(Exception):
    """A reply whose wire format cannot be read; the message says why."""


class FedAlign(Strategy):
    """Flower strategy that trains each expert of a MoE model on the nodes a scheduler picks.

    Parameters
    ----------
    scheduler : fedalign.Scheduler
        Plans who trains which expert and learns from the feedback. Clients are registered
        under their Flower node id.
    fraction_train : float, default 1.0
        Fraction of connected nodes sampled for training each round (at least
        ``min_train_nodes``). 0 disables federated training.
    min_train_nodes : int, default 2
        Minimum number of nodes sampled for training.
    min_available_nodes : int, default 2
        Training and evaluation wait until at least this many nodes are connected.
    fraction_evaluate : float, default 1.0
        Fraction of nodes that evaluate the full model each round; 0 disables federated
        evaluation (use ``evaluate_fn`` of :meth:`start` for central evaluation).
    min_evaluate_nodes : int, default 2
        Minimum number of nodes sampled for evaluation.
    expert_of_key : callable, default :func:`fedalign.flower.records.expert_of_key`
        Maps an array key to its expert id (``None`` = shared). Expert ids must be the
        scheduler's expert ids.
    profile_fn : callable, optional
        ``profile_fn(node_id, info) -> ClientProfile | None`` for a node seen for the first
        time; ``info`` is what the node answered to the profile query (empty when
        ``query_profiles`` is False). Default: the capacity fields of ``info``.
    query_profiles : bool, default True
        Ask unseen nodes for their profile (a ``query`` message answered by
        :func:`fedalign.flower.client.profile_reply` from their ``node_config``). Nodes that
        do not answer are left out of the round and asked again later.
    query_timeout : float, default 60.0
        Seconds to wait for profile answers.
    node_wait_timeout : float, optional
        Give up (``TimeoutError``) when fewer than ``min_available_nodes`` nodes connect
        within this many seconds. Default: wait forever, as Flower's strategies do.
    cohort_fn : callable, optional
        ``cohort_fn(server_round, node_ids) -> node_ids``: choose the training cohort
        yourself (a subset of the connected, sorted ``node_ids``). Default: a seeded uniform
        sample of the size given by ``fraction_train`` / ``min_train_nodes``.
    client_key : str, optional
        Use the value each node reports under this key (e.g. ``"partition-id"``) as its
        scheduler client id instead of its Flower node id, so a client keeps its fitness
        when its SuperNode reconnects under a new node id, and a scheduler can be
        pre-registered by client id. Needs ``query_profiles``.
    dropout_duration : float, optional
        Seconds reported as a dropout's ``duration`` (e.g. the round deadline); default
        unknown.
    aggregate : fedalign.rounds.Aggregator, default :func:`fedalign.rounds.weighted_mean`
        How the replies carrying the shared arrays, or one expert's, are combined; e.g.
        ``fedalign.rounds.RobustAggregator("median", max_share=0.5)`` for a robust rule
        per expert and a cap on any node's share of an expert's weight.
    screen : fedalign.rounds.ReplyScreen, optional
        Judges every valid reply before averaging (updates unlike the others', no change
        at all, and with a validation callback experts that got worse or rewards no data
        can give): an implausible reply is left out of every average and the scheduler is
        told (:meth:`fedalign.Scheduler.judge`). Default none.
    weighted_by_key : str, default "num-examples"
        Metric used as each reply's averaging weight.
    arrayrecord_key, configrecord_key : str
        Record names in the instruction messages (``"arrays"``, ``"config"``).
    survey : bool, default False
        Send each node, beside its own experts, every other expert in a second ArrayRecord
        (``"survey-arrays"``, ids under ``"survey-ids"`` in its config), to evaluate and not
        to train, so that it can report which expert of all suits its data best
        (:func:`fedalign.privatize` with ``mechanism="best-expert"``, and
        ``train_reply(survey=...)`` for the rewards of the experts it did not train:
        ``Feedback.survey``; docs/trust.md, "Privacy"). Those bytes count in
        ``bytes_sent``.
    seed : int, optional
        Seeds node sampling.

    Attributes
    ----------
    history : list of RoundRecord
        One entry per aggregated training round.
    node_info : dict of int to dict
        What each node answered to the profile query (``partition-id``, capacity ...).
    client_of : dict of int to hashable
        Scheduler client id of every node identified so far.
    last_plan : fedalign.Plan or None
        The scheduler's plan of the last configured training round.
    driver : fedalign.rounds.RoundDriver
        Runs the round protocol (plan, payloads, checks, feedback, averaging).

    Notes
    -----
    Every training reply is checked against what its node was sent: exactly the shared keys
    plus the keys of its experts, same shapes and dtypes, finite values, a scalar
    ``num-examples`` >= 0 and one reward per expert. A reply that fails any check, carries
    an error, or never arrives is a dropout: the scheduler gets ``Feedback(completed=False)``
    and none of its arrays are averaged, so an expert is averaged only over complete updates
    (or keeps its previous value). Replies from nodes that were not asked, and second
    replies, are ignored.
    """

    def __init__(
        self,
        scheduler: Any,
        *,
        fraction_train: float = 1.0,
        min_train_nodes: int = 2,
        min_available_nodes: int = 2,
        fraction_evaluate: float = 1.0,
        min_evaluate_nodes: int = 2,
        expert_of_key: Callable[[str], int | None] = rec.expert_of_key,
        profile_fn: ProfileFn | None = None,
        query_profiles: bool = True,
        query_timeout: float = 60.0,
        node_wait_timeout: float | None = None,
        cohort_fn: CohortFn | None = None,
        client_key: str | None = None,
        dropout_duration: float | None = None,
        aggregate: Aggregator = weighted_mean,
        screen: ReplyScreen | None = None,
        weighted_by_key: str = rec.NUM_EXAMPLES,
        arrayrecord_key: str = rec.ARRAYS,
        configrecord_key: str = rec.CONFIG,
        seed: int | None = None,
        survey: bool = False,
    ) -> None:
        for name, value in (
            ("fraction_train", fraction_train),
            ("fraction_evaluate", fraction_evaluate),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {value}")
        for name, ivalue in (
            ("min_train_nodes", min_train_nodes),
            ("min_available_nodes", min_available_nodes),
            ("min_evaluate_nodes", min_evaluate_nodes),
        ):
            if int(ivalue) < 0:
                raise ValueError(f"{name}: must be >= 0, got {ivalue}")
        if client_key is not None and not query_profiles:
            raise ValueError("client_key: needs query_profiles=True (nodes report their id)")
        if query_timeout <= 0:
            raise ValueError(f"query_timeout: must be > 0, got {query_timeout}")
        self.scheduler = scheduler
        self.fraction_train = float(fraction_train)
        self.min_train_nodes = 0 if self.fraction_train == 0.0 else int(min_train_nodes)
        self.min_available_nodes = int(min_available_nodes)
        self.fraction_evaluate = float(fraction_evaluate)
        self.min_evaluate_nodes = 0 if self.fraction_evaluate == 0.0 else int(min_evaluate_nodes)
        self.expert_of_key = expert_of_key
        self.profile_fn = profile_fn
        self.query_profiles = bool(query_profiles)
        self.query_timeout = float(query_timeout)
        self.node_wait_timeout = node_wait_timeout
        self.cohort_fn = cohort_fn
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        if not isinstance(survey, (bool, np.bool_)):
            raise ValueError(f"survey: must be a bool, got {survey!r}")
        self.survey = bool(survey)
        self.history: list[RoundRecord] = []
        self.node_info: dict[int, dict[str, Any]] = {}
        self.client_key = client_key
        # validates expert_of_key, dropout_duration and aggregate
        self.driver = RoundDriver(
            scheduler,
            expert_of_key=expert_of_key,
            aggregate=aggregate,
            screen=screen,
            dropout_duration=dropout_duration,
        )
        self.dropout_duration = self.driver.dropout_duration
        self._registered: set[Hashable] = set()
        self._client_of: dict[int, Hashable] = {}
        self.last_plan: Any = None
        self._rng = np.random.default_rng(seed)
        self._open: _OpenRound | None = None

    @property
    def client_of(self) -> dict[int, Hashable]:
        """Scheduler client id of every node identified so far (a copy)."""
        return dict(self._client_of)

    # ------------------------------------------------------------------ Strategy API
    def summary(self) -> None:
        """Log the strategy's configuration."""
        log(INFO, "\t├──> Scheduler: %s", type(self.scheduler).__name__)
        log(
            INFO,
            "\t├──> Sampling: fraction train %.2f (min %d) | evaluate %.2f (min %d) | "
            "min available %d",
            self.fraction_train,
            self.min_train_nodes,
            self.fraction_evaluate,
            self.min_evaluate_nodes,
            self.min_available_nodes,
        )
        log(INFO, "\t└──> Profiles: %s", "query round" if self.query_profiles else "profile_fn")

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Plan the round with the scheduler and build one Message per node.

        Parameters
        ----------
        server_round : int
            Flower's round number.
        arrays : ArrayRecord
            The current global model: shared arrays and every expert's arrays.
        config : ConfigRecord
            Settings for the clients (e.g. ``lr``); copied into each node's ConfigRecord
            next to its ``expert-ids`` and the ``server-round``. Not modified.
        grid : Grid
            Used to list and query nodes.

        Returns
        -------
        list of Message
            One training instruction per node that was given at least one expert.
        """
        if self._open is not None:
            # The previous round was configured but never aggregated: close it as all-dropout.
            self._finish(self._open, missing="round never aggregated")
        if self.fraction_train == 0.0:
            return []
        nodes = self._wait_for_nodes(grid)
        cohort = self.sample_cohort(server_round, nodes, grid)
        cohort = self._identified(cohort, grid, server_round)
        if not cohort:
            log(
                WARNING,
                "configure_train: no node could be registered; skipping round %d",
                server_round,
            )
            return []
        state = self._open_round(int(server_round), cohort, arrays)
        messages = [self._instruction(state, client, config) for client in state.current.sent]
        # by client id: with client_key, the id the operator configured (partition-id ...)
        sent = {client: state.current.experts(client) for client in state.current.sent}
        log(
            INFO,
            "configure_train: round %d, %d of %d nodes, experts per %s %s",
            server_round,
            len(messages),
            len(nodes),
            self.client_key or "node",
            sent if len(sent) <= 8 else f"(mean {np.mean([len(e) for e in sent.values()]):.2f})",
        )
        return messages

    def describe(self, node: int) -> str:
        """How logs name a node: ``node <id>``, or ``<client_key> <id> (node <id>)``."""
        client = self._client_of.get(int(node))
        if self.client_key is None or client is None:
            return f"node {node}"
        return f"{self.client_key} {client!r} (node {node})"

    def _open_round(self, server_round: int, cohort: list[int], arrays: ArrayRecord) -> _OpenRound:
        """Open the driver's round for ``cohort``'s clients on the model ``arrays``."""
        client_of = {n: self._client_of[n] for n in cohort}
        decoded = rec.arrays_to_numpy(arrays)
        try:
            current = self.driver.open([client_of[n] for n in cohort], decoded)
        except ValueError as exc:
            text = str(exc)
            if text.startswith("state: "):  # the model is this method's ``arrays``
                raise ValueError("arrays: " + text.removeprefix("state: ")) from exc
            raise
        self.last_plan = current.plan
        self._open = _OpenRound(
            server_round=server_round,
            current=current,
            arrays=arrays,
            decoded=decoded,
            client_of=client_of,
            node_of={c: n for n, c in client_of.items()},
        )
        return self._open

    def _instruction(self, state: _OpenRound, client: Hashable, config: ConfigRecord) -> Message:
        """The training Message for ``client``: its payload's arrays, its expert ids (and
        with ``survey`` every other expert, counted in ``state.survey_bytes``)."""
        node_arrays = ArrayRecord({k: state.arrays[k] for k in state.current.keys(client)})
        node_config = ConfigRecord(dict(config))
        experts = state.current.experts(client)
        node_config[rec.EXPERT_IDS] = experts
        node_config[rec.SERVER_ROUND] = state.server_round
        records: dict[str, Any] = {self.arrayrecord_key: node_arrays, self.configrecord_key: node_config}
        layout = state.current.layout
        others = [e for e in sorted(layout.by_expert) if e not in set(experts)]
        if self.survey and others:
            keys = [k for e in others for k in layout.by_expert[e]]
            records[rec.SURVEY_ARRAYS] = ArrayRecord({k: state.arrays[k] for k in keys})
            node_config[rec.SURVEY_IDS] = others
            state.survey_bytes += layout.nbytes_for(others) - layout.shared_nbytes
        content = RecordDict(records)
        return Message(
            content=content, dst_node_id=state.node_of[client], message_type=MessageType.TRAIN
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average each expert over the nodes that trained it; report feedback; close the round.

        Parameters
        ----------
        server_round : int
            Flower's round number; must be the round last configured.
        replies : iterable of Message
            Training replies (any order; some may carry errors; some nodes may be missing).

        Returns
        -------
        ArrayRecord or None
            The full global model: experts trained this round replaced by their average,
            shared arrays averaged over all completed nodes, everything else unchanged.
            None when no reply was usable (Flower then keeps the previous model).
        MetricRecord or None
            ``num-examples`` (total), ``nodes-sent``, ``nodes-completed``, ``nodes-failed``,
            ``experts-trained`` and, when every completed node reported it, ``loss``
            (weighted mean). None when the round was not configured.
        """
        state = self._open
        if state is None or state.server_round != int(server_round):
            log(
                WARNING,
                "aggregate_train: round %d was not configured; nothing to aggregate",
                server_round,
            )
            return None, None
        self._collect(state, replies)
        record, new_state = self._finish(state)
        metrics = MetricRecord(
            {
                rec.NUM_EXAMPLES: int(record.num_examples),
                "nodes-sent": len(state.current.sent),
                "nodes-completed": len(record.completed),
                "nodes-failed": len(record.dropouts),
                "experts-trained": len(record.trained_by),
            }
        )
        losses = [state.losses[n] for n in record.completed]
        if losses and all(loss is not None for loss, _ in losses):
            w = np.array([weight for _, weight in losses], dtype=float)
            lv = np.array([loss for loss, _ in losses], dtype=float)
            metrics[rec.LOSS] = float(lv @ w / w.sum()) if w.sum() > 0 else float(lv.mean())
        if not record.completed:  # nothing usable: Flower keeps the previous model
            return None, metrics
        return self._to_arrays(state, new_state), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the full global model to a sample of nodes for evaluation.

        Returns an empty list when ``fraction_evaluate`` is 0.
        """
        if self.fraction_evaluate == 0.0:
            return []
        nodes = self._wait_for_nodes(grid)
        size = min(
            len(nodes), max(int(len(nodes) * self.fraction_evaluate), self.min_evaluate_nodes)
        )
        chosen = self._choose(nodes, size)
        messages = []
        for node in chosen:
            node_config = ConfigRecord(dict(config))
            node_config[rec.SERVER_ROUND] = int(server_round)
            content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: node_config})
            messages.append(
                Message(content=content, dst_node_id=node, message_type=MessageType.EVALUATE)
            )
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Weighted mean (by ``num-examples``) of each scalar metric over the valid replies.

        Replies with errors, without exactly one MetricRecord, or without a scalar weight are
        skipped; a metric is averaged over the replies that report it.
        """
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        total = 0.0
        n_valid = 0
        for msg in replies:
            if msg.has_error() or len(msg.content.metric_records) != 1:
                continue
            metrics = next(iter(msg.content.metric_records.values()))
            w = metrics.get(self.weighted_by_key)
            if (
                isinstance(w, (list, bool))
                or not isinstance(w, (int, float))
                or not np.isfinite(w)
                or w < 0
            ):
                continue
            n_valid += 1
            total += float(w)
            for key, value in metrics.items():
                if key == self.weighted_by_key or isinstance(value, list) or not np.isfinite(value):
                    continue
                sums[key] = sums.get(key, 0.0) + float(value) * float(w)
                weights[key] = weights.get(key, 0.0) + float(w)
        if n_valid == 0:
            return None
        out = MetricRecord({self.weighted_by_key: total})
        for key, s in sums.items():
            if weights[key] > 0:
                out[key] = s / weights[key]
        return out

    # ------------------------------------------------------------------ steps
    def _wait_for_nodes(self, grid: Grid) -> list[int]:
        """Connected node ids (sorted), once at least ``min_available_nodes`` are there."""
        need = max(self.min_available_nodes, self.min_train_nodes)
        start = time.monotonic()
        while len(nodes := sorted(int(n) for n in grid.get_node_ids())) < need:
            if (
                self.node_wait_timeout is not None
                and time.monotonic() - start > self.node_wait_timeout
            ):
                raise TimeoutError(
                    f"node_wait_timeout: only {len(nodes)} of {need} nodes connected within "
                    f"{self.node_wait_timeout} s"
                )
            log(INFO, "Waiting for nodes to connect: %d connected (need %d).", len(nodes), need)
            time.sleep(1.0)
        return nodes

    def sample_cohort(self, server_round: int, nodes: list[int], grid: Grid) -> list[int]:
        """The nodes asked to train this round (override to sample differently).

        Parameters
        ----------
        server_round : int
        nodes : list of int
            Connected node ids, sorted.
        grid : Grid
            For subclasses that need to :meth:`identify` nodes before choosing.

        Returns
        -------
        list of int
            Distinct connected node ids: ``cohort_fn``'s choice, or a seeded uniform sample
            of ``max(fraction_train * len(nodes), min_train_nodes)`` nodes.
        """
        if self.cohort_fn is not None:
            chosen = [int(n) for n in self.cohort_fn(server_round, nodes)]
            unknown = sorted(set(chosen) - set(nodes))
            if unknown:
                raise ValueError(f"cohort_fn: node {unknown[0]} is not connected")
            if len(set(chosen)) != len(chosen):
                raise ValueError("cohort_fn: returned a node more than once")
            return chosen
        size = min(len(nodes), max(int(len(nodes) * self.fraction_train), self.min_train_nodes))
        return self._choose(nodes, size)

    def _choose(self, nodes: list[int], size: int) -> list[int]:
        """``size`` distinct nodes, uniformly. Node ids are 64-bit unsigned: they never pass
        through a numpy array, which would turn a mix of small and large ids into floats."""
        picks = self._rng.choice(len(nodes), size=size, replace=False)
        return sorted(nodes[int(i)] for i in picks)

    def identify(self, nodes: Sequence[int], grid: Grid, server_round: int) -> dict[int, Hashable]:
        """Scheduler client id of each node, querying and registering nodes not seen before.

        A node seen for the first time is asked for its profile (unless ``query_profiles``
        is False); its client id is its node id, or the value it reports under
        ``client_key``. A client id the scheduler does not know yet is registered with the
        node's profile (``profile_fn``, else the capacity fields it reported).

        Returns
        -------
        dict of int to hashable
            Client id of every node of ``nodes`` that could be identified; nodes that did
            not answer (or lack ``client_key``) are missing and are asked again next time.
        """
        import fedalign as fa

        unseen = [int(n) for n in nodes if int(n) not in self._client_of]
        if unseen:
            infos: dict[int, dict[str, Any]] = {n: {} for n in unseen}
            if self.query_profiles:
                infos = self._query_profiles(unseen, grid, server_round)
            known = set(getattr(self.scheduler, "client_ids", ())) | self._registered
            for node, info in infos.items():
                self.node_info[node] = info
                client = node if self.client_key is None else info.get(self.client_key)
                if client is None:
                    log(
                        WARNING,
                        "Node %d did not report '%s' (client_key) in its profile answer; it sits "
                        "out. Set '%s' in its node_config, or pass profile=... to profile_reply",
                        node,
                        self.client_key,
                        self.client_key,
                    )
                    continue
                if client not in known:
                    profile = self.profile_fn(node, info) if self.profile_fn is not None else None
                    if profile is None:
                        try:
                            profile = fa.ClientProfile(**rec.profile_from_mapping(info))
                        except (ValueError, TypeError) as exc:
                            log(
                                WARNING,
                                "Node %d (client %r) reported an invalid profile (%s); using "
                                "an unknown one",
                                node,
                                client,
                                exc,
                            )
                            profile = fa.ClientProfile()
                    self.scheduler.register(client, profile)
                    self._registered.add(client)
                    known.add(client)
                self._client_of[node] = client
        return {int(n): self._client_of[int(n)] for n in nodes if int(n) in self._client_of}

    def _identified(self, cohort: list[int], grid: Grid, server_round: int) -> list[int]:
        """The cohort's nodes that have a client id, each client id once."""
        ids = self.identify(cohort, grid, server_round)
        out: list[int] = []
        taken: set[Hashable] = set()
        for node in cohort:
            if node not in ids:
                continue
            if ids[node] in taken:
                log(
                    WARNING,
                    "Node %d claims client %r, already in the cohort; it sits out",
                    node,
                    ids[node],
                )
                continue
            taken.add(ids[node])
            out.append(node)
        return out

    def _query_profiles(
        self, nodes: list[int], grid: Grid, server_round: int
    ) -> dict[int, dict[str, Any]]:
        """Ask ``nodes`` for their profile; nodes that fail or stay silent are left out."""
        messages = [
            Message(
                content=RecordDict(
                    {
                        self.configrecord_key: ConfigRecord(
                            {rec.REQUEST: rec.PROFILE_REQUEST, rec.SERVER_ROUND: int(server_round)}
                        )
                    }
                ),
                dst_node_id=n,
                message_type=MessageType.QUERY,
            )
            for n in nodes
        ]
        asked = set(nodes)
        out: dict[int, dict[str, Any]] = {}
        for reply in grid.send_and_receive(messages, timeout=self.query_timeout):
            node = int(reply.metadata.src_node_id)
            if node not in asked or node in out:
                continue
            if reply.has_error():
                log(WARNING, "Node %d failed the profile query: %s", node, reply.error.reason)
                continue
            profile = reply.content.config_records.get(rec.PROFILE)
            out[node] = dict(profile.items()) if profile is not None else {}
        silent = sorted(asked - set(out))
        if silent:
            log(
                WARNING,
                "No answer to the profile query from nodes %s within query_timeout=%s s: they "
                "sit out round %d and are asked again when next sampled. Fix: give the "
                "ClientApp a query handler (@app.query() returning "
                "fedalign.flower.client.profile_reply(msg, context)), or start FedAlign with "
                "query_profiles=False (capacities from profile_fn; no client_key)",
                silent,
                self.query_timeout,
                server_round,
            )
        return out

    def _collect(self, state: _OpenRound, replies: Iterable[Message]) -> None:
        """Hand every reply to the driver: errors are dropouts, the rest is read and checked."""
        current = state.current
        asked = set(state.sent)
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            if node not in asked:
                log(
                    WARNING,
                    "aggregate_train: ignoring a reply from node %d, which was not asked",
                    node,
                )
                continue
            client = state.client_of[node]
            if msg.has_error():
                status = current.drop(client, f"error: {msg.error.reason}")
            else:
                status = self._take_reply(state, node, msg.content)
            if status is ReplyStatus.IGNORED:
                log(
                    WARNING, "aggregate_train: ignoring a second reply from %s", self.describe(node)
                )

    def _take_reply(self, state: _OpenRound, node: int, content: RecordDict) -> ReplyStatus:
        """Read one reply's wire format and give it to the driver, which checks the rest."""
        client = state.client_of[node]
        experts = state.current.experts(client)
        try:
            arrays, metrics = _records(content)
            weight = _scalar(metrics, self.weighted_by_key)
            samples = (
                _scalar(metrics, rec.NUM_EXAMPLES)
                if self.weighted_by_key != rec.NUM_EXAMPLES
                else weight
            )
            has_duration = metrics.get(rec.DURATION) is not None
            has_epsilon = metrics.get(rec.EPSILON) is not None
            has_variance = metrics.get(rec.VARIANCE) is not None
            feedback = Feedback(
                samples=int(round(samples)),
                rewards=dict(zip(experts, _rewards(metrics, experts), strict=True)),
                duration=_scalar(metrics, rec.DURATION) if has_duration else None,
                epsilon=_scalar(metrics, rec.EPSILON) if has_epsilon else None,
                reward_variance=_scalar(metrics, rec.VARIANCE) if has_variance else None,
                survey=_survey(metrics),
            )
        except (_BadReply, InvalidFeedbackError) as exc:
            return state.current.reject(client, str(exc))
        status = state.current.complete(client, arrays, feedback, weight=weight)
        if status is ReplyStatus.COMPLETED:
            loss = metrics.get(rec.LOSS)
            if isinstance(loss, (int, float)) and np.isfinite(loss):
                state.losses[node] = (float(loss), weight)
            else:
                state.losses[node] = (None, weight)
        return status

    def _finish(
        self, state: _OpenRound, missing: str = "no reply"
    ) -> tuple[RoundRecord, dict[str, np.ndarray]]:
        """Close the driver's round (silent nodes are dropouts) and record it in the history."""
        new_state, summary = state.current.close(missing=missing)
        record = self._record(state, summary)
        for node, reason in record.dropouts.items():
            log(INFO, "aggregate_train: %s dropped out (%s)", self.describe(node), reason)
        self.history.append(record)
        self._open = None
        return record, new_state

    def _record(self, state: _OpenRound, summary: RoundSummary) -> RoundRecord:
        """The driver's summary in node ids."""
        node = state.node_of
        return RoundRecord(
            server_round=state.server_round,
            scheduler_round=summary.round,
            assignment={node[c]: list(e) for c, e in summary.assignment.items()},
            completed=[node[c] for c in summary.completed],
            dropouts={node[c]: reason for c, reason in summary.dropouts.items()},
            trained_by={e: [node[c] for c in cs] for e, cs in summary.trained_by.items()},
            num_examples=summary.samples,
            clients=dict(state.client_of),
            solver_seconds=summary.solver_seconds,
            bytes_sent=summary.bytes_sent + state.survey_bytes,
            bytes_received=summary.bytes_received,
            screened={node[c]: reason for c, reason in summary.screened.items()},
            bounded={node[c]: w for c, w in summary.bounded.items()},
        )

    @staticmethod
    def _to_arrays(state: _OpenRound, new_state: Mapping[str, np.ndarray]) -> ArrayRecord:
        """The new global model; arrays the round left unchanged are the ones received."""
        return ArrayRecord(
            {
                key: state.arrays[key] if value is state.decoded[key] else Array(value)
                for key, value in new_state.items()
            }
        )


def _records(content: RecordDict) -> tuple[dict[str, np.ndarray], MetricRecord]:
    """The reply's single ArrayRecord, decoded, and its single MetricRecord."""
    if len(content.array_records) != 1:
        raise _BadReply(f"expected one ArrayRecord, got {len(content.array_records)}")
    if len(content.metric_records) != 1:
        raise _BadReply(f"expected one MetricRecord, got {len(content.metric_records)}")
    record = next(iter(content.array_records.values()))
    arrays: dict[str, np.ndarray] = {}
    for key in record.keys():
        try:
            arrays[key] = record[key].numpy()
        except (TypeError, ValueError) as exc:
            raise _BadReply(f"array {key!r} cannot be decoded: {exc}") from exc
    return arrays, next(iter(content.metric_records.values()))


def _rewards(metrics: MetricRecord, experts: list[int]) -> list[Any]:
    """One reward per expert, in ``expert-ids`` order; the optional echo must match."""
    rewards = metrics.get(rec.REWARDS)
    if isinstance(rewards, (int, float)) and not isinstance(rewards, bool):
        rewards = [rewards]
    if not isinstance(rewards, list) or len(rewards) != len(experts):
        raise _BadReply(
            f"'{rec.REWARDS}' must list {len(experts)} values, one per expert in {experts}"
        )
    echo = metrics.get(rec.EXPERT_IDS)
    if echo is not None:
        echo_list = echo if isinstance(echo, list) else [echo]
        if not all(_is_integral(e) for e in echo_list) or [int(e) for e in echo_list] != experts:
            raise _BadReply(
                f"'{rec.EXPERT_IDS}' {echo_list} differs from the experts sent {experts}"
            )
    return rewards


def _survey(metrics: MetricRecord) -> dict[int, Any]:
    """The reply's survey rewards by expert id (``"survey-ids"`` with ``"survey"``), or none."""
    raw_ids, raw_values = metrics.get(rec.SURVEY_IDS), metrics.get(rec.SURVEY)
    if raw_ids is None and raw_values is None:
        return {}
    ids: list[Any] = raw_ids if isinstance(raw_ids, list) else [raw_ids]
    values: list[Any] = raw_values if isinstance(raw_values, list) else [raw_values]
    if len(ids) != len(values) or not all(_is_integral(e) for e in ids):
        raise _BadReply(
            f"'{rec.SURVEY_IDS}' and '{rec.SURVEY}' must list as many values, the ids whole "
            f"numbers; got {ids!r} and {values!r}"
        )
    survey = {int(e): v for e, v in zip(ids, values, strict=True)}
    if len(survey) != len(ids):
        raise _BadReply(f"'{rec.SURVEY_IDS}' {ids!r} names an expert twice")
    return survey


def _is_integral(value: Any) -> bool:
    """Whether a wire value is a whole number (NaN, infinities and text are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (np.isfinite(value) and float(value).is_integer())


def _scalar(metrics: MetricRecord, key: str) -> float:
    """A finite scalar >= 0 from ``metrics[key]``, or ``_BadReply``."""
    value = metrics.get(key)
    if value is None:
        raise _BadReply(f"missing metric '{key}'")
    if isinstance(value, (list, bool)) or not isinstance(value, (int, float)):
        raise _BadReply(f"metric '{key}' must be one number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise _BadReply(f"metric '{key}' must be finite and >= 0, got {value}")
    return float(value)
