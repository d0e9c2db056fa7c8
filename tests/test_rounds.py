"""The round driver on plain numpy states with a small real Scheduler.

Assignments are forced through ``allowed`` (each client may take exactly the experts the
test names, and takes all of them: their desirability is positive), so every expected
average is computed by hand. Every check a reply can fail is exercised; a bad reply must
never raise out of the driver, never reach the global state, and reach the scheduler as a
dropout.
"""

from __future__ import annotations

import doctest
import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedalign as fa
import fedalign.rounds.aggregate
import fedalign.rounds.driver
from fedalign.errors import InvalidFeedbackError
from fedalign.rounds import (
    Dropout,
    ModelLayout,
    Reply,
    ReplyStatus,
    RoundDriver,
    RoundSummary,
    aggregate_partial,
    expert_of_key,
    expert_update_counts,
    weighted_mean,
)
from test_docs import python_blocks

DOCS = Path(__file__).resolve().parent.parent / "docs"


def model_state() -> dict[str, np.ndarray]:
    """Shared gate and step counter; three experts of two arrays each."""
    return {
        "gate.w": np.array([0.0, 0.0], dtype=np.float32),
        "gate.steps": np.array(5, dtype=np.int64),
        "experts.0.w": np.array([10.0], dtype=np.float32),
        "experts.0.b": np.array([1.0, 2.0], dtype=np.float32),
        "experts.1.w": np.array([20.0], dtype=np.float32),
        "experts.1.b": np.array([3.0, 4.0], dtype=np.float32),
        "experts.2.w": np.array([30.0], dtype=np.float32),
        "experts.2.b": np.array([5.0, 6.0], dtype=np.float32),
    }


class Recording:
    """A real Scheduler that records the calls the driver makes; can refuse reports."""

    def __init__(self, inner: fa.Scheduler, refuse: tuple[Hashable, ...] = ()) -> None:
        self.inner = inner
        self.refuse = set(refuse)
        self.reports: list[tuple[Hashable, fa.Feedback, int | None]] = []
        self.rounds_closed = 0

    def plan(self, clients: Any, round: int | None = None, **kwargs: Any) -> fa.Plan:
        return self.inner.plan(clients, round, **kwargs)

    def report(self, client: Hashable, feedback: fa.Feedback, round: int | None = None) -> None:
        if client in self.refuse and feedback.completed and feedback.samples:
            raise InvalidFeedbackError(f"client_id: {client!r} refused by the test")
        self.inner.report(client, feedback, round=round)
        self.reports.append((client, feedback, round))

    def credited_samples(self) -> dict[Any, float]:
        return self.inner.credited_samples()

    def end_round(self) -> None:
        self.inner.end_round()
        self.rounds_closed += 1

    def feedback_of(self, client: Hashable) -> fa.Feedback:
        found = [fb for c, fb, _ in self.reports if c == client]
        assert len(found) == 1, f"client {client!r} reported {len(found)} times"
        return found[0]


ASSIGN = {"a": [0], "b": [0, 1], "c": [1], "d": []}


def open_round(
    assign: dict[Hashable, list[int]] = ASSIGN,
    state: dict[str, np.ndarray] | None = None,
    *,
    refuse: tuple[Hashable, ...] = (),
    **driver_options: Any,
) -> tuple[Any, Recording, RoundDriver, dict[str, np.ndarray]]:
    """Open a round whose plan is exactly ``assign`` (client -> experts)."""
    state = model_state() if state is None else state
    n_experts = 3
    # balance_weight=0: every allowed pair is worth taking, so the plan is exactly ``assign``
    sched = Recording(
        fa.Scheduler(n_experts, solver="flow", seed=0, max_experts=None, balance_weight=0.0), refuse
    )
    allowed = np.zeros((len(assign), n_experts), dtype=bool)
    for row, (client, experts) in enumerate(assign.items()):
        sched.inner.register(client, fa.ClientProfile(max_experts=max(1, len(experts))))
        allowed[row, experts] = True
    driver = RoundDriver(sched, **driver_options)
    rnd = driver.open(list(assign), state, allowed=allowed)
    assert {c: rnd.experts(c) for c in assign} == assign
    return rnd, sched, driver, state


def trained(rnd: Any, client: Hashable, delta: float) -> dict[str, np.ndarray]:
    """``client``'s payload moved by ``delta`` (integers stay integers)."""
    return {k: (v + delta).astype(v.dtype) for k, v in rnd.payload(client).items()}


def feedback(rnd: Any, client: Hashable, samples: int, reward: float = 0.8) -> fa.Feedback:
    return fa.Feedback(samples=samples, rewards={j: reward for j in rnd.experts(client)})


def copy_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in state.items()}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# ------------------------------------------------------------------ payloads


def test_payload_is_the_shared_arrays_plus_the_clients_experts_as_read_only_views():
    rnd, sched, _, state = open_round()
    before = copy_state(state)
    assert rnd.sent == ["a", "b", "c"] and rnd.idle == ["d"] and rnd.pending == ["a", "b", "c"]
    payload = rnd.payload("b")
    assert (
        list(payload)
        == rnd.keys("b")
        == [
            "gate.w",
            "gate.steps",
            "experts.0.w",
            "experts.0.b",
            "experts.1.w",
            "experts.1.b",
        ]
    )
    assert all(np.shares_memory(v, state[k]) for k, v in payload.items())  # no copies
    with pytest.raises(ValueError, match="read-only"):
        payload["experts.0.w"] += 1.0  # training in place cannot touch the global model
    assert_same(state, before)
    assert rnd.nbytes("b") == sum(v.nbytes for v in payload.values()) == 8 + 8 + 2 * 12
    # the idle client was reported when the round opened: an empty, completed round
    fb = sched.feedback_of("d")
    assert fb.completed and fb.samples == 0 and fb.duration == 0.0 and fb.rewards == {}


def test_model_layout_groups_keys_by_expert():
    layout = ModelLayout.of(model_state())
    assert layout.shared == ("gate.w", "gate.steps")
    assert layout.experts == (0, 1, 2)
    assert layout.by_expert[2] == ("experts.2.w", "experts.2.b")
    assert layout.shared_nbytes == 16 and layout.expert_nbytes == {0: 12, 1: 12, 2: 12}
    assert layout.keys_for([2]) == ["gate.w", "gate.steps", "experts.2.w", "experts.2.b"]
    with pytest.raises(ValueError, match="not an int"):
        ModelLayout.of({"x": np.zeros(1)}, lambda key: "zero")


# ------------------------------------------------------------------ completed replies


def test_each_expert_is_averaged_over_the_clients_that_trained_it():
    rnd, sched, driver, state = open_round()
    before = copy_state(state)
    deltas, weights = {"a": 1.0, "b": 3.0, "c": 5.0}, {"a": 10, "b": 30, "c": 20}
    for c in rnd.sent:
        status = rnd.complete(c, trained(rnd, c, deltas[c]), feedback(rnd, c, weights[c]))
        assert status is ReplyStatus.COMPLETED
    new, summary = rnd.close()

    assert_same(state, before)  # the round's input is never modified
    shift = (10 * 1 + 30 * 3 + 20 * 5) / 60  # shared: all three
    np.testing.assert_allclose(new["gate.w"], [shift, shift], rtol=1e-6)
    assert new["gate.steps"].dtype == np.int64 and int(new["gate.steps"]) == round(5 + shift)
    e0 = (10 * 1 + 30 * 3) / 40  # expert 0: a and b only
    np.testing.assert_allclose(new["experts.0.w"], [10 + e0], rtol=1e-6)
    np.testing.assert_allclose(new["experts.0.b"], [1 + e0, 2 + e0], rtol=1e-6)
    e1 = (30 * 3 + 20 * 5) / 50  # expert 1: b and c only
    np.testing.assert_allclose(new["experts.1.b"], [3 + e1, 4 + e1], rtol=1e-6)
    # expert 2: nobody trained it; it keeps its value, the very same array
    assert new["experts.2.w"] is state["experts.2.w"] and new["experts.2.b"] is state["experts.2.b"]
    assert all(new[k].dtype == state[k].dtype for k in state)

    assert summary.round == 0 and summary.completed == ["a", "b", "c"]
    assert summary.dropouts == {} and summary.invalid == []
    assert summary.trained_by == {0: ["a", "b"], 1: ["b", "c"]}
    assert summary.assignment == ASSIGN and summary.samples == 60
    payload_bytes = {"a": 28, "b": 40, "c": 28}
    assert summary.bytes_sent == summary.bytes_received == sum(payload_bytes.values())
    assert summary.solver_seconds is not None and summary.solver_seconds >= 0
    assert sched.rounds_closed == 1 and driver.current is None
    fb = sched.feedback_of("b")
    assert fb.completed and fb.samples == 30 and fb.rewards == {0: 0.8, 1: 0.8}
    assert all(r == 0 for _, _, r in sched.reports)


def test_the_weight_can_differ_from_the_samples_reported():
    rnd, sched, _, state = open_round({"a": [0], "b": [0]})
    rnd.complete("a", trained(rnd, "a", 1.0), feedback(rnd, "a", 100), weight=1)
    rnd.complete("b", trained(rnd, "b", 4.0), feedback(rnd, "b", 100), weight=3)
    new, summary = rnd.close()
    np.testing.assert_allclose(new["experts.0.w"], [10 + (1 + 12) / 4], rtol=1e-6)
    assert summary.samples == 200 and sched.feedback_of("a").samples == 100


@pytest.mark.parametrize("seed", range(4))
def test_results_are_bit_identical_to_aggregate_partial(seed):
    """The driver and the key-by-key function share one arithmetic: same bits."""
    rng = np.random.default_rng(seed)
    clients = list(range(6))
    assign = {
        c: sorted(rng.choice(3, size=int(rng.integers(1, 3)), replace=False).tolist())
        for c in clients
    }
    state = {k: (v + rng.normal(size=v.shape)).astype(v.dtype) for k, v in model_state().items()}
    rnd, _, _, _ = open_round(assign, state)
    updates = []
    for c in clients:
        reply = {
            k: (v + rng.normal(size=v.shape) * 3).astype(v.dtype) for k, v in rnd.payload(c).items()
        }
        weight = float(rng.integers(1, 100))
        updates.append((reply, weight))
        assert rnd.complete(c, reply, feedback(rnd, c, 7), weight=weight) is ReplyStatus.COMPLETED
    new, _ = rnd.close()
    want = aggregate_partial(state, updates)
    for key in state:
        assert new[key].tobytes() == want[key].tobytes(), key


def test_zero_total_weight_keeps_every_array():
    rnd, _, _, state = open_round({"a": [0], "b": [1]})
    for c in rnd.sent:
        assert rnd.complete(c, trained(rnd, c, 9.0), feedback(rnd, c, 0)) is ReplyStatus.COMPLETED
    new, summary = rnd.close()
    assert all(new[k] is state[k] for k in state)
    assert summary.completed == ["a", "b"] and summary.trained_by == {}


# ------------------------------------------------------------------ dropouts


def test_dropped_and_silent_clients_are_dropouts_and_not_averaged():
    rnd, sched, _, state = open_round(dropout_duration=30.0)
    assert rnd.drop("a", "timeout", duration=12.5) is ReplyStatus.DROPPED
    rnd.complete("b", trained(rnd, "b", 2.0), feedback(rnd, "b", 10))
    assert rnd.pending == ["c"]
    new, summary = rnd.close()
    assert summary.dropouts == {"a": "timeout", "c": "no reply"} and summary.invalid == []
    assert summary.completed == ["b"] and summary.trained_by == {0: ["b"], 1: ["b"]}
    np.testing.assert_allclose(new["experts.0.w"], [12.0])  # b alone
    np.testing.assert_allclose(new["gate.w"], [2.0, 2.0])
    a, c = sched.feedback_of("a"), sched.feedback_of("c")
    assert not a.completed and a.duration == 12.5 and a.rewards == {} and a.samples == 0
    assert not c.completed and c.duration == 30.0  # the driver's default
    assert summary.bytes_received == 40 and summary.bytes_sent == 96


def test_a_round_where_nobody_completes_keeps_the_state_and_closes():
    rnd, sched, driver, state = open_round()
    new, summary = rnd.close(missing="round never aggregated")
    assert all(new[k] is state[k] for k in state)
    assert set(summary.dropouts.values()) == {"round never aggregated"}
    assert sched.rounds_closed == 1 and sched.inner.round is None
    nxt = driver.open(["a", "b"], new)
    assert nxt.round == 1


def _unreadable() -> object:
    class Hostile:
        def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
            raise RuntimeError("no")

    return Hostile()


def _tamper(kind: str, rnd: Any) -> dict[str, Any]:
    """Arguments of ``complete`` for client ``b`` (experts 0 and 1), wrong in one way."""
    state: Any = trained(rnd, "b", 1.0)
    fb: Any = feedback(rnd, "b", 10)
    weight: Any = None
    if kind == "unknown key":
        state["decoder.w"] = np.zeros(1, np.float32)
    elif kind == "key of an expert not given":
        state["experts.2.w"] = np.zeros(1, np.float32)
    elif kind == "missing expert key":
        del state["experts.1.b"]
    elif kind == "missing shared key":
        del state["gate.steps"]
    elif kind == "wrong shape":
        state["experts.0.b"] = np.zeros(3, np.float32)
    elif kind == "wrong dtype":
        state["gate.w"] = state["gate.w"].astype(np.float64)
    elif kind == "nan":
        state["experts.0.w"] = np.array([np.nan], np.float32)
    elif kind == "inf":
        state["gate.w"] = np.array([0.0, -np.inf], np.float32)
    elif kind == "unreadable array":
        state["experts.1.w"] = _unreadable()
    elif kind == "not a mapping":
        state = list(state.values())
    elif kind == "reward for an expert not given":
        fb = fa.Feedback(samples=10, rewards={0: 0.5, 2: 0.5})
    elif kind == "feedback says dropped":
        fb = fa.Feedback(samples=10, rewards={}, completed=False)
    elif kind == "not a Feedback":
        fb = {"samples": 10}
    elif kind == "negative weight":
        weight = -1.0
    elif kind == "nan weight":
        weight = float("nan")
    elif kind == "infinite weight":
        weight = float("inf")
    elif kind == "absurd weight":
        weight = 1e300
    elif kind == "boolean weight":
        weight = True
    elif kind == "text weight":
        weight = "10"
    elif kind == "scheduler refuses":
        pass  # the Recording scheduler refuses b's report
    return {"state": state, "feedback": fb, "weight": weight}


INVALID = [
    "unknown key",
    "key of an expert not given",
    "missing expert key",
    "missing shared key",
    "wrong shape",
    "wrong dtype",
    "nan",
    "inf",
    "unreadable array",
    "not a mapping",
    "reward for an expert not given",
    "feedback says dropped",
    "not a Feedback",
    "negative weight",
    "nan weight",
    "infinite weight",
    "absurd weight",
    "boolean weight",
    "text weight",
    "scheduler refuses",
]


@pytest.mark.parametrize("kind", INVALID)
def test_an_invalid_reply_is_a_dropout_and_changes_nothing(kind):
    refuse = ("b",) if kind == "scheduler refuses" else ()
    rnd, sched, _, state = open_round(refuse=refuse)
    before = copy_state(state)
    rnd.complete("a", trained(rnd, "a", 2.0), feedback(rnd, "a", 5))
    rnd.complete("c", trained(rnd, "c", 4.0), feedback(rnd, "c", 5))

    status = rnd.complete("b", **_tamper(kind, rnd))  # never raises

    assert status is ReplyStatus.INVALID
    new, summary = rnd.close()
    assert_same(state, before)
    assert summary.invalid == ["b"] and list(summary.dropouts) == ["b"]
    assert summary.dropouts["b"].startswith("invalid reply: ")
    assert summary.completed == ["a", "c"]
    assert summary.trained_by == {0: ["a"], 1: ["c"]}
    np.testing.assert_allclose(new["experts.0.w"], [12.0])  # a alone
    np.testing.assert_allclose(new["experts.1.w"], [24.0])  # c alone
    np.testing.assert_allclose(new["gate.w"], [3.0, 3.0])  # a and c
    fb = sched.feedback_of("b")
    assert not fb.completed and fb.rewards == {}


def test_invalid_reasons_name_the_problem():
    reasons = {}
    for kind in ("unknown key", "key of an expert not given", "wrong dtype", "absurd weight"):
        rnd, _, _, _ = open_round()
        rnd.complete("b", **_tamper(kind, rnd))
        reasons[kind] = rnd.close()[1].dropouts["b"]
    assert "unknown arrays ['decoder.w']" in reasons["unknown key"]
    assert "arrays of experts [2] it was not given" in reasons["key of an expert not given"]
    assert "float64[2], expected float32[2]" in reasons["wrong dtype"]
    assert reasons["absurd weight"].startswith("invalid reply: weight: expected a float in [0, ")


def test_transport_rejections_and_unexpected_answers():
    rnd, sched, _, state = open_round()
    assert rnd.reject("a", "two ArrayRecords") is ReplyStatus.INVALID
    # settled clients, idle clients, strangers and unhashable ids are ignored
    assert rnd.complete("a", trained(rnd, "a", 1.0), feedback(rnd, "a", 5)) is ReplyStatus.IGNORED
    assert rnd.drop("a", "late") is ReplyStatus.IGNORED
    assert rnd.complete("d", {}, fa.Feedback(samples=0)) is ReplyStatus.IGNORED
    assert rnd.drop("zed", "who?") is ReplyStatus.IGNORED
    assert rnd.reject(["unhashable"], "x") is ReplyStatus.IGNORED  # type: ignore[arg-type]
    rnd.complete("b", trained(rnd, "b", 1.0), feedback(rnd, "b", 5))
    assert rnd.complete("b", trained(rnd, "b", 50.0), feedback(rnd, "b", 5)) is ReplyStatus.IGNORED
    _, summary = rnd.close()
    assert summary.dropouts == {"a": "invalid reply: two ArrayRecords", "c": "no reply"}
    assert summary.completed == ["b"]
    assert len(sched.reports) == 4  # a, b, c, d once each
    with pytest.raises(RuntimeError, match="closed"):
        rnd.complete("b", {}, fa.Feedback(samples=0))
    with pytest.raises(RuntimeError, match="already closed"):
        rnd.close()
    with pytest.raises(ValueError, match="duration"):
        open_round()[0].drop("a", "x", duration=-1.0)


# ------------------------------------------------------------------ the driver


def test_one_round_at_a_time_and_rounds_advance():
    rnd, sched, driver, state = open_round()
    with pytest.raises(RuntimeError, match="still open"):
        driver.open(["a"], state)
    assert driver.current is rnd
    new, _ = rnd.close()
    assert driver.current is None
    second = driver.open(["a", "c"], new, round=5)
    assert second.round == 5 and sched.inner.round == 5


def test_an_expert_the_model_lacks_is_a_configuration_error():
    state = {k: v for k, v in model_state().items() if not k.startswith("experts.2.")}
    with pytest.raises(ValueError, match="state: the scheduler assigned expert 2 to client 'a'"):
        open_round({"a": [2]}, state)


def test_options_are_validated():
    sched = fa.Scheduler(2, seed=0)
    with pytest.raises(ValueError, match="max_weight: expected a float > 0"):
        RoundDriver(sched, max_weight=0)
    with pytest.raises(ValueError, match="dropout_duration"):
        RoundDriver(sched, dropout_duration=-1.0)
    with pytest.raises(ValueError, match="aggregate: expected a callable"):
        RoundDriver(sched, aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expert_of_key"):
        RoundDriver(sched, expert_of_key=None)  # type: ignore[arg-type]


def test_the_aggregation_hook_is_called_once_per_group():
    calls = []

    def median(reference, updates, weights, *, expert):
        calls.append((expert, len(updates), weights.tolist()))
        return {
            k: np.median([u[k] for u in updates], axis=0).astype(ref.dtype)
            for k, ref in reference.items()
        }

    rnd, _, _, state = open_round(aggregate=median)
    for c, d in (("a", 1.0), ("b", 2.0), ("c", 9.0)):
        rnd.complete(c, trained(rnd, c, d), feedback(rnd, c, 10))
    new, _ = rnd.close()
    assert calls == [(None, 3, [10.0] * 3), (0, 2, [10.0] * 2), (1, 2, [10.0] * 2)]
    np.testing.assert_allclose(new["gate.w"], [2.0, 2.0])  # median of 1, 2, 9
    assert new["experts.2.w"] is state["experts.2.w"]


def test_an_aggregator_returning_the_wrong_dtype_is_caught():
    def sloppy(reference, updates, weights, *, expert):
        return {
            k: np.asarray(u, dtype=np.float64)
            for k, u in weighted_mean(reference, updates, weights).items()
        }

    rnd, _, _, _ = open_round({"a": [0]}, aggregate=sloppy)
    rnd.complete("a", trained(rnd, "a", 1.0), feedback(rnd, "a", 3))
    with pytest.raises(ValueError, match="aggregate: returned float64"):
        rnd.close()


def test_run_round_settles_every_client():
    sched = Recording(fa.Scheduler(3, solver="flow", seed=0, max_experts=None))
    for c in range(4):
        sched.inner.register(c, fa.ClientProfile(max_experts=1))
    driver = RoundDriver(sched)

    def train(client, experts, payload):
        if client == 1:
            raise RuntimeError("out of memory")
        if client == 2:
            return Dropout("straggler", duration=9.0)
        if client == 3:
            return "done"
        state = {k: v + 1 for k, v in payload.items()}
        return Reply(state, fa.Feedback(samples=4, rewards={j: 1.0 for j in experts}))

    state = {k: v for k, v in model_state().items() if k != "gate.steps"}
    new, summary = driver.run_round(range(4), state, train)
    assert summary.completed == [0]
    assert summary.dropouts == {
        1: "error: RuntimeError: out of memory",
        2: "straggler",
        3: "invalid reply: train returned a str",
    }
    assert summary.invalid == [3] and sched.feedback_of(2).duration == 9.0
    np.testing.assert_allclose(new["gate.w"], [1.0, 1.0])
    assert json.loads(json.dumps(summary.to_dict()))["dropouts"]["2"] == "straggler"


def test_summary_to_dict_is_json():
    rnd, _, _, _ = open_round()
    rnd.complete("a", trained(rnd, "a", 1.0), feedback(rnd, "a", 3))
    _, summary = rnd.close()
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["assignment"] == {"a": [0], "b": [0, 1], "c": [1], "d": []}
    assert data["trained_by"] == {"0": ["a"]} and data["completed"] == ["a"]
    assert data["bytes_received"] == 28


# ------------------------------------------------------------------ aggregation, key by key


def _global():
    return {
        "gate.w": np.array([0.0, 0.0]),
        "experts.0.w": np.array([10.0]),
        "experts.1.w": np.array([20.0]),
        "experts.2.w": np.array([30.0]),
        "steps": np.array(5, dtype=np.int64),
    }


def test_aggregate_partial_hand_computed():
    updates = [
        (
            {"gate.w": np.array([1.0, 2.0]), "experts.0.w": np.array([1.0]), "steps": np.array(1)},
            10,
        ),
        (
            {
                "gate.w": np.array([3.0, 6.0]),
                "experts.0.w": np.array([5.0]),
                "experts.1.w": np.array([7.0]),
                "steps": np.array(2),
            },
            30,
        ),
        (
            {"gate.w": np.array([5.0, 0.0]), "experts.1.w": np.array([1.0]), "steps": np.array(4)},
            20,
        ),
    ]
    out = aggregate_partial(_global(), updates)
    np.testing.assert_allclose(
        out["gate.w"], [(10 * 1 + 30 * 3 + 20 * 5) / 60, (10 * 2 + 30 * 6) / 60]
    )
    np.testing.assert_allclose(out["experts.0.w"], [(10 * 1 + 30 * 5) / 40])
    np.testing.assert_allclose(out["experts.1.w"], [(30 * 7 + 20 * 1) / 50])
    np.testing.assert_array_equal(out["experts.2.w"], [30.0])
    assert out["steps"].dtype == np.int64 and int(out["steps"]) == round((10 + 60 + 80) / 60)
    np.testing.assert_array_equal(expert_update_counts([u for u, _ in updates], 3), [2, 2, 0])


def test_aggregate_partial_without_weight_keeps_global():
    g = _global()
    assert all(aggregate_partial(g, [])[k] is g[k] for k in g)
    out = aggregate_partial(g, [({"experts.2.w": np.array([0.0])}, 0.0)])
    assert out["experts.2.w"] is g["experts.2.w"]


def test_aggregate_partial_errors_name_the_position():
    g = _global()
    with pytest.raises(KeyError, match="position 1"):
        aggregate_partial(g, [({"gate.w": np.zeros(2)}, 1), ({"bogus": np.zeros(1)}, 1)])
    with pytest.raises(ValueError, match="position 0"):
        aggregate_partial(g, [({"gate.w": np.zeros(2)}, -1)])
    with pytest.raises(ValueError, match="position 1 key 'gate.w' has shape"):
        aggregate_partial(g, [({"gate.w": np.zeros(2)}, 1), ({"gate.w": np.zeros(3)}, 1)])


def test_naming():
    assert expert_of_key("experts.12.0.weight") == 12 and expert_of_key("gate.bias") is None
    with pytest.raises(ValueError, match="no expert index"):
        expert_of_key("experts.x.weight")


# ------------------------------------------------------------------ documentation


@pytest.mark.parametrize("module", [fedalign.rounds.driver, fedalign.rounds.aggregate])
def test_docstring_examples(module):
    results = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0


def test_rounds_page_code_runs(tmp_path, monkeypatch):
    """docs/rounds.md's python blocks run in order in one namespace (as the page reads)."""
    blocks = python_blocks((DOCS / "rounds.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "docs/rounds.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for start, source in blocks:
        assert ">>>" not in source, f"rounds.md line {start}: a doctest, not plain code"
        exec(compile(source, f"docs/rounds.md:{start}", "exec"), namespace)  # noqa: S102
    summary = namespace["summary"]
    assert isinstance(summary, RoundSummary) and summary.completed == [3, 4, 5]
    state = namespace["state"]
    assert all(np.isfinite(v).all() for v in state.values())  # type: ignore[attr-defined]


def test_an_inflated_sample_claim_does_not_own_the_average():
    """One of four clients claims 10**6 samples: its weight is bounded as the scheduler bounds
    its credit (10x the round's median claim), so the others still move the average."""
    sched = fa.Scheduler(1, solver="greedy", seed=0, max_experts=1)
    for c in "abcd":
        sched.register(c)
    driver = RoundDriver(sched)
    state = {"gate.w": np.zeros(2), "experts.0.w": np.zeros(2)}
    rnd = driver.open(list("abcd"), state)
    for c, value, samples in (("a", 100.0, 10**6), ("b", 0.0, 10), ("c", 0.0, 10), ("d", 0.0, 10)):
        arrays = {k: np.full(2, value) for k in rnd.keys(c)}
        rnd.complete(c, arrays, fa.Feedback(samples=samples, rewards={0: 0.5}))
    new, _ = rnd.close()
    # credited 10 x median(10, 10, 10, 10**6) = 100: weight 100 against 3 x 10
    np.testing.assert_allclose(new["experts.0.w"], 100.0 * 100 / 130)
