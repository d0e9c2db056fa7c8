"""The ``flow`` solver: exact on problems whose rows reduce to counts, sparse graph = dense.

The generic contract (feasibility, determinism, ...) lives in the shared solver suite; these
tests cover what is specific to min-cost flow: brute-force optimality with counts, minimums,
forbidden pairs and rows that reduce to counts (hard client, expert and total rows as count
intervals; soft rows as parallel arcs of increasing marginal cost, with fractional bounds,
weights and several bands); the sparse candidate graph and its certification against the
graph over every pair, with and without soft rows; refusing rows that are not counts; under
a time limit, the exact solve in a worker and the quick plan with its proven bound when the
worker is stopped.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign.solvers import _flow_rows, _worker, get_solver
from fedalign.solvers import flow as flow_module
from fedalign.solvers.flow import count_intervals
from strategies import (
    brute_force,
    describe,
    infeasible_problems,
    objective_tolerance,
    problems,
    row_problems,
)

FLOW = get_solver("flow")


def _random_problem(
    rng: np.random.Generator,
    n: int,
    e: int,
    *,
    caps: bool = True,
    minimums: bool = True,
    rows: tuple[str, ...] = (),
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
    kwargs["rows"] = [_ROWS[kind](rng, max_e, e) for kind in rows]
    return fa.AlignmentProblem(d, **kwargs)


#: Rows that reduce to counts, for the sparse = dense tests: name -> (rng, max_experts, E) -> Row.
_ROWS = {
    # A soft per-expert load target below the fair share (the scheduler's load balancing).
    "load": lambda rng, max_e, e: fa.Row(
        "load", "expert", 1.0, upper=np.floor(0.8 * max_e.sum() / e), penalty=[0.05, 0.1, 0.3]
    ),
    # A hard per-expert byte budget: each client costs the expert's size.
    "bytes": lambda rng, max_e, e: fa.Row(
        "bytes", "expert", rng.uniform(0.5, 2.0, e), upper=1.1 * max_e.sum() / e * 1.25
    ),
    # At most 90 % of the slots in all, and a soft wish for more.
    "total": lambda rng, max_e, e: fa.Row("total", "total", 1.0, upper=int(0.9 * max_e.sum())),
    "soft total": lambda rng, max_e, e: fa.Row(
        "soft total", "total", 1.0, lower=int(0.95 * max_e.sum()), penalty=0.2
    ),
    # Every client would like two experts, a half-unit price for each missing one.
    "floor": lambda rng, max_e, e: fa.Row("floor", "client", 1.0, lower=2, penalty=0.5),
}


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


# --------------------------------------------------------------------------- rows as counts

_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.5)


def _grid(draw: st.DrawFn, size: int, hi: int = 12) -> np.ndarray:
    return np.array(draw(st.lists(st.integers(0, hi), min_size=size, max_size=size))) * 0.25


@st.composite
def count_row_problems(draw: st.DrawFn, *, soft: bool = False) -> fa.AlignmentProblem:
    """Tiny problems whose every row reduces to counts: per-client weights on client rows,
    per-expert weights on expert rows, one weight on total rows; bounds on a 0.25 grid (so
    fractional in counts), soft rows with 1-3 bands, lower and/or upper bounds."""
    n = draw(st.integers(1, 4))
    e = draw(st.integers(1, min(4, 12 // n)))
    d = np.array(draw(st.lists(st.integers(-4, 8), min_size=n * e, max_size=n * e))).reshape(n, e) * 0.25
    max_e = np.array(draw(st.lists(st.integers(0, e), min_size=n, max_size=n)))
    kwargs: dict = {
        "max_experts": max_e,
        "min_experts": np.minimum(max_e, draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
        "allowed": np.array(draw(st.lists(st.sampled_from([True] * 5 + [False]), min_size=n * e, max_size=n * e))).reshape(n, e),
    }
    if draw(st.booleans()):
        kwargs["expert_max_clients"] = draw(st.lists(st.integers(0, n), min_size=e, max_size=e))
    rows = []
    for over, shape, m in (("client", (n, 1), n), ("expert", (1, e), e), ("total", (1, 1), 1)):
        for k in range(draw(st.integers(0, 2 if soft else 1))):
            weight = np.array(draw(st.lists(st.sampled_from(_WEIGHTS), min_size=m, max_size=m))).reshape(shape)
            sides = draw(st.sampled_from(["lower", "upper", "both"]))
            lower = _grid(draw, m, 10) if sides != "upper" else None
            upper = _grid(draw, m, 16) if sides != "lower" else None
            if lower is not None and upper is not None:
                lower = np.minimum(lower, upper)
            penalty = None
            if soft and draw(st.booleans()):
                penalty = sorted(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
                penalty = [p * 0.3 for p in penalty]
            rows.append(fa.Row(f"{over} row {k}", over, weight, lower=lower, upper=upper, penalty=penalty))
    return fa.AlignmentProblem(d, rows=rows, **kwargs)


def _assert_exact(problem: fa.AlignmentProblem, **options: object) -> None:
    """Flow equals brute force within its own tolerance, or both call it infeasible."""
    assert FLOW.refusal(problem) is None
    best = brute_force(problem)
    if not best.feasible:
        with pytest.raises(fa.InfeasibleError):
            FLOW.solve(problem, **options)
        return
    sol = FLOW.solve(problem, **options)
    assert not fa.check(problem, sol.assignment)
    tol = sol.info["tolerance"] + 1e-12 * (1.0 + abs(best.optimum))
    assert abs(sol.objective - best.optimum) <= tol, (options, sol.objective, best.optimum)
    assert sol.status == "optimal"


@settings(max_examples=150)
@given(st.one_of(count_row_problems(), count_row_problems(soft=True)))
def test_count_rows_equal_brute_force(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    for options in ({}, {"dense": False, "candidates": 0}):
        _assert_exact(problem, **options)


@settings(max_examples=40)
@given(count_row_problems(soft=True))
def test_count_rows_through_sampled_prices_equal_brute_force(problem: fa.AlignmentProblem) -> None:
    # The sample's scaled bounds (experts', the round's, soft rows') are only a heuristic
    # for the prices; the certified result must still be exact.
    note(describe(problem))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flow_module, "_SAMPLE_MIN", 2)
        mp.setattr(flow_module, "_SAMPLE_STRIDE", 2)
        _assert_exact(problem, dense=False, candidates=0)


@settings(max_examples=60)
@given(st.one_of(row_problems(soft=True), row_problems(slack="tight"), row_problems(planted=False)))
def test_supported_row_problems_equal_brute_force(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    if FLOW.refusal(problem) is not None:
        with pytest.raises(fa.UnsupportedProblemError, match="does not reduce to a count|weights"):
            FLOW.solve(problem)
        return
    _assert_exact(problem)


def test_count_intervals_of_weighted_rows() -> None:
    # Client 0 counts 2.0 a pair: [ceil(3 / 2), floor(7 / 2)] = [2, 3]; client 1 weighs 0
    # (any count, the bounds hold at 0); client 2 has 2.9999999999 within the checker's
    # tolerance of 3 = 2 * 1.5, and a lower bound a hair above 1.5 that the same tolerance
    # meets with one pair.
    row = fa.Row("bandwidth", "client", [[2.0], [0.0], [1.5]], lower=[3.0, 0.0, 1.5000000001],
                 upper=[7.0, 5.0, 2.9999999999])
    seats = fa.Row("seats", "expert", [[1.0, 2.0, 0.5]], upper=[2.0, 3.0, 0.9])
    budget = fa.Row("budget", "total", 0.5, lower=1.2, upper=3.0)
    problem = fa.AlignmentProblem(np.ones((3, 3)), max_experts=3, rows=[row, seats, budget])
    counts = count_intervals(problem)
    assert counts.client.lower.tolist() == [2, 0, 1]
    assert counts.client.upper.tolist() == [3, 3, 2]
    assert counts.expert.upper.tolist() == [2, 1, 1]
    assert counts.total is not None
    assert (counts.total.lower.tolist(), counts.total.upper.tolist()) == ([3], [6])
    sol = fa.solve(problem, solver="flow")
    assert sol.objective == pytest.approx(4.0)  # experts take 2 + 1 + 1 clients
    assert sol.assignment.sum(axis=1)[0] >= 2


def test_keyword_rows_as_count_intervals() -> None:
    problem = fa.AlignmentProblem(
        np.ones((2, 3)), max_experts=[3, 1], min_experts=[1, 0], expert_memory=np.full(3, 2.0),
        client_memory=[4.5, 9.0], expert_min_clients=[0, 1, 0], expert_max_clients=[2, 2, 1],
    )
    counts = count_intervals(problem)
    assert counts.client.lower.tolist() == [1, 0] and counts.client.upper.tolist() == [2, 1]
    assert counts.expert.lower.tolist() == [0, 1, 0] and counts.expert.upper.tolist() == [2, 2, 1]
    assert counts.total is None
    uneven = fa.AlignmentProblem(np.ones((2, 2)), expert_memory=[1.0, 2.0], client_memory=[3.0, 3.0])
    assert count_intervals(uneven) is None


def test_conflicting_rows_are_infeasible_and_named() -> None:
    # Client 1 must use 3.0 of bandwidth at 1.0 a pair, but its memory holds two experts.
    bw = fa.Row("bandwidth", "client", 1.0, lower=[0.0, 3.0])
    problem = fa.AlignmentProblem(
        np.ones((2, 4)), max_experts=4, expert_memory=np.full(4, 1.0), client_memory=[4.0, 2.0],
        rows=[bw], client_ids=["a", "b"],
    )
    with pytest.raises(fa.InfeasibleError, match=r"bandwidth: client 'b' .*3 experts.*memory allows at most 2"):
        FLOW.solve(problem)
    # A lower bound that a zero weight can never reach, and an upper bound below zero.
    zero = fa.Row("zero", "expert", [[0.0, 1.0]], lower=[0.5, 0.0])
    with pytest.raises(fa.InfeasibleError, match="zero: expert 0"):
        FLOW.solve(fa.AlignmentProblem(np.ones((2, 2)), rows=[zero]))
    below = fa.Row("below", "total", 1.0, upper=-1.0)
    with pytest.raises(fa.InfeasibleError, match="below: the round"):
        FLOW.solve(fa.AlignmentProblem(np.ones((2, 2)), rows=[below]))


def test_total_row_bounds_the_pairs() -> None:
    d = np.array([[3.0, 2.0, -1.0], [1.0, -2.0, -3.0]])
    cap = fa.Row("cap", "total", 1.0, upper=2)
    sol = FLOW.solve(fa.AlignmentProblem(d, max_experts=3, rows=[cap]))
    assert sol.assignment.sum() == 2 and sol.objective == pytest.approx(5.0)
    # A lower bound of 4 pairs forces the least bad one in.
    floor = fa.Row("floor", "total", 2.0, lower=7.5)  # 4 pairs of weight 2
    sol = FLOW.solve(fa.AlignmentProblem(d, max_experts=3, rows=[floor]))
    assert sol.assignment.sum() == 4 and sol.objective == pytest.approx(5.0)
    # Minimums that need more pairs than the total row allows: the flow proves it.
    few = fa.Row("few", "total", 1.0, upper=1)
    for options in ({}, {"dense": False}):
        with pytest.raises(fa.InfeasibleError, match="few"):
            FLOW.solve(fa.AlignmentProblem(d, max_experts=3, expert_min_clients=[1, 1, 0], rows=[few]), **options)
    many = fa.Row("many", "total", 1.0, lower=5)
    allowed = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    for options in ({}, {"dense": False}):
        with pytest.raises(fa.InfeasibleError, match="many"):
            FLOW.solve(fa.AlignmentProblem(d, max_experts=3, allowed=allowed, rows=[many]), **options)


# --------------------------------------------------------------------------- soft rows


def test_soft_expert_load_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    d = rng.random((4, 3)) + np.array([0.6, 0.2, 0.0])  # everyone likes expert 0 best
    load = fa.Row("load", "expert", 1.0, upper=[1, 2, 2], penalty=[0.2, 0.4, 1.0])
    problem = fa.AlignmentProblem(d, max_experts=2, min_experts=1, rows=[load])
    best = brute_force(problem)
    for options in ({}, {"dense": False, "candidates": 0}):
        sol = FLOW.solve(problem, **options)
        assert sol.objective == pytest.approx(best.optimum, abs=sol.info["tolerance"])
        assert problem.penalty(sol.assignment) > 0  # the trade-off is real
    plain = FLOW.solve(fa.AlignmentProblem(d, max_experts=2, min_experts=1))
    assert plain.assignment[:, 0].sum() > sol.assignment[:, 0].sum()


def test_soft_lower_bound_earns_its_penalty_back() -> None:
    # Each pair is worth -0.5; a soft floor of 2 experts at 0.75 a missing unit makes two
    # pairs worth taking (net +0.25 each), a third not.
    d = np.full((1, 4), -0.5)
    floor = fa.Row("floor", "client", 1.0, lower=2, penalty=0.75)
    sol = FLOW.solve(fa.AlignmentProblem(d, max_experts=4, rows=[floor]))
    assert sol.assignment.sum() == 2 and sol.objective == pytest.approx(-1.0)
    # Two soft rows on one side add: another 0.5 for the third expert makes it worth it too.
    more = fa.Row("more", "client", 1.0, lower=3, penalty=0.6)
    sol = FLOW.solve(fa.AlignmentProblem(d, max_experts=4, rows=[floor, more]))
    assert sol.assignment.sum() == 3


@pytest.mark.parametrize(
    ("lower", "upper", "prices", "most"),
    [
        (None, 3.0, (0.5,), 2),  # free stretch, then the last price
        (None, 3.0, (0.1, 0.2, 0.4), 4),  # free, one arc per band
        (None, 2.5, (0.1, 0.2, 0.4), 5),  # a fractional bound adds one straddling unit
        (2.0, 5.0, (0.1, 0.3), 5),  # below the floor (2 bands) and above the roof (2 bands), free between
        (None, 3.0, (0.3, 0.3, 0.3), 2),  # equal prices merge into one arc
    ],
)
def test_soft_rows_make_few_arcs(lower, upper, prices, most) -> None:
    from fedalign.solvers._flow_network import soft_side

    m = 4
    soft = _flow_rows.SoftCount(
        np.ones(m), None if lower is None else np.full(m, lower), None if upper is None else np.full(m, upper), prices
    )
    side = soft_side(np.zeros(m, np.int64), np.full(m, 1000, np.int64), (soft,), 1024.0)
    per_row = np.bincount(side.arcs.node, minlength=m)
    assert per_row.max() <= most
    assert (np.bincount(side.arcs.node, weights=side.arcs.cap, minlength=m) == 1000).all()
    for k in range(m):  # increasing costs per row: parallel arcs are exact
        costs = side.arcs.cost[side.arcs.node == k]
        assert (np.diff(costs) > 0).all()
    # The costs are the marginals of the row's band cost, scaled.
    row = fa.Row("r", "expert", 1.0, lower=lower, upper=upper, penalty=list(prices))
    bound = fa.AlignmentProblem(np.zeros((1, m)), rows=[row]).row("r")
    counts = np.arange(1001, dtype=float)
    marginal = np.diff(np.array([bound.cost(np.full(m, c))[0] for c in counts]))
    units = np.repeat(side.arcs.cost[side.arcs.node == 0], side.arcs.cap[side.arcs.node == 0])
    assert np.abs(units / 1024.0 - marginal).max() <= 0.5 / 1024.0 + 1e-12


def test_soft_rows_that_do_not_reduce_are_refused() -> None:
    load = fa.Row("load", "expert", [[1.0, 1.0], [2.0, 1.0]], upper=1, penalty=0.5)
    problem = fa.AlignmentProblem(np.ones((2, 2)), rows=[load])
    reason = FLOW.unsupported_reason(problem)
    assert reason is not None and "load" in reason and "expert 0" in reason


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


@pytest.mark.parametrize(
    "rows",
    [("load",), ("load", "bytes"), ("total", "floor"), ("soft total", "load"), ("bytes", "total", "floor", "load")],
)
def test_sparse_graph_equals_dense_graph_with_rows(rows: tuple[str, ...]) -> None:
    rng = np.random.default_rng(len(rows))
    problem = _random_problem(rng, 300, 16, rows=rows)
    dense = FLOW.solve(problem, dense=True)
    tol = 2 * dense.info["tolerance"] + 1e-9 * abs(dense.objective)
    for candidates in (0, None):
        sparse = FLOW.solve(problem, candidates=candidates, dense=False)
        assert not sparse.info["dense"], "the sparse path should certify on these problems"
        assert sparse.objective == pytest.approx(dense.objective, abs=tol)
    if "load" in rows:
        assert problem.penalty(dense.assignment) > 0  # the load row binds


@pytest.mark.parametrize("rows", [("load",), ("bytes", "soft total"), ("total", "floor")])
def test_sampled_prices_path_equals_dense_with_rows(
    rows: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_module, "_SAMPLE_MIN", 100)
    problem = _random_problem(np.random.default_rng(200 + len(rows)), 400, 40, rows=rows)
    dense = FLOW.solve(problem, dense=True)
    sparse = FLOW.solve(problem, dense=False)
    tol = 2 * dense.info["tolerance"] + 1e-9 * abs(dense.objective)
    assert sparse.objective == pytest.approx(dense.objective, abs=tol)
    assert not sparse.info["dense"]


def test_large_soft_load_sparse_certified_equals_dense() -> None:
    # The scheduler's in-round load balancing at scale: a soft per-expert load row on a cohort
    # large enough for the sampled expert prices (20,000 x 64).
    rng = np.random.default_rng(9)
    n, e = 20_000, 64
    popularity = rng.gamma(2.0, 0.5, e)
    d = rng.random((n, e)) + 0.5 * popularity[None, :] - 0.6
    max_e = rng.integers(1, 5, n)
    fair = max_e.sum() / e
    load = fa.Row("load", "expert", 1.0, upper=np.floor(0.9 * fair), penalty=[0.05, 0.1, 0.3])
    problem = fa.AlignmentProblem(
        d, max_experts=max_e, min_experts=1, expert_max_clients=int(np.ceil(1.1 * fair)), rows=[load]
    )
    sparse = FLOW.solve(problem)
    assert not sparse.info["dense"] and sparse.info["candidate_pairs"] < int(problem.fits.sum()) // 2
    dense = FLOW.solve(problem, dense=True)
    tol = 2 * dense.info["tolerance"] + 1e-9 * abs(dense.objective)
    assert sparse.objective == pytest.approx(dense.objective, abs=tol)
    assert problem.penalty(sparse.assignment) > 0


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
    with pytest.raises(fa.UnsupportedProblemError, match="'lp', 'lagrangian', 'cpsat', 'highs', 'milp'"):
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
        [[1e299, -1e299], [-5e298, 6e298]],
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


# --------------------------------------------------------------------------- time limits


class _Unfinished:
    """Stands in for a worker that the deadline stopped: never ready, never finished."""

    def __init__(self, fn: object, args: object) -> None:
        self.cancelled = False

    def ready(self) -> bool:
        return False

    def wait(self, deadline: float) -> _worker.Outcome:
        return _worker.Outcome(False, None, 0.0, True)

    def cancel(self) -> None:
        self.cancelled = True


def _stopped_exact_solve(mp: pytest.MonkeyPatch, stride: int = 2) -> None:
    """Every timed solve goes through the worker, and the worker never finishes."""
    mp.setattr(flow_module, "ISOLATE_PAIRS", 0)
    mp.setattr(flow_module, "_SAMPLE_STRIDE", stride)  # sampled prices on tiny problems too
    mp.setattr(flow_module._worker, "start", lambda fn, args: _Unfinished(fn, args))


@settings(max_examples=120)
@given(st.one_of(problems(max_pairs=12), count_row_problems(), count_row_problems(soft=True)))
def test_stopped_exact_solve_returns_a_feasible_plan_and_a_proven_bound(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    if FLOW.refusal(problem) is not None:
        return
    best = brute_force(problem)
    with pytest.MonkeyPatch.context() as mp:
        _stopped_exact_solve(mp)
        try:
            sol = FLOW.solve(problem, time_limit=60.0, seed=0)
        except fa.TimeLimitError as exc:
            # Only the quick plan's repair, a heuristic, may miss a feasible problem.
            assert "stopped at the time limit" in str(exc) and "repair" in str(exc)
            return
        except fa.InfeasibleError:
            assert not best.feasible
            return
    assert best.feasible
    assert not fa.check(problem, sol.assignment)
    assert sol.status == "feasible"
    assert "stopped at the time limit" in sol.info["exact"]
    assert sol.bound is not None and sol.bound >= best.optimum - 1e-9 * max(1.0, abs(best.optimum))
    assert sol.objective <= best.optimum + 1e-9 * max(1.0, abs(best.optimum))


@settings(max_examples=150)
@given(
    st.one_of(problems(max_pairs=12), count_row_problems(), count_row_problems(soft=True)),
    st.lists(st.floats(-3, 3), min_size=12, max_size=12),
)
def test_any_expert_prices_give_a_proven_bound(problem: fa.AlignmentProblem, prices: list[float]) -> None:
    # The quick plan's bound must hold whatever prices the sample gives, even absurd ones.
    note(describe(problem))
    if FLOW.refusal(problem) is not None:
        return
    best = brute_force(problem)
    try:
        counts = count_intervals(problem)
    except fa.InfeasibleError:
        assert not best.feasible
        return
    if not best.feasible or counts is None:
        return
    soft = _flow_rows.soft_counts(problem)
    assert soft is not None
    net = flow_module.network(problem, counts, soft)
    p = np.array(prices[: problem.n_experts])
    x, near, bound = flow_module.priced_choice(problem, net, p)
    assert bound >= best.optimum - 1e-9 * max(1.0, abs(best.optimum)), (bound, best.optimum)
    assert not (x & near).any() and not ((x | near) & ~net.eligible).any()


@pytest.mark.parametrize("seed", range(2))
def test_stopped_exact_solve_at_scale_is_close_to_the_optimum(seed: int) -> None:
    # Sampled prices make both the plan and the bound tight on a cohort with binding caps.
    problem = _random_problem(np.random.default_rng(300 + seed), 4000, 24)
    optimum = FLOW.solve(problem).objective
    with pytest.MonkeyPatch.context() as mp:
        _stopped_exact_solve(mp, stride=8)
        sol = FLOW.solve(problem, time_limit=60.0, seed=0)
    assert not fa.check(problem, sol.assignment)
    assert sol.status == "feasible" and sol.bound is not None
    assert sol.objective <= optimum + 1e-6 <= sol.bound + 2e-6
    assert sol.gap is not None and sol.gap < 0.02, sol.gap
    assert "every 8th client" in sol.info["prices_from"]
    # its sampled prices warm-start the next solve, which is exact again
    again = FLOW.solve(problem, warm_start=sol, dense=False)
    assert again.info["warm_start"]["reused"] == "expert prices"
    assert again.status == "optimal" and abs(again.objective - optimum) <= 1e-6


def test_worker_that_answers_in_time_gives_the_optimum(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _random_problem(np.random.default_rng(7), 600, 20)
    here = FLOW.solve(problem)
    monkeypatch.setattr(flow_module, "ISOLATE_PAIRS", 0)
    timed = FLOW.solve(problem, time_limit=60.0)
    assert timed.status == "optimal" and timed.info["isolated"] is True
    assert timed.objective == pytest.approx(here.objective, abs=2 * here.info["tolerance"])


def test_nothing_that_fits_the_limit_raises_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither the exact solve nor the quick plan can end in time: no worker is started.
    problem = _random_problem(np.random.default_rng(8), 300, 10)
    monkeypatch.setattr(flow_module, "ISOLATE_PAIRS", 0)
    monkeypatch.setattr(flow_module, "FAST_SECONDS_PER_PAIR", 1.0)
    monkeypatch.setattr(flow_module, "FALLBACK_SECONDS_PER_PAIR", 1.0)

    def no_fork(fn: object, args: object) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(flow_module._worker, "start", no_fork)
    with pytest.raises(fa.TimeLimitError, match="could not end in the .* left; a quick plan"):
        FLOW.solve(problem, time_limit=5.0)


def test_quick_plan_alone_when_the_exact_solve_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _random_problem(np.random.default_rng(9), 300, 10)
    monkeypatch.setattr(flow_module, "ISOLATE_PAIRS", 0)
    # about 27 s for the exact solve, 3 s for the quick plan's sampled flow: only that one fits
    monkeypatch.setattr(flow_module, "FAST_SECONDS_PER_PAIR", 0.01)
    sol = FLOW.solve(problem, time_limit=5.0)
    assert sol.status == "feasible" and not fa.check(problem, sol.assignment)
    assert "could not end" in sol.info["exact"]
    assert sol.bound is not None and sol.bound >= FLOW.solve(problem).objective - 1e-9


def test_auto_returns_flow_quick_plan_within_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _random_problem(np.random.default_rng(10), 300, 10)
    _stopped_exact_solve(monkeypatch)
    sol = fa.solve(problem, "auto", time_limit=5.0, seed=0)
    assert sol.solver == "flow" and sol.status == "feasible"
    assert "stopped at the time limit" in sol.info["exact"]


def test_auto_tries_greedy_only_when_its_first_pass_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    # flow raises at once (nothing fits); greedy would need more than the time left.
    from fedalign.solvers import auto as auto_module

    problem = _random_problem(np.random.default_rng(11), 300, 10)
    monkeypatch.setattr(flow_module, "ISOLATE_PAIRS", 0)
    monkeypatch.setattr(flow_module, "FAST_SECONDS_PER_PAIR", 1.0)
    monkeypatch.setattr(flow_module, "FALLBACK_SECONDS_PER_PAIR", 1.0)
    with pytest.raises(fa.TimeLimitError, match="solver 'flow'"):
        monkeypatch.setattr(auto_module, "GREEDY_SECONDS_PER_PAIR", 1.0)
        fa.solve(problem, "auto", time_limit=5.0)
    monkeypatch.setattr(auto_module, "GREEDY_SECONDS_PER_PAIR", 1e-9)
    sol = fa.solve(problem, "auto", time_limit=5.0)
    assert sol.solver == "greedy" and "fallback" in sol.info["auto"]


# --------------------------------------------------------------------------- the worker


def _sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def _fail() -> None:
    raise ValueError("from the child")


def test_worker_start_wait_and_kill() -> None:
    quick = _worker.start(_sleep_then, (0.0, 7))
    assert quick.wait(time.perf_counter() + 30).value == 7
    slow = _worker.start(_sleep_then, (30.0, 1))
    pid = slow._pid
    assert pid is not None
    out = slow.wait(time.perf_counter() + 0.2)
    assert not out.finished and out.value is None
    # killed and reaped at the deadline, not waited for: the child no longer exists
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    slow.cancel()  # after wait: nothing left to do


def test_worker_answer_waiting_past_the_deadline_is_read() -> None:
    # The caller was busy (its own fallback) until after the deadline; the answer is there.
    pending = _worker.start(_sleep_then, (0.0, 3))
    while not pending.ready():
        time.sleep(0.01)
    time.sleep(0.05)
    assert pending.wait(time.perf_counter() - 1.0).value == 3


def test_worker_error_is_raised_and_cancel_kills() -> None:
    failing = _worker.start(_fail, ())
    with pytest.raises(ValueError, match="from the child"):
        failing.wait(time.perf_counter() + 30)
    running = _worker.start(_sleep_then, (30.0, 1))
    running.cancel()
    assert not running.wait(time.perf_counter() + 30).finished
