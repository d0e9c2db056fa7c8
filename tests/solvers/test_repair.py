"""Tests of the shared heuristic toolkit, :mod:`fedalign.solvers.repair`.

Problems are planted with plain NumPy (a random assignment first, constraints derived so that
it holds), so every test knows a feasible assignment exists. Where the toolkit claims exact
behaviour (ordered insertion equals the sequential greedy) it is compared with a plain-Python
reference on small problems.
"""

from __future__ import annotations

import numpy as np
import pytest

import fedalign as fa
from fedalign.problem import capacity_tolerance
from fedalign.solvers.repair import (
    add_best_first,
    add_in_order,
    addable,
    fill,
    local_search,
    order_key,
    repair,
    residual,
)


def planted(
    seed: int,
    *,
    n: int | None = None,
    e: int | None = None,
    knapsack: bool = True,
    forbid: bool = True,
    tight: bool = True,
) -> tuple[fa.AlignmentProblem, np.ndarray]:
    """A random problem that the returned planted assignment satisfies.

    ``tight``: minimums near the planted counts, caps near the planted loads and knapsack
    capacities within 30 % of the planted use. Otherwise no minimums at all.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25)) if n is None else n
    e = int(rng.integers(1, 9)) if e is None else e
    d = rng.normal(size=(n, e))
    allowed = rng.random((n, e)) > 0.25 if forbid else np.ones((n, e), bool)
    x = (rng.random((n, e)) < 0.35) & allowed
    count, load = x.sum(axis=1), x.sum(axis=0)
    kw: dict = {
        "allowed": allowed,
        "max_experts": count + rng.integers(0, 2, n),
        "expert_max_clients": load + rng.integers(0, 3, e),
    }
    if tight:
        kw["min_experts"] = np.maximum(count - rng.integers(0, 2, n), 0)
        kw["expert_min_clients"] = np.maximum(load - rng.integers(0, 3, e), 0)
    if knapsack:
        mem = rng.uniform(1.0, 5.0, e)
        kw["expert_memory"] = mem
        kw["client_memory"] = (x @ mem) * rng.uniform(1.0, 1.3, n) + 0.5
        t = rng.uniform(0.5, 3.0, (n, e))
        kw["train_time"] = t
        kw["deadline"] = np.where(x, t, 0.0).sum(axis=1) * rng.uniform(1.0, 1.3, n) + 0.5
    return fa.AlignmentProblem(d, **kw), x


def random_start(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed + 10_000)
    return rng.random(shape) < rng.uniform(0.0, 1.0)


def breaks_an_upper_bound(problem: fa.AlignmentProblem, x: np.ndarray) -> bool:
    """Whether some hard row's sum is above its upper bound (tolerance included)."""
    return any(
        r.upper_cap is not None and bool((r.usage(x) > r.upper_cap).any())
        for r in problem.rows
        if not r.soft
    )


def sequential_greedy(problem: fa.AlignmentProblem, x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Plain-Python reference: add each pair in order when every upper bound still holds."""
    x = x.copy()
    for i, j in pairs:
        if x[i, j] or not problem.fits[i, j]:
            continue
        x[i, j] = True
        if breaks_an_upper_bound(problem, x):
            x[i, j] = False
    return x


# --------------------------------------------------------------------------- repair


@pytest.mark.parametrize("seed", range(120))
def test_repair_reaches_feasibility_without_knapsacks(seed: int) -> None:
    """Count constraints only: the alternating paths always find a feasible assignment."""
    problem, _ = planted(seed, knapsack=False, forbid=seed % 2 == 0)
    x = repair(problem, random_start(seed, problem.shape), rng=np.random.default_rng(seed))
    assert fa.check(problem, x) == []


@pytest.mark.parametrize("seed", range(120))
def test_repair_with_knapsacks_is_feasible_or_raises(seed: int) -> None:
    problem, _ = planted(seed, forbid=seed % 2 == 0)
    try:
        x = repair(problem, random_start(seed, problem.shape))
    except fa.InfeasibleError as exc:
        assert "repair could not meet" in str(exc)
        return
    assert fa.check(problem, x) == []


def test_repair_with_tight_knapsacks_mostly_succeeds() -> None:
    """A regression guard on strength, not a property: 60 very tight planted problems."""
    solved = 0
    for seed in range(60):
        problem, _ = planted(seed)
        try:
            repair(problem, random_start(seed, problem.shape))
            solved += 1
        except fa.InfeasibleError:
            pass
    assert solved >= 57


@pytest.mark.parametrize("seed", range(40))
def test_repair_without_minimums_always_succeeds(seed: int) -> None:
    problem, _ = planted(seed, tight=False)
    x = repair(problem, random_start(seed, problem.shape))
    assert fa.check(problem, x) == []


@pytest.mark.parametrize("seed", range(40))
def test_repair_keeps_a_feasible_assignment(seed: int) -> None:
    problem, planted_x = planted(seed)
    x = repair(problem, planted_x, fill=False)
    np.testing.assert_array_equal(x, planted_x)


@pytest.mark.parametrize("seed", range(20))
def test_repair_does_not_modify_its_input(seed: int) -> None:
    problem, _ = planted(seed)
    start = random_start(seed, problem.shape)
    before = start.copy()
    try:
        repair(problem, start)
    except fa.InfeasibleError:
        pass
    np.testing.assert_array_equal(start, before)


def test_repair_drops_the_worst_experts_first() -> None:
    d = np.array([[0.9, 0.1, 0.5, 0.3]])
    problem = fa.AlignmentProblem(d, max_experts=2)
    x = repair(problem, np.ones((1, 4), bool), fill=False)
    assert x.tolist() == [[True, False, True, False]]


def test_repair_drops_clients_with_spare_experts_first() -> None:
    """Expert 0 takes one client; client 0 has another expert, client 1 would fall below min."""
    d = np.array([[0.9, 0.5], [0.1, -1.0]])
    problem = fa.AlignmentProblem(
        d, max_experts=2, min_experts=[1, 1], expert_max_clients=[1, 2], allowed=[[1, 1], [1, 0]]
    )
    x = repair(problem, np.array([[1, 1], [1, 0]], bool), fill=False)
    assert x.tolist() == [[False, True], [True, False]]


def test_repair_meets_minimums_with_the_best_pairs() -> None:
    d = np.array([[-3.0, -1.0, -2.0], [0.5, 0.2, 0.1]])
    problem = fa.AlignmentProblem(d, max_experts=2, min_experts=1, expert_min_clients=[0, 0, 1])
    x = repair(problem, np.zeros((2, 3), bool), fill=False)
    assert fa.check(problem, x) == []
    # client 0 takes its least bad expert; expert 2 gets the client that loses least
    assert x[0, 1] and x[1, 0] and x[:, 2].sum() == 1
    assert x[1, 2]  # -2.0 for client 0 against +0.1 for client 1


def test_repair_moves_a_seat_along_an_alternating_path() -> None:
    """Client 1 may only train expert 0, which client 0 holds; client 0 must move to expert 1."""
    d = np.array([[1.0, 0.0], [1.0, 0.0]])
    problem = fa.AlignmentProblem(
        d, max_experts=1, min_experts=1, expert_max_clients=1, allowed=[[1, 1], [1, 0]]
    )
    x = repair(problem, np.array([[1, 0], [0, 0]], bool))
    assert x.tolist() == [[False, True], [True, False]]


def test_repair_repacks_a_client_around_its_memory() -> None:
    """The best expert is too big to leave room for a second one: the client must repack."""
    d = np.array([[1.0, 0.5, 0.4]])
    problem = fa.AlignmentProblem(
        d, max_experts=2, min_experts=2, expert_memory=[3.0, 1.0, 1.0], client_memory=[3.0]
    )
    x = repair(problem, np.array([[1, 0, 0]], bool))
    assert x.tolist() == [[False, True, True]]


def test_repair_raises_on_an_infeasible_problem_and_names_the_constraint() -> None:
    problem = fa.AlignmentProblem(np.ones((2, 2)), max_experts=2, min_experts=2, allowed=[[1, 0], [1, 1]])
    with pytest.raises(fa.InfeasibleError, match="min_experts"):
        repair(problem, np.zeros((2, 2), bool))


def test_repair_raises_on_a_hall_violation() -> None:
    """Clients 0-2 all need expert 0 or 1 (one seat each); expert 2 makes the totals balance.

    No counting argument of ``infeasibility_reason`` sees it, so repair must search and fail.
    """
    problem = fa.AlignmentProblem(
        np.ones((4, 3)),
        max_experts=1,
        min_experts=[1, 1, 1, 0],
        expert_max_clients=[1, 1, 2],
        allowed=[[1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 1]],
    )
    assert problem.infeasibility_reason() is None
    with pytest.raises(fa.InfeasibleError, match="min_experts|experts per client"):
        repair(problem, np.zeros((4, 3), bool))


def test_repair_rejects_wrong_shapes() -> None:
    problem = fa.AlignmentProblem(np.ones((2, 3)))
    with pytest.raises(ValueError, match="x: expected shape"):
        repair(problem, np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="priority: expected shape"):
        repair(problem, np.zeros((2, 3), bool), priority=np.ones((2, 2)))


def test_repair_follows_the_given_priority() -> None:
    d = np.array([[1.0, 0.0]])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1)
    x = repair(problem, np.zeros((1, 2), bool), priority=np.array([[0.0, 1.0]]))
    assert x.tolist() == [[False, True]]


# --------------------------------------------------------------------------- residuals, ordering


@pytest.mark.parametrize("seed", range(10))
def test_residual_and_addable_match_their_definitions(seed: int) -> None:
    problem, x = planted(seed)
    res = residual(problem, x)
    np.testing.assert_array_equal(res.count, problem.max_experts - x.sum(axis=1))
    np.testing.assert_array_equal(res.seats, problem.expert_max_clients - x.sum(axis=0))
    ok = addable(problem, x, res)
    n, e = problem.shape
    for i in range(n):
        for j in range(e):
            if x[i, j] or not problem.allowed[i, j]:
                assert not ok[i, j]
                continue
            y = x.copy()
            y[i, j] = True
            fits = not breaks_an_upper_bound(problem, y)
            assert ok[i, j] == fits


def test_order_key_keeps_strict_order_and_shuffles_ties() -> None:
    values = np.array([[1.0, 1.0, 0.5, 2.0], [1.0, 1.0, 1.0, 1.0]])
    assert order_key(values) is values
    key = order_key(values, np.random.default_rng(0))
    assert (np.argsort(-key.ravel())[:1] == [3]).all()
    assert key[0, 0] > key[0, 2] and key[0, 1] > key[0, 2]
    again = order_key(values, np.random.default_rng(0))
    np.testing.assert_array_equal(key, again)
    orders = {tuple(np.argsort(order_key(values, np.random.default_rng(s))[1])) for s in range(20)}
    assert len(orders) > 1


# --------------------------------------------------------------------------- ordered insertion


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("chunk", [1, 3, 1 << 18])
def test_add_in_order_equals_the_sequential_greedy(seed: int, chunk: int) -> None:
    problem, _ = planted(seed, tight=False)
    rng = np.random.default_rng(seed)
    n, e = problem.shape
    pairs = [(int(k // e), int(k % e)) for k in rng.permutation(n * e)]
    rows = np.array([p[0] for p in pairs], dtype=np.intp)
    cols = np.array([p[1] for p in pairs], dtype=np.intp)
    got = add_in_order(problem, np.zeros((n, e), bool), rows, cols, chunk=chunk)
    np.testing.assert_array_equal(got, sequential_greedy(problem, np.zeros((n, e), bool), pairs))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("segment", [1, 5, 1 << 19])
def test_add_best_first_equals_sorting_everything(seed: int, segment: int) -> None:
    problem, _ = planted(seed, tight=False)
    n, e = problem.shape
    key = np.round(problem.desirability, 1)  # plenty of ties
    cand = problem.fits
    got = add_best_first(problem, np.zeros((n, e), bool), cand, key, segment=segment)
    rows, cols = np.nonzero(cand)
    order = np.argsort(-key[rows, cols], kind="stable")
    pairs = list(zip(rows[order].tolist(), cols[order].tolist(), strict=True))
    np.testing.assert_array_equal(got, sequential_greedy(problem, np.zeros((n, e), bool), pairs))


def test_add_best_first_respects_a_per_client_limit() -> None:
    problem = fa.AlignmentProblem(np.ones((3, 4)), max_experts=4)
    x = add_best_first(problem, np.zeros((3, 4), bool), problem.fits, problem.desirability, limit=np.array([0, 2, 4]))
    assert x.sum(axis=1).tolist() == [0, 2, 4]


@pytest.mark.parametrize("seed", range(15))
def test_fill_adds_only_positive_pairs_and_leaves_none_addable(seed: int) -> None:
    problem, _ = planted(seed, tight=False)
    x = fill(problem, np.zeros(problem.shape, bool))
    assert fa.check(problem, x) == []
    assert (problem.desirability[x] > 0).all()
    assert not (addable(problem, x) & (problem.desirability > 0)).any()


# --------------------------------------------------------------------------- local search


@pytest.mark.parametrize("seed", range(25))
def test_local_search_keeps_feasibility_and_never_loses(seed: int) -> None:
    problem, x = planted(seed)
    y = local_search(problem, x)
    assert fa.check(problem, y) == []
    assert problem.objective(y) >= problem.objective(x) - 1e-12


def test_local_search_replaces_a_poor_expert() -> None:
    d = np.array([[0.1, 0.9], [0.8, 0.2]])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_max_clients=2)
    y = local_search(problem, np.array([[1, 0], [0, 1]], bool))
    assert y.tolist() == [[False, True], [True, False]]


def test_local_search_drops_negative_pairs_no_minimum_needs() -> None:
    d = np.array([[-1.0, -2.0, 0.5]])
    problem = fa.AlignmentProblem(d, max_experts=3, min_experts=1)
    y = local_search(problem, np.array([[1, 1, 0]], bool))
    assert y.tolist() == [[False, False, True]]


def test_local_search_respects_knapsacks_in_replacements() -> None:
    d = np.array([[0.1, 0.9]])
    problem = fa.AlignmentProblem(
        d, max_experts=1, min_experts=1, expert_memory=[1.0, 2.0], client_memory=[1.5]
    )
    y = local_search(problem, np.array([[1, 0]], bool))
    assert y.tolist() == [[True, False]]
    cap = problem.client_memory + capacity_tolerance(problem.client_memory)
    assert (y.astype(float) @ problem.expert_memory <= cap).all()


def test_local_search_shifts_a_seat_to_the_client_that_values_it_more() -> None:
    """Expert 0 has one seat; client 0 holds it but has a spare expert, client 1 wants it."""
    d = np.array([[0.2, 0.5], [0.9, 0.0]])
    problem = fa.AlignmentProblem(
        d, max_experts=2, min_experts=[1, 0], expert_max_clients=[1, 2], allowed=[[1, 1], [1, 0]]
    )
    y = local_search(problem, np.array([[1, 1], [0, 0]], bool))
    assert y.tolist() == [[False, True], [True, False]]


def test_local_search_lets_two_clients_trade_experts() -> None:
    """Each expert has one seat and each client wants the other's: only a trade helps."""
    d = np.array([[0.1, 0.9], [0.8, 0.2]])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_max_clients=1)
    y = local_search(problem, np.array([[1, 0], [0, 1]], bool))
    assert y.tolist() == [[False, True], [True, False]]


def test_local_search_trades_only_within_knapsacks() -> None:
    d = np.array([[0.1, 0.9], [0.8, 0.2]])
    problem = fa.AlignmentProblem(
        d,
        max_experts=1,
        min_experts=1,
        expert_max_clients=1,
        expert_memory=[1.0, 2.0],
        client_memory=[1.0, 2.0],
    )
    start = np.array([[1, 0], [0, 1]], bool)
    np.testing.assert_array_equal(local_search(problem, start), start)


@pytest.mark.parametrize("seed", range(8))
def test_local_search_improves_a_random_assignment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, e = 40, 6
    problem = fa.AlignmentProblem(
        rng.random((n, e)),
        max_experts=2,
        min_experts=1,
        expert_memory=rng.uniform(1, 3, e),
        client_memory=rng.uniform(2, 5, n),
        expert_max_clients=n // 3,
    )
    x = fa.solve(problem, "random", seed=seed).assignment
    y = local_search(problem, x)
    assert fa.check(problem, y) == []
    assert problem.objective(y) > problem.objective(x)


def test_fill_breaks_ties_at_random_only_with_an_rng() -> None:
    problem = fa.AlignmentProblem(np.ones((4, 4)), max_experts=1, expert_max_clients=1)
    plain = fill(problem, np.zeros((4, 4), bool))
    assert plain.tolist() == np.eye(4, dtype=bool).tolist()  # lowest position first
    seen = set()
    for seed in range(10):
        a = fill(problem, np.zeros((4, 4), bool), rng=np.random.default_rng(seed))
        b = fill(problem, np.zeros((4, 4), bool), rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)
        assert fa.check(problem, a) == [] and a.sum() == 4
        seen.add(a.tobytes())
    assert len(seen) > 1


def test_addable_rows_match_the_full_matrix() -> None:
    problem, x = planted(3)
    rows = np.array([0, problem.n_clients - 1])
    np.testing.assert_array_equal(addable(problem, x, rows=rows), addable(problem, x)[rows])
