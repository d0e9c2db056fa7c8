"""FedAlignController: an NVIDIA FLARE server workflow whose rounds the fedalign scheduler plans.

NVFlare's ``FedAvg`` sends one ``FLModel`` to every site (``ModelController.send_model``
broadcasts a single task) and averages every parameter over every reply. A
Mixture-of-Experts round needs the opposite: each site receives the shared arrays plus *its
own* experts, and each expert is averaged over the sites that trained it. The round protocol
is :class:`fedalign.rounds.RoundDriver`'s; :class:`FedAlignController` is its NVFlare
transport:

* each round it samples a cohort of connected sites, registers sites the scheduler does not
  know yet (capacity from ``profiles``), opens the driver's round over their client ids and
  schedules **one task per site** (:meth:`Controller.broadcast` with that site as the only
  target) whose ``FLModel`` holds the site's payload and, in its ``meta``, the site's expert
  ids and the scheduler's round (:mod:`fedalign.nvflare.wire`);
* each task's ``result_received_cb`` files the site's reply, its ``task_done_cb`` files why
  the task ended; when every task has ended, the replies are handed to the driver in the
  plan's order (so averages do not depend on arrival order): a reply with a failed return
  code, one a site reports as an error, and a task that timed out or whose site died are
  **dropouts**; a reply that cannot be read is **rejected**; everything else goes through
  the driver's checks (exact keys, shapes, dtypes, finite values, rewards), which never
  raise and never let a bad reply into an average;
* the driver reports to the scheduler, closes its round and averages each expert over the
  sites that returned it.

Why not ``send_model``: its callback only sees results NVFlare accepted, so a failed or
timed-out site would leave no trace but a log line; with our own :class:`Task` per site both
callbacks are ours and every dropout gets its reason. The class still derives from
``ModelController`` for what that gives a workflow: the persistor (:meth:`load_model`,
:meth:`save_model`), the engine, the abort signal, logging and the Job API.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from nvflare.apis.controller_spec import ClientTask, Task, TaskCompletionStatus
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils
from nvflare.app_common.workflows.model_controller import ModelController

from ..errors import InvalidFeedbackError
from ..plan import Feedback
from ..rounds import (
    ActiveRound,
    ReplyScreen,
    ReplyStatus,
    RobustAggregator,
    RoundDriver,
    RoundSummary,
)
from . import wire

__all__ = ["BadReply", "FedAlignController", "SiteError", "read_reply"]

State = dict[str, np.ndarray]

#: Task properties: the one site a task was scheduled for, and its round.
_SITE = "fedalign.site"
_ROUND = "fedalign.round_index"


class BadReply(ValueError):
    """A reply whose format cannot be read; the message says why (the site is rejected)."""


class SiteError(Exception):
    """A reply in which the site reports that it could not train (the site drops out)."""


class FedAlignController(ModelController):
    """NVFlare workflow that trains each expert of a MoE model on the sites a scheduler picks.

    Every argument is JSON-friendly, so the controller can be placed in a ``FedJob``
    (``job.to_server(FedAlignController(...))``) and exported as a job configuration.

    Parameters
    ----------
    num_rounds : int >= 1, default 5
        Training rounds.
    scheduler_args : dict, optional
        Keyword arguments of :class:`fedalign.Scheduler` (``n_experts`` at least), e.g.
        ``{"n_experts": 4, "solver": "flow", "usage_weight": 0.5, "seed": 0}``. Needed
        unless a subclass overrides :meth:`build_scheduler`.
    num_clients : int >= 1, optional
        Sites sampled per round (seeded, uniformly); default every connected site.
    client_ids : dict of str to int or str, optional
        The scheduler's client id of each site (e.g. ``{"site-1": 0}``); default the site
        name. A site keeps its fitness whatever its name is mapped to.
    profiles : dict of str to dict, optional
        Capacity of each site, registered with the scheduler the first time the site is
        sampled: :class:`fedalign.ClientProfile` fields by the names of
        :data:`fedalign.nvflare.wire.PROFILE_FIELDS` (``{"site-1": {"max-experts": 2,
        "memory": 4e9}}``). Sites without one get an unknown profile; client ids the
        scheduler already knows (a subclass's pre-registered scheduler) are not registered
        again.
    train_config : dict, optional
        Settings for the sites (``lr``, ``local-epochs`` ...), sent in every task's
        ``meta[fedalign.wire.CONFIG]``.
    train_timeout : int >= 0, default 0
        Seconds a site has to answer a round's task; 0 waits forever (NVFlare's default).
        A site that does not answer in time is a dropout.
    dropout_duration : float >= 0, optional
        Seconds reported to the scheduler as a dropout's duration (e.g. the round
        deadline); default unknown.
    summary_path : str, optional
        Write a JSON summary of every round here (rewritten after each round): the
        driver's :class:`~fedalign.rounds.RoundSummary` plus the site of each client id and
        the experts whose arrays changed.
    task_name : str, default "train"
        Name of the training task (the Client API executor answers ``"train"``).
    seed : int, optional
        Seeds the cohort sampling.
    persistor_id : str, default "persistor"
        Component that loads the initial model (:meth:`initial_state`) and saves the global
        model after every round; ``""`` for none.
    task_check_period : float > 0, default 0.5
        Seconds between checks for finished tasks and the abort signal.
    aggregation : dict, optional
        Keyword arguments of :class:`fedalign.rounds.RobustAggregator` (e.g.
        ``{"rule": "median", "max_share": 0.5}``): a robust rule per expert and a cap on any
        site's share of an expert's weight. Default: the weighted mean (FedAvg per expert).
    screen : dict, optional
        Keyword arguments of :class:`fedalign.rounds.ReplyScreen` (e.g. ``{"norm_ratio":
        5.0}``): implausible replies are left out of every average and the scheduler is
        told. A validation callback cannot travel in a job configuration: override
        :meth:`build_driver` for one. Default: no screen.

    Attributes
    ----------
    scheduler : fedalign.Scheduler or None
        Built when the run starts.
    driver : fedalign.rounds.RoundDriver or None
        Runs the round protocol (plan, payloads, checks, feedback, averaging).
    history : list of RoundSummary
        One per closed round.
    sites : dict of hashable to str
        The site of every client id seen so far.

    Notes
    -----
    Override :meth:`build_scheduler`, :meth:`initial_state`, :meth:`sample_cohort`,
    :meth:`site_configs` and :meth:`after_round` to change one step; :meth:`run` holds the
    round loop.
    """

    def __init__(
        self,
        *,
        num_rounds: int = 5,
        scheduler_args: dict[str, Any] | None = None,
        num_clients: int | None = None,
        client_ids: dict[str, Any] | None = None,
        profiles: dict[str, dict[str, Any]] | None = None,
        train_config: dict[str, Any] | None = None,
        train_timeout: int = 0,
        dropout_duration: float | None = None,
        summary_path: str | None = None,
        task_name: str = wire.TASK_TRAIN,
        seed: int | None = None,
        persistor_id: str = AppConstants.DEFAULT_PERSISTOR_ID,
        task_check_period: float = 0.5,
        aggregation: dict[str, Any] | None = None,
        screen: dict[str, Any] | None = None,
    ) -> None:
        # ignore_result_error=True: a failing site is the driver's dropout, never a panic
        super().__init__(
            persistor_id=persistor_id, ignore_result_error=True, task_check_period=task_check_period
        )
        self._check_arguments(
            num_rounds=num_rounds, num_clients=num_clients, train_timeout=train_timeout, seed=seed,
            dropout_duration=dropout_duration, scheduler_args=scheduler_args, client_ids=client_ids,
            profiles=profiles, train_config=train_config, aggregation=aggregation, screen=screen,
        )  # fmt: skip
        # Attribute names match the parameters: the Job API exports a component's
        # arguments by reading them back.
        self.num_rounds = int(num_rounds)
        self.scheduler_args = dict(scheduler_args) if scheduler_args is not None else None
        self.num_clients = num_clients
        self.client_ids = dict(client_ids) if client_ids is not None else None
        self.profiles = {k: dict(v) for k, v in profiles.items()} if profiles is not None else None
        self.train_config = dict(train_config) if train_config is not None else None
        self.train_timeout = int(train_timeout)
        self.dropout_duration = dropout_duration
        self.summary_path = summary_path
        self.task_name = str(task_name)
        self.seed = seed
        self.aggregation = dict(aggregation) if aggregation is not None else None
        self.screen = dict(screen) if screen is not None else None
        # filled when the run starts
        self.scheduler: Any = None
        self.driver: RoundDriver | None = None
        self.history: list[RoundSummary] = []
        self.sites: dict[Hashable, str] = {}
        self._rng = np.random.default_rng(seed)
        self._summaries: list[dict[str, Any]] = []
        # replies and task endings, filed by NVFlare's threads, read by the run thread
        self._lock = threading.Lock()
        self._replies: dict[str, Shareable] = {}
        self._ended: dict[str, Any] = {}
        self._expected: set[str] = set()
        self._collecting: int | None = None  # the round whose tasks are awaited
        self._all_ended = threading.Event()

    @classmethod
    def _check_arguments(
        cls,
        *,
        num_rounds: Any,
        num_clients: Any,
        train_timeout: Any,
        seed: Any,
        dropout_duration: Any,
        scheduler_args: Any,
        client_ids: Any,
        profiles: Any,
        train_config: Any,
        aggregation: Any,
        screen: Any,
    ) -> None:
        """Validate the constructor's arguments, naming the one that is wrong."""
        _check_int("num_rounds", num_rounds, 1)
        if num_clients is not None:
            _check_int("num_clients", num_clients, 1)
        _check_int("train_timeout", train_timeout, 0)
        if seed is not None:
            _check_int("seed", seed, 0)
        if dropout_duration is not None and not (
            isinstance(dropout_duration, (int, float))
            and not isinstance(dropout_duration, bool)
            and math.isfinite(dropout_duration)
            and dropout_duration >= 0
        ):
            raise ValueError(f"dropout_duration: expected seconds >= 0, got {dropout_duration!r}")
        for name, value in (
            ("scheduler_args", scheduler_args),
            ("client_ids", client_ids),
            ("profiles", profiles),
            ("train_config", train_config),
            ("aggregation", aggregation),
            ("screen", screen),
        ):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{name}: expected a dict, got {type(value).__name__}")
        # built once here, so that bad defense arguments fail when the job is defined
        _defenses(aggregation, screen)
        if scheduler_args is not None:
            cls._check_scheduler_args(scheduler_args)
        for site, profile in (profiles or {}).items():
            _profile_of(site, profile)  # raises with the site's name

    @staticmethod
    def _check_scheduler_args(args: Mapping[str, Any]) -> None:
        """Build a scheduler once, so that bad arguments fail when the job is defined."""
        import fedalign as fa

        try:
            fa.Scheduler(**args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scheduler_args: {exc}") from exc

    # ------------------------------------------------------------------ hooks
    def build_scheduler(self) -> Any:
        """The :class:`fedalign.Scheduler` of the run (default: from ``scheduler_args``)."""
        import fedalign as fa

        if self.scheduler_args is None:
            raise ValueError(
                "scheduler_args: needed (at least n_experts) unless build_scheduler is overridden"
            )
        return fa.Scheduler(**self.scheduler_args)

    def build_driver(self, scheduler: Any) -> RoundDriver:
        """The run's :class:`fedalign.rounds.RoundDriver` over ``scheduler`` (default: with
        ``aggregation``, ``screen`` and ``dropout_duration``)."""
        return RoundDriver(
            scheduler,
            dropout_duration=self.dropout_duration,
            **_defenses(self.aggregation, self.screen),
        )

    def initial_state(self) -> State:
        """The initial global model as ``{key: ndarray}`` (default: from the persistor).

        Raises
        ------
        RuntimeError
            No persistor, or it holds no arrays: configure one (``persistor_id``) or
            override this method.
        """
        model = self.load_model()
        params = getattr(model, "params", None)
        if not params:
            raise RuntimeError(
                "no initial model: configure a persistor (persistor_id) or override "
                "FedAlignController.initial_state()"
            )
        return {str(k): _to_numpy(v) for k, v in params.items()}

    def sample_cohort(self, round_index: int, sites: list[str]) -> list[str]:
        """The sites asked to train in round ``round_index`` (from 0).

        Parameters
        ----------
        round_index : int
        sites : list of str
            Connected sites, sorted by name.

        Returns
        -------
        list of str
            Distinct sites of ``sites``: all of them, or a seeded uniform sample of
            ``num_clients`` (sorted).
        """
        if self.num_clients is None or self.num_clients >= len(sites):
            return list(sites)
        picks = self._rng.choice(len(sites), size=self.num_clients, replace=False)
        return sorted(sites[int(i)] for i in picks)

    def site_configs(self, round_index: int, current: ActiveRound) -> dict[str, dict[str, Any]]:
        """Per site, entries added to its task config on top of ``train_config``.

        Called once per round, after planning and before any task is sent (default none).
        """
        return {}

    def after_round(
        self, round_index: int, state: State, summary: RoundSummary
    ) -> dict[str, Any] | None:
        """Called after each round with the new global state (e.g. central evaluation).

        Returns
        -------
        dict or None
            JSON-friendly entries recorded with the round in ``summary_path`` (e.g.
            ``{"accuracy": 0.9}``); default none.
        """
        return None

    # ------------------------------------------------------------------ the workflow
    def run(self) -> None:
        """The round loop: plan, one task per site, wait, hand replies to the driver, close."""
        self.scheduler = self.build_scheduler()
        self.driver = self.build_driver(self.scheduler)
        state = self.initial_state()
        self.fl_ctx.set_prop(AppConstants.NUM_ROUNDS, self.num_rounds, private=True, sticky=False)
        self.info(
            f"fedalign: {self.num_rounds} rounds, {len(state)} arrays, "
            f"scheduler {type(self.scheduler).__name__}"
        )
        for round_index in range(self.num_rounds):
            if self.abort_signal is not None and self.abort_signal.triggered:
                self.info("fedalign: abort signal; stopping")
                return
            self.fl_ctx.set_prop(
                AppConstants.CURRENT_ROUND, round_index, private=True, sticky=False
            )
            self.event(AppEventType.ROUND_STARTED)
            new_state, summary = self.run_round(round_index, state)
            extra = self.after_round(round_index, new_state, summary)
            self._record(round_index, state, new_state, summary, extra or {})
            state = new_state
            if self.persistor:
                self.save_model(FLModel(params=state, params_type=ParamsType.FULL))
        self.info("fedalign: finished")

    def run_round(self, round_index: int, state: State) -> tuple[State, RoundSummary]:
        """One round on the global ``state``; returns the new state and the driver's summary."""
        assert self.driver is not None, "run_round: the run has not started"
        sites = sorted(c.name for c in self.engine.get_clients())
        cohort = self._identified(self.sample_cohort(round_index, sites))
        client_of = {site: self._client_id(site) for site in cohort}
        current = self.driver.open([client_of[s] for s in cohort], state)
        sent = {self.sites[c]: c for c in current.sent}
        self.info(
            f"fedalign round {round_index}: {len(sent)} of {len(cohort)} sites given experts "
            + ", ".join(f"{s}: {current.experts(c)}" for s, c in sent.items())
        )
        extra = self.site_configs(round_index, current)
        self._start_collecting(round_index, sent)
        for site, client in sent.items():
            self._send(round_index, site, client, current, extra.get(site, {}))
        self._wait_for_tasks()
        with self._lock:
            replies, ended = dict(self._replies), dict(self._ended)
            self._expected, self._collecting = set(), None
        for site, client in sent.items():  # the plan's order: averages never depend on timing
            if site in replies:
                self.take_reply(current, client, replies[site])
            else:
                current.drop(client, _ended_reason(ended.get(site), self.train_timeout))
        new_state, summary = current.close()
        for client, reason in summary.dropouts.items():
            self.warning(
                f"fedalign round {round_index}: site {self.sites.get(client, client)} "
                f"(client {client!r}) dropped out: {reason}"
            )
        self.info(
            f"fedalign round {round_index}: {len(summary.completed)} sites completed; experts "
            + ", ".join(
                f"{e} from {[self.sites.get(c, c) for c in cs]}"
                for e, cs in sorted(summary.trained_by.items())
            )
        )
        return new_state, summary

    def take_reply(self, current: ActiveRound, client: Hashable, result: Shareable) -> ReplyStatus:
        """Hand one site's result to the driver: failures drop, unreadable ones are rejected."""
        code = result.get_return_code(ReturnCode.OK)
        if code != ReturnCode.OK:
            return current.drop(client, f"error: the site returned {code}")
        try:
            model = FLModelUtils.from_shareable(result)
        except Exception as exc:  # noqa: BLE001 - whatever a site sent, it is only a dropout
            return current.reject(client, f"cannot read the FLModel: {exc}")
        try:
            arrays, feedback, weight = read_reply(model, current.experts(client))
        except SiteError as exc:
            return current.drop(client, f"error: {exc}")
        except (BadReply, InvalidFeedbackError) as exc:
            return current.reject(client, str(exc))
        return current.complete(client, arrays, feedback, weight=weight)

    # ------------------------------------------------------------------ NVFlare callbacks
    def _result_received(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        """``result_received_cb``: file the reply of the task's site (NVFlare's thread)."""
        task = client_task.task
        site = task.get_prop(_SITE)
        if client_task.client.name != site:  # a task is scheduled for one site only
            return
        with self._lock:
            if self._awaited(task) and site not in self._replies:
                self._replies[site] = client_task.result

    def _task_done(self, task: Task, fl_ctx: FLContext) -> None:
        """``task_done_cb``: file how the task of one site ended (NVFlare's thread)."""
        site = task.get_prop(_SITE)
        with self._lock:
            if self._awaited(task):
                self._ended[site] = task.completion_status
                if set(self._ended) >= self._expected:
                    self._all_ended.set()

    def _awaited(self, task: Task) -> bool:
        """Whether ``task`` belongs to the round being collected (call with the lock held).

        A task of an earlier round (one left standing when an abort cut the round short)
        must not settle a site of this one.
        """
        return task.get_prop(_ROUND) == self._collecting and task.get_prop(_SITE) in self._expected

    def process_result_of_unknown_task(
        self, client: Any, task_name: str, client_task_id: str, result: Shareable, fl_ctx: FLContext
    ) -> None:
        """A result for a task that has ended (a straggler): ignored, never averaged."""
        self.warning(f"fedalign: ignoring a late {task_name!r} result from site {client.name}")

    # ------------------------------------------------------------------ steps
    def _client_id(self, site: str) -> Hashable:
        if self.client_ids is not None and site in self.client_ids:
            return self.client_ids[site]  # type: ignore[no-any-return]
        return site

    def _identified(self, cohort: Sequence[str]) -> list[str]:
        """The cohort's sites with a client id registered with the scheduler, each id once."""
        known = set(getattr(self.scheduler, "client_ids", ()))
        out: list[str] = []
        taken: set[Hashable] = set()
        for site in cohort:
            client = self._client_id(site)
            if client in taken:
                self.warning(f"fedalign: site {site} maps to client {client!r}, taken; it sits out")
                continue
            if client not in known:
                profile = _profile_of(site, (self.profiles or {}).get(site, {}))
                self.scheduler.register(client, profile)
                known.add(client)
            taken.add(client)
            self.sites[client] = site
            out.append(site)
        return out

    def _start_collecting(self, round_index: int, sites: Mapping[str, Hashable]) -> None:
        with self._lock:
            self._replies = {}
            self._ended = {}
            self._expected = set(sites)
            self._collecting = round_index
            self._all_ended.clear()
            if not self._expected:
                self._all_ended.set()

    def _send(
        self,
        round_index: int,
        site: str,
        client: Hashable,
        current: ActiveRound,
        extra: Mapping[str, Any],
    ) -> None:
        """Schedule the task of one site: its payload, its experts, the round, its config."""
        config = {**(self.train_config or {}), **extra}
        model = FLModel(
            params_type=ParamsType.FULL,
            params=current.payload(client),
            current_round=round_index,
            total_rounds=self.num_rounds,
            meta={
                wire.EXPERT_IDS: current.experts(client),
                wire.ROUND: current.round,
                wire.CONFIG: config,
            },
        )
        task = Task(
            name=self.task_name,
            data=FLModelUtils.to_shareable(model),
            props={_SITE: site, _ROUND: round_index},
            timeout=self.train_timeout,
            result_received_cb=self._result_received,
            task_done_cb=self._task_done,
        )
        self.broadcast(task=task, fl_ctx=self.fl_ctx, targets=[site], min_responses=1)

    def _wait_for_tasks(self) -> None:
        """Until every task of the round has ended, or the run is aborted."""
        while not self._all_ended.wait(timeout=self._task_check_period):
            if self.abort_signal is not None and self.abort_signal.triggered:
                self.cancel_all_tasks(completion_status=TaskCompletionStatus.ABORTED)
                return

    def _record(
        self,
        round_index: int,
        old: State,
        new: State,
        summary: RoundSummary,
        extra: Mapping[str, Any],
    ) -> None:
        """Keep the round in :attr:`history` and, if asked, in ``summary_path``."""
        self.history.append(summary)
        changed = sorted(
            {e for k, v in new.items() if v is not old[k] and (e := wire.expert_of_key(k)) is not None}
        )
        entry = {
            "round_index": round_index,
            **summary.to_dict(),
            "sites": {str(c): s for c, s in self.sites.items() if c in summary.assignment},
            "changed_experts": changed,
            **extra,
        }
        self._summaries.append(entry)
        if self.summary_path:
            _write_json(self.summary_path, {"rounds": self._summaries})


def read_reply(model: Any, experts: Sequence[int]) -> tuple[State, Feedback, float]:
    """Read a training reply's ``FLModel`` into arrays, a :class:`fedalign.Feedback`, a weight.

    Only the wire format is checked here; the arrays themselves (keys, shapes, dtypes,
    finite values) are checked by the round driver.

    Parameters
    ----------
    model : FLModel
        The site's reply.
    experts : sequence of int
        The experts the site was given, in the order of its instruction.

    Returns
    -------
    arrays : dict of str to ndarray
    feedback : Feedback
    weight : float
        ``meta[WEIGHT]`` if given, else ``meta[SAMPLES]``.

    Raises
    ------
    SiteError
        The site reports an error (``meta[ERROR]``).
    BadReply
        No meta dict; params that are not a dict or are a DIFF; ``samples`` missing or not
        a number >= 0; ``rewards`` not one number per expert; an ``expert_ids`` echo that
        differs; a bad ``duration`` or ``weight``.
    InvalidFeedbackError
        The values do not make a valid Feedback (e.g. a reward above 1).
    """
    meta = getattr(model, "meta", None)
    if not isinstance(meta, Mapping):
        raise BadReply("the reply has no meta dict")
    if meta.get(wire.ERROR) is not None:
        raise SiteError(str(meta[wire.ERROR]))
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping):
        raise BadReply(f"params: expected a dict of arrays, got {type(params).__name__}")
    params_type = getattr(model, "params_type", None)
    if params_type is not None and str(getattr(params_type, "value", params_type)) != "FULL":
        raise BadReply(f"params_type: expected FULL arrays, got {params_type}")
    samples = _number(meta, wire.SAMPLES)
    if samples is None:
        raise BadReply(f"missing meta '{wire.SAMPLES}'")
    weight = _number(meta, wire.WEIGHT)
    duration = _number(meta, wire.DURATION)
    epsilon = _number(meta, wire.EPSILON)
    variance = _number(meta, wire.VARIANCE)
    rewards = meta.get(wire.REWARDS)
    if isinstance(rewards, (int, float)) and not isinstance(rewards, bool):
        rewards = [rewards]
    if not isinstance(rewards, (list, tuple)) or len(rewards) != len(experts):
        raise BadReply(
            f"'{wire.REWARDS}' must list {len(experts)} values, one per expert in {list(experts)}"
        )
    echo = meta.get(wire.EXPERT_IDS)
    if echo is not None:
        echoed = list(echo) if isinstance(echo, (list, tuple)) else [echo]
        if [_as_int(e) for e in echoed] != [int(e) for e in experts]:
            raise BadReply(f"'{wire.EXPERT_IDS}' {echoed} differs from the experts sent {list(experts)}")
    if samples != math.floor(samples):
        raise BadReply(f"meta '{wire.SAMPLES}' must be a whole number, got {samples}")
    feedback = Feedback(
        samples=int(samples),
        rewards=dict(zip((int(e) for e in experts), rewards, strict=True)),
        duration=duration,
        epsilon=epsilon,
        reward_variance=variance,
    )
    return dict(params), feedback, samples if weight is None else weight


# ---------------------------------------------------------------------- helpers


def _defenses(
    aggregation: Mapping[str, Any] | None,
    screen: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The driver's defense arguments built from the controller's JSON-friendly ones.

    Raises
    ------
    ValueError, TypeError
        An argument :class:`RobustAggregator` or :class:`ReplyScreen` refuses, named.
    """
    out: dict[str, Any] = {}
    for name, value, cls in (("aggregation", aggregation, RobustAggregator), ("screen", screen, ReplyScreen)):
        if value is None:
            continue
        try:
            out["aggregate" if name == "aggregation" else name] = cls(**value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: {exc}") from exc
    return out


def _number(meta: Mapping[str, Any], key: str) -> float | None:
    """``meta[key]`` as a finite float >= 0; None if absent; :class:`BadReply` otherwise."""
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise BadReply(f"meta '{key}' must be one number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise BadReply(f"meta '{key}' must be finite and >= 0, got {value}")
    return number


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _profile_of(site: str, values: Mapping[str, Any]) -> Any:
    """The :class:`fedalign.ClientProfile` of ``site`` from its ``profiles`` entry."""
    import fedalign as fa

    try:
        return fa.ClientProfile(**wire.profile_from_mapping(values))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"profiles[{site!r}]: {exc}") from exc


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _ended_reason(status: Any, timeout: int) -> str:
    """Why a site whose task ended without a reply dropped out, in words."""
    if status == TaskCompletionStatus.TIMEOUT:
        return f"timeout: no reply within train_timeout={timeout} s"
    if status == TaskCompletionStatus.CLIENT_DEAD:
        return "the site disconnected"
    if status in (TaskCompletionStatus.ABORTED, TaskCompletionStatus.CANCELLED):
        return f"the task was {status.value}"
    if status is None:
        return "no reply"
    return f"no reply (task ended: {getattr(status, 'value', status)})"


def _write_json(path: str, content: Any) -> None:
    """Write ``content`` to ``path`` atomically (a reader never sees half a file)."""
    import json
    import os

    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(content, out, indent=1, default=str)
    os.replace(tmp, path)
