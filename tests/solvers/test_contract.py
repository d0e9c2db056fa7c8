"""The solver contract, run over every registered solver (optuna's habit: one suite, all samplers).

A new solver needs no new test code: it registers itself and this module parametrises over
``registered_solvers()``. Solvers whose optional dependency is missing are skipped with the
reason. What every solver must do:

* return a feasible assignment (``check`` is empty) or raise; its objective is the sum of
  desirabilities over the assignment; a bound, when given, is at least the objective and at
  least the brute-force optimum; status ``"optimal"`` only when it is optimal;
* raise ``UnsupportedProblemError`` exactly when ``unsupported_reason`` says it cannot;
* raise ``InfeasibleError`` on every provably infeasible problem;
* succeed on problems with slack (no minimums, or at most one expert per client required);
* if ``exact``: equal brute force on tiny problems and never call a feasible one infeasible;
* reproduce its assignment under the same seed, and return under a short time limit;
* give a consistent Solution API (gap, status, experts_of, to_dict with ids);
* do all of the above on problems with rows given as ``fa.Row`` (client, weighted expert
  and total rows, hard or soft) whenever it declares support for them, and refuse them with
  ``UnsupportedProblemError`` otherwise;
* keep all of it under a warm start (``warm_start=`` an earlier Solution): from the same
  problem, a related one (the next round: clients reordered and renamed, desirability
  drifted) or an unrelated one (any shape, ids and rows), whichever solver produced it,
  even with its stored prices garbled: never a bound below the brute-force optimum, never
  an infeasible plan, never an error other than the contract's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import fedalign as fa
from fedalign.solvers import get_solver, registered_solvers
from strategies import (
    brute_force,
    describe,
    feasible_problems,
    infeasible_problems,
    objective_tolerance,
    problems,
    row_problems,
    warm_pairs,
)

SOLVERS = registered_solvers()

# Sizes: tiny problems are enumerated by brute force; moderate ones are the ~60 x 10 cohort.
TINY = {"max_clients": 4, "max_experts": 4, "max_pairs": 12}
MODERATE = {
    "min_clients": 20,
    "max_clients": 60,
    "min_experts": 4,
    "max_experts": 10,
    "max_pairs": None,
}



def examples(n: int) -> settings:
    """``n`` examples under the default ``ci`` profile, scaled with the loaded profile's
    ``max_examples`` (``HYPOTHESIS_PROFILE=thorough`` runs ten times as many)."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 100))


# Example counts keep this module near a minute on two cores for the full solver set.
FEW = examples(12)
SOME = examples(30)


@dataclass
class Outcome:
    """What one solve call did: a solution, or the error it raised on purpose."""

    solution: fa.Solution | None = None
    infeasible: fa.InfeasibleError | None = None
    unsupported: fa.UnsupportedProblemError | None = None


def _param(solver: str) -> object:
    """A parameter for one solver, skipped with the reason when it cannot run here."""
    try:
        get_solver(solver)
    except fa.SolverUnavailableError as exc:
        return pytest.param(solver, marks=pytest.mark.skip(reason=str(exc)))
    return pytest.param(solver)


# Every test in this module runs once per registered solver.
pytestmark = pytest.mark.parametrize("name", [_param(s) for s in SOLVERS])


def _note(text: str) -> None:
    """Hypothesis' ``note`` inside a property test; nothing in a plain one."""
    try:
        note(text)
    except InvalidArgument:
        pass


def run(name: str, problem: fa.AlignmentProblem, **kwargs: object) -> Outcome:
    """Solve and classify the outcome; checks the Unsupported contract on the way."""
    _note(describe(problem))
    reason = get_solver(name).unsupported_reason(problem)
    try:
        solution = fa.solve(problem, name, **kwargs)
    except fa.UnsupportedProblemError as exc:
        assert reason is not None, (
            f"{name} raised UnsupportedProblemError ({exc}) but unsupported_reason() is None"
        )
        return Outcome(unsupported=exc)
    except fa.InfeasibleError as exc:
        assert reason is None, f"{name}: unsupported_reason() is {reason!r} but it did not refuse"
        return Outcome(infeasible=exc)
    assert reason is None, f"{name}: unsupported_reason() is {reason!r} but it solved anyway"
    assert_valid_solution(name, problem, solution)
    return Outcome(solution=solution)


def assert_valid_solution(name: str, problem: fa.AlignmentProblem, sol: fa.Solution) -> None:
    """Feasibility, objective, bound, status and the Solution API."""
    x = sol.assignment
    assert isinstance(x, np.ndarray) and x.dtype == bool and x.shape == problem.shape
    assert fa.check(problem, x) == []
    assert not x.flags.writeable, "Solution.assignment must be read-only"
    tol = objective_tolerance(problem)
    assert sol.objective == pytest.approx(problem.objective(x), abs=1e-9 + tol * 1e-3)
    assert sol.status in {"optimal", "feasible"}
    if sol.bound is None:
        assert sol.gap is None
    else:
        assert np.isfinite(sol.bound)
        assert sol.bound >= sol.objective - tol, f"bound {sol.bound} < objective {sol.objective}"
        expected_gap = max(0.0, (sol.bound - sol.objective) / max(1.0, abs(sol.bound)))
        assert sol.gap == pytest.approx(expected_gap)
        assert sol.gap >= 0.0
    if name == "auto":
        assert sol.solver in registered_solvers() and sol.solver != "auto"
    else:
        assert sol.solver == name
    assert isinstance(sol.runtime, float) and np.isfinite(sol.runtime) and sol.runtime >= 0.0
    for i in range(problem.n_clients):
        assert sol.experts_of(i) == np.flatnonzero(x[i]).tolist()
    mapping = sol.to_dict()
    assert list(mapping) == list(problem.client_ids)
    for i, cid in enumerate(problem.client_ids):
        assert mapping[cid] == [problem.expert_ids[j] for j in np.flatnonzero(x[i])]


# --------------------------------------------------------------------------- tiny: brute force


def assert_agrees_with_brute_force(name: str, problem: fa.AlignmentProblem, **kwargs: object) -> None:
    """Objective <= optimum <= bound; "optimal" means optimal; infeasible means infeasible."""
    bf = brute_force(problem)
    note(f"brute force optimum: {bf.optimum}")
    out = run(name, problem, seed=0, **kwargs)
    if out.unsupported:
        return
    if not bf.feasible:
        assert out.infeasible is not None, f"{name} solved an infeasible problem"
        return
    exact = get_solver(name).exact
    if out.infeasible is not None:
        assert not exact, f"exact solver {name} called a feasible problem infeasible: {out.infeasible}"
        return
    sol = out.solution
    assert sol is not None
    tol = objective_tolerance(problem)
    assert sol.objective <= bf.optimum + tol
    if sol.bound is not None:
        assert sol.bound >= bf.optimum - tol, f"bound {sol.bound} below the optimum {bf.optimum}"
    if sol.status == "optimal":
        assert sol.objective >= bf.optimum - tol, f"claims optimal: {sol.objective} < {bf.optimum}"
    if exact:
        assert sol.objective == pytest.approx(bf.optimum, abs=tol)
        assert sol.status == "optimal"


@SOME
@given(st.one_of(problems(**TINY), feasible_problems(**TINY)))
def test_agrees_with_brute_force(name: str, problem: fa.AlignmentProblem) -> None:
    assert_agrees_with_brute_force(name, problem)


@SOME
@given(feasible_problems(slack="tight", **TINY))
def test_exact_solvers_find_the_optimum_of_tight_problems(
    name: str, problem: fa.AlignmentProblem
) -> None:
    """Tight but feasible: exact solvers match brute force, heuristics may give up."""
    out = run(name, problem, seed=1)
    if out.unsupported:
        return
    if not get_solver(name).exact:
        assert out.solution is not None or out.infeasible is not None
        return
    assert out.infeasible is None, f"exact solver {name} gave up: {out.infeasible}"
    bf = brute_force(problem)
    assert out.solution is not None and bf.optimum is not None
    assert out.solution.objective == pytest.approx(bf.optimum, abs=objective_tolerance(problem))


@SOME
@given(infeasible_problems(**TINY))
def test_infeasible_problems_raise(name: str, problem: fa.AlignmentProblem) -> None:
    out = run(name, problem, seed=0)
    if out.unsupported:
        return
    assert out.solution is None, f"{name} returned a solution to an infeasible problem"
    assert str(out.infeasible), "InfeasibleError should say which constraint blocks"


# --------------------------------------------------------------------------- slack: must succeed


@SOME
@given(st.one_of(feasible_problems(slack="none", **TINY), feasible_problems(slack="loose", **TINY)))
def test_succeeds_with_slack(name: str, problem: fa.AlignmentProblem) -> None:
    """No minimums, or at most one expert needed per client: every solver must find a plan."""
    out = run(name, problem, seed=2)
    if out.unsupported:
        return
    assert out.infeasible is None, f"{name} gave up on an easy feasible problem: {out.infeasible}"


@FEW
@given(
    st.one_of(
        feasible_problems(slack="none", **MODERATE),
        feasible_problems(slack="loose", **MODERATE),
        feasible_problems(slack="none", knapsack=False, **MODERATE),
    )
)
def test_succeeds_with_slack_moderate(name: str, problem: fa.AlignmentProblem) -> None:
    """The same on ~60 x 10 cohorts, under a time limit (anytime solvers return their best)."""
    out = run(name, problem, seed=3, time_limit=5.0)
    if out.unsupported:
        return
    assert out.infeasible is None, f"{name} gave up on an easy feasible problem: {out.infeasible}"


@FEW
@given(feasible_problems(slack="tight", **MODERATE))
def test_tight_moderate_problems(name: str, problem: fa.AlignmentProblem) -> None:
    """Tight ~60 x 10 cohorts: a feasible solution or InfeasibleError, never a bad plan."""
    run(name, problem, seed=4, time_limit=2.0)


@FEW
@given(infeasible_problems(max_clients=12, max_experts=8, max_pairs=None))
def test_infeasible_moderate_problems_raise(name: str, problem: fa.AlignmentProblem) -> None:
    out = run(name, problem, seed=5, time_limit=5.0)
    if out.unsupported:
        return
    assert out.solution is None, f"{name} returned a solution to an infeasible problem"


# --------------------------------------------------------------------------- rows


@SOME
@given(
    st.one_of(
        row_problems(**TINY),
        row_problems(slack="tight", **TINY),
        row_problems(planted=False, **TINY),
    )
)
def test_rows_agree_with_brute_force(name: str, problem: fa.AlignmentProblem) -> None:
    """Client, weighted expert and total rows: the same contract as the keyword rows."""
    assert_agrees_with_brute_force(name, problem)


@SOME
@given(st.one_of(row_problems(soft=True, **TINY), row_problems(soft=True, slack="tight", **TINY)))
def test_soft_rows_agree_with_brute_force(name: str, problem: fa.AlignmentProblem) -> None:
    """Soft rows: the objective pays their penalties; exact solvers find the best trade-off."""
    assert_agrees_with_brute_force(name, problem)


@SOME
@given(st.one_of(row_problems(slack="none", **TINY), row_problems(slack="loose", **TINY)))
def test_rows_with_slack_are_solved(name: str, problem: fa.AlignmentProblem) -> None:
    """Loose rows (lower bounds of at most one pair's worth): every supporting solver succeeds."""
    out = run(name, problem, seed=2)
    if out.unsupported:
        return
    assert out.infeasible is None, f"{name} gave up on an easy feasible problem: {out.infeasible}"


@FEW
@given(
    st.one_of(
        row_problems(slack="none", **MODERATE),
        row_problems(slack="loose", **MODERATE),
        row_problems(slack="loose", soft=True, **MODERATE),
    )
)
def test_rows_with_slack_moderate(name: str, problem: fa.AlignmentProblem) -> None:
    """The same on ~60 x 10 cohorts, under a time limit."""
    out = run(name, problem, seed=3, time_limit=5.0)
    if out.unsupported:
        return
    assert out.infeasible is None, f"{name} gave up on an easy feasible problem: {out.infeasible}"


@FEW
@given(row_problems(slack="tight", **MODERATE))
def test_tight_rows_moderate(name: str, problem: fa.AlignmentProblem) -> None:
    """Tight rows on ~60 x 10 cohorts: a feasible solution or InfeasibleError, never a bad plan."""
    run(name, problem, seed=4, time_limit=2.0)


# --------------------------------------------------------------------------- determinism, limits


@FEW
@given(
    st.one_of(
        problems(max_clients=8, max_experts=6, max_pairs=40),
        feasible_problems(slack="any", max_clients=30, max_experts=8, max_pairs=None),
    ),
    st.integers(0, 2**31 - 1),
)
def test_same_seed_same_assignment(name: str, problem: fa.AlignmentProblem, seed: int) -> None:
    first = run(name, problem, seed=seed)
    second = run(name, problem, seed=seed)
    if first.solution is None or second.solution is None:
        assert (first.solution is None) == (second.solution is None)
        return
    np.testing.assert_array_equal(first.solution.assignment, second.solution.assignment)
    assert first.solution.objective == second.solution.objective
    assert first.solution.bound == second.solution.bound


@FEW
@given(feasible_problems(slack="any", **MODERATE), st.sampled_from([0.05, 0.3]))
def test_short_time_limit_returns(
    name: str, problem: fa.AlignmentProblem, time_limit: float
) -> None:
    """A short limit still ends in a checked solution or InfeasibleError (time is not asserted)."""
    run(name, problem, seed=6, time_limit=time_limit)


# --------------------------------------------------------------------------- fixed edge cases


@pytest.mark.parametrize(
    "rows",
    [
        {},
        {"expert_memory": [1.0, 0.0, 2.0], "client_memory": []},
        {"train_time": np.zeros((0, 3)), "deadline": 1.0},
        {"expert_max_clients": [0, 1, 2], "allowed": np.zeros((0, 3), bool)},
    ],
    ids=["plain", "memory", "deadline", "caps"],
)
def test_zero_clients(name: str, rows: dict[str, object]) -> None:
    problem = fa.AlignmentProblem(np.zeros((0, 3)), max_experts=2, **rows)
    out = run(name, problem)
    if out.unsupported:
        return
    assert out.solution is not None
    assert out.solution.assignment.shape == (0, 3)
    assert out.solution.objective == 0.0
    assert out.solution.to_dict() == {}


@pytest.mark.parametrize(
    "d",
    [
        [[5e-324, 0.0], [0.0, -5e-324]],
        [[1e-300, 3e-300], [2e-300, -1e-300]],
        [[2.5e12, 1e12], [3e12, -4e12]],
        [[1e9, 1e-9], [-1e-9, 2.0]],
    ],
    ids=["subnormal", "tiny", "huge", "mixed"],
)
def test_extreme_magnitudes(name: str, d: list[list[float]]) -> None:
    """Any finite desirability is valid: scaling to integers must not overflow or vanish."""
    problem = fa.AlignmentProblem(np.array(d), max_experts=1, expert_max_clients=1)
    out = run(name, problem, seed=0)
    if out.unsupported:
        return
    assert out.solution is not None, f"{name} gave up: {out.infeasible}"
    if get_solver(name).exact:
        bf = brute_force(problem)
        assert out.solution.objective == pytest.approx(bf.optimum, abs=objective_tolerance(problem))


def test_nothing_allowed(name: str) -> None:
    problem = fa.AlignmentProblem(np.ones((3, 2)), max_experts=2, allowed=np.zeros((3, 2), bool))
    out = run(name, problem)
    if out.unsupported:
        return
    assert out.solution is not None
    assert not out.solution.assignment.any()


def test_negative_pairs_only_when_forced(name: str) -> None:
    """A minimum forces one negative pair per client; heuristics must still respect it."""
    d = np.array([[-1.0, -3.0, -2.0], [-0.5, -0.25, -4.0]])
    problem = fa.AlignmentProblem(d, max_experts=3, min_experts=1, client_ids=["a", "b"])
    out = run(name, problem, seed=0)
    if out.unsupported:
        return
    assert out.solution is not None, f"{name} gave up: {out.infeasible}"
    if get_solver(name).exact:
        assert out.solution.to_dict() == {"a": [0], "b": [1]}
        assert out.solution.objective == pytest.approx(-1.25)


def test_obvious_optimum(name: str) -> None:
    """One clear best expert per client, no conflicts: every solver but random should find it."""
    d = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.1, 0.7]])
    problem = fa.AlignmentProblem(
        d, max_experts=1, expert_max_clients=1, client_ids=["x", "y", "z"], expert_ids=[10, 20, 30]
    )
    out = run(name, problem, seed=0)
    if out.unsupported:
        return
    assert out.solution is not None
    if name != "random":
        assert out.solution.to_dict() == {"x": [10], "y": [20], "z": [30]}
        assert out.solution.objective == pytest.approx(2.4)


def test_solution_is_independent_of_the_caller(name: str) -> None:
    """Solving must not modify the problem, and the result must not alias its arrays."""
    problem = fa.AlignmentProblem(
        np.array([[0.5, 0.2], [0.1, 0.4]]),
        max_experts=2,
        expert_memory=[1.0, 2.0],
        client_memory=[2.0, 3.0],
    )
    before = problem.to_dict()
    out = run(name, problem, seed=0)
    assert problem.to_dict() == before
    if out.solution is not None:
        assert not np.shares_memory(out.solution.assignment, problem.allowed)


def test_unknown_option_is_rejected(name: str) -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)))
    if get_solver(name).option_names() is None:
        pytest.skip(f"{name} accepts any option")
    with pytest.raises(TypeError, match="no_such_option"):
        fa.solve(problem, name, no_such_option=1)


# --------------------------------------------------------------------------- warm starts

#: Solvers whose earlier solution a warm start comes from ("same": the solver under test).
WARM_SOURCES = ["same", "lagrangian", "flow", "greedy", "highs"]


def _earlier(source: str, name: str, problem: fa.AlignmentProblem) -> fa.Solution | None:
    """An earlier solution of ``problem`` by ``source`` (None where that solver cannot)."""
    solver = name if source == "same" else source
    if solver not in registered_solvers():
        return None
    try:
        return fa.solve(problem, solver, seed=1)
    except (fa.InfeasibleError, fa.UnsupportedProblemError, fa.SolverUnavailableError):
        return None


@SOME
@given(warm_pairs(**TINY), st.sampled_from(WARM_SOURCES))
def test_warm_started_bounds_stay_proven(
    name: str, pair: tuple[fa.AlignmentProblem, fa.AlignmentProblem], source: str
) -> None:
    """A warm start from the same, a related or an unrelated problem: the contract holds
    (bound above the brute-force optimum, feasible plan, exact solvers still optimal)."""
    earlier, problem = pair
    start = _earlier(source, name, earlier)
    if start is None:
        return
    note(f"warm start from {start.solver}: {describe(earlier)}")
    assert_agrees_with_brute_force(name, problem, warm_start=start)


#: What a tampered ``info["prices"]`` may hold: every level malformed in turn.
GARBLED_PRICES = [
    None,
    "prices",
    {"expert": "x", "total": 3},
    {"expert": {"clients per expert": {"upper": [1, 2], "lower": None}}},
    {"expert": {"clients per expert": {"upper": {0: -1.0, 1: float("nan"), 2: "a", 3: True}}}},
    {"expert": {"clients per expert": {"upper": {0: float("inf"), 1: 1e300}}},
     "total": {"round": {"upper": -5.0, "lower": [1]}}},
]


@FEW
@given(warm_pairs(**TINY), st.sampled_from(GARBLED_PRICES))
def test_warm_start_with_garbled_prices(
    name: str, pair: tuple[fa.AlignmentProblem, fa.AlignmentProblem], prices: object
) -> None:
    """Stored prices that make no sense are ignored (or clipped into their range): the
    contract holds as for any warm start."""
    earlier, problem = pair
    start = _earlier("lagrangian", name, earlier) or _earlier("greedy", name, earlier)
    if start is None:
        return
    garbled = dataclasses.replace(start, info={**start.info, "prices": prices})
    assert_agrees_with_brute_force(name, problem, warm_start=garbled)


@pytest.mark.parametrize("bad", [3, "solution", {"assignment": []}, np.zeros((2, 2), bool)])
def test_warm_start_must_be_a_solution(name: str, bad: object) -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)))
    with pytest.raises(TypeError, match="warm_start"):
        fa.solve(problem, name, warm_start=bad)  # type: ignore[arg-type]
