"""The round protocol of federated MoE training, written once for every transport.

One round: plan the cohort with the :class:`fedalign.Scheduler`; give each client its experts
and its *payload* (the shared arrays plus its experts' arrays); take each client's reply as
completed, dropped or invalid; report :class:`fedalign.Feedback` to the scheduler; close the
scheduler's round; average each group of arrays (the shared ones, each expert's) over the
completed replies that carry it; return the new global state and a :class:`RoundSummary`.

A transport (the in-process PyTorch harness, Flower, NVIDIA FLARE ...) only moves payloads
and replies: it calls :meth:`RoundDriver.open`, sends :meth:`ActiveRound.payload` to each
client of :attr:`ActiveRound.sent`, hands every answer to :meth:`ActiveRound.complete`,
:meth:`ActiveRound.drop` or :meth:`ActiveRound.reject`, and calls :meth:`ActiveRound.close`.
Nothing a client sends can raise out of the driver or reach the global state unless every
check of :mod:`fedalign.rounds.replies` passed. How a group is combined is a hook
(:class:`~fedalign.rounds.aggregate.Aggregator`), the sample-weighted mean by default.

numpy only: the global state is a dict of numpy arrays, named as in
:mod:`fedalign.rounds.naming`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import InstanceOf, Interval, validate, validate_one
from ..plan import Feedback
from .aggregate import Aggregator, weighted_mean
from .naming import ExpertOfKey, ModelLayout, expert_of_key
from .replies import InvalidReply, check_arrays, check_feedback, check_weight
from .robust import ReplyScreen, ScreenReport

__all__ = ["ActiveRound", "Dropout", "Reply", "ReplyStatus", "RoundDriver", "RoundSummary"]

logger = logging.getLogger(__name__)

State = dict[str, NDArray[Any]]

#: Largest averaging weight accepted by default: float64 counts every integer up to 2**53
#: exactly; a client claiming more samples is lying or broken.
MAX_WEIGHT = 2.0**53



class ReplyStatus(str, Enum):
    """What the driver made of one client's answer."""

    COMPLETED = "completed"  # checked, reported, will be averaged
    DROPPED = "dropped"  # no usable reply: reported as a dropout
    INVALID = "invalid"  # a reply that failed a check: reported as a dropout
    IGNORED = "ignored"  # not expected (not sent, or already settled): nothing changed


@dataclass(frozen=True)
class Reply:
    """A completed answer, as returned by the ``train`` function of :meth:`RoundDriver.run_round`.

    Attributes
    ----------
    state : mapping of str to array
        The trained arrays: exactly the payload's keys.
    feedback : Feedback
        What the client reports (``completed=True``).
    weight : float, optional
        Averaging weight; default ``feedback.samples``.
    """

    state: Mapping[str, ArrayLike]
    feedback: Feedback
    weight: float | None = None


@dataclass(frozen=True)
class Dropout:
    """A client that did not train, as returned by ``train`` of :meth:`RoundDriver.run_round`.

    Attributes
    ----------
    reason : str
        Why (kept in :attr:`RoundSummary.dropouts`).
    duration : float, optional
        Seconds until it gave up; default the driver's ``dropout_duration``.
    """

    reason: str
    duration: float | None = None


@dataclass
class RoundSummary:
    """What happened in one round.

    Attributes
    ----------
    round : int
        The scheduler's round number (``plan.round``).
    assignment : dict of client id to list of int
        Experts given to every cohort client (``[]`` for clients given none).
    completed : list of client id
        Clients whose reply passed every check, in the order they completed.
    dropouts : dict of client id to str
        Clients given experts that sent no usable reply, with the reason; invalid replies
        read ``"invalid reply: ..."``.
    invalid : list of client id
        The dropouts whose reply failed a check.
    trained_by : dict of int to list of client id
        For each expert averaged this round, the clients whose arrays went into it (replies
        of weight 0 excluded).
    samples : int
        ``Feedback.samples`` summed over the completed clients.
    bytes_sent, bytes_received : int
        Bytes of the payloads of the clients given experts, and of the completed replies.
    solver_seconds : float or None
        Wall-clock seconds the scheduler's solver took.
    screened : dict of client id to str
        Completed replies the driver's :class:`~fedalign.rounds.robust.ReplyScreen` left out
        of every average, with the reason (empty without a screen).
    implausible_rewards : dict of client id to list of int
        Experts whose reward the screen found implausible (not credited to the client).
    bounded : dict of client id to float
        Replies whose averaging weight was scaled down because the scheduler credits only
        part of their claimed samples (``Scheduler.credited_samples``), with the weight used.
    """

    round: int
    assignment: dict[Hashable, list[int]]
    completed: list[Hashable] = field(default_factory=list)
    dropouts: dict[Hashable, str] = field(default_factory=dict)
    invalid: list[Hashable] = field(default_factory=list)
    trained_by: dict[int, list[Hashable]] = field(default_factory=dict)
    samples: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    solver_seconds: float | None = None
    screened: dict[Hashable, str] = field(default_factory=dict)
    implausible_rewards: dict[Hashable, list[int]] = field(default_factory=dict)
    bounded: dict[Hashable, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (client ids and experts as string keys)."""
        return {
            "round": self.round,
            "assignment": {str(k): list(v) for k, v in self.assignment.items()},
            "completed": list(self.completed),
            "dropouts": {str(k): v for k, v in self.dropouts.items()},
            "invalid": list(self.invalid),
            "trained_by": {str(k): list(v) for k, v in self.trained_by.items()},
            "samples": self.samples,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "solver_seconds": self.solver_seconds,
            "screened": {str(k): v for k, v in self.screened.items()},
            "implausible_rewards": {str(k): list(v) for k, v in self.implausible_rewards.items()},
            "bounded": {str(k): v for k, v in self.bounded.items()},
        }


@dataclass(frozen=True)
class _Accepted:
    """A completed reply, checked and reported, waiting for :meth:`ActiveRound.close`."""

    client: Hashable
    arrays: State
    weight: float
    samples: int
    rewards: Mapping[Hashable, float] = field(default_factory=dict)


class RoundDriver:
    """Runs the round protocol over a :class:`fedalign.Scheduler`; transports plug in.

    Parameters
    ----------
    scheduler : fedalign.Scheduler
        Plans each round and learns from the feedback (anything with ``plan``, ``report``
        and ``end_round``). The expert ids it assigns must be the model's expert indices.
    expert_of_key : callable, default :func:`fedalign.rounds.naming.expert_of_key`
        Maps a key of the global state to its expert id, or None for a shared key.
    aggregate : Aggregator, default :func:`fedalign.rounds.aggregate.weighted_mean`
        Combines the replies carrying one group (shared, or one expert) into its new value.
    max_weight : float > 0, default 2**53
        Largest averaging weight a reply may claim (a larger one makes the reply invalid).
    screen : ReplyScreen, optional
        Judges each completed reply's update (and, with a validation callback, its rewards)
        before averaging: an implausible reply is left out of every average and the
        scheduler is told (``Scheduler.judge``). Default none.
    dropout_duration : float >= 0, optional
        Seconds reported as a dropout's duration when the transport gives none (e.g. the
        round deadline); default unknown.

    Examples
    --------
    >>> import fedalign as fa
    >>> sched = fa.Scheduler(2, solver="flow", seed=0)
    >>> for c in range(2):
    ...     _ = sched.register(c, fa.ClientProfile())
    >>> driver = RoundDriver(sched)
    >>> state = {"gate": np.zeros(2), "experts.0.w": np.zeros(1), "experts.1.w": np.zeros(1)}
    >>> rnd = driver.open([0, 1], state)
    >>> for c in rnd.sent:
    ...     sent = rnd.payload(c)
    ...     fb = fa.Feedback(samples=10, rewards={j: 0.5 for j in rnd.experts(c)})
    ...     status = rnd.complete(c, {k: v + 1 for k, v in sent.items()}, fb)
    >>> state, summary = rnd.close()
    >>> state["gate"].tolist(), summary.completed, summary.dropouts
    ([1.0, 1.0], [0, 1], {})
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "expert_of_key": [InstanceOf(Callable, "callable")],  # type: ignore[arg-type]
        "aggregate": [InstanceOf(Callable, "callable")],  # type: ignore[arg-type]
        "max_weight": [Interval(float, 0.0, None, closed="neither")],
        "screen": [InstanceOf(ReplyScreen), None],
        "dropout_duration": [Interval(float, 0.0, None), None],
    }

    def __init__(
        self,
        scheduler: Any,
        *,
        expert_of_key: ExpertOfKey = expert_of_key,
        aggregate: Aggregator = weighted_mean,
        max_weight: float = MAX_WEIGHT,
        screen: ReplyScreen | None = None,
        dropout_duration: float | None = None,
    ) -> None:
        opts = validate(
            self._parameter_constraints,
            {
                "expert_of_key": expert_of_key,
                "aggregate": aggregate,
                "max_weight": max_weight,
                "screen": screen,
                "dropout_duration": dropout_duration,
            },
            owner="RoundDriver",
        )
        self.scheduler = scheduler
        self.expert_of_key: ExpertOfKey = opts["expert_of_key"]
        self.aggregate: Aggregator = opts["aggregate"]
        self.max_weight: float = opts["max_weight"]
        self.screen: ReplyScreen | None = opts["screen"]
        self.dropout_duration: float | None = opts["dropout_duration"]
        self._current: ActiveRound | None = None

    @property
    def current(self) -> ActiveRound | None:
        """The round opened last, while it is not closed."""
        current = self._current
        return current if current is not None and not current.closed else None

    def open(
        self,
        clients: Iterable[Hashable],
        state: Mapping[str, ArrayLike],
        *,
        round: int | None = None,
        allowed: ArrayLike | None = None,
        conditions: Mapping[Hashable, Any] | None = None,
    ) -> ActiveRound:
        """Plan a round for ``clients`` and open it.

        Parameters
        ----------
        clients : iterable of client ids
            The cohort, registered with the scheduler.
        state : mapping of str to array
            The global model: every shared and expert array. Not modified; do not modify
            it while the round is open (payloads are views of it).
        round : int, optional
            Passed to ``Scheduler.plan``.
        allowed : (n, E) bool array, optional
            Passed to ``Scheduler.plan``.
        conditions : mapping of client id to ClientProfile, optional
            What clients measured at check-in (e.g. this round's faded bandwidth), passed to
            ``Scheduler.plan``: it overrides their profiles for this round only.

        Returns
        -------
        ActiveRound
            Clients given no expert are already reported (``Feedback(samples=0)``).

        Raises
        ------
        RuntimeError
            The previous round is still open (close it first).
        ValueError
            A key the naming rejects; or the scheduler assigned an expert that owns no key
            of ``state`` (the scheduler's round is then left open; the next plan closes it).
        Exception
            Whatever ``Scheduler.plan`` raises (unknown client, infeasible round ...).
        """
        if self.current is not None:
            raise RuntimeError(
                f"round {self.current.round} is still open: close it before opening another"
            )
        arrays = {key: np.asarray(value) for key, value in state.items()}
        layout = ModelLayout.of(arrays, self.expert_of_key)
        kwargs: dict[str, Any] = {}
        if round is not None:
            kwargs["round"] = round
        if allowed is not None:
            kwargs["allowed"] = allowed
        if conditions is not None:  # only when given: a scheduler stand-in may not take it
            kwargs["conditions"] = conditions
        plan = self.scheduler.plan(list(clients), **kwargs)
        self._current = ActiveRound(self, plan, arrays, layout)
        return self._current

    def run_round(
        self,
        clients: Iterable[Hashable],
        state: Mapping[str, ArrayLike],
        train: Callable[[Hashable, list[int], State], Reply | Dropout],
        *,
        round: int | None = None,
    ) -> tuple[State, RoundSummary]:
        """One whole round with an in-process transport: ``train`` is called per client.

        Parameters
        ----------
        clients, state, round
            As for :meth:`open`.
        train : callable
            ``train(client, experts, payload) -> Reply | Dropout`` for each client given at
            least one expert. An exception it raises makes that client a dropout
            (``"error: ..."``); the round goes on.

        Returns
        -------
        (dict of str to ndarray, RoundSummary)
            What :meth:`ActiveRound.close` returns.
        """
        current = self.open(clients, state, round=round)
        for client in current.sent:
            try:
                answer = train(client, current.experts(client), current.payload(client))
            except Exception as exc:  # noqa: BLE001 - a failing client is a dropout
                current.drop(client, f"error: {type(exc).__name__}: {exc}")
                continue
            if isinstance(answer, Reply):
                current.complete(client, answer.state, answer.feedback, weight=answer.weight)
            elif isinstance(answer, Dropout):
                current.drop(client, answer.reason, duration=answer.duration)
            else:
                current.reject(client, f"train returned a {type(answer).__name__}")
        return current.close()


class ActiveRound:
    """One planned round, between :meth:`RoundDriver.open` and :meth:`close`.

    Every client given at least one expert is *pending* until it is settled by
    :meth:`complete`, :meth:`drop` or :meth:`reject` (the first call counts; later ones are
    :attr:`ReplyStatus.IGNORED`); :meth:`close` makes the rest dropouts.

    Attributes
    ----------
    plan : fedalign.Plan
        The scheduler's plan.
    round : int
        ``plan.round``.
    layout : ModelLayout
        The global state's layout.
    """

    def __init__(self, driver: RoundDriver, plan: Any, state: State, layout: ModelLayout):
        self.plan = plan
        self.round = int(plan.round)
        self.layout = layout
        self._driver = driver
        self._state = state
        self._assignment = _expert_lists(plan.assignment, layout)
        self._sent = [c for c, experts in self._assignment.items() if experts]
        self._settled: set[Hashable] = set()
        self._accepted: list[_Accepted] = []
        self._dropouts: dict[Hashable, str] = {}
        self._invalid: list[Hashable] = []
        self._closed = False
        for client, experts in self._assignment.items():
            if not experts:  # nothing fits it this round: it completed an empty round
                self._report(client, Feedback(samples=0, rewards={}, duration=0.0))

    # ------------------------------------------------------------------ what to send
    @property
    def clients(self) -> list[Hashable]:
        """The cohort, in the plan's order."""
        return list(self._assignment)

    @property
    def sent(self) -> list[Hashable]:
        """Clients given at least one expert: the ones to send a payload to."""
        return list(self._sent)

    @property
    def idle(self) -> list[Hashable]:
        """Clients given no expert (already reported; nothing to send)."""
        return [c for c, experts in self._assignment.items() if not experts]

    @property
    def pending(self) -> list[Hashable]:
        """Clients given experts whose answer has not been settled yet."""
        return [c for c in self._sent if c not in self._settled]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    @property
    def solver_seconds(self) -> float | None:
        """Wall-clock seconds the scheduler's solver took, if the plan says."""
        runtime = getattr(getattr(self.plan, "solution", None), "runtime", None)
        return None if runtime is None else float(runtime)

    def experts(self, client: Hashable) -> list[int]:
        """The experts ``client`` trains, in the plan's order (KeyError outside the cohort)."""
        return list(self._assignment[client])

    def keys(self, client: Hashable) -> list[str]:
        """Keys of ``client``'s payload: the shared keys, then each of its experts'."""
        return self.layout.keys_for(self._assignment[client])

    def payload(self, client: Hashable) -> State:
        """The arrays to send ``client``: read-only views of the global state (no copies)."""
        out: State = {}
        for key in self.keys(client):
            view = self._state[key].view()
            view.flags.writeable = False  # a client training in place must not touch the global
            out[key] = view
        return out

    def nbytes(self, client: Hashable) -> int:
        """Bytes of ``client``'s payload."""
        return self.layout.nbytes_for(self._assignment[client])

    # ------------------------------------------------------------------ what comes back
    def complete(
        self,
        client: Hashable,
        state: Mapping[str, ArrayLike],
        feedback: Feedback,
        *,
        weight: float | None = None,
    ) -> ReplyStatus:
        """Take ``client``'s reply: checked, reported to the scheduler, kept for averaging.

        Parameters
        ----------
        client : client id
        state : mapping of str to array
            The trained arrays: exactly the payload's keys, shapes and dtypes, finite.
            Kept by reference until :meth:`close`.
        feedback : Feedback
            ``completed=True``; rewards only for the client's experts.
        weight : float, optional
            Averaging weight, in ``[0, max_weight]``; default ``feedback.samples``.

        Returns
        -------
        ReplyStatus
            ``COMPLETED``; ``INVALID`` if a check or the scheduler refused it (then it is a
            dropout, see :attr:`RoundSummary.dropouts`); ``IGNORED`` if ``client`` was not
            sent anything or is already settled. Never raises for what the client sent.
        """
        if self._ignored(client):
            return ReplyStatus.IGNORED
        experts = self._assignment[client]
        try:
            checked = check_feedback(feedback, experts)
            w = check_weight(checked.samples if weight is None else weight, self._driver.max_weight)
            arrays = check_arrays(state, self._state, self.layout, experts)
            # the scheduler validates too (InvalidFeedbackError is a ValueError) and changes
            # nothing when it refuses
            self._driver.scheduler.report(client, checked, round=self.round)
        except (InvalidReply, ValueError) as exc:
            return self.reject(client, str(exc))
        self._settled.add(client)
        self._accepted.append(_Accepted(client, arrays, w, checked.samples, checked.rewards))
        return ReplyStatus.COMPLETED

    def drop(self, client: Hashable, reason: str, *, duration: float | None = None) -> ReplyStatus:
        """``client`` sent no usable reply (no answer, an error, a timeout, a straggler).

        Parameters
        ----------
        client : client id
        reason : str
            Kept in :attr:`RoundSummary.dropouts`.
        duration : float >= 0, optional
            Seconds until it gave up; default the driver's ``dropout_duration``.

        Returns
        -------
        ReplyStatus
            ``DROPPED``, or ``IGNORED`` if ``client`` was not sent anything or is settled.
        """
        if duration is not None:
            duration = validate_one("duration", duration, [Interval(float, 0.0, None)])
        if self._ignored(client):
            return ReplyStatus.IGNORED
        self._settle_as_dropout(client, str(reason), duration)
        return ReplyStatus.DROPPED

    def reject(self, client: Hashable, reason: str) -> ReplyStatus:
        """``client``'s reply is malformed (found by the transport or by :meth:`complete`).

        It becomes a dropout with reason ``"invalid reply: <reason>"``; nothing of it is used.

        Returns
        -------
        ReplyStatus
            ``INVALID``, or ``IGNORED`` if ``client`` was not sent anything or is settled.
        """
        if self._ignored(client):
            return ReplyStatus.IGNORED
        self._invalid.append(client)
        self._settle_as_dropout(client, f"invalid reply: {reason}", None)
        return ReplyStatus.INVALID

    def close(self, *, missing: str = "no reply") -> tuple[State, RoundSummary]:
        """End the round: pending clients drop out, the scheduler closes, groups are averaged.

        Parameters
        ----------
        missing : str
            Reason recorded for clients still pending.

        Returns
        -------
        state : dict of str to ndarray
            The new global state: every key of the round's state, in its order; arrays of
            groups nobody (or only weight 0) returned are the same objects as before.
        summary : RoundSummary

        Raises
        ------
        RuntimeError
            Already closed.
        """
        if self._closed:
            raise RuntimeError(f"round {self.round} is already closed")
        for client in self.pending:
            self._settle_as_dropout(client, missing, None)
        bounded = self._bound_weights(self._driver.scheduler.credited_samples())
        weights = np.array([a.weight for a in self._accepted], dtype=np.float64)
        screened = self._screen(weights)  # before end_round: verdicts go to the open round
        self._closed = True
        self._driver.scheduler.end_round()
        state, trained_by = self._aggregate(weights)
        summary = RoundSummary(
            round=self.round,
            assignment={c: list(e) for c, e in self._assignment.items()},
            completed=[a.client for a in self._accepted],
            dropouts=dict(self._dropouts),
            invalid=list(self._invalid),
            trained_by=trained_by,
            samples=sum(a.samples for a in self._accepted),
            bytes_sent=sum(self.nbytes(c) for c in self._sent),
            bytes_received=sum(v.nbytes for a in self._accepted for v in a.arrays.values()),
            solver_seconds=self.solver_seconds,
            screened=screened.excluded,
            implausible_rewards=screened.implausible_rewards,
            bounded=bounded,
        )
        return state, summary

    # ------------------------------------------------------------------ steps
    def _ignored(self, client: Hashable) -> bool:
        """Whether an answer from ``client`` is not expected (anymore)."""
        if self._closed:
            raise RuntimeError(f"round {self.round} is closed")
        try:
            expected = bool(self._assignment.get(client))
        except TypeError:  # an unhashable id cannot be a client of the round
            return True
        return not expected or client in self._settled

    def _settle_as_dropout(self, client: Hashable, reason: str, duration: float | None) -> None:
        if duration is None:
            duration = self._driver.dropout_duration
        self._settled.add(client)
        self._dropouts[client] = reason
        self._report(client, Feedback(samples=0, rewards={}, duration=duration, completed=False))

    def _report(self, client: Hashable, feedback: Feedback) -> None:
        """Report a dropout or an idle client; the round goes on if the scheduler refuses."""
        try:
            self._driver.scheduler.report(client, feedback, round=self.round)
        except ValueError as exc:  # e.g. reported behind the driver's back already
            logger.warning("round %d: could not report client %r: %s", self.round, client, exc)

    def _bound_weights(self, credited: Mapping[Hashable, float]) -> dict[Hashable, float]:
        """Scale down the weight of each reply whose claim the scheduler does not fully credit.

        The scheduler bounds every claimed sample count (at most ``max_report_factor``
        times the client's declared samples or the round's median claim); a reply credited
        with a fraction of its claim keeps that fraction of its averaging weight, so that
        one client's claimed sample count cannot own the average of every array it returns.
        Honest claims are credited in full: their weights do not change. Returns the
        lowered weights by client.
        """
        self._accepted = [
            dataclasses.replace(a, weight=a.weight * credited[a.client] / a.samples)
            if a.client in credited and a.samples > credited[a.client]
            else a
            for a in self._accepted
        ]
        return {
            a.client: a.weight
            for a in self._accepted
            if a.client in credited and a.samples > credited[a.client]
        }

    def _holders(self) -> dict[int | None, list[int]]:
        """Per group (None: shared), the positions of the accepted replies that carry it."""
        holders: dict[int | None, list[int]] = {None: list(range(len(self._accepted)))}
        for pos, accepted in enumerate(self._accepted):
            for e in self._assignment[accepted.client]:
                holders.setdefault(e, []).append(pos)
        return holders

    def _group(self, expert: int | None, who: list[int]) -> tuple[State, list[State]]:
        """A group's current arrays and the arrays of the replies at positions ``who``."""
        keys = self.layout.shared if expert is None else self.layout.by_expert[expert]
        reference = {k: self._state[k] for k in keys}
        return reference, [{k: self._accepted[p].arrays[k] for k in keys} for p in who]

    def _screen(self, weights: NDArray[np.float64]) -> ScreenReport:
        """Judge the accepted replies (the driver's screen); implausible ones get weight 0
        in ``weights`` (in place) and every verdict goes to the scheduler."""
        screen = self._driver.screen
        report = ScreenReport()
        if screen is None or not self._accepted:
            return report
        n = len(self._accepted)
        excluded: list[str] = [""] * n
        holders = self._holders()
        shared_verdict: list[str] | None = None  # the shared group comes first
        for expert, who in holders.items():
            if expert is None and not screen.screen_shared:
                continue
            reference, updates = self._group(expert, who)
            suspect = None if shared_verdict is None else [bool(shared_verdict[p]) for p in who]
            verdict = screen.screen_group(reference, updates, suspect)
            group = "shared arrays" if expert is None else f"expert {expert}"
            for k in np.flatnonzero(~verdict.plausible):
                p = who[int(k)]
                if not excluded[p]:
                    excluded[p] = f"{group}: {verdict.reasons[int(k)]}"
            if expert is None:
                shared_verdict = list(excluded)
        bad_rewards: dict[int, list[int]] = {}
        if screen.validate is not None:
            self._validate(screen, holders, excluded, bad_rewards)
        judge = getattr(self._driver.scheduler, "judge", None)
        for p, accepted in enumerate(self._accepted):
            experts = self._assignment[accepted.client]
            if excluded[p]:
                weights[p] = 0.0
                report.excluded[accepted.client] = excluded[p]
            if p in bad_rewards:
                report.implausible_rewards[accepted.client] = bad_rewards[p]
            if excluded[p] or p in bad_rewards:
                wrong = set(experts) if excluded[p] else set(bad_rewards[p])
                verdicts = {e: (0.0 if e in wrong else 1.0) for e in experts}
                report.verdicts[accepted.client] = verdicts
                if callable(judge):
                    judge(accepted.client, verdicts, round=self.round)
        return report

    def _validate(
        self,
        screen: ReplyScreen,
        holders: dict[int | None, list[int]],
        excluded: list[str],
        bad_rewards: dict[int, list[int]],
    ) -> None:
        """The validation tests: returned experts scoring below the sent ones, rewards above."""
        validate = screen.validate
        assert validate is not None
        tol = screen.tolerance
        experts = sorted(e for e in holders if e is not None)
        sent = {e: float(validate(e, self._state)) for e in experts}
        for e in experts:
            keys = self.layout.by_expert[e]
            for p in holders[e]:
                accepted = self._accepted[p]
                reward = accepted.rewards.get(e)
                if reward is not None and float(reward) > sent[e] + tol:
                    bad_rewards.setdefault(p, []).append(e)
                if excluded[p]:
                    continue
                trial = dict(self._state)
                trial.update({k: accepted.arrays[k] for k in keys})
                score = float(validate(e, trial))
                if score < sent[e] - tol:
                    excluded[p] = (
                        f"expert {e}: validation score {score:.3f} below the sent expert's "
                        f"{sent[e]:.3f}"
                    )

    def _aggregate(self, weights: NDArray[np.float64]) -> tuple[State, dict[int, list[Hashable]]]:
        """New global state: each group combined over the completed replies that carry it."""
        state = dict(self._state)
        trained_by: dict[int, list[Hashable]] = {}
        if not self._accepted:
            return state, trained_by
        holders = self._holders()
        for expert in [None, *sorted(e for e in holders if e is not None)]:
            who = holders[expert]
            reference, updates = self._group(expert, who)
            if not reference:  # a model without shared arrays
                continue
            new = self._driver.aggregate(reference, updates, weights[who], expert=expert)
            state.update(_checked_group(new, reference, expert))
            contributors = [self._accepted[p].client for p in who if weights[p] > 0]
            if expert is not None and contributors:
                trained_by[expert] = contributors
        return state, trained_by


def _expert_lists(
    assignment: Mapping[Hashable, Iterable[Any]], layout: ModelLayout
) -> dict[Hashable, list[int]]:
    """The plan's assignment with int expert ids, each of which must own keys of the model."""
    out: dict[Hashable, list[int]] = {}
    for client, experts in assignment.items():
        ids = [int(e) for e in experts]
        unknown = [e for e in ids if e not in layout.by_expert]
        if unknown:
            raise ValueError(
                f"state: the scheduler assigned expert {unknown[0]} to client {client!r}, but "
                f"no key maps to it (model experts: {list(layout.experts)})"
            )
        out[client] = ids
    return out


def _checked_group(
    new: Mapping[str, Any], reference: Mapping[str, NDArray[Any]], expert: int | None
) -> State:
    """The aggregator's output as arrays, if it has the group's keys, shapes and dtypes.

    A wrong dtype would make every later reply look invalid, so it is caught here, where
    the aggregator that produced it can be named.
    """
    group = "the shared arrays" if expert is None else f"expert {expert}"
    if set(new) != set(reference):
        raise ValueError(
            f"aggregate: returned keys {sorted(new)} for {group}, not {list(reference)}"
        )
    out: State = {}
    for key, ref in reference.items():
        # a numpy scalar for a 0-d array is fine; the same object as the reference too
        value = new[key] if new[key] is ref else np.asarray(new[key])
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise ValueError(
                f"aggregate: returned {value.dtype}{list(value.shape)} for {key!r} of {group}, "
                f"expected {ref.dtype}{list(ref.shape)}"
            )
        out[key] = value
    return out
