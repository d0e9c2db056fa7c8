"""AlignmentProblem: every argument's bad inputs, the normalised read-only arrays, properties.

Every bad input must raise ``InvalidProblemError`` (also a ``ValueError``) whose message
names the argument and, where there is one, the first offending position.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

import fedalign as fa
from fedalign import AlignmentProblem, InvalidProblemError
from strategies import infeasible_problems, problem_kwargs, problems

N, E = 3, 4


def base(**overrides: Any) -> dict[str, Any]:
    """A valid 3 x 4 problem's arguments, with ``overrides`` applied."""
    kw: dict[str, Any] = {"desirability": np.arange(N * E, dtype=float).reshape(N, E) / 10}
    kw.update(overrides)
    return kw


def nan_at(shape: tuple[int, ...], pos: tuple[int, ...], value: float = np.nan) -> np.ndarray:
    a = np.ones(shape)
    a[pos] = value
    return a


# (id, overrides, fragments the message must contain, in order)
BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    # desirability
    ("d-1d", {"desirability": [1.0, 2.0]}, ["desirability", "2-D"]),
    ("d-3d", {"desirability": np.ones((2, 2, 2))}, ["desirability", "3-D"]),
    ("d-scalar", {"desirability": 1.0}, ["desirability", "0-D"]),
    ("d-no-experts", {"desirability": np.ones((3, 0))}, ["desirability", "expert"]),
    ("d-text", {"desirability": [["a", "b"]]}, ["desirability", "numbers"]),
    ("d-ragged", {"desirability": [[1.0, 2.0], [1.0]]}, ["desirability"]),
    ("d-nan", {"desirability": nan_at((N, E), (1, 2))}, ["desirability[1, 2]", "finite"]),
    ("d-inf", {"desirability": nan_at((N, E), (2, 0), np.inf)}, ["desirability[2, 0]", "finite"]),
    ("d-neginf", {"desirability": nan_at((N, E), (0, 3), -np.inf)}, ["desirability[0, 3]"]),
    # max_experts
    ("maxe-neg", {"max_experts": [1, 2, -1]}, ["max_experts[2]", ">= 0"]),
    ("maxe-neg-scalar", {"max_experts": -1}, ["max_experts[0]", ">= 0"]),
    ("maxe-frac", {"max_experts": [1, 1.5, 1]}, ["max_experts[1]", "integer"]),
    ("maxe-frac-scalar", {"max_experts": 2.5}, ["max_experts[0]", "integer"]),
    ("maxe-nan", {"max_experts": [1, 1, np.nan]}, ["max_experts[2]", "integer"]),
    ("maxe-inf", {"max_experts": np.inf}, ["max_experts[0]", "integer"]),
    ("maxe-bool", {"max_experts": True}, ["max_experts", "bool"]),
    ("maxe-bools", {"max_experts": [True, False, True]}, ["max_experts", "bool"]),
    ("maxe-np-bool", {"max_experts": np.bool_(True)}, ["max_experts", "bool"]),
    ("maxe-shape", {"max_experts": [1, 2]}, ["max_experts", "(3,)"]),
    ("maxe-2d", {"max_experts": np.ones((N, 1), int)}, ["max_experts", "(3,)"]),
    ("maxe-text", {"max_experts": "many"}, ["max_experts", "integer"]),
    # min_experts
    ("mine-neg", {"min_experts": [0, -2, 0]}, ["min_experts[1]", ">= 0"]),
    ("mine-frac", {"min_experts": [0, 0, 0.5]}, ["min_experts[2]", "integer"]),
    ("mine-bool", {"min_experts": False}, ["min_experts", "bool"]),
    ("mine-shape", {"min_experts": [0, 0, 0, 0]}, ["min_experts", "(3,)"]),
    ("mine-above-max", {"max_experts": [2, 1, 3], "min_experts": [0, 2, 0]}, ["min_experts[1]", "max_experts[1]"]),
    ("mine-above-max-scalar", {"max_experts": 1, "min_experts": 2}, ["min_experts[0]", "max_experts[0]"]),
    # expert_memory / client_memory
    ("emem-alone", {"expert_memory": np.ones(E)}, ["expert_memory", "client_memory"]),
    ("cmem-alone", {"client_memory": np.ones(N)}, ["client_memory", "expert_memory"]),
    ("emem-shape", {"expert_memory": np.ones(E + 1), "client_memory": np.ones(N)}, ["expert_memory", "(4,)"]),
    ("emem-scalar", {"expert_memory": 1.0, "client_memory": np.ones(N)}, ["expert_memory", "(4,)"]),
    ("emem-neg", {"expert_memory": [1.0, 1.0, -0.5, 1.0], "client_memory": np.ones(N)}, ["expert_memory[2]", ">= 0"]),
    ("emem-nan", {"expert_memory": nan_at((E,), (3,)), "client_memory": np.ones(N)}, ["expert_memory[3]", "finite"]),
    ("cmem-shape", {"expert_memory": np.ones(E), "client_memory": np.ones(N + 2)}, ["client_memory", "(3,)"]),
    ("cmem-neg", {"expert_memory": np.ones(E), "client_memory": [1.0, -1.0, 1.0]}, ["client_memory[1]", ">= 0"]),
    ("cmem-inf", {"expert_memory": np.ones(E), "client_memory": nan_at((N,), (0,), np.inf)}, ["client_memory[0]", "finite"]),
    ("cmem-text", {"expert_memory": np.ones(E), "client_memory": ["x", "y", "z"]}, ["client_memory", "numbers"]),
    # train_time / deadline
    ("tt-alone", {"train_time": np.ones((N, E))}, ["train_time", "deadline"]),
    ("dl-alone", {"deadline": 5.0}, ["deadline", "train_time"]),
    ("tt-shape", {"train_time": np.ones((E, N)), "deadline": 5.0}, ["train_time", "(3, 4)"]),
    ("tt-neg", {"train_time": nan_at((N, E), (2, 1), -1.0), "deadline": 5.0}, ["train_time[2, 1]", ">= 0"]),
    ("tt-nan", {"train_time": nan_at((N, E), (0, 2)), "deadline": 5.0}, ["train_time[0, 2]", "finite"]),
    ("dl-zero", {"train_time": np.ones((N, E)), "deadline": 0.0}, ["deadline[0]", "> 0"]),
    ("dl-neg", {"train_time": np.ones((N, E)), "deadline": [1.0, 2.0, -3.0]}, ["deadline[2]", "> 0"]),
    ("dl-zero-vec", {"train_time": np.ones((N, E)), "deadline": [1.0, 0.0, 1.0]}, ["deadline[1]", "> 0"]),
    ("dl-nan", {"train_time": np.ones((N, E)), "deadline": [1.0, np.nan, 1.0]}, ["deadline[1]", "finite"]),
    ("dl-inf", {"train_time": np.ones((N, E)), "deadline": np.inf}, ["deadline", "finite"]),
    ("dl-shape", {"train_time": np.ones((N, E)), "deadline": [1.0, 2.0]}, ["deadline", "(3,)"]),
    # expert_min_clients / expert_max_clients
    ("emin-neg", {"expert_min_clients": [0, 0, -1, 0]}, ["expert_min_clients[2]", ">= 0"]),
    ("emin-frac", {"expert_min_clients": [0, 0.5, 0, 0]}, ["expert_min_clients[1]", "integer"]),
    ("emin-bool", {"expert_min_clients": True}, ["expert_min_clients", "bool"]),
    ("emin-shape", {"expert_min_clients": [0, 0, 0]}, ["expert_min_clients", "(4,)"]),
    ("emin-above-max", {"expert_min_clients": [0, 0, 0, 2], "expert_max_clients": [3, 3, 3, 1]}, ["expert_min_clients[3]", "expert_max_clients[3]"]),
    ("emin-above-n", {"expert_min_clients": [0, N + 1, 0, 0]}, ["expert_min_clients[1]", "expert_max_clients[1]"]),
    ("emax-neg", {"expert_max_clients": [1, -1, 1, 1]}, ["expert_max_clients[1]", ">= 0"]),
    ("emax-neg-scalar", {"expert_max_clients": -2}, ["expert_max_clients[0]", ">= 0"]),
    ("emax-frac", {"expert_max_clients": [1, 1, 1, 1.25]}, ["expert_max_clients[3]", "integer"]),
    ("emax-inf", {"expert_max_clients": [1, np.inf, 1, 1]}, ["expert_max_clients[1]", "integer"]),
    ("emax-bool", {"expert_max_clients": [True, True, True, True]}, ["expert_max_clients", "bool"]),
    ("emax-shape", {"expert_max_clients": [1, 1]}, ["expert_max_clients", "(4,)"]),
    # allowed
    ("allowed-shape", {"allowed": np.ones((N, E + 1), bool)}, ["allowed", "(3, 4)"]),
    ("allowed-1d", {"allowed": np.ones(E, bool)}, ["allowed", "(3, 4)"]),
    ("allowed-two", {"allowed": nan_at((N, E), (1, 3), 2.0)}, ["allowed[1, 3]"]),
    ("allowed-half", {"allowed": nan_at((N, E), (0, 1), 0.5)}, ["allowed[0, 1]"]),
    ("allowed-nan", {"allowed": nan_at((N, E), (2, 2))}, ["allowed[2, 2]"]),
    ("allowed-text", {"allowed": np.full((N, E), "yes")}, ["allowed"]),
    # ids
    ("cid-length", {"client_ids": ["a", "b"]}, ["client_ids", "3", "2"]),
    ("cid-dup", {"client_ids": ["a", "b", "a"]}, ["client_ids[2]", "duplicate", "'a'", "position 0"]),
    ("cid-dup-int", {"client_ids": [7, 8, 8]}, ["client_ids[2]", "duplicate", "position 1"]),
    ("cid-dup-equal", {"client_ids": [1, 1.0, 2]}, ["client_ids[1]", "duplicate"]),
    ("cid-unhashable", {"client_ids": ["a", ["b"], "c"]}, ["client_ids[1]", "hashable"]),
    ("cid-string", {"client_ids": "abc"}, ["client_ids", "string"]),
    ("cid-not-seq", {"client_ids": 3}, ["client_ids", "sequence"]),
    ("eid-length", {"expert_ids": [0, 1, 2, 3, 4]}, ["expert_ids", "4", "5"]),
    ("eid-dup", {"expert_ids": ["x", "y", "z", "y"]}, ["expert_ids[3]", "duplicate", "position 1"]),
    ("eid-unhashable", {"expert_ids": [{}, 1, 2, 3]}, ["expert_ids[0]", "hashable"]),
    ("eid-bytes", {"expert_ids": b"abcd"}, ["expert_ids", "string"]),
]


@pytest.mark.parametrize(("overrides", "fragments"), [pytest.param(o, f, id=i) for i, o, f in BAD])
def test_bad_argument_is_named(overrides: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(InvalidProblemError) as info:
        AlignmentProblem(**base(**overrides))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, fa.AlignmentError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # The message starts with the argument it is about.
    assert re.match(r"^[a-z_]+", message).group(0) == fragments[0].split("[")[0]


# Where the contract promises a position, the first bad one is named (not any later one).
@pytest.mark.parametrize(
    ("overrides", "position"),
    [
        ({"desirability": np.where(np.eye(N, E, k=1) > 0, np.nan, 1.0)}, "desirability[0, 1]"),
        ({"max_experts": [-1, -2, -3]}, "max_experts[0]"),
        ({"min_experts": [0, 0.5, 1.5]}, "min_experts[1]"),
        (
            {"expert_memory": [1.0, -1.0, -2.0, 1.0], "client_memory": np.ones(N)},
            "expert_memory[1]",
        ),
        ({"train_time": -np.ones((N, E)), "deadline": 1.0}, "train_time[0, 0]"),
        ({"client_ids": ["a", "a", "a"]}, "client_ids[1]"),
    ],
)
def test_first_bad_position_is_named(overrides: dict[str, Any], position: str) -> None:
    with pytest.raises(InvalidProblemError, match=re.escape(position)):
        AlignmentProblem(**base(**overrides))


def test_valid_inputs_in_every_form() -> None:
    """Scalars broadcast, lists and tuples work, 0/1 ``allowed`` works, integer floats work."""
    p = AlignmentProblem(
        [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 0, 0]],
        max_experts=(2, 3.0, 4),
        min_experts=np.int8(1),
        expert_memory=[1, 2, 3, 4],
        client_memory=(5, 5, 10.5),
        train_time=np.ones((N, E), dtype=np.float32),
        deadline=7,
        expert_min_clients=1,
        expert_max_clients=np.array([3, 2, 2, 1]),
        allowed=np.ones((N, E), dtype=np.int64),
        client_ids=np.array([10, 20, 30]),
        expert_ids=("a", ("b", 1), 3.5, None),
    )
    assert p.desirability.dtype == np.float64 and p.desirability.shape == (N, E)
    assert p.max_experts.tolist() == [2, 3, 4] and p.max_experts.dtype == np.int64
    assert p.min_experts.tolist() == [1, 1, 1]
    assert p.deadline is not None and p.deadline.tolist() == [7.0, 7.0, 7.0]
    assert p.train_time is not None and p.train_time.dtype == np.float64
    assert p.expert_min_clients.tolist() == [1, 1, 1, 1]
    assert p.allowed.dtype == bool and p.allowed.all()
    assert p.client_ids == (10, 20, 30) and all(type(c) is int for c in p.client_ids)
    assert p.expert_ids == ("a", ("b", 1), 3.5, None)


def test_defaults() -> None:
    p = AlignmentProblem(np.zeros((N, E)))
    assert p.max_experts.tolist() == [1] * N
    assert p.min_experts.tolist() == [0] * N
    assert p.expert_min_clients.tolist() == [0] * E
    assert p.expert_max_clients.tolist() == [N] * E
    assert p.allowed.all()
    assert p.client_ids == tuple(range(N)) and p.expert_ids == tuple(range(E))
    assert p.expert_memory is None and p.client_memory is None
    assert p.train_time is None and p.deadline is None
    assert not p.has_memory and not p.has_deadline and not p.has_knapsack


def test_expert_max_clients_is_capped_at_n_clients() -> None:
    p = AlignmentProblem(np.zeros((N, E)), expert_max_clients=[0, 2, 3, 100])
    assert p.expert_max_clients.tolist() == [0, 2, 3, N]


def test_zero_clients_is_valid() -> None:
    p = AlignmentProblem(np.zeros((0, E)), max_experts=2, expert_max_clients=5)
    assert p.shape == (0, E) and p.n_clients == 0 and p.n_experts == E
    assert p.expert_max_clients.tolist() == [0] * E
    assert p.infeasibility_reason() is None


def test_arrays_are_read_only_copies() -> None:
    d = np.ones((N, E))
    mem = np.ones(E)
    p = AlignmentProblem(d, expert_memory=mem, client_memory=np.ones(N), train_time=np.ones((N, E)), deadline=1.0)
    d[0, 0] = 99.0
    mem[0] = 99.0
    assert p.desirability[0, 0] == 1.0 and p.expert_memory is not None and p.expert_memory[0] == 1.0
    arrays = [
        p.desirability, p.max_experts, p.min_experts, p.expert_memory, p.client_memory,
        p.train_time, p.deadline, p.expert_min_clients, p.expert_max_clients, p.allowed, p.fits,
    ]  # fmt: skip
    for arr in arrays:
        assert arr is not None
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr.ravel()[0] = arr.ravel()[0]


def test_fits_combines_allowed_memory_and_deadline() -> None:
    p = AlignmentProblem(
        np.zeros((2, 3)),
        expert_memory=[1.0, 2.0, 3.0],
        client_memory=[2.0, 3.0],
        train_time=[[1.0, 1.0, 1.0], [5.0, 1.0, 1.0]],
        deadline=[4.0, 4.0],
        allowed=[[True, True, True], [True, False, True]],
    )
    assert p.fits.tolist() == [[True, True, False], [False, False, True]]
    assert p.has_memory and p.has_deadline and p.has_knapsack


def test_positions_and_objective() -> None:
    p = AlignmentProblem(
        [[0.5, -1.0], [2.0, 0.25]], client_ids=["a", "b"], expert_ids=[("e", 0), ("e", 1)]
    )
    assert p.client_position("b") == 1 and p.expert_position(("e", 0)) == 0
    with pytest.raises(KeyError):
        p.client_position("z")
    assert p.objective([[1, 1], [0, 1]]) == pytest.approx(-0.25)
    assert p.objective(np.zeros((2, 2), bool)) == 0.0
    assert "n_clients=2" in repr(p) and "n_experts=2" in repr(p)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"min_experts": [0, 0, 2], "max_experts": 2, "allowed": np.eye(N, E, dtype=bool)}, "min_experts: client 2"),
        ({"max_experts": 1, "expert_min_clients": [1, 1, 1, 1]}, "expert_min_clients"),
        ({"min_experts": 1, "expert_max_clients": [1, 1, 0, 0]}, "min_experts"),
        (
            {"min_experts": [0, 2, 0], "max_experts": 2, "expert_memory": [1.0, 2.0, 3.0, 4.0], "client_memory": [9.0, 2.5, 9.0]},
            "memory: client 1",
        ),
        (
            {"min_experts": [2, 0, 0], "max_experts": 2, "train_time": 1.5 * np.ones((N, E)), "deadline": [2.0, 9.0, 9.0]},
            "deadline: client 0",
        ),
    ],
)
def test_infeasibility_reason_names_the_constraint(overrides: dict[str, Any], fragment: str) -> None:
    reason = AlignmentProblem(**base(**overrides)).infeasibility_reason()
    assert reason is not None and fragment in reason


@settings(max_examples=40)
@given(infeasible_problems(reasons=("min_above_allowed", "expert_slots", "memory", "deadline", "seats")))
def test_infeasibility_reason_catches_counting_arguments(problem: AlignmentProblem) -> None:
    assert problem.infeasibility_reason() is not None


@settings(max_examples=60)
@given(problem_kwargs(min_clients=1, max_clients=6, max_experts=5, max_pairs=30))
def test_to_dict_round_trips(kwargs: dict[str, Any]) -> None:
    p = AlignmentProblem(**kwargs)
    q = AlignmentProblem(**p.to_dict())
    assert q.to_dict() == p.to_dict()
    for field in ("desirability", "max_experts", "min_experts", "expert_min_clients", "expert_max_clients", "allowed", "fits"):
        np.testing.assert_array_equal(getattr(q, field), getattr(p, field))
    assert q.client_ids == p.client_ids and q.expert_ids == p.expert_ids


@settings(max_examples=40)
@given(problems(max_clients=5, max_experts=5, max_pairs=25))
def test_properties_are_consistent(p: AlignmentProblem) -> None:
    n, e = p.shape
    assert (p.n_clients, p.n_experts) == (n, e)
    assert p.fits.shape == (n, e) and not (p.fits & ~p.allowed).any()
    assert (p.min_experts <= p.max_experts).all()
    assert (p.expert_min_clients <= p.expert_max_clients).all()
    # Capped at n, but never below the minimum (an over-demanding minimum stays infeasible).
    assert (p.expert_max_clients <= np.maximum(n, p.expert_min_clients)).all()
    assert p.has_knapsack == (p.has_memory or p.has_deadline)
    assert len(p.client_ids) == n and len(set(map(repr, p.client_ids))) == n


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_experts": ["1", "2", "1"]},
        {"expert_min_clients": np.array(["0"] * E)},
        {"deadline": "5", "train_time": np.ones((N, E))},
        {"desirability": [[0.5, "1", 0.0, 0.0]] * N},
    ],
)
def test_numbers_given_as_text_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidProblemError, match=r"got text"):
        AlignmentProblem(**base(**overrides))


def test_to_dict_round_trips_with_no_clients() -> None:
    p = AlignmentProblem(np.zeros((0, 3)), expert_ids=["a", "b", "c"], expert_memory=np.ones(3),
                         client_memory=np.zeros(0))
    q = AlignmentProblem(**p.to_dict())
    assert q.shape == (0, 3)
    assert q.to_dict() == p.to_dict()


# --------------------------------------------------------------------------- from_dict


@settings(max_examples=60)
@given(problems(json_ids=True))
def test_from_dict_round_trips_through_json(p: AlignmentProblem) -> None:
    import json

    data = json.loads(json.dumps(p.to_dict()))
    q = AlignmentProblem.from_dict(data)
    assert q.to_dict() == p.to_dict()
    assert q.client_ids == p.client_ids and q.expert_ids == p.expert_ids  # ids as given


def test_from_dict_keeps_ids_as_given_and_none_means_default() -> None:
    q = AlignmentProblem.from_dict(
        {
            "desirability": [[1, 2], [3, 4]],
            "client_ids": [7, "b"],
            "expert_ids": ["x", 3],
            "max_experts": None,
            "expert_max_clients": None,
            "allowed": [[True, 0], [1, False]],
        }
    )
    assert q.client_ids == (7, "b") and q.expert_ids == ("x", 3)
    assert q.max_experts.tolist() == [1, 1] and q.expert_max_clients.tolist() == [2, 2]
    assert q.allowed.tolist() == [[True, False], [True, False]]


def test_from_dict_accepts_numpy_values() -> None:
    q = AlignmentProblem.from_dict({"desirability": np.ones((2, 3)), "max_experts": np.int64(2)})
    assert q.shape == (2, 3) and q.max_experts.tolist() == [2, 2]


# (data, fragments the message must contain)
BAD_DICTS: list[tuple[Any, list[str]]] = [
    ([[1.0]], ["data", "mapping", "an array"]),
    ({}, ["desirability", "missing"]),
    ({"desirability": None}, ["desirability", "missing"]),
    ({"desirability": [[1]], "max_expert": 2}, ["max_expert", "unknown field", "max_experts"]),
    ({"desirability": [[1, "x"]]}, ["desirability[0, 1]", "number", "a string"]),
    ({"desirability": [[1, True]]}, ["desirability[0, 1]", "number", "a boolean"]),
    ({"desirability": [[1, None]]}, ["desirability[0, 1]", "null"]),
    ({"desirability": [[1, {}]]}, ["desirability[0, 1]", "an object"]),
    ({"desirability": [[1], [1, 2]]}, ["desirability"]),
    ({"desirability": [[1, 2]], "max_experts": "2"}, ["max_experts", "a string"]),
    ({"desirability": [[1, 2]], "max_experts": True}, ["max_experts", "a boolean"]),
    ({"desirability": [[1, 2]], "deadline": [False], "train_time": [[1, 1]]}, ["deadline[0]"]),
    ({"desirability": [[1, 2]], "allowed": [["y", "n"]]}, ["allowed[0, 0]", "boolean or 0/1"]),
    ({"desirability": [[1, 2]], "allowed": [[1, 2]]}, ["allowed[0, 1]"]),
    ({"desirability": [[1, 2]], "max_experts": -1}, ["max_experts[0]", ">= 0"]),
    ({"desirability": [[1], [2]], "client_ids": ["a", "a"]}, ["client_ids[1]", "duplicate id"]),
    ({"desirability": [[1], [2]], "client_ids": [1, "1"]}, ["client_ids[1]", "same JSON key", "0"]),
    ({"desirability": [[1], [2]], "client_ids": ["a", 1.5]}, ["client_ids[1]", "strings or integers"]),
    ({"desirability": [[1], [2]], "client_ids": ["a", True]}, ["client_ids[1]", "a boolean"]),
    ({"desirability": [[1, 2]], "expert_ids": [[1], [2]]}, ["expert_ids[0]", "an array"]),
    ({"desirability": [[1, 2]], "expert_ids": "ab"}, ["expert_ids", "array of strings"]),
    ({"desirability": [[1, 2]], "client_ids": ["a", "b"]}, ["client_ids", "expected 1 ids"]),
]


@pytest.mark.parametrize(("data", "fragments"), BAD_DICTS, ids=[str(k) for k in range(len(BAD_DICTS))])
def test_from_dict_refuses_with_the_field_named(data: Any, fragments: list[str]) -> None:
    with pytest.raises(InvalidProblemError) as info:
        AlignmentProblem.from_dict(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
