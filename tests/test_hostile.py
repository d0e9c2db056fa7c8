"""The hostile-input suite: every public entry point, fed anything, answers with its documented
error class -- never another exception, never a warning, never a hang -- and a refused call
changes nothing.

Each test draws hostile values from ``tests/hostile_strategies.py`` (numbers of every kind
and magnitude, shapes and nestings, ids, feedback, state files) into one entry point:

=============================  =========================================================
entry point                    documented errors
=============================  =========================================================
``AlignmentProblem(...)``      ``InvalidProblemError``
``Row(...)``                   ``InvalidProblemError``
``AlignmentProblem.from_dict`` ``InvalidProblemError``
``solve``'s own arguments      ``ValueError`` / ``TypeError`` (plain call mistakes)
``Feedback(...)``              ``InvalidFeedbackError``
``ClientProfile(...)``         ``ValueError`` / ``TypeError``
``Scheduler`` methods          their docstrings' classes (``report``: ``InvalidFeedbackError``)
``Scheduler.load``             ``InvalidStateError`` (state files flipped, truncated)
``load_state_dict``            ``InvalidStateError``
``fedalign solve``             exit 2 and exactly one line on stderr
=============================  =========================================================

Warnings are errors inside every call (``no_warnings``; fedalign's advisory ``HerdingWarning``
aside): a numpy RuntimeWarning escaping a
validation path fails the test. The ``ci`` Hypothesis profile keeps the suite's examples
fixed; ``HYPOTHESIS_PROFILE=thorough`` runs ten times as many.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign.cli import main
from hostile_strategies import arrays, feedbacks, ids, numbers, reseal
from strategies import problem_kwargs

SOLVER = "greedy"


def examples(n: int) -> settings:
    """``n`` examples under the default (``ci``) profile, scaled with the profile loaded
    (``thorough`` runs ten times as many)."""
    return settings(
        max_examples=max(1, n * settings.default.max_examples // 100),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", fa.HerdingWarning)  # advice the scheduler documents
        yield


def outcome(call: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> BaseException | None:
    """Run ``call``: return None on success, the exception if it is of an ``allowed`` class;
    anything else (another exception, a warning) fails the test."""
    try:
        with no_warnings():
            call()
    except allowed as exc:
        return exc
    return None


# --------------------------------------------------------------------------- problems

FIELDS = ["desirability", "max_experts", "min_experts", "expert_memory", "client_memory",
          "train_time", "deadline", "expert_min_clients", "expert_max_clients", "allowed",
          "rows", "client_ids", "expert_ids"]
PARTNERS = {"expert_memory": "client_memory", "client_memory": "expert_memory",
            "train_time": "deadline", "deadline": "train_time"}


@examples(300)
@given(base=problem_kwargs(max_clients=3, max_experts=3), field=st.sampled_from(FIELDS), data=st.data())
def test_problem_fields_answer_with_invalid_problem(base: dict[str, Any], field: str, data: st.DataObject) -> None:
    kwargs = dict(base)
    n, e = np.shape(kwargs["desirability"])
    shape = {"desirability": (n, e), "train_time": (n, e), "allowed": (n, e), "expert_memory": (e,),
             "client_memory": (n,), "expert_min_clients": (e,), "expert_max_clients": (e,)}.get(field, (n,))
    if field in ("client_ids", "expert_ids"):
        value = data.draw(ids())
    elif field == "rows":
        value = data.draw(st.one_of(arrays(), st.lists(st.one_of(numbers(), st.just(fa.Row("r", "total", 1, upper=1))), max_size=2)))
    else:
        value = data.draw(st.one_of(numbers(), arrays(shape)))
    kwargs[field] = value
    partner = PARTNERS.get(field)
    if partner is not None and kwargs.get(partner) is None:  # give the pair, so the value is read
        kwargs[partner] = {"client_memory": np.ones(n), "expert_memory": np.ones(e),
                           "deadline": 1.0, "train_time": np.ones((n, e))}[partner]
    desirability = kwargs.pop("desirability")
    outcome(lambda: fa.AlignmentProblem(desirability, **kwargs), (fa.InvalidProblemError,))


@examples(200)
@given(
    name=st.one_of(st.text(max_size=3), numbers()),
    over=st.one_of(st.sampled_from(["client", "expert", "total"]), numbers()),
    weight=st.one_of(numbers(), arrays()),
    lower=st.one_of(st.none(), numbers(), arrays()),
    upper=st.one_of(st.none(), numbers(), arrays()),
    penalty=st.one_of(st.none(), numbers(), arrays()),
)
def test_rows_answer_with_invalid_problem(name: Any, over: Any, weight: Any, lower: Any, upper: Any, penalty: Any) -> None:
    def build() -> None:
        row = fa.Row(name, over, weight, lower=lower, upper=upper, penalty=penalty)
        fa.AlignmentProblem(np.ones((2, 3)), rows=[row])

    outcome(build, (fa.InvalidProblemError,))


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4),
              st.sampled_from([10**400, 1e308, -0.0])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)
_KEYS = st.sampled_from([*FIELDS, "max_expert", "", "rows"])


@examples(300)
@given(
    doc=st.one_of(
        st.dictionaries(_KEYS, _JSON, max_size=4),
        st.fixed_dictionaries({"desirability": st.one_of(_JSON, st.just([[0.5, 0.1], [0.2, 0.9]]))},
                              optional={k: _JSON for k in FIELDS[1:]}),
        _JSON,
    )
)
def test_from_dict_answers_with_invalid_problem(doc: Any) -> None:
    outcome(lambda: fa.AlignmentProblem.from_dict(doc), (fa.InvalidProblemError,))


@examples(100)
@given(
    solver=st.one_of(st.just(SOLVER), st.text(max_size=4), numbers()),
    time_limit=st.one_of(st.none(), numbers()),
    seed=st.one_of(st.none(), numbers()),
)
def test_solve_arguments_answer_with_value_or_type_errors(solver: Any, time_limit: Any, seed: Any) -> None:
    problem = fa.AlignmentProblem([[0.5, 0.1], [0.2, 0.9]])
    outcome(lambda: fa.solve(problem, solver, time_limit=time_limit, seed=seed),
            (ValueError, TypeError, fa.SolverUnavailableError))


# --------------------------------------------------------------------------- feedback and profiles


@examples(300)
@given(kwargs=feedbacks([0, 1, "x"]))
def test_feedback_answers_with_invalid_feedback(kwargs: dict[str, Any]) -> None:
    outcome(lambda: fa.Feedback(**kwargs), (fa.InvalidFeedbackError,))


PROFILE_FIELDS = ["memory", "compute", "bandwidth_up", "bandwidth_down", "latency", "max_experts",
                  "availability", "samples"]


@examples(200)
@given(values=st.dictionaries(st.sampled_from(PROFILE_FIELDS), numbers(), max_size=3))
def test_client_profile_answers_with_value_or_type_error(values: dict[str, Any]) -> None:
    outcome(lambda: fa.ClientProfile(**values), (ValueError, TypeError))


# --------------------------------------------------------------------------- the scheduler


def snapshot(s: fa.Scheduler) -> dict[str, Any]:
    """Everything a scheduler holds, comparable with ``==`` after ``_freeze``."""
    op = s._open
    return _freeze({
        "ids": list(s._ids),
        "fit": s._fit.state_dict(),
        "use": s._use.state_dict(),
        "prof": s._prof.state_dict(),
        "open": None if op is None else {"round": op.round, **op.arrays()},
        "last": s._last_round,
        "rng": s._rng.bit_generator.state,
    })


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, list):
        return [repr(v) for v in value]  # ids: NaN != NaN, so compare their reprs
    return value


#: What each scheduler method documents it raises.
DOCUMENTED: dict[str, tuple[type[BaseException], ...]] = {
    "register": (TypeError, ValueError),
    "register_many": (TypeError, ValueError),
    "plan": (KeyError, TypeError, ValueError, fa.InfeasibleError, fa.UnsupportedProblemError),
    "build_problem": (KeyError, TypeError, ValueError),
    "report": (fa.InvalidFeedbackError,),
    "end_round": (),
}


def _operation(data: st.DataObject, s: fa.Scheduler) -> tuple[str, Callable[[], Any]]:
    """One drawn call of a scheduler method, with plausible or hostile arguments."""
    draw = data.draw
    known = s.client_ids
    client = st.one_of(st.sampled_from(known), numbers(), st.sampled_from([[1], {"a": 1}, "new"])) if known else numbers()
    name = draw(st.sampled_from(["register", "register_many", "plan", "plan", "build_problem",
                                 "report", "report", "report", "end_round"]))
    if name == "register":
        cid = draw(st.one_of(st.integers(0, 30), client))
        profile = draw(st.one_of(st.none(), st.builds(fa.ClientProfile, samples=st.integers(0, 10**4),
                                                      memory=st.floats(0, 4),
                                                      compute=st.one_of(st.none(), st.floats(1e-3, 1e6))),
                                 numbers()))
        shares = draw(st.one_of(st.none(), st.none(), arrays((s.n_experts,))))
        return name, lambda: s.register(cid, profile, routing_shares=shares)
    if name == "register_many":
        new = draw(st.one_of(st.lists(st.integers(100, 130), max_size=3), ids(), numbers()))
        profile = draw(st.one_of(st.none(), numbers(), st.lists(st.just(fa.ClientProfile()), max_size=3)))
        shares = draw(st.one_of(st.none(), st.none(), arrays()))
        return name, lambda: s.register_many(new, profile, routing_shares=shares)
    if name in ("plan", "build_problem"):
        cohort = draw(st.one_of(st.lists(st.sampled_from(known), min_size=1, max_size=4, unique=True) if known else st.just([]),
                                ids(), numbers()))
        allowed = draw(st.one_of(st.none(), st.none(), arrays((len(cohort) if isinstance(cohort, list) else 1, s.n_experts))))
        measured = st.builds(fa.ClientProfile, bandwidth_down=st.one_of(st.none(), st.floats(1e-3, 1e12)),
                             compute=st.one_of(st.none(), st.floats(1e-3, 1e6)))
        conditions = draw(st.one_of(
            st.none(), st.none(),
            st.dictionaries(st.sampled_from(cohort) if isinstance(cohort, list) and cohort else st.integers(0, 9),
                            measured, max_size=2),
            st.dictionaries(st.one_of(st.integers(), st.text(max_size=2), st.just((1, 2))),
                            st.one_of(measured, numbers()), max_size=2),
            numbers(),
        ))
        if name == "build_problem":
            return name, lambda: s.build_problem(cohort, allowed=allowed, conditions=conditions)
        rnd = draw(st.one_of(st.none(), st.none(), numbers()))
        return name, lambda: s.plan(cohort, rnd, allowed=allowed, conditions=conditions)
    if name == "report":
        cid = draw(client)
        experts = list(s.expert_ids)
        kwargs = draw(feedbacks(experts))
        rnd = draw(st.one_of(st.none(), st.none(), st.just(s.round), numbers()))
        if draw(st.booleans()):  # the largest claims a Feedback takes, often
            kwargs["samples"] = draw(st.sampled_from([2**53, 2**53 - 1, 10**15]))

        def report() -> None:
            try:
                feedback = fa.Feedback(**kwargs)
            except fa.InvalidFeedbackError:
                return
            s.report(cid, feedback, round=rnd)

        return name, report
    return name, s.end_round


@examples(60)
@given(data=st.data())
def test_scheduler_methods_answer_as_documented_and_refusals_change_nothing(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    s = fa.Scheduler(3, solver=SOLVER, seed=0, expert_max_clients=3, expert_memory=1.0,
                     deadline_percentile=90)
    s.register_many(range(3), fa.ClientProfile(samples=64, memory=2.0, compute=100.0))
    s.register_many(range(3, 6), fa.ClientProfile(samples=64, memory=2.0))
    for _ in range(data.draw(st.integers(4, 10))):
        name, call = _operation(data, s)
        before = snapshot(s)
        exc = outcome(call, DOCUMENTED[name])
        if exc is not None:
            assert snapshot(s) == before, f"{name} raised {exc!r} and changed the scheduler"
        # whatever came before, the state stays finite and sane, and the scheduler plans
        assert np.isfinite(s.usage).all() and (s.usage >= 0).all() and s.usage.max(initial=0) <= 1e300
        fit = s.fitness
        assert np.isfinite(fit).all() and (fit >= 0).all() and (fit <= 1).all()
    savable = all(type(c) in (int, str) for c in s.client_ids)
    if savable and s.n_clients:
        path = tmp_path_factory.mktemp("hostile") / "s.fas"
        with no_warnings():
            s.save(path)
            t = fa.Scheduler.load(path)
            t.end_round()
            t.plan(t.client_ids[:4])


# --------------------------------------------------------------------------- state files


def _golden(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    s = fa.Scheduler(3, solver=SOLVER, seed=0, expert_memory=1.0, deadline_percentile=80)
    s.register_many(range(5), fa.ClientProfile(samples=32, compute=50.0, memory=2.0))
    for _ in range(2):
        plan = s.plan(range(5))
        for c, experts in plan.assignment.items():
            s.report(c, fa.Feedback(samples=32, rewards={j: 0.5 for j in experts}, duration=1.0))
        s.end_round()
    plan = s.plan(range(5))
    s.report(1, fa.Feedback(samples=3, rewards={j: 0.9 for j in plan.assignment[1]}))
    path = tmp_path_factory.mktemp("golden") / "s.fas"
    s.save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _golden(tmp_path_factory)


@examples(150)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**9)),
    seal=st.booleans(),
)
def test_damaged_state_files_load_or_raise_invalid_state(
    golden: bytes, tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], cut: int | None, seal: bool
) -> None:
    """Random byte flips and truncations, with the checksum recomputed (so the payload's
    contents are what is tested) or not: the load succeeds or raises InvalidStateError."""
    raw = bytearray(golden)
    for pos, mask in flips:
        raw[pos % len(raw)] ^= mask
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    data = reseal(bytes(raw)) if seal else bytes(raw)
    path = tmp_path_factory.mktemp("damaged") / "s.fas"
    path.write_bytes(data)
    exc = outcome(lambda: fa.Scheduler.load(path).plan(range(5)), (fa.InvalidStateError, fa.InfeasibleError))
    if not seal and bytes(raw) != golden:
        assert isinstance(exc, fa.InvalidStateError)


_MUTATIONS = st.one_of(numbers(), arrays(), st.sampled_from([None, {}, [], "x", {"a": 1}]))


@examples(150)
@given(data=st.data())
def test_load_state_dict_answers_with_invalid_state_and_changes_nothing(
    golden: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("state") / "s.fas"
    path.write_bytes(golden)
    target = fa.Scheduler.load(path)
    state = copy.deepcopy(target.state_dict())
    where = data.draw(st.sampled_from(["arrays", "scalars", "settings", "rng", "top", "ids"]))
    if where == "arrays":
        key = data.draw(st.sampled_from(sorted(state["arrays"])))
        arr = np.array(state["arrays"][key])
        if arr.size and data.draw(st.booleans()):
            value = data.draw(numbers())
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):  # the test's own cast
                    warnings.simplefilter("ignore")
                    arr.ravel()[data.draw(st.integers(0, arr.size - 1))] = value
                state["arrays"][key] = arr
            except (TypeError, ValueError, OverflowError):
                state["arrays"][key] = value
        else:
            state["arrays"][key] = data.draw(_MUTATIONS)
    elif where == "ids":
        state["client_ids"] = data.draw(st.one_of(ids(), _MUTATIONS))
    elif where == "top":
        state[data.draw(st.sampled_from(sorted(state)))] = data.draw(_MUTATIONS)
    else:
        part = state[where]
        key = data.draw(st.sampled_from(sorted(part))) if isinstance(part, dict) and part else None
        if key is None:
            state[where] = data.draw(_MUTATIONS)
        else:
            part[key] = data.draw(_MUTATIONS)
    before = snapshot(target)
    exc = outcome(lambda: target.load_state_dict(state), (fa.InvalidStateError,))
    if exc is not None:
        assert snapshot(target) == before


# --------------------------------------------------------------------------- the command line


@examples(60)
@given(
    doc=st.one_of(
        _JSON,
        st.fixed_dictionaries({"desirability": st.one_of(_JSON, st.just([[0.5, 0.1]]))},
                              optional={k: _JSON for k in FIELDS[1:]}),
        st.text(max_size=20),
        st.sampled_from(['{"desirability": ' + "[" * 5000 + "]" * 5000 + "}",
                         '{"desirability": [[1' + "0" * 5000 + "]]}"]),
    ),
    seed=st.one_of(st.none(), st.integers(-3, 3).map(str), st.sampled_from(["x", "1e3", "99999999999999999999"])),
)
def test_cli_bad_input_is_exit_2_and_one_line(
    tmp_path_factory: pytest.TempPathFactory, doc: Any, seed: str | None
) -> None:
    path = tmp_path_factory.mktemp("cli") / "p.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    argv = ["solve", str(path), "--solver", SOLVER] + ([] if seed is None else ["--seed", seed])
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    with redirect_stdout(out), redirect_stderr(err), no_warnings():
        try:
            code = main(argv)
        finally:
            sys.stdout, sys.stderr = saved
    text = err.getvalue()
    assert code in (0, 1, 2), (code, text)
    if code != 0:
        assert text.count("\n") == 1 and "Traceback" not in text and "this is a bug" not in text, text
    if code == 2:
        assert out.getvalue() == ""
    if code == 0:
        json.loads(out.getvalue())


def test_outcome_rejects_undocumented_errors() -> None:
    """The harness itself: another class, or a warning, is a failure."""
    with pytest.raises(ZeroDivisionError):
        outcome(lambda: 1 / 0, (ValueError,))
    with pytest.raises(RuntimeWarning):
        outcome(lambda: np.float64(1e308) * 10, (ValueError,))
    assert isinstance(outcome(lambda: int("x"), (ValueError,)), ValueError)
    assert Path(__file__).name == "test_hostile.py"
