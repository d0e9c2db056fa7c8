"""Tests of the ``lagrangian`` solver: its bound against brute force, its subproblems, its dual
function on rows (hard and soft), options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign.solvers.base import Budget
from fedalign.solvers.lagrangian._duals import Duals
from fedalign.solvers.lagrangian._prices import State, dual_ascent
from fedalign.solvers.lagrangian._sampling import sample_problem
from fedalign.solvers.lagrangian._subproblems import Subproblems as _Subproblems
from strategies import brute_force as shared_brute_force
from strategies import problems, row_problems


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
    """Per client, the best reduced profit over every subset (client rows only, any number)."""
    n, e = problem.shape
    r = problem.desirability - (price[None, :] if price.ndim == 1 else price)
    out = np.full(n, -np.inf)
    for size in range(0, e + 1):
        for combo in itertools.combinations(range(e), size):
            c = list(combo)
            ok = problem.fits[:, c].all(axis=1) if c else np.ones(n, dtype=bool)
            ok &= (problem.min_experts <= size) & (size <= problem.max_experts)
            for row in problem.client_rows:
                used = row.dense[:, c].sum(axis=1)
                if row.upper_cap is not None:
                    ok &= used <= row.upper_cap
                if row.lower_cap is not None:
                    ok &= used >= row.lower_cap
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
    assert not [v for v in fa.check(problem, res.x) if v.constraint != "clients per expert"]
    # warm-started from that choice, a second solve at other prices is exact too
    price2 = price + rng.normal(scale=0.1, size=e)
    again = sub.solve(price2)
    assert again.exact
    assert again.value == pytest.approx(_subproblem_brute(problem, price2).sum())


@pytest.mark.parametrize("seed", [21, 24])
def test_subnormal_weights_keep_subproblems_exact(seed: int) -> None:
    # A weight of 5e-324 made the LP price of the knapsack row overflow to infinity and its
    # bound NaN, which pruned optimal subsets (the client's value came out too small).
    rng = np.random.default_rng(seed)
    n, e = 30, 6
    memory = rng.choice([0.0, 1.0, 5e-324, 2.0], size=e)
    capacity = rng.choice([0.0, 5e-324, 1.0, 2.0, 3.0], size=n)
    problem = fa.AlignmentProblem(
        rng.random((n, e)), max_experts=3, expert_memory=memory, client_memory=capacity
    )
    sub = _Subproblems(problem, candidates=2, max_enum_experts=6, bb_tol=0.0)
    for _ in range(3):
        price = rng.uniform(-0.3, 0.5, size=e)
        res = sub.solve(price)
        assert res.value == pytest.approx(_subproblem_brute(problem, price).sum())


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
    client_rows = {"experts per client", "memory", "deadline", "allowed"}
    assert not [v for v in fa.check(problem, y) if v.constraint in client_rows]


def test_price_repair_past_its_deadline_stops_and_keeps_client_rows() -> None:
    # Re-solving the moved clients stops at the budget's deadline (it ran 3 s past a 3.5 s
    # limit at 100,000 x 128): the choice still holds every client row.
    import time

    from fedalign.bench.families import make_instance
    from fedalign.solvers.lagrangian._primal import price_repair as _price_repair

    problem = make_instance("deadline", 400, 12, 3)
    sub = _Subproblems(problem, candidates=8, max_enum_experts=6)
    price = np.zeros(problem.n_experts)
    x = sub.solve(price).x
    budget = Budget(60.0)
    budget.deadline = time.perf_counter() - 1.0  # already past: one round, searches cut at once
    calls: list[float | None] = []
    real = sub.best_sets

    def spy(r: np.ndarray, rows: np.ndarray, deadline: float | None = None) -> np.ndarray:
        calls.append(deadline)
        return real(r, rows, deadline)

    sub.best_sets = spy  # type: ignore[method-assign]
    y = _price_repair(problem, sub, x, price, budget=budget)
    assert calls == []  # the round does not start once the time is up
    budget.deadline = time.perf_counter() + 60.0
    y = _price_repair(problem, sub, x, price, budget=budget)
    assert calls and all(c == budget.deadline for c in calls)
    client_rows = {"experts per client", "deadline", "allowed"}
    assert not [v for v in fa.check(problem, y) if v.constraint in client_rows]


def test_best_sets_cut_by_a_deadline_leaves_rows_empty_never_infeasible() -> None:
    import time

    from fedalign.bench.families import make_instance

    problem = make_instance("deadline", 300, 10, 1)
    sub = _Subproblems(problem, candidates=8, max_enum_experts=6)
    r = problem.desirability.copy()
    rows = np.arange(problem.n_clients)
    full = sub.best_sets(r, rows)
    cut = sub.best_sets(r, rows, time.perf_counter() - 1.0)
    assert full.any() and not cut.any()  # past the deadline no client is reached: all empty
    assert sub.deadline is None and not sub.partial  # the evaluation's own state is kept


@pytest.mark.parametrize("seed", range(3))
def test_capacity_need_per_chunk_equals_all_at_once(seed: int) -> None:
    from fedalign.bench.families import make_instance
    from fedalign.solvers.lagrangian._dominance import candidates, capacity_need

    problem = make_instance("deadline" if seed else "tight-memory", 500, 16, seed)
    whole = _Subproblems(problem, candidates=8, max_enum_experts=6)
    r = problem.desirability.copy()
    rows = np.arange(problem.n_clients)
    candidates(whole, r, rows)  # sets the weight order
    if whole.single_row() is None:
        pytest.skip("the filter needs a single client row")
    all_at_once = capacity_need(whole, rows).copy()
    parts = _Subproblems(problem, candidates=8, max_enum_experts=6)
    parts.weight_order = whole.weight_order
    order = np.random.default_rng(seed).permutation(problem.n_clients)
    for chunk in np.array_split(order, 7):
        assert (capacity_need(parts, chunk) == all_at_once[:, chunk]).all()
    assert (capacity_need(parts, rows) == all_at_once).all()


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


# --------------------------------------------------------------------------- rows


def _row_problem(seed: int, lows: bool) -> fa.AlignmentProblem:
    """40 clients x 9 experts with 1-3 client rows of every weight shape (lower bounds if asked)."""
    rng = np.random.default_rng(seed)
    n, e = 40, 9
    rows = []
    for k in range(int(rng.integers(1, 4))):
        shape = [(e,), (n, e), (n, 1)][k % 3]  # per expert, per pair, per client
        w = rng.uniform(0.5, 2, size=shape) if shape == (n, 1) else rng.uniform(0, 3, size=shape)
        upper = rng.uniform(2, 8, size=n)
        lower = None
        if lows:
            # on a fifth of the clients, small enough that most problems stay feasible
            lower = np.minimum(rng.uniform(0, 1.5, size=n) * (rng.random(n) < 0.2), upper)
        rows.append(fa.Row(f"row {k}", "client", w, lower=lower, upper=upper))
    return fa.AlignmentProblem(
        rng.random((n, e)) - 0.2,
        max_experts=rng.integers(1, 6, size=n),
        min_experts=rng.integers(0, 2, size=n),
        rows=rows,
    )


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("lows", [False, True], ids=["upper", "lower-and-upper"])
def test_subproblems_with_client_rows_exact_against_enumeration(seed: int, lows: bool) -> None:
    # Any number of client rows, weights per expert, per pair or per client, lower bounds:
    # every client's subproblem is solved exactly (cold, then warm-started), or the solver
    # proves that some client has no feasible subset.
    problem = _row_problem(seed, lows)
    rng = np.random.default_rng(seed + 100)
    price = rng.uniform(-0.2, 0.6, size=problem.n_experts)
    truth = _subproblem_brute(problem, price)
    if not np.isfinite(truth).all():
        with pytest.raises(fa.InfeasibleError, match="no set of"):
            _Subproblems(problem, candidates=3, max_enum_experts=6, bb_tol=0.0).solve(price)
        return
    sub = _Subproblems(problem, candidates=3, max_enum_experts=6, bb_tol=0.0)
    everyone = np.arange(problem.n_clients)
    for p in (price, price + rng.normal(scale=0.1, size=problem.n_experts), 0.0 * price):
        res = sub.solve(p)
        expected = _subproblem_brute(problem, p)
        assert res.exact
        got = np.where(res.x, problem.desirability - p, 0.0).sum(axis=1)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        assert res.value == pytest.approx(expected.sum())
        assert sub.complete(everyone, res.x).all()


def get_lagrangian() -> fa.solvers.base.Solver:
    """The registered solver (its declarations)."""
    return fa.solvers.get_solver("lagrangian")


def _admissible_prices(duals: Duals, rng: np.random.Generator, scale: float) -> list[np.ndarray]:
    """Random prices >= 0, soft sides capped at their last band price."""
    z = np.minimum(rng.exponential(scale, size=duals.box_scale().size), duals.caps())
    return duals.unpack(z)


@given(
    st.one_of(
        row_problems(max_pairs=12),
        row_problems(planted=False, max_pairs=12),
        row_problems(slack="tight", max_pairs=12),
        row_problems(soft=True, max_pairs=12),
        row_problems(soft=True, planted=False, max_pairs=12),
    ),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None)
def test_dual_function_bounds_the_optimum_at_any_prices(
    problem: fa.AlignmentProblem, seed: int
) -> None:
    # Weak duality on every priced row (count, weighted expert, total, soft with capped
    # prices): L(y) >= optimum for every admissible y, and the subgradient is one:
    # L(y') >= L(y) + g(y) . (y' - y) where the subproblems are exact.
    if not get_lagrangian().accepts(problem):
        return  # soft client rows: refused
    truth = shared_brute_force(problem)
    if not truth.feasible:
        return
    rng = np.random.default_rng(seed)
    duals = Duals(problem)
    sub = _Subproblems(problem, candidates=3, max_enum_experts=6, bb_tol=0.0)
    points = []
    for scale in (0.0, 0.1, 1.0, 5.0):
        prices = _admissible_prices(duals, rng, scale) if scale else duals.zeros()
        res = sub.solve(duals.price(prices))
        value = duals.value(res.value, prices)
        assert value >= truth.optimum - 1e-9 * max(1.0, abs(truth.optimum))
        assert res.exact
        points.append((duals.pack(prices), value, duals.gradient(res.x, res.load, prices)))
    for z, value, g in points:
        for z2, value2, _ in points:
            assert value2 >= value + g @ (z2 - z) - 1e-9 * (1.0 + abs(value))


@given(
    st.one_of(
        row_problems(max_pairs=12),
        row_problems(slack="tight", max_pairs=12),
        row_problems(soft=True, max_pairs=12),
        row_problems(soft=True, slack="tight", max_pairs=12),
    )
)
@settings(max_examples=60, deadline=None)
def test_dual_ascent_bound_on_row_problems(problem: fa.AlignmentProblem) -> None:
    # The bound the price method proves (independent of whether a plan is found).
    if not get_lagrangian().accepts(problem):
        return
    truth = shared_brute_force(problem)
    state = State(prices=Duals(problem).zeros())
    options = {"candidates": 8, "max_enum_experts": 6, "bb_tol": 1e-4, "node_budget": 800}
    try:
        dual_ascent(
            problem, state, budget=Budget(None), stop_at=np.inf, rng=np.random.default_rng(0),
            max_iter=30, gap_tol=1e-4, box=0.1, repair_share=0.5, sub_options=options, primal=False,
        )
    except fa.InfeasibleError:
        assert not truth.feasible  # a client with no feasible subset
        return
    if truth.feasible:
        assert state.bound >= truth.optimum - 1e-9 * max(1.0, abs(truth.optimum))


def _soft_total_problem(
    lower: float | None = None, upper: float | None = 1.0
) -> fa.AlignmentProblem:
    """One client, experts worth 5, 3 and 1.5; a soft total row with bands 1, 2, then 4."""
    row = fa.Row("budget", "total", 1.0, lower=lower, upper=upper, penalty=[1.0, 2.0, 4.0])
    return fa.AlignmentProblem([[5.0, 3.0, 1.5]], max_experts=3, rows=[row])


@pytest.mark.parametrize(
    ("lam", "value", "slope"),
    [
        # L(lam) = sum (d - lam)^+ + lam * 1 + (lam - 1)^+ + (lam - 2)^+
        (0.0, 9.5, 1 - 3 + 0),  # takes all three: usage 3
        (1.5, 3.5 + 1.5 + 1.5 + 0.5, 1 - 2 + 1),  # = 7.0, the optimum (take two, pay 1)
        (3.0, 2.0 + 3.0 + 2.0 + 1.0, 1 - 1 + 2),  # = 8.0
        (4.0, 1.0 + 4.0 + 3.0 + 2.0, 1 - 1 + 2),  # the cap: the last band price
    ],
)
def test_soft_upper_row_conjugate_by_hand(lam: float, value: float, slope: float) -> None:
    # A soft upper bound u with bands p = (1, 2, 4) is a price lam in [0, 4] plus the term
    # sum_{c < 3} (lam - p_c)^+; its subgradient gains #{c < 3: lam > p_c}.
    problem = _soft_total_problem()
    assert shared_brute_force(problem).optimum == pytest.approx(7.0)
    duals = Duals(problem)
    assert [(s.name, s.sign) for s in duals.sides[2:]] == [("budget", 1.0)]
    assert duals.caps()[-1] == 4.0
    prices = duals.zeros()
    prices[2][0] = lam
    sub = _Subproblems(problem, candidates=8, max_enum_experts=6, bb_tol=0.0)
    res = sub.solve(duals.price(prices))
    assert duals.value(res.value, prices) == pytest.approx(value)
    assert duals.gradient(res.x, res.load, prices)[-1] == pytest.approx(slope)


def test_soft_lower_row_conjugate_by_hand() -> None:
    # A soft lower bound 3 on the same row: taking the 1.5 expert is worth it (its penalty
    # would be 1). L(mu) = sum (d + mu)^+ - 3 mu + (mu - 1)^+ + (mu - 2)^+; at mu = 2.5:
    # 7.5 + 5.5 + 4 - 7.5 + 1.5 + 0.5 = 11.5 >= the optimum 9.5 (all three, no penalty).
    problem = _soft_total_problem(lower=3.0, upper=None)
    assert shared_brute_force(problem).optimum == pytest.approx(9.5)
    duals = Duals(problem)
    prices = duals.zeros()
    prices[2][0] = 2.5
    sub = _Subproblems(problem, candidates=8, max_enum_experts=6, bb_tol=0.0)
    res = sub.solve(duals.price(prices))
    assert duals.value(res.value, prices) == pytest.approx(11.5)
    # usage 3 - lower 3 + two bands below mu
    assert duals.gradient(res.x, res.load, prices)[-1] == pytest.approx(2.0)


def test_soft_row_solved_to_its_optimum() -> None:
    problem = _soft_total_problem()
    sol = fa.solve(problem, "lagrangian", seed=0)
    assert sol.objective == pytest.approx(7.0)
    assert sol.bound == pytest.approx(7.0, abs=1e-6)


def test_weighted_expert_and_total_rows_priced_per_pair() -> None:
    # Weights that vary over clients make the prices per pair; per-expert ones keep them
    # one per expert (the fast path of the subproblems).
    rng = np.random.default_rng(0)
    d = rng.random((5, 3))
    per_expert = fa.Row("bytes", "expert", [1.0, 2.0, 3.0], upper=4.0)
    per_client = fa.Row("server", "total", rng.uniform(1, 2, size=(5, 1)), upper=6.0)
    duals = Duals(fa.AlignmentProblem(d, max_experts=2, rows=[per_expert]))
    prices = duals.zeros()
    prices[2][:] = [0.5, 0.0, 1.0]
    np.testing.assert_allclose(duals.price(prices), [0.5, 0.0, 3.0])
    problem = fa.AlignmentProblem(d, max_experts=2, rows=[per_expert, per_client])
    duals = Duals(problem)
    prices = duals.zeros()
    prices[3][0] = 2.0
    price = duals.price(prices)
    assert price.shape == (5, 3)
    np.testing.assert_allclose(price, 2.0 * np.broadcast_to(per_client.weight, (5, 3)))


def test_sample_problem_carries_every_row() -> None:
    rng = np.random.default_rng(1)
    n, e = 40, 4
    rows = [
        fa.Row(
            "bandwidth", "client", rng.uniform(0, 2, size=(n, e)),
            lower=0.5, upper=rng.uniform(2, 4, size=n),
        ),
        fa.Row("bytes", "expert", [1.0, 2.0, 3.0, 4.0], upper=[10.0, 20.0, 30.0, 40.0]),
        fa.Row("server", "total", rng.uniform(1, 2, size=(n, 1)), lower=5.0, upper=50.0),
        fa.Row("load", "expert", 1.0, upper=8, penalty=[0.5, 1.0]),
    ]
    problem = fa.AlignmentProblem(rng.random((n, e)), max_experts=2, rows=rows)
    sample, duals = sample_problem(problem, 10, np.random.default_rng(0))
    assert sample.n_clients == 10
    (bandwidth,) = [r for r in sample.client_rows if r.name == "bandwidth"]
    assert bandwidth.weight.shape == (10, e) and bandwidth.lower is not None
    sides = {(s.name, s.sign): s for s in duals.sides}
    # hard bounds carry the checker's tolerance, scaled with the share like the rest
    expected = np.array([10.0, 20.0, 30.0, 40.0]) * (1 + 1e-9) * 0.25
    np.testing.assert_allclose(sides["bytes", 1.0].bound, expected, rtol=1e-12)
    assert sides["server", -1.0].bound[0] == pytest.approx(5.0 * 0.25, rel=1e-8)
    assert sides["server", 1.0].weight.shape == (10, 1)
    assert sides["load", 1.0].bound[0] == pytest.approx(2.0) and sides["load", 1.0].share == 0.25


def test_soft_client_rows_are_refused() -> None:
    row = fa.Row("floor", "client", 1.0, lower=1.0, penalty=0.5)
    problem = fa.AlignmentProblem(np.ones((2, 2)), rows=[row])
    with pytest.raises(fa.UnsupportedProblemError, match="lagrangian"):
        fa.solve(problem, "lagrangian")


@pytest.mark.parametrize("seed", range(3))
def test_rows_solved_with_a_valid_bound(seed: int) -> None:
    # 300 x 8 with a weighted expert row, a total row, a soft load target and a client row
    # with a lower bound: the dual bound is above the plan whatever the primal side finds.
    rng = np.random.default_rng(seed)
    n, e = 300, 8
    size = rng.uniform(1, 3, size=e)
    rows = [
        fa.Row("bytes", "expert", size, upper=size * n * 1.5 / e),
        fa.Row("server", "total", rng.uniform(0.5, 1.5, size=(n, 1)), upper=1.2 * n),
        fa.Row("load target", "expert", 1.0, upper=n * 1.5 / e * 0.8, penalty=[0.05, 0.2]),
        fa.Row("bandwidth", "client", rng.uniform(0, 2, size=(n, e)), lower=0.1, upper=4.0),
    ]
    problem = fa.AlignmentProblem(rng.random((n, e)), max_experts=3, rows=rows)
    state = State(prices=Duals(problem).zeros())
    options = {"candidates": 8, "max_enum_experts": 6, "bb_tol": 1e-4, "node_budget": 800}
    dual_ascent(
        problem, state, budget=Budget(None), stop_at=np.inf, rng=np.random.default_rng(0),
        max_iter=25, gap_tol=1e-4, box=0.1, repair_share=0.5, sub_options=options,
    )
    assert np.isfinite(state.bound)
    if state.best_x is not None:
        assert not fa.check(problem, state.best_x)
        assert state.bound >= problem.objective(state.best_x) - 1e-9 * abs(state.bound)


def test_a_first_plan_predicted_past_the_limit_raises_at_once() -> None:
    """The first pass over every client cannot be cut short: when it is predicted to end past
    the limit and its tolerance, the solver says so at once (a TimeLimitError naming the
    limit), and never without a limit or a prediction."""
    from fedalign.solvers.lagrangian._solver import _check_first_plan_fits

    problem = fa.AlignmentProblem(np.ones((3, 2)), max_experts=1)
    with pytest.raises(fa.TimeLimitError, match="time limit of 1 s.*about 5.0 s"):
        _check_first_plan_fits(problem, Budget(1.0, "lagrangian"), 5.0)
    _check_first_plan_fits(problem, Budget(1.0, "lagrangian"), 0.5)  # fits
    _check_first_plan_fits(problem, Budget(1.0, "lagrangian"), None)  # small: not predicted
    _check_first_plan_fits(problem, Budget(None, "lagrangian"), 5.0)  # no limit


def test_trim_to_caps_keeps_each_experts_best_holders() -> None:
    from fedalign.solvers.lagrangian._primal import trim_to_caps

    x = np.array([[1, 1], [1, 0], [1, 1], [1, 0]], dtype=bool)
    reduced = np.array([[0.1, 0.9], [0.7, 0.0], [0.4, 0.2], [0.9, 0.0]])
    y = trim_to_caps(x, reduced + 1.0, np.ones(2), np.array([2.0, 5.0]))
    assert y[:, 0].tolist() == [False, True, False, True]  # the two best holders of expert 0
    assert (y[:, 1] == x[:, 1]).all()  # under its cap: untouched
    assert not (y & ~x).any()  # only removes


def test_a_cohort_past_its_soft_caps_is_cut_back_when_the_spread_repair_has_no_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round where every client prefers expert 0 a little: the subproblems' choice piles
    everyone onto it and a soft load row (as the Scheduler's) charges for it. When the price repair to
    the soft caps cannot run (out of time at 100,000 clients), the choice cut back to the
    caps, with the clients it emptied given their best other expert, is the plan."""
    from fedalign.solvers.lagrangian import _prices

    d = np.tile([0.51, 0.5, 0.5, 0.5, 0.5, 0.5], (60, 1))
    load_row = fa.Row("round load", "expert", 1.0, upper=10, penalty=[0.25 * k for k in range(1, 9)])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, rows=[load_row])
    herd = np.zeros(problem.shape, dtype=bool)
    herd[:, 0] = True
    real = _prices._repaired

    def no_spread(*args: object, cap: object = None, **kwargs: object) -> object:
        return None if cap is not None else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_prices, "_repaired", no_spread)
    sol = fa.solve(problem, "lagrangian", max_iter=1, local_search=False)
    load = sol.assignment.sum(axis=0)
    assert not fa.check(problem, sol.assignment)
    assert load.sum() == 60 and load.max() <= 10 + 1, load  # fair share 10 each
    assert sol.objective > problem.objective(herd) + 1.0


def test_the_price_repairs_plan_is_kept_when_the_fill_runs_out_of_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of time in the final fill, a feasible price-repaired plan is still a plan."""
    from fedalign.bench.families import make_instance
    from fedalign.solvers.lagrangian import _prices

    problem = make_instance("uniform", 400, 12, 3)

    def out_of_time(*args: object, **kwargs: object) -> object:
        raise fa.TimeLimitError("out of time")

    monkeypatch.setattr(_prices, "repair", out_of_time)
    sol = fa.solve(problem, "lagrangian", max_iter=3, local_search=False)
    assert not fa.check(problem, sol.assignment)
    assert sol.bound >= sol.objective
