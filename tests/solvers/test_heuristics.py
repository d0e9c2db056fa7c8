"""Tests of the heuristic solvers ``topk``, ``greedy``, ``random`` and of ``auto``'s choice.

The contract suite (test_contract.py) checks feasibility, objectives and determinism for
every solver; here each heuristic is compared with a plain-Python reference of its own
definition on small problems (with the keyword rows, and with client, expert, total and
soft rows from ``strategies.row_problems``), and ``auto``'s choice table is pinned down.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings

import fedalign as fa
from fedalign.problem import capacity_tolerance
from fedalign.solvers import Solver, get_solver
from fedalign.solvers import auto as auto_module
from fedalign.solvers.auto import SMALL_PAIRS, choose
from fedalign.solvers.repair import ROW_SUPPORT
from fedalign.solvers.topk import top_k
from strategies import row_problems

SMALL_ROWS = {"max_clients": 6, "max_experts": 5, "max_pairs": None}


def small_problem(seed: int, *, caps: bool = False, minimum: bool = False) -> fa.AlignmentProblem:
    """Distinct desirabilities, memory and deadline rows, some forbidden pairs."""
    rng = np.random.default_rng(seed)
    n, e = int(rng.integers(1, 12)), int(rng.integers(1, 7))
    kw: dict = {
        "max_experts": rng.integers(0, 4, n),
        "expert_memory": rng.uniform(0.5, 3.0, e),
        "client_memory": rng.uniform(0.0, 6.0, n),
        "train_time": rng.uniform(0.1, 2.0, (n, e)),
        "deadline": rng.uniform(0.5, 4.0, n),
        "allowed": rng.random((n, e)) > 0.2,
    }
    if minimum:
        kw["min_experts"] = np.minimum(kw["max_experts"], rng.integers(0, 2, n))
    if caps:
        kw["expert_max_clients"] = rng.integers(0, n + 1, e)
    return fa.AlignmentProblem(rng.normal(size=(n, e)), **kw)


def fits_row(problem: fa.AlignmentProblem, i: int, chosen: list[int], j: int) -> bool:
    mem = problem.expert_memory[chosen + [j]].sum()
    tim = problem.train_time[i, chosen + [j]].sum()
    cap_m = problem.client_memory[i] + capacity_tolerance(problem.client_memory[i : i + 1])[0]
    cap_t = problem.deadline[i] + capacity_tolerance(problem.deadline[i : i + 1])[0]
    return len(chosen) < problem.max_experts[i] and mem <= cap_m and tim <= cap_t


def paper_topk(problem: fa.AlignmentProblem) -> np.ndarray:
    """Plain-Python reference of the paper's per-client ranking (no expert caps)."""
    n, e = problem.shape
    x = np.zeros((n, e), bool)
    for i in range(n):
        chosen: list[int] = []
        ranked = sorted((j for j in range(e) if problem.fits[i, j]), key=lambda j: -problem.desirability[i, j])
        for j in ranked:
            if len(chosen) >= problem.min_experts[i] and problem.desirability[i, j] <= 0:
                break
            if fits_row(problem, i, chosen, j):
                chosen.append(j)
        x[i, chosen] = True
    return x


def within_upper_bounds(problem: fa.AlignmentProblem, x: np.ndarray, over: tuple[str, ...]) -> bool:
    """Whether every hard row over ``over`` is within its upper bound (tolerance included)."""
    return all(
        r.upper_cap is None or bool((r.usage(x) <= r.upper_cap).all())
        for r in problem.rows
        if not r.soft and r.over in over
    )


def paper_topk_rows(problem: fa.AlignmentProblem) -> np.ndarray:
    """Plain-Python reference of the per-client ranking under any client rows."""
    n, e = problem.shape
    x = np.zeros((n, e), bool)
    for i in range(n):
        ranked = sorted((j for j in range(e) if problem.fits[i, j]), key=lambda j: -problem.desirability[i, j])
        for j in ranked:
            if x[i].sum() >= problem.min_experts[i] and problem.desirability[i, j] <= 0:
                break
            x[i, j] = True
            if not within_upper_bounds(problem, x, ("client",)):
                x[i, j] = False
    return x


def greedy_rows(problem: fa.AlignmentProblem) -> np.ndarray:
    """Plain-Python reference of the global greedy under every upper bound (no minimums)."""
    n, e = problem.shape
    pairs = sorted(
        ((i, j) for i in range(n) for j in range(e) if problem.fits[i, j] and problem.desirability[i, j] > 0),
        key=lambda p: (-problem.desirability[p], p),
    )
    x = np.zeros((n, e), bool)
    for i, j in pairs:
        x[i, j] = True
        if not within_upper_bounds(problem, x, ("client", "expert", "total")):
            x[i, j] = False
    return x


def global_greedy(problem: fa.AlignmentProblem) -> np.ndarray:
    """Plain-Python reference of the global greedy over positive pairs (no minimums)."""
    n, e = problem.shape
    pairs = sorted(
        ((i, j) for i in range(n) for j in range(e) if problem.fits[i, j] and problem.desirability[i, j] > 0),
        key=lambda p: (-problem.desirability[p], p),
    )
    x = np.zeros((n, e), bool)
    for i, j in pairs:
        if x[:, j].sum() < problem.expert_max_clients[j] and fits_row(problem, i, list(np.flatnonzero(x[i])), j):
            x[i, j] = True
    return x


# --------------------------------------------------------------------------- topk


@pytest.mark.parametrize("seed", range(60))
def test_topk_first_pass_equals_the_per_client_ranking(seed: int) -> None:
    problem = small_problem(seed, minimum=seed % 2 == 1)
    np.testing.assert_array_equal(top_k(problem), paper_topk(problem))


@pytest.mark.parametrize("seed", range(40))
def test_topk_solver_equals_the_ranking_without_expert_caps(seed: int) -> None:
    problem = small_problem(seed)
    sol = fa.solve(problem, "topk", seed=seed)
    np.testing.assert_array_equal(sol.assignment, paper_topk(problem))


def test_topk_skips_an_expert_that_no_longer_fits_and_goes_on() -> None:
    d = np.array([[0.9, 0.8, 0.7, 0.6]])
    problem = fa.AlignmentProblem(
        d, max_experts=3, expert_memory=[2.0, 2.0, 1.0, 1.0], client_memory=[3.0]
    )
    assert fa.solve(problem, "topk").experts_of(0) == [0, 2]


def test_topk_takes_negative_experts_only_up_to_the_minimum() -> None:
    d = np.array([[-0.1, -0.5, 0.3, -0.2]])
    problem = fa.AlignmentProblem(d, max_experts=4, min_experts=3)
    assert fa.solve(problem, "topk").experts_of(0) == [0, 2, 3]


@pytest.mark.parametrize("seed", range(30))
def test_topk_restores_expert_caps(seed: int) -> None:
    problem = small_problem(seed, caps=True, minimum=True)
    try:
        sol = fa.solve(problem, "topk", seed=seed)
    except fa.InfeasibleError:
        return
    assert (sol.assignment.sum(axis=0) <= problem.expert_max_clients).all()


def test_topk_breaks_ties_at_random_but_reproducibly() -> None:
    problem = fa.AlignmentProblem(np.zeros((50, 8)) + 1.0, max_experts=1)
    a = fa.solve(problem, "topk", seed=3).assignment
    b = fa.solve(problem, "topk", seed=3).assignment
    np.testing.assert_array_equal(a, b)
    # no herding onto expert 0: ties spread over the experts
    assert (a.sum(axis=0) > 0).sum() >= 5


@settings(max_examples=60)
@given(row_problems(soft=True, **SMALL_ROWS))
def test_topk_first_pass_equals_the_per_client_ranking_with_rows(problem: fa.AlignmentProblem) -> None:
    """Any client rows bound the walk; expert, total and soft rows play no part in it."""
    np.testing.assert_array_equal(top_k(problem), paper_topk_rows(problem))


def test_topk_ignores_soft_rows_when_choosing() -> None:
    d = np.array([[0.9, 0.1], [0.8, 0.2]])
    plain = fa.AlignmentProblem(d, max_experts=1)
    soft = fa.AlignmentProblem(d, max_experts=1, rows=[fa.Row("load", "expert", upper=0, penalty=5.0)])
    np.testing.assert_array_equal(top_k(soft), top_k(plain))
    assert fa.solve(soft, "topk").objective == pytest.approx(1.7 - 10.0)


# --------------------------------------------------------------------------- greedy


@settings(max_examples=60)
@given(row_problems(slack="none", **SMALL_ROWS))
def test_greedy_equals_the_global_greedy_with_rows(problem: fa.AlignmentProblem) -> None:
    """No minimums: the greedy pass under every client, expert and total row is the answer."""
    np.testing.assert_array_equal(fa.solve(problem, "greedy").assignment, greedy_rows(problem))


def test_greedy_does_not_walk_into_soft_penalties() -> None:
    """The soft cap is a cap; beyond it a pair must be worth its penalty (0.2, then 0.5)."""
    d = np.array([[0.9, 0.05], [0.6, 0.05], [0.4, 0.05], [0.3, 0.05]])
    problem = fa.AlignmentProblem(
        d, max_experts=1, rows=[fa.Row("load", "expert", upper=1, penalty=[0.2, 0.5])]
    )
    x = fa.solve(problem, "greedy").assignment
    assert x[:, 0].tolist() == [True, True, False, False]
    ignoring = fa.solve(fa.AlignmentProblem(d, max_experts=1), "greedy").assignment
    assert problem.objective(x) > problem.objective(ignoring)


def test_greedy_adds_a_pair_a_soft_floor_pays_for() -> None:
    problem = fa.AlignmentProblem(
        np.array([[-0.5, -3.0]]), max_experts=2, rows=[fa.Row("floor", "client", lower=1, penalty=2.0)]
    )
    assert fa.solve(problem, "greedy").assignment.tolist() == [[True, False]]



@pytest.mark.parametrize("seed", range(60))
def test_greedy_equals_the_global_greedy(seed: int) -> None:
    problem = small_problem(seed, caps=True)
    sol = fa.solve(problem, "greedy")
    np.testing.assert_array_equal(sol.assignment, global_greedy(problem))


def test_greedy_respects_expert_caps_where_topk_would_herd() -> None:
    d = np.tile([0.9, 0.5, 0.1], (6, 1)) + np.linspace(0, 0.01, 6)[:, None]
    problem = fa.AlignmentProblem(d, max_experts=1, expert_max_clients=2)
    x = fa.solve(problem, "greedy").assignment
    assert x.sum(axis=0).tolist() == [2, 2, 2]
    # the clients with the highest scores win the popular expert
    assert x[:, 0].tolist() == [False, False, False, False, True, True]


def test_greedy_meets_minimums_after_the_greedy_pass() -> None:
    d = np.array([[0.9, -0.5], [0.8, -0.1]])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_min_clients=[0, 1])
    x = fa.solve(problem, "greedy").assignment
    assert x.tolist() == [[True, False], [False, True]]


# --------------------------------------------------------------------------- random


@pytest.mark.parametrize("seed", range(20))
def test_random_ignores_desirability(seed: int) -> None:
    problem = small_problem(seed, caps=True, minimum=True)
    flipped = fa.AlignmentProblem(
        -problem.desirability,
        max_experts=problem.max_experts,
        min_experts=problem.min_experts,
        expert_memory=problem.expert_memory,
        client_memory=problem.client_memory,
        train_time=problem.train_time,
        deadline=problem.deadline,
        expert_max_clients=problem.expert_max_clients,
        allowed=problem.allowed,
    )
    try:
        a = fa.solve(problem, "random", seed=seed).assignment
    except fa.InfeasibleError:
        return
    np.testing.assert_array_equal(a, fa.solve(flipped, "random", seed=seed).assignment)


def test_random_counts_stay_within_bounds_and_vary() -> None:
    problem = fa.AlignmentProblem(np.ones((400, 6)), max_experts=4, min_experts=1)
    x = fa.solve(problem, "random", seed=0).assignment
    counts = x.sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 4
    assert set(counts.tolist()) == {1, 2, 3, 4}
    assert (x.sum(axis=0) > 0).all()


def test_random_seeds_reproduce_and_differ() -> None:
    problem = fa.AlignmentProblem(np.zeros((30, 5)), max_experts=2, min_experts=1)
    a = fa.solve(problem, "random", seed=1).assignment
    np.testing.assert_array_equal(a, fa.solve(problem, "random", seed=1).assignment)
    assert not np.array_equal(a, fa.solve(problem, "random", seed=2).assignment)


def test_random_skips_its_top_up_when_it_cannot_end_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a time limit the top-up (no clock inside its first segment) is skipped when the
    # time left is below what it takes: the repaired plan, fewer pairs, still feasible.
    from fedalign.solvers import random_ as random_module

    caps = [40, 40, 300, 300, 300, 300]  # the repair trims two experts; the top-up refills elsewhere
    problem = fa.AlignmentProblem(np.ones((400, 6)), max_experts=4, min_experts=1, expert_max_clients=caps)
    full = fa.solve(problem, "random", seed=0, time_limit=60.0).assignment
    monkeypatch.setattr(random_module, "FILL_SECONDS_PER_PAIR", 1e6)
    bare = fa.solve(problem, "random", seed=0, time_limit=60.0).assignment
    assert fa.check(problem, bare) == []
    assert bare.sum() < full.sum()
    np.testing.assert_array_equal(fa.solve(problem, "random", seed=0).assignment, full)  # no limit


def test_random_meets_every_constraint_on_a_tight_problem() -> None:
    rng = np.random.default_rng(0)
    problem = fa.AlignmentProblem(
        rng.random((40, 4)), max_experts=1, min_experts=1, expert_min_clients=10, expert_max_clients=10
    )
    x = fa.solve(problem, "random", seed=0).assignment
    assert x.sum(axis=0).tolist() == [10, 10, 10, 10]


@settings(max_examples=40)
@given(row_problems(soft=True, **SMALL_ROWS))
def test_random_ignores_desirability_and_soft_rows_with_rows(problem: fa.AlignmentProblem) -> None:
    hard = [r for r in problem.rows if not r.soft and r.name not in ("experts per client", "memory", "deadline", "clients per expert")]
    kw = {k: v for k, v in problem.to_dict().items() if k not in ("desirability", "rows", "client_ids", "expert_ids")}
    flipped = fa.AlignmentProblem(-problem.desirability, rows=hard, **kw)
    try:
        a = fa.solve(problem, "random", seed=1).assignment
    except fa.InfeasibleError:
        return
    np.testing.assert_array_equal(a, fa.solve(flipped, "random", seed=1).assignment)


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize("name", ["topk", "greedy", "random"])
def test_heuristics_support_every_row(name: str) -> None:
    solver = get_solver(name)
    assert solver.supports == ROW_SUPPORT
    rng = np.random.default_rng(0)
    n, e = 6, 3
    rows = [
        fa.Row("bandwidth", "client", rng.uniform(1, 2, e), lower=0.5, upper=4.0),
        fa.Row("load", "expert", rng.uniform(1, 2, (n, 1)), lower=1.0, upper=8.0),
        fa.Row("bytes", "total", rng.uniform(1, 2, (n, e)), lower=2.0, upper=20.0),
        fa.Row("soft load", "expert", upper=2, penalty=[0.1, 0.3]),
        fa.Row("soft floor", "client", lower=1, penalty=0.5),
        fa.Row("soft bytes", "total", 2.0, upper=10.0, penalty=0.2),
    ]
    problem = fa.AlignmentProblem(rng.random((n, e)), max_experts=2, rows=rows)
    assert solver.accepts(problem)
    sol = fa.solve(problem, name, seed=0)
    assert fa.check(problem, sol.assignment) == []
    assert sol.objective == pytest.approx(problem.objective(sol.assignment))


# --------------------------------------------------------------------------- infeasible


@pytest.mark.parametrize("name", ["random", "topk", "greedy"])
def test_heuristics_raise_on_infeasible_problems(name: str) -> None:
    problem = fa.AlignmentProblem(
        np.ones((3, 2)), max_experts=1, min_experts=1, expert_max_clients=1
    )
    with pytest.raises(fa.InfeasibleError, match="min_experts"):
        fa.solve(problem, name, seed=0)
    problem = fa.AlignmentProblem(
        np.ones((2, 2)), max_experts=2, min_experts=2, expert_memory=[2.0, 2.0], client_memory=[3.0, 5.0]
    )
    with pytest.raises(fa.InfeasibleError, match="memory"):
        fa.solve(problem, name, seed=0)


# --------------------------------------------------------------------------- auto


def knapsack_problem(n: int, e: int) -> fa.AlignmentProblem:
    rng = np.random.default_rng(0)
    return fa.AlignmentProblem(
        rng.random((n, e)),
        max_experts=2,
        expert_memory=rng.uniform(1.0, 2.0, e),
        client_memory=np.full(n, 3.0),
    )


def test_auto_picks_flow_without_knapsacks() -> None:
    assert choose(fa.AlignmentProblem(np.ones((5, 3)), max_experts=2)) == "flow"


def test_auto_picks_flow_when_memory_reduces_to_counts() -> None:
    problem = fa.AlignmentProblem(
        np.ones((5, 3)), max_experts=3, expert_memory=[2.0, 2.0, 2.0], client_memory=[4.0] * 5
    )
    assert choose(problem) == "flow"


def test_auto_picks_an_exact_milp_for_small_knapsack_problems() -> None:
    assert choose(knapsack_problem(10, 5)) == "milp"
    e = 100
    assert choose(knapsack_problem(SMALL_PAIRS // e, e)) == "milp"


def test_auto_under_a_time_limit_prefers_lagrangian_when_clients_take_few_experts() -> None:
    few = knapsack_problem(10, 5)  # max_experts=2
    assert choose(few, time_limit=2.0) == "lagrangian"
    assert choose(few) == "milp"  # no limit: run the MILP to a proof
    many = fa.AlignmentProblem(  # GAP-like: a client may take every expert
        np.random.default_rng(1).random((5, 12)),
        max_experts=12,
        train_time=np.random.default_rng(2).uniform(1.0, 2.0, (5, 12)),
        deadline=6.0,
    )
    # GAP-like rows go to HiGHS from the Lagrangian plan (a MIP start), limit or not
    assert choose(many, time_limit=2.0) == "highs" and choose(many) == "highs"
    sol = fa.solve(few, "auto", time_limit=2.0, seed=0)
    assert sol.solver == "lagrangian" and sol.info["auto"]["chosen"] == "lagrangian"


def test_auto_picks_lagrangian_for_large_knapsack_problems() -> None:
    e = 100
    assert choose(knapsack_problem(SMALL_PAIRS // e + 1, e)) == "lagrangian"


def test_auto_falls_back_when_solvers_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = auto_module._usable

    def without(*names: str) -> Callable[[str], Solver | None]:
        return lambda name: None if name in names else real(name)

    small, large = knapsack_problem(10, 5), knapsack_problem(SMALL_PAIRS // 100 + 1, 100)
    monkeypatch.setattr(auto_module, "_usable", without("milp"))
    assert choose(small) == "cpsat"
    monkeypatch.setattr(auto_module, "_usable", without("milp", "cpsat"))
    assert choose(small) == "lagrangian"
    monkeypatch.setattr(auto_module, "_usable", without("lagrangian"))
    assert choose(large) == "greedy"
    monkeypatch.setattr(auto_module, "_usable", without("flow", "milp", "cpsat", "lagrangian"))
    assert choose(fa.AlignmentProblem(np.ones((5, 3)), max_experts=2)) == "greedy"


def test_auto_returns_the_chosen_solvers_solution() -> None:
    problem = knapsack_problem(6, 4)
    sol = fa.solve(problem, "auto", seed=0)
    assert sol.solver == choose(problem) == "milp"
    assert sol.info["auto"]["chosen"] == "milp"
    direct = fa.solve(problem, "milp", seed=0)
    assert sol.objective == pytest.approx(direct.objective)
    assert get_solver("auto").option_names() == set()


def test_auto_passes_errors_through() -> None:
    problem = fa.AlignmentProblem(np.ones((3, 2)), max_experts=1, min_experts=1, expert_max_clients=1)
    with pytest.raises(fa.InfeasibleError):
        fa.solve(problem, "auto")


def test_auto_falls_back_to_greedy_when_the_chosen_solver_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = knapsack_problem(6, 4)
    milp = type(get_solver("milp"))

    def give_up(self: Solver, problem: fa.AlignmentProblem, **kwargs: object) -> fa.Solution:
        raise fa.InfeasibleError("no feasible point found within the time limit")

    monkeypatch.setattr(milp, "solve", give_up)
    sol = fa.solve(problem, "auto", seed=0)
    assert sol.solver == "greedy"
    assert "milp raised InfeasibleError" in sol.info["auto"]["fallback"]
    infeasible = fa.AlignmentProblem(
        np.ones((2, 2)), max_experts=2, min_experts=2, expert_memory=[2.0, 2.5], client_memory=[3.0, 5.0]
    )
    assert choose(infeasible) == "milp"
    with pytest.raises(fa.InfeasibleError, match="time limit"):
        fa.solve(infeasible, "auto")
