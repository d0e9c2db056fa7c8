"""Tests of the ``lagrangian`` solver: its bound against brute force, its subproblems, options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings

import fedalign as fa
from fedalign.solvers.lagrangian._subproblems import Subproblems as _Subproblems
from strategies import brute_force as shared_brute_force
from strategies import problems


def _all_assignments(n: int, e: int) -> np.ndarray:
    """Every (n, E) 0/1 matrix, as a (2**(n*E), n, E) bool array."""
    k = n * e
    codes = np.arange(2**k, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(k)[None, :]) & 1
    return bits.astype(bool).reshape(-1, n, e)


def brute_force(problem: fa.AlignmentProblem) -> float | None:
    """The optimum by enumeration (n * E <= 12), or None when infeasible."""
    n, e = problem.shape
    x = _all_assignments(n, e)
    ok = ~(x & ~problem.allowed[None]).any(axis=(1, 2))
    count = x.sum(axis=2)
    ok &= (count <= problem.max_experts[None]).all(axis=1)
    ok &= (count >= problem.min_experts[None]).all(axis=1)
    load = x.sum(axis=1)
    ok &= (load <= problem.expert_max_clients[None]).all(axis=1)
    ok &= (load >= problem.expert_min_clients[None]).all(axis=1)
    if problem.expert_memory is not None:
        used = x.astype(float) @ problem.expert_memory
        ok &= (used <= problem.client_memory[None] + 1e-9).all(axis=1)
    if problem.train_time is not None:
        used = (x * problem.train_time[None]).sum(axis=2)
        ok &= (used <= problem.deadline[None] + 1e-9).all(axis=1)
    if not ok.any():
        return None
    return float((x[ok] * problem.desirability[None]).sum(axis=(1, 2)).max())


def tiny_problem(seed: int) -> fa.AlignmentProblem:
    """A random tiny problem (n * E <= 12) with a random mix of constraints."""
    rng = np.random.default_rng(seed)
    n, e = [(2, 3), (3, 4), (2, 6), (4, 3), (3, 3), (6, 2)][seed % 6]
    kw: dict = {}
    d = rng.normal(size=(n, e))
    if seed % 3 == 0:
        d = np.round(d * 4)  # integer desirability: exercises the rounded bound
    kw["max_experts"] = rng.integers(1, e + 1, size=n)
    kw["min_experts"] = np.minimum(rng.integers(0, 2, size=n), kw["max_experts"])
    if rng.random() < 0.6:
        kw["expert_memory"] = rng.uniform(1, 3, size=e)
        kw["client_memory"] = rng.uniform(1, 6, size=n)
    if rng.random() < 0.5:
        kw["train_time"] = rng.uniform(0.5, 3, size=(n, e))
        kw["deadline"] = rng.uniform(1, 6, size=n)
    kw["expert_max_clients"] = rng.integers(1, n + 1, size=e)
    if rng.random() < 0.3:
        kw["expert_min_clients"] = rng.integers(0, 2, size=e)
    if rng.random() < 0.3:
        kw["allowed"] = rng.random((n, e)) > 0.2
    return fa.AlignmentProblem(d, **kw)


@pytest.mark.parametrize("seed", range(60))
def test_bound_never_below_brute_force_optimum(seed: int) -> None:
    problem = tiny_problem(seed)
    opt = brute_force(problem)
    if opt is None:
        with pytest.raises(fa.InfeasibleError):
            fa.solve(problem, "lagrangian", seed=0)
        return
    try:
        sol = fa.solve(problem, "lagrangian", seed=0)
    except fa.InfeasibleError:
        pytest.skip("repair found no feasible point on a feasible tiny problem")
    assert not fa.check(problem, sol.assignment)
    assert sol.bound is not None
    assert sol.bound >= opt - 1e-9 * max(1.0, abs(opt))
    assert sol.objective <= opt + 1e-9 * max(1.0, abs(opt))
    if sol.status == "optimal":
        assert sol.objective == pytest.approx(opt)


def _subproblem_brute(problem: fa.AlignmentProblem, price: np.ndarray) -> np.ndarray:
    """Per client, the best reduced profit over every subset (client rows only)."""
    n, e = problem.shape
    r = problem.desirability - price[None, :]
    out = np.full(n, -np.inf)
    for size in range(0, e + 1):
        for combo in itertools.combinations(range(e), size):
            c = list(combo)
            ok = problem.fits[:, c].all(axis=1) if c else np.ones(n, dtype=bool)
            ok &= (problem.min_experts <= size) & (size <= problem.max_experts)
            if problem.expert_memory is not None:
                ok &= problem.expert_memory[c].sum() <= problem.client_memory + 1e-9
            if problem.train_time is not None:
                ok &= problem.train_time[:, c].sum(axis=1) <= problem.deadline + 1e-9
            out = np.where(ok, np.maximum(out, r[:, c].sum(axis=1)), out)
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rows", ["memory", "deadline", "both"])
def test_subproblems_exact_against_enumeration(seed: int, rows: str) -> None:
    # 40 clients x 10 experts, up to 4 experts each, random prices: every client's
    # knapsack solved exactly (value and choice) by the enumeration / branch and bound.
    rng = np.random.default_rng(seed)
    n, e = 40, 10
    kw: dict = {"max_experts": rng.integers(1, 5, size=n), "min_experts": rng.integers(0, 2, size=n)}
    if rows in ("memory", "both"):
        kw["expert_memory"] = rng.uniform(1, 3, size=e)
        kw["client_memory"] = rng.uniform(3, 9, size=n)
    if rows in ("deadline", "both"):
        kw["train_time"] = rng.uniform(0.5, 3, size=(n, e))
        kw["deadline"] = rng.uniform(3, 9, size=n)
    problem = fa.AlignmentProblem(rng.random((n, e)), **kw)
    price = rng.uniform(-0.2, 0.6, size=e)
    expected = _subproblem_brute(problem, price)
    sub = _Subproblems(problem, candidates=3, max_enum_experts=6)
    res = sub.solve(price)
    assert res.exact
    r = problem.desirability - price[None, :]
    got = np.where(res.x, r, 0.0).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert res.value == pytest.approx(expected.sum())
    # each chosen row is feasible for its client rows
    assert not [v for v in fa.check(problem, res.x) if not v.constraint.startswith("expert_")]
    # warm-started from that choice, a second solve at other prices is exact too
    price2 = price + rng.normal(scale=0.1, size=e)
    again = sub.solve(price2)
    assert again.exact
    assert again.value == pytest.approx(_subproblem_brute(problem, price2).sum())


def test_integer_dynamic_programme_is_exact() -> None:
    # Many experts per client and integer weights (OR-Library style): the DP path.
    rng = np.random.default_rng(3)
    n, e = 3, 9
    problem = fa.AlignmentProblem(
        rng.integers(1, 20, size=(n, e)).astype(float),
        max_experts=e,
        train_time=rng.integers(1, 10, size=(n, e)).astype(float),
        deadline=rng.integers(8, 20, size=n).astype(float),
        expert_min_clients=1,
        expert_max_clients=1,
    )
    sub = _Subproblems(problem, candidates=8, max_enum_experts=1)
    assert sub.dp_row is not None
    price = rng.uniform(-3, 8, size=e)
    res = sub.solve(price)
    assert res.exact
    np.testing.assert_allclose(
        np.where(res.x, problem.desirability - price, 0).sum(axis=1),
        _subproblem_brute(problem, price),
    )


def test_same_seed_same_result_and_feasible_at_moderate_size() -> None:
    from fedalign.bench.families import make_instance

    problem = make_instance("uniform", 300, 16, 1)
    a = fa.solve(problem, "lagrangian", seed=5, max_iter=30)
    b = fa.solve(problem, "lagrangian", seed=5, max_iter=30)
    assert not fa.check(problem, a.assignment)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    assert a.bound == b.bound
    assert a.bound >= a.objective
    topk_like = problem.objective(np.zeros(problem.shape, dtype=bool))
    assert a.objective > topk_like


def test_sample_phase_gives_valid_bound() -> None:
    from fedalign.bench.families import make_instance

    problem = make_instance("deadline", 600, 12, 2)
    sol = fa.solve(problem, "lagrangian", seed=0, sample_clients=150, max_iter=20)
    assert not fa.check(problem, sol.assignment)
    assert sol.bound is not None and sol.bound >= sol.objective - 1e-9


def test_no_knapsack_reaches_optimum_of_flow_problem() -> None:
    rng = np.random.default_rng(0)
    problem = fa.AlignmentProblem(
        rng.random((50, 6)), max_experts=2, expert_max_clients=12, min_experts=1
    )
    sol = fa.solve(problem, "lagrangian", seed=0)
    # Without knapsack rows the Lagrangian dual has no gap (totally unimodular rows).
    assert sol.gap is not None and sol.gap < 1e-3


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_iter", 0), ("box", 0.0), ("gap_tol", -1.0), ("candidates", 0), ("sample_share", 2.0)],
)
def test_bad_options_name_the_option(option: str, value: float) -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)))
    with pytest.raises(ValueError, match=option):
        fa.solve(problem, "lagrangian", **{option: value})


def test_infeasible_problem_raises() -> None:
    problem = fa.AlignmentProblem(
        np.ones((3, 2)), min_experts=1, max_experts=1, expert_max_clients=1
    )
    with pytest.raises(fa.InfeasibleError):
        fa.solve(problem, "lagrangian")


def test_price_repair_keeps_client_rows_and_relieves_full_experts() -> None:
    from fedalign.bench.families import make_instance
    from fedalign.solvers.lagrangian._primal import price_repair as _price_repair

    problem = make_instance("uniform", 400, 12, 3)
    sub = _Subproblems(problem, candidates=8, max_enum_experts=6)
    price = np.zeros(problem.n_experts)
    x = sub.solve(price).x  # every client's favourite subset: experts over-full
    over_before = np.maximum(x.sum(axis=0) - problem.expert_max_clients, 0).sum()
    assert over_before > 0
    y = _price_repair(problem, sub, x, price)
    over_after = np.maximum(y.sum(axis=0) - problem.expert_max_clients, 0).sum()
    assert over_after < over_before
    client_rows = {"max_experts", "min_experts", "memory", "deadline", "allowed"}
    assert not [v for v in fa.check(problem, y) if v.constraint in client_rows]


@given(problems(max_pairs=12))
@settings(max_examples=60, deadline=None)
def test_bound_never_below_optimum_on_any_tiny_problem(problem: fa.AlignmentProblem) -> None:
    # The shared strategies: every constraint kind, ties, zeros, infeasible ones.
    truth = shared_brute_force(problem)
    try:
        sol = fa.solve(problem, "lagrangian", seed=0, max_iter=40)
    except fa.InfeasibleError:
        return  # a heuristic may fail to find a point; the bound is what is tested here
    assert truth.optimum is not None  # it returned a feasible assignment
    assert sol.bound is not None
    assert sol.bound >= truth.optimum - 1e-9 * max(1.0, abs(truth.optimum))
