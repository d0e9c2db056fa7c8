"""The ``flow`` solver: exact on count-only problems, sparse graph equal to the dense one.

The generic contract (feasibility, determinism, ...) lives in the shared solver suite; these
tests cover what is specific to min-cost flow: brute-force optimality with counts, minimums,
forbidden pairs and knapsack rows that reduce to counts; the sparse candidate graph and its
certification against the graph over every pair; refusing knapsack rows that are not counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings

import fedalign as fa
from fedalign.solvers import flow as flow_module
from fedalign.solvers import get_solver
from fedalign.solvers.flow import count_intervals
from strategies import brute_force, describe, infeasible_problems, objective_tolerance, problems

FLOW = get_solver("flow")


def _random_problem(
    rng: np.random.Generator, n: int, e: int, *, caps: bool = True, minimums: bool = True
) -> fa.AlignmentProblem:
    """A count-only problem whose expert caps bind (shared popularity) and ~10 % forbidden."""
    popularity = rng.gamma(2.0, 0.5, e)
    d = rng.random((n, e)) + 0.5 * popularity[None, :] - 0.6
    if rng.random() < 0.5:
        d = np.round(d, 1)  # many ties
    max_e = rng.integers(1, 4, n)
    kwargs: dict = {"max_experts": max_e, "allowed": rng.random((n, e)) >= 0.1}
    if minimums:
        kwargs["min_experts"] = np.minimum(max_e, rng.integers(0, 2, n))
        kwargs["expert_min_clients"] = rng.integers(0, 3, e)
    if caps:
        fair = max_e.sum() / e
        kwargs["expert_max_clients"] = rng.integers(int(fair * 0.6) + 3, int(fair * 1.3) + 4, e)
    return fa.AlignmentProblem(d, **kwargs)


# --------------------------------------------------------------------------- optimality


@settings(max_examples=150)
@given(problems(max_pairs=12))
def test_flow_equals_brute_force(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    if FLOW.refusal(problem) is not None:
        with pytest.raises(fa.UnsupportedProblemError, match="lp"):
            FLOW.solve(problem)
        return
    best = brute_force(problem)
    if not best.feasible:
        with pytest.raises(fa.InfeasibleError):
            FLOW.solve(problem)
        return
    tol = objective_tolerance(problem)
    for options in ({}, {"dense": True}, {"dense": False, "candidates": 0}):
        sol = FLOW.solve(problem, **options)
        assert not fa.check(problem, sol.assignment)
        assert sol.objective == pytest.approx(best.optimum, abs=tol), options
        assert sol.status == "optimal"
        assert sol.bound is not None and sol.bound >= sol.objective


def test_reduced_memory_row_is_a_count() -> None:
    # Every expert needs 2.0 units: a client with 5.0 holds two of them, one with 1.9 none.
    d = np.array([[3.0, 2.0, 1.0], [1.0, 5.0, 4.0], [9.0, 9.0, 9.0]])
    problem = fa.AlignmentProblem(
        d, max_experts=3, expert_memory=np.full(3, 2.0), client_memory=[5.0, 6.0, 1.9]
    )
    sol = fa.solve(problem, solver="flow")
    assert sol.experts_of(0) == [0, 1]
    assert sol.experts_of(1) == [0, 1, 2]
    assert sol.experts_of(2) == []


def test_reduced_deadline_row_is_a_count() -> None:
    # Client 0 trains each expert in 1.5 s with a 3.2 s deadline: two experts fit.
    d = np.array([[1.0, 3.0, 2.0, -1.0]])
    train_time = np.array([[1.5, 1.5, 1.5, 1.5]])
    problem = fa.AlignmentProblem(d, max_experts=4, train_time=train_time, deadline=3.2)
    assert count_intervals(problem).client.upper.tolist() == [2]
    assert fa.solve(problem, solver="flow").experts_of(0) == [1, 2]


def test_negative_pairs_only_when_forced() -> None:
    d = np.array([[-1.0, -2.0], [-3.0, 0.5]])
    sol = fa.solve(fa.AlignmentProblem(d, max_experts=2, min_experts=[1, 0]), solver="flow")
    assert sol.assignment.tolist() == [[True, False], [False, True]]
    # An expert minimum forces the least bad pair onto expert 1.
    sol = fa.solve(
        fa.AlignmentProblem(d, max_experts=2, expert_min_clients=[0, 1]), solver="flow"
    )
    assert sol.assignment.tolist() == [[False, False], [False, True]]
    sol = fa.solve(
        fa.AlignmentProblem(d, max_experts=2, expert_min_clients=[2, 0]), solver="flow"
    )
    assert sol.objective == pytest.approx(-4.0 + 0.5)


# --------------------------------------------------------------------------- sparse == dense


@pytest.mark.parametrize("seed", range(6))
def test_sparse_graph_equals_dense_graph(seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = _random_problem(rng, 300, 16, caps=True, minimums=seed % 2 == 0)
    dense = FLOW.solve(problem, dense=True)
    tol = 2 * dense.info["tolerance"] + 1e-9 * abs(dense.objective)
    for candidates in (0, 1, None):
        sparse = FLOW.solve(problem, candidates=candidates, dense=False)
        assert not sparse.info["dense"], "the sparse path should certify on these problems"
        assert sparse.info["candidate_pairs"] < int(problem.fits.sum())
        assert sparse.objective == pytest.approx(dense.objective, abs=tol)
        assert sparse.status == "optimal"


@pytest.mark.parametrize("seed", range(3))
def test_sampled_prices_path_equals_dense(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Large cohorts first price the experts on a sample; force that path on a small one.
    monkeypatch.setattr(flow_module, "_SAMPLE_MIN", 100)
    rng = np.random.default_rng(100 + seed)
    problem = _random_problem(rng, 400, 40)
    dense = FLOW.solve(problem, dense=True)
    sparse = FLOW.solve(problem, dense=False)
    tol = 2 * dense.info["tolerance"] + 1e-9 * abs(dense.objective)
    assert sparse.objective == pytest.approx(dense.objective, abs=tol)
    assert not sparse.info["dense"]


def test_certification_adds_left_out_pairs() -> None:
    # With zero extra candidates the first graph holds only each client's top choice; the
    # caps force most clients elsewhere, so optimality needs pairs found by the potentials.
    n, e = 200, 8
    rng = np.random.default_rng(7)
    d = rng.random((n, e)) * 0.1
    d[:, 0] += 1.0  # everyone's favourite
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_max_clients=n // e + 1)
    sparse = FLOW.solve(problem, candidates=0, dense=False)
    dense = FLOW.solve(problem, dense=True)
    assert sparse.info["rounds"] > 1
    assert sparse.objective == pytest.approx(dense.objective, abs=2 * dense.info["tolerance"])


# --------------------------------------------------------------------------- errors


def test_unequal_memory_is_unsupported() -> None:
    problem = fa.AlignmentProblem(
        np.ones((2, 3)), expert_memory=[1.0, 2.0, 1.0], client_memory=[3.0, 3.0]
    )
    assert "memory" in FLOW.unsupported_reason(problem)
    with pytest.raises(fa.UnsupportedProblemError, match="'lp', 'lagrangian', 'cpsat', 'milp'"):
        fa.solve(problem, solver="flow")


def test_unequal_train_time_is_unsupported() -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)), train_time=[[1.0, 1.0], [1.0, 2.0]], deadline=2.5)
    with pytest.raises(fa.UnsupportedProblemError, match="client 1 .*deadline|deadline.*client 1"):
        fa.solve(problem, solver="flow")


def test_unequal_sizes_that_never_fit_are_ignored() -> None:
    # Expert 2 is too big for every client, so only equal sizes matter.
    problem = fa.AlignmentProblem(
        np.ones((2, 3)), expert_memory=[1.0, 1.0, 9.0], client_memory=[1.0, 2.0], max_experts=3
    )
    assert FLOW.unsupported_reason(problem) is None
    assert fa.solve(problem, solver="flow").objective == pytest.approx(3.0)


def test_hall_violation_is_infeasible() -> None:
    # Clients 0 and 1 can only train expert 0, which takes one client: the counting checks
    # in infeasibility_reason pass, the flow proves it.
    allowed = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    problem = fa.AlignmentProblem(
        np.ones((4, 2)),
        allowed=allowed,
        min_experts=[1, 1, 0, 0],
        expert_max_clients=[1, 5],
    )
    assert problem.infeasibility_reason() is None
    for options in ({}, {"dense": True}, {"dense": False}):
        with pytest.raises(fa.InfeasibleError, match="min_experts"):
            FLOW.solve(problem, **options)


@settings(max_examples=40)
@given(infeasible_problems())
def test_infeasible_problems_raise(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    if FLOW.refusal(problem) is not None:
        return  # knapsack rows that are not counts: flow does not apply
    with pytest.raises(fa.InfeasibleError):
        FLOW.solve(problem)


def test_bad_options() -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)))
    with pytest.raises(ValueError, match="candidates"):
        fa.solve(problem, solver="flow", candidates=-1)
    with pytest.raises(ValueError, match="dense"):
        fa.solve(problem, solver="flow", dense="yes")


def test_small_graphs_are_solved_densely_by_default() -> None:
    problem = _random_problem(np.random.default_rng(11), 60, 20)
    assert FLOW.solve(problem).info["dense"]
    assert not FLOW.solve(problem, dense=False, candidates=0).info["dense"]


@pytest.mark.parametrize(
    "d",
    [
        [[5e-324, 0.0], [0.0, -5e-324]],
        [[1e-300, 3e-300], [2e-300, -1e-300]],
        [[4e-310, 1e-309], [-2e-309, 3e-309]],
        [[1e308, -1e308], [-5e307, 6e307]],
    ],
    ids=["subnormal", "tiny", "tiny-subnormal", "huge"],
)
@pytest.mark.parametrize("options", [{"dense": True}, {"dense": False, "candidates": 0}])
def test_extreme_desirability_keeps_a_finite_scale(d: list[list[float]], options: dict) -> None:
    # Regression: max_cost / max|d| overflowed to inf for |d| below ~1e-297, and inf * 0 gave
    # NaN costs (OR-Tools: BAD_COST_RANGE). The scale must stay finite and the documented
    # tolerance must bound the distance to the true optimum.
    problem = fa.AlignmentProblem(np.array(d), max_experts=1, expert_max_clients=1)
    sol = FLOW.solve(problem, **options)
    best = brute_force(problem)
    scale, tol = sol.info["scale"], sol.info["tolerance"]
    assert np.isfinite(scale) and scale > 0 and np.isfinite(tol) and tol > 0
    assert abs(sol.objective - best.optimum) <= tol
    # The tolerance is meaningful: a millionth of max|d|, or the capped scale's 2**-1020 a pair.
    top = float(np.abs(problem.desirability).max())
    assert tol <= max(1e-6 * top, 2 * 2.0**-1020)
    if top > 1e-305:  # resolvable magnitudes: the unique optimum itself is found
        assert sol.objective == best.optimum
