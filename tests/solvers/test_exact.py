"""``lp``, ``cpsat`` and ``milp``: bounds, exactness against brute force, infeasibility.

The shared contract suite checks every solver's generic promises; here are the ones
specific to these three: the LP bound is never below the optimum, CP-SAT and the MILP equal
brute force on tiny problems with knapsack rows (including non-integral data, which CP-SAT
must scale soundly), their bounds stay valid under a time limit, and a proven-infeasible
problem raises :class:`~fedalign.InfeasibleError`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign.solvers import _worker, get_solver
from fedalign.solvers import lp as lp_module
from fedalign.solvers.cpsat import _row_scales, _scaled_rows
from fedalign.solvers.lp import dual_bound
from fedalign.solvers.standard import StandardForm, standard_form
from strategies import (
    all_assignments,
    brute_force,
    describe,
    feasible_mask,
    feasible_problems,
    infeasible_problems,
    objective_tolerance,
    problems,
    row_problems,
)


def _knapsack_problem(seed: int, n: int = 60, e: int = 10) -> fa.AlignmentProblem:
    rng = np.random.default_rng(seed)
    return fa.AlignmentProblem(
        rng.random((n, e)),
        max_experts=3,
        min_experts=1,
        expert_memory=rng.uniform(1.0, 4.0, e),
        client_memory=rng.uniform(3.0, 9.0, n),
        train_time=rng.uniform(1.0, 3.0, (n, e)),
        deadline=5.0,
        expert_max_clients=int(n * 2 / e),
    )


# --------------------------------------------------------------------------- lp


@settings(max_examples=80)
@given(problems(max_pairs=12))
def test_lp_bound_is_above_the_optimum(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    best = brute_force(problem)
    if not best.feasible:
        with pytest.raises(fa.InfeasibleError):
            fa.solve(problem, solver="lp")
        return
    tol = objective_tolerance(problem)
    try:
        sol = fa.solve(problem, solver="lp", seed=0)
    except fa.InfeasibleError:
        return  # rounding and repair are heuristic; an exact solver decides
    assert sol.bound is not None and sol.bound >= best.optimum - 1e-9 * max(1, abs(best.optimum))
    assert sol.objective <= best.optimum + tol
    if sol.status == "optimal":
        assert sol.objective == pytest.approx(best.optimum, abs=tol)


@settings(max_examples=60)
@given(st.one_of(row_problems(soft=True), row_problems(planted=False), row_problems(soft=True, slack="tight")))
def test_lp_bound_is_above_the_optimum_on_rows(problem: fa.AlignmentProblem) -> None:
    # Hard rows of every kind and soft rows: the bound covers the true objective
    # (desirability minus penalties) of every plan check() accepts.
    note(describe(problem))
    best = brute_force(problem)
    try:
        sol = fa.solve(problem, solver="lp", seed=0)
    except fa.InfeasibleError:
        return  # rounding and repair are heuristic; an exact solver decides
    assert best.feasible
    tol = objective_tolerance(problem)
    assert sol.bound is not None and sol.bound >= best.optimum - 1e-9 * max(1, abs(best.optimum))
    assert sol.objective <= best.optimum + tol
    if sol.status == "optimal":
        assert sol.objective == pytest.approx(best.optimum, abs=tol)


@settings(max_examples=40)
@given(feasible_problems(slack="loose", max_pairs=12))
def test_lp_finds_loose_problems(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    sol = fa.solve(problem, solver="lp", seed=0)
    assert not fa.check(problem, sol.assignment)


def test_lp_is_optimal_without_knapsack_rows() -> None:
    # Totally unimodular: the LP optimum is integral, so rounding keeps it.
    rng = np.random.default_rng(3)
    problem = fa.AlignmentProblem(
        rng.random((80, 8)), max_experts=2, min_experts=1, expert_max_clients=25
    )
    lp = fa.solve(problem, solver="lp")
    exact = fa.solve(problem, solver="flow")
    assert lp.objective == pytest.approx(exact.objective, rel=1e-9)
    assert lp.bound >= exact.objective - 1e-9
    assert lp.status == "optimal"


def test_lp_in_a_worker_equals_lp_here(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a time limit a large LP runs in a worker process; its answer is the same.
    problem = _knapsack_problem(1, n=40, e=6)
    here = fa.solve(problem, solver="lp", seed=0)
    monkeypatch.setattr(lp_module, "ISOLATE_PAIRS", 0)
    isolated = fa.solve(problem, solver="lp", seed=0, time_limit=60.0)
    assert isolated.bound == pytest.approx(here.bound, rel=1e-9)
    assert isolated.objective == pytest.approx(here.objective, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_lp_stopped_at_its_limit_rounds_from_nothing(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker stopped before HiGHS answered: a feasible plan without a bound (none is proven).
    problem = _knapsack_problem(seed, n=40, e=6)
    monkeypatch.setattr(lp_module, "ISOLATE_PAIRS", 0)
    monkeypatch.setattr(lp_module._worker, "call", lambda fn, args, timeout: _worker.Outcome(False, None, timeout, True))
    sol = fa.solve(problem, solver="lp", seed=0, time_limit=60.0)
    assert not fa.check(problem, sol.assignment)
    assert sol.bound is None and sol.status == "feasible"
    assert "stopped at the time limit" in sol.info["lp_message"]


def test_lp_with_no_window_left_skips_the_lp(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _knapsack_problem(0, n=40, e=6)
    monkeypatch.setattr(lp_module, "ISOLATE_PAIRS", 0)
    monkeypatch.setattr(lp_module, "ROUND_SECONDS_PER_PAIR", 1e6)  # no window for the LP at all

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(lp_module._worker, "call", no_fork)
    sol = fa.solve(problem, solver="lp", seed=0, time_limit=60.0)  # rounds from nothing in time
    assert sol.bound is None and not fa.check(problem, sol.assignment)


def test_lp_bound_dominates_milp_optimum() -> None:
    problem = _knapsack_problem(0, n=30, e=6)
    milp = fa.solve(problem, solver="milp")
    lp = fa.solve(problem, solver="lp")
    assert milp.status == "optimal"
    assert lp.bound >= milp.objective - 1e-9
    assert lp.objective <= milp.objective + 1e-9


# --------------------------------------------------------------------------- cpsat and milp


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
@settings(max_examples=60)
@given(problem=problems(max_pairs=12))
def test_exact_solvers_equal_brute_force(solver: str, problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    best = brute_force(problem)
    if not best.feasible:
        with pytest.raises(fa.InfeasibleError):
            fa.solve(problem, solver=solver, seed=0)
        return
    sol = fa.solve(problem, solver=solver, seed=0, time_limit=20)
    tol = objective_tolerance(problem)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(best.optimum, abs=tol)
    assert sol.bound is not None and sol.bound >= best.optimum - tol


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_tight_fractional_knapsacks(solver: str) -> None:
    # Capacities exactly equal to the chosen experts' sizes, in non-integral units: CP-SAT's
    # scaled rows must keep these assignments feasible.
    d = np.array([[1.0, 0.9, 0.3], [0.2, 1.0, 0.7]])
    problem = fa.AlignmentProblem(
        d,
        max_experts=3,
        expert_memory=[0.7, 0.1, 0.35],
        client_memory=[0.8, 0.45],
        train_time=[[0.3, 0.6, 0.1], [0.1, 0.2, 0.15]],
        deadline=[0.9, 0.35],
    )
    best = brute_force(problem)
    sol = fa.solve(problem, solver=solver, seed=0)
    assert sol.objective == pytest.approx(best.optimum, abs=1e-9)
    assert sol.status == "optimal"


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_bound_valid_under_time_limit(solver: str) -> None:
    problem = _knapsack_problem(1)
    reference = fa.solve(problem, solver="milp", time_limit=30)
    sol = fa.solve(problem, solver=solver, time_limit=1.0, seed=0)
    assert not fa.check(problem, sol.assignment)
    if sol.bound is not None:
        assert sol.bound >= sol.objective
        assert sol.bound >= reference.objective - 1e-6
    if sol.status == "optimal":
        assert sol.objective == pytest.approx(reference.objective, abs=1e-6)


def test_cpsat_without_hint_and_options() -> None:
    problem = _knapsack_problem(2, n=20, e=5)
    a = fa.solve(problem, solver="cpsat", hint=False, num_workers=1, seed=3, time_limit=10)
    b = fa.solve(problem, solver="milp")
    assert a.objective == pytest.approx(b.objective, abs=1e-6)
    with pytest.raises(ValueError, match="num_workers"):
        fa.solve(problem, solver="cpsat", num_workers=0)


def test_cpsat_integral_data_are_exact() -> None:
    # OR-Library style: integer profits, weights and capacities; no scaling error at all.
    rng = np.random.default_rng(5)
    problem = fa.AlignmentProblem(
        rng.integers(-5, 20, (8, 4)).astype(float),
        max_experts=4,
        expert_memory=rng.integers(1, 6, 4).astype(float),
        client_memory=rng.integers(3, 10, 8).astype(float),
    )
    sol = fa.solve(problem, solver="cpsat", seed=0)
    assert sol.info["exact_objective"] and sol.info["tolerance"] == 0.0
    assert sol.bound == pytest.approx(sol.objective)
    assert sol.objective == pytest.approx(fa.solve(problem, solver="milp").objective)


@pytest.mark.parametrize("solver", ["cpsat", "milp", "lp"])
@settings(max_examples=25)
@given(problem=infeasible_problems())
def test_infeasible_problems_raise(solver: str, problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    with pytest.raises(fa.InfeasibleError):
        fa.solve(problem, solver=solver, seed=0, time_limit=20)


def test_milp_reports_backend_and_bound() -> None:
    problem = _knapsack_problem(4, n=20, e=5)
    sol = get_solver("milp").solve(problem)
    assert sol.info["backend"] in {"HiGHS", "HiGHS_CMD", "PULP_CBC_CMD"}
    assert sol.status == "optimal"
    assert sol.bound >= sol.objective


def test_cpsat_returns_its_hint_when_out_of_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # CP-SAT stopped before its first solution (status UNKNOWN): the greedy hint, which
    # is feasible, is returned without a bound (CP-SAT reports none without a solution).
    from ortools.sat.python import cp_model

    real_solve = cp_model.CpSolver.solve

    def presolve_only(self: cp_model.CpSolver, model: cp_model.CpModel, *args: object) -> object:
        self.parameters.stop_after_presolve = True
        return real_solve(self, model, *args)

    monkeypatch.setattr(cp_model.CpSolver, "solve", presolve_only)
    problem = _knapsack_problem(6, n=20, e=5)
    sol = fa.solve(problem, solver="cpsat", time_limit=1.0)
    assert sol.info["returned_hint"] and sol.bound is None and sol.status == "feasible"
    greedy = fa.solve(problem, solver="greedy", seed=0)
    assert sol.objective == pytest.approx(greedy.objective)
    with pytest.raises(fa.InfeasibleError, match="time limit"):
        fa.solve(problem, solver="cpsat", hint=False, time_limit=1.0)


@pytest.mark.parametrize(
    "d",
    [
        [[5e-324, 0.0], [0.0, -5e-324]],
        [[1e-300, 3e-300], [2e-300, -1e-300]],
        [[1e299, -1e299], [-5e298, 6e298]],
        [[0.3, 1e-300], [2.5e-7, 0.1]],
    ],
    ids=["subnormal", "tiny", "huge", "mixed"],
)
def test_cpsat_extreme_desirability_scales_soundly(d: list[list[float]]) -> None:
    # Regression: 2**30 / max|d| overflowed to inf for tiny |d|, and the inf/NaN coefficients
    # made CP-SAT's weighted_sum raise TypeError. The scale must stay finite (a power of two,
    # so d * S is exact) and the bound and tolerance must stay valid.
    problem = fa.AlignmentProblem(np.array(d), max_experts=1, expert_max_clients=1)
    sol = fa.solve(problem, solver="cpsat", seed=0)
    best = brute_force(problem)
    scale, tol = sol.info["scale"], sol.info["tolerance"]
    assert np.isfinite(scale) and scale > 0 and np.isfinite(tol)
    assert sol.status == "optimal"
    assert abs(sol.objective - best.optimum) <= tol
    assert sol.bound is not None and sol.bound >= best.optimum
    assert np.frexp(scale)[0] == 0.5  # a power of two
    top = float(np.abs(problem.desirability).max())
    assert tol <= max(1e-6 * top, 2 * 2.0**-1020)


_MILP_SCRIPT = """
import numpy as np
import fedalign as fa
sol = fa.solve(fa.AlignmentProblem(np.eye(3), max_experts=1), solver="milp")
assert sol.status == "optimal", sol.status
"""


def test_milp_prints_nothing_in_a_fresh_process() -> None:
    # Regression: HiGHS prints its banner ("Running HiGHS ... Copyright ...") from C++ in
    # the highspy.Highs() constructor, once per process and whatever msg says. A fresh
    # process is the only place the first construction is certain to happen.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _MILP_SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout == "" and out.stderr == ""


def test_milp_leaves_file_descriptors_working(capfd: pytest.CaptureFixture[str]) -> None:
    # The banner is silenced by swapping fds 1 and 2 around the HiGHS construction; output
    # written before and after, at the fd level, must still arrive where it belongs.
    import os
    from concurrent.futures import ThreadPoolExecutor

    os.write(1, b"before-out\n")
    problem = _knapsack_problem(8, n=12, e=4)
    with ThreadPoolExecutor(2) as pool:
        sols = list(pool.map(lambda s: fa.solve(problem, solver="milp", seed=s), [0, 1]))
    assert all(s.status == "optimal" for s in sols)
    os.write(1, b"after-out\n")
    os.write(2, b"after-err\n")
    out, err = capfd.readouterr()
    assert "HiGHS" not in out + err
    assert out == "before-out\nafter-out\n" and err == "after-err\n"


# --------------------------------------------------------------------------- the standard form


def _hard_ok(sf: StandardForm, used: np.ndarray) -> np.ndarray:
    """Per assignment of a stack (rows of ``used``), whether every hard matrix row holds."""
    hard = np.array([sf.blocks[b].side is None for b in sf.row_block], dtype=bool)
    ok = (used >= sf.row_lower) & (used <= sf.row_upper)
    return ok[:, hard].all(axis=1)


@settings(max_examples=60)
@given(
    st.one_of(
        row_problems(planted=False),
        row_problems(soft=True),
        row_problems(soft=True, slack="tight"),
        problems(max_pairs=12),
    )
)
def test_standard_form_reproduces_rows_and_penalties(problem: fa.AlignmentProblem) -> None:
    # For every assignment over the pairs that fit: A z gives each row's usage, the excess
    # columns filled in order cost exactly the penalties (c.z is the objective), every column
    # stays in its box, and the hard matrix rows hold exactly when check() accepts.
    note(describe(problem))
    sf = standard_form(problem)
    n, e = problem.shape
    xs = all_assignments(n, e)
    xs = xs[~(xs & ~problem.fits).any(axis=(1, 2))]
    assert sf.n_pairs == int(problem.fits.sum()) and sf.A.shape == (sf.n_rows, sf.n_columns)
    assert np.all(np.diff(sf.row_block) >= 0)
    for x in xs[:: max(1, len(xs) // 64)]:
        used = sf.usage(x)
        for block in sf.blocks:
            np.testing.assert_allclose(used[block.start : block.stop], block.row.usage(x), atol=1e-12)
        z = sf.columns(x)
        assert np.all(z >= sf.col_lower) and np.all(z <= sf.col_upper + 1e-12)
        assert sf.c @ z == pytest.approx(problem.objective(x), abs=1e-9)
        assert -sf.c[sf.n_pairs :] @ z[sf.n_pairs :] == pytest.approx(problem.penalty(x), abs=1e-9)
        full = sf.A @ z
        soft = np.array([sf.blocks[b].side is not None for b in sf.row_block], dtype=bool)
        assert np.all(full[soft] <= sf.row_upper[soft] + 1e-9)
        assert np.all(full[soft] >= sf.row_lower[soft] - 1e-9)
    used = np.stack([sf.usage(x) for x in xs])
    np.testing.assert_array_equal(_hard_ok(sf, used), feasible_mask(problem, xs))


@settings(max_examples=40)
@given(st.one_of(row_problems(planted=False), row_problems(soft=True, slack="tight")))
def test_standard_form_inequalities_are_the_rows(problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    sf = standard_form(problem)
    a_ub, b_ub, source, sign = sf.inequalities()
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = rng.uniform(sf.col_lower, sf.col_upper) * rng.integers(0, 2, sf.n_columns)
        used = sf.A @ z
        ranged = (used >= sf.row_lower) & (used <= sf.row_upper)
        rows_ok = np.ones(sf.n_rows, dtype=bool)
        np.logical_and.at(rows_ok, source, a_ub @ z <= b_ub)
        np.testing.assert_array_equal(rows_ok, ranged)
    np.testing.assert_array_equal(np.unique(source), np.flatnonzero(np.isfinite(sf.row_lower) | np.isfinite(sf.row_upper)))
    assert set(np.unique(sign)) <= {-1.0, 1.0}


def test_standard_form_soft_bands() -> None:
    # Prices 1, 2, 5: a soft load of at most 1 per expert, 4 clients -> at most 3 units of
    # excess: bands of width 1, 1 and 1 (the last price, for the rest); a lower side of 2.5
    # per client with prices 0.5, 1, 1.5, 2 -> bands 1, 1 and 0.5 (the fourth never reached).
    rows = [
        fa.Row("load", "expert", 1.0, upper=1, penalty=[1.0, 2.0, 5.0]),
        fa.Row("floor", "client", [[1.0, 1.0]], lower=2.5, penalty=[0.5, 1.0, 1.5, 2.0]),
    ]
    problem = fa.AlignmentProblem(np.ones((4, 2)), max_experts=2, rows=rows)
    sf = standard_form(problem)
    by_row = {b.row.name: b for b in sf.blocks}
    load = (sf.excess_row >= by_row["load"].start) & (sf.excess_row < by_row["load"].stop)
    np.testing.assert_array_equal(sf.excess_band[load], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(sf.col_upper[sf.n_pairs :][load], [1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(sf.c[sf.n_pairs :][load], [-1, -2, -5] * 2)
    floor = ~load
    np.testing.assert_array_equal(sf.col_upper[sf.n_pairs :][floor], [1, 1, 0.5] * 4)
    np.testing.assert_array_equal(sf.c[sf.n_pairs :][floor], [-0.5, -1.0, -1.5] * 4)
    assert sf.describe(int(sf.excess_row[0]), problem) == "load (upper side): expert 0 (position 0)"
    # One price: a single band holds all the excess.
    one = fa.Row("floor", "client", 1.0, lower=2.5, penalty=0.5)
    sf = standard_form(fa.AlignmentProblem(np.ones((4, 2)), max_experts=2, rows=[one]))
    np.testing.assert_array_equal(sf.col_upper[sf.n_pairs :], [2.5] * 4)


def test_standard_form_keyword_rows() -> None:
    # The count rows come first and carry integral bounds; knapsack caps carry the
    # checker's tolerance; a lower bound of 0 is no row side at all.
    problem = _knapsack_problem(0, n=6, e=3)
    sf = standard_form(problem)
    names = [b.row.name for b in sf.blocks]
    assert names == ["experts per client", "clients per expert", "memory", "deadline"]
    count = sf.blocks[0]
    np.testing.assert_array_equal(sf.row_upper[count.start : count.stop], problem.max_experts)
    np.testing.assert_array_equal(sf.row_lower[count.start : count.stop], problem.min_experts)
    seat = sf.blocks[1]
    assert np.all(sf.row_lower[seat.start : seat.stop] == -np.inf)
    memory = sf.blocks[2]
    np.testing.assert_array_equal(sf.row_upper[memory.start : memory.stop], problem.row("memory").upper_cap)
    assert sf.n_columns == sf.n_pairs and sf.integral.all()


# --------------------------------------------------------------------------- the lp bound


@settings(max_examples=40)
@given(st.one_of(row_problems(soft=True), row_problems(planted=False), problems(max_pairs=12)))
def test_dual_bound_holds_for_any_duals(problem: fa.AlignmentProblem) -> None:
    # The bound formula is valid for every y >= 0, with boxes of any width (excess columns).
    note(describe(problem))
    best = brute_force(problem)
    if not best.feasible:
        return
    sf = standard_form(problem)
    a_ub, b_ub, _, _ = sf.inequalities()
    rng = np.random.default_rng(1)
    for scale in (0.0, 0.5, 3.0):
        marginals = -scale * rng.random(b_ub.size)
        bound = dual_bound(a_ub, b_ub, sf.c, sf.col_lower, sf.col_upper, marginals)
        assert bound >= best.optimum - 1e-9


# --------------------------------------------------------------------------- cpsat scaling


def _scaled_client_row(weights: np.ndarray, lower: float | None, upper: float | None) -> tuple[
    fa.AlignmentProblem, np.ndarray, int, int
]:
    """One client, one row over its experts: (problem, integer coefficient per expert (0 where
    the pair does not fit), lower', upper')."""
    row = fa.Row("row", "client", weights[None, :], lower=lower, upper=upper)
    problem = fa.AlignmentProblem(np.ones((1, weights.size)), max_experts=weights.size, rows=[row])
    sf = standard_form(problem)
    coef, lo, hi, _, _ = _scaled_rows(problem, sf, _row_scales(problem))
    block = next(b for b in sf.blocks if b.row.name == "row")
    a, b = sf.A.indptr[block.start], sf.A.indptr[block.start + 1]
    per_expert = np.zeros(weights.size, dtype=np.int64)
    per_expert[sf.cols[sf.A.indices[a:b]]] = coef[a:b]
    return problem, per_expert, int(lo[block.start]), int(hi[block.start])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("side", ["upper", "lower"])
def test_cpsat_rounded_rows_keep_feasible_and_pass_check(seed: int, side: str) -> None:
    # Fractional weights, a bound equal to the exact sum of a subset, moved by less than,
    # about, and more than the checker's tolerance: every truly feasible subset (exact
    # rational arithmetic, no tolerance) stays feasible in integers, and every subset the
    # integer row admits passes check().
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    e = 9
    weights = rng.uniform(0.01, 4.0, e) * (10.0 ** rng.integers(-3, 4))
    chosen = rng.random(e) < 0.5
    exact_sum = sum((Fraction(float(w)) for w in weights[chosen]), Fraction(0))
    base = float(exact_sum)
    tol = 1e-9 * max(1.0, abs(base))
    xs = all_assignments(1, e)[:, 0, :]
    sums = [sum((Fraction(float(w)) for w in weights[x]), Fraction(0)) for x in xs]
    for delta in (-2 * tol, -tol / 2, -1e-3 * tol, 0.0, 1e-3 * tol, tol / 4, tol / 2, tol, 2 * tol):
        bound = base + delta
        if bound < 0:
            continue
        problem, coef, lo, hi = _scaled_client_row(
            weights, bound if side == "lower" else None, bound if side == "upper" else None
        )
        z = xs.astype(object) @ coef.astype(object)  # Python integers: no overflow
        admitted = (z >= lo) & (z <= hi) & ~(xs & ~problem.fits[0]).any(axis=1)
        truly = np.array([(s <= Fraction(bound)) if side == "upper" else (s >= Fraction(bound)) for s in sums])
        assert admitted[truly].all(), f"a truly feasible subset was cut off (delta {delta:g})"
        for x in xs[admitted]:
            assert not fa.check(problem, x[None, :]), f"an admitted subset fails check (delta {delta:g})"


def test_cpsat_exact_rows_are_the_checkers() -> None:
    # Quarters and halves: scaled by 4, used exactly; the integer row admits exactly what
    # check() accepts.
    weights = np.array([0.25, 0.5, 1.75, 2.0, 0.75])
    for lower, upper in ((None, 2.5), (1.0, None), (0.75, 2.25)):
        problem, coef, lo, hi = _scaled_client_row(weights, lower, upper)
        np.testing.assert_array_equal(coef, weights * 4)
        xs = all_assignments(1, weights.size)[:, 0, :]
        z = xs @ coef
        admitted = (z >= lo) & (z <= hi) & ~(xs & ~problem.fits[0]).any(axis=1)
        accepted = np.array([not fa.check(problem, x[None, :]) for x in xs])
        np.testing.assert_array_equal(admitted, accepted)


def test_cpsat_refuses_rows_it_cannot_scale() -> None:
    # Weights of about 3e10, not multiples of any power of two CP-SAT could use, against a
    # lower bound of 10 (tolerance 1e-8): rounded to 1e-8 / (2 (k + 2)) the row would pass
    # CP-SAT's 2**62 range, so cpsat refuses up front, and milp still solves it.
    w = np.array([[np.pi * 1e10, np.e * 1e10, 0.0]])
    row = fa.Row("bytes", "client", w, lower=10.0)
    problem = fa.AlignmentProblem(np.array([[-1.0, -2.0, 1.0]]), max_experts=3, rows=[row])
    reason = get_solver("cpsat").refusal(problem)
    assert reason is not None and "cannot scale" in reason and "'bytes'" in reason
    with pytest.raises(fa.UnsupportedProblemError, match="milp"):
        fa.solve(problem, solver="cpsat")
    assert fa.solve(problem, solver="milp").assignment.tolist() == [[True, False, True]]
    assert "cpsat" not in fa.solvers_for(problem)
    # Integral weights of the same size are used exactly: no refusal.
    exact = fa.Row("bytes", "client", np.array([[2.0**50, 2.0**51, 1.0]]), upper=2.0**51)
    problem = fa.AlignmentProblem(np.ones((1, 3)), max_experts=3, rows=[exact])
    assert get_solver("cpsat").refusal(problem) is None
    assert fa.solve(problem, solver="cpsat").objective == 2.0


def test_cpsat_refuses_soft_rows_not_in_binary_steps() -> None:
    # A soft row whose weights are tenths has an excess that no power-of-two step measures
    # exactly: cpsat refuses it (the penalty could not be kept honest); halves are fine.
    d = np.array([[1.0, 0.5, 0.25]])
    tenths = fa.Row("bytes", "total", [[0.1, 0.2, 0.3]], upper=0.25, penalty=2.0)
    problem = fa.AlignmentProblem(d, max_experts=3, rows=[tenths])
    reason = get_solver("cpsat").refusal(problem)
    assert reason is not None and "soft row" in reason
    halves = fa.Row("bytes", "total", [[0.5, 1.0, 1.5]], upper=1.0, penalty=[0.25, 1.0])
    problem = fa.AlignmentProblem(d, max_experts=3, rows=[halves])
    sol = fa.solve(problem, solver="cpsat", seed=0)
    best = brute_force(problem)
    assert sol.status == "optimal" and sol.objective == pytest.approx(best.optimum, abs=1e-12)
    assert sol.info["exact_objective"] and sol.bound == pytest.approx(best.optimum, abs=1e-12)


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
@settings(max_examples=40)
@given(problem=st.one_of(row_problems(soft=True), row_problems(planted=False), row_problems(slack="tight")))
def test_exact_solvers_equal_brute_force_on_rows(solver: str, problem: fa.AlignmentProblem) -> None:
    note(describe(problem))
    best = brute_force(problem)
    if not best.feasible:
        with pytest.raises(fa.InfeasibleError):
            fa.solve(problem, solver=solver, seed=0)
        return
    sol = fa.solve(problem, solver=solver, seed=0, time_limit=20)
    tol = objective_tolerance(problem)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(best.optimum, abs=tol)
    assert sol.bound is not None and sol.bound >= best.optimum - tol


@pytest.mark.parametrize("solver", ["milp", "highs"])
def test_time_limited_mip_of_a_thousand_binaries_runs_in_a_worker(
    solver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HiGHS does not always stop at its own time limit (a 4,500-binary cross-device round
    # stayed in Highs.run for minutes): from ISOLATE_COLUMNS binaries on it runs in a worker
    # killed at the limit, and the answer is the one HiGHS gives in process.
    from fedalign.solvers import _highs

    assert _highs.ISOLATE_COLUMNS <= 1_000
    rng = np.random.default_rng(5)
    problem = fa.AlignmentProblem(rng.random((50, 20)), max_experts=2, expert_max_clients=6)
    calls: list[float] = []
    real_call = _worker.call

    def spy(fn, args, seconds, **kw):  # type: ignore[no-untyped-def]
        calls.append(seconds)
        return real_call(fn, args, seconds, **kw)

    monkeypatch.setattr(_highs._worker, "call", spy)
    timed = fa.solve(problem, solver=solver, seed=0, time_limit=30.0)
    assert calls and all(s <= 30.0 + 1.0 for s in calls)
    untimed = fa.solve(problem, solver=solver, seed=0)
    assert timed.objective == pytest.approx(untimed.objective, rel=1e-6)
