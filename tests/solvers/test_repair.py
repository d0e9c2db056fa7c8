"""Tests of the shared heuristic toolkit, :mod:`fedalign.solvers.repair`.

Problems are planted with plain NumPy (a random assignment first, constraints derived so that
it holds), so every test knows a feasible assignment exists: :func:`planted` with the keyword
rows, :func:`planted_rows` with client, expert and total rows of any weights (and soft rows).
Where the toolkit claims exact behaviour (ordered insertion equals the sequential greedy) it
is compared with a plain-Python reference on small problems.
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
from fedalign.solvers.repair.augment import augment_clients, repack
from fedalign.solvers.repair.feasibility import trim_experts, trim_totals
from fedalign.solvers.repair.soft import window


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


def _row_weight(rng: np.random.Generator, n: int, e: int) -> float | np.ndarray:
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return rng.uniform(0.5, 3.0, e)  # per expert
    if kind == 1:
        return rng.uniform(0.5, 3.0, (n, e))  # per pair
    if kind == 2:
        return rng.uniform(0.5, 3.0, (n, 1))  # per client
    return 1.0


def planted_rows(
    seed: int, *, tight: bool = False, soft: bool = False, n: int | None = None, e: int | None = None
) -> tuple[fa.AlignmentProblem, np.ndarray]:
    """A random problem with 0-2 client rows, 0-2 expert rows and 0-1 total rows (weights per
    expert, per pair, per client or unit; upper and/or lower bounds) that the returned planted
    assignment satisfies, on top of the count rows.

    ``tight``: count minimums near the planted counts and lower bounds at 60-100 % of the
    planted use. Otherwise no count minimums and lower bounds of at most one planted pair's
    weight. ``soft``: a soft load cap per expert and a soft total byte budget as well.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25)) if n is None else n
    e = int(rng.integers(1, 9)) if e is None else e
    allowed = rng.random((n, e)) > 0.2
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
    rows = []
    for over, k_max in (("client", 2), ("expert", 2), ("total", 1)):
        axis = {"client": 1, "expert": 0, "total": None}[over]
        for k in range(int(rng.integers(0, k_max + 1))):
            w = _row_weight(rng, n, e)
            dense = np.broadcast_to(w, (n, e))
            used = np.atleast_1d(np.where(x, dense, 0.0).sum(axis=axis))
            side = int(rng.integers(0, 3))  # upper, lower, both
            lo = hi = None
            if side != 1:
                hi = used * rng.uniform(1.0, 1.3, used.size) + rng.uniform(0.0, 1.0, used.size)
            if side != 0:
                if tight:
                    lo = used * rng.uniform(0.6, 1.0, used.size)
                else:
                    held = np.atleast_1d(np.where(x, dense, np.inf).min(axis=axis, initial=np.inf))
                    lo = np.minimum(used, np.where(np.isfinite(held), held, 0.0)) * rng.uniform(0, 1, used.size)
            if over == "total":
                lo = None if lo is None else float(lo[0])
                hi = None if hi is None else float(hi[0])
            rows.append(fa.Row(f"{over} row {k}", over, w, lower=lo, upper=hi))
    if soft:
        rows.append(fa.Row("soft load", "expert", 1.0, upper=float(rng.integers(0, max(1, n // 2))), penalty=[0.2, 0.5, 1.0]))
        rows.append(fa.Row("soft bytes", "total", rng.uniform(0, 2, e), upper=float(rng.integers(0, 6)), penalty=0.3))
    return fa.AlignmentProblem(rng.normal(size=(n, e)), rows=rows, **kw), x


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


@pytest.mark.parametrize("seed", range(10))
def test_repair_skips_the_fill_that_cannot_end_in_time(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fill's first pass has no clock: with less time left than it takes, no fill at all.
    from fedalign.solvers.base import Budget
    from fedalign.solvers.repair import feasibility

    problem, _ = planted(seed, tight=False)
    start = random_start(seed, problem.shape)
    filled = repair(problem, start, budget=Budget(60.0))
    unfilled = repair(problem, start, fill=False)
    monkeypatch.setattr(feasibility, "FILL_SECONDS_PER_PAIR", 1e6)
    x = repair(problem, start, budget=Budget(60.0))
    np.testing.assert_array_equal(x, unfilled)
    assert fa.check(problem, x) == []
    assert filled.sum() >= unfilled.sum()
    np.testing.assert_array_equal(repair(problem, start), filled)  # no budget: always filled


def test_repair_started_past_its_deadline_gives_up_at_once() -> None:
    # Even with nothing to meet (no minimums): a plan after the deadline would be late.
    import time

    from fedalign.solvers.base import Budget

    problem, planted_x = planted(0, tight=False)
    budget = Budget(60.0)
    budget.deadline = time.perf_counter() - 1.0
    with pytest.raises(fa.TimeLimitError, match="trimming client rows"):
        repair(problem, planted_x, budget=budget)


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


# --------------------------------------------------------------------------- rows: insertion


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("chunk", [1, 3, 1 << 18])
def test_add_in_order_equals_the_sequential_greedy_with_rows(seed: int, chunk: int) -> None:
    """Client, expert and total rows of any weights: still the exact sequential greedy."""
    problem, _ = planted_rows(seed, soft=seed % 4 == 0)
    rng = np.random.default_rng(seed)
    n, e = problem.shape
    flat = rng.permutation(n * e)
    pairs = [(int(k // e), int(k % e)) for k in flat]
    got = add_in_order(problem, np.zeros((n, e), bool), flat // e, flat % e, chunk=chunk)
    np.testing.assert_array_equal(got, sequential_greedy(problem, np.zeros((n, e), bool), pairs))


def test_add_in_order_with_a_tight_total_row_equals_the_sequential_greedy() -> None:
    """A total row that binds early: the windowed passes stay exact."""
    rng = np.random.default_rng(0)
    n, e = 300, 6
    w = rng.uniform(0.1, 2.0, (n, e))
    problem = fa.AlignmentProblem(
        rng.random((n, e)), max_experts=3, rows=[fa.Row("bytes", "total", w, upper=40.0)]
    )
    flat = rng.permutation(n * e)
    got = add_in_order(problem, np.zeros((n, e), bool), flat // e, flat % e)
    pairs = [(int(k // e), int(k % e)) for k in flat]
    np.testing.assert_array_equal(got, sequential_greedy(problem, np.zeros((n, e), bool), pairs))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("segment", [1, 5, 1 << 19])
def test_add_best_first_equals_sorting_everything_with_rows(seed: int, segment: int) -> None:
    problem, _ = planted_rows(seed)
    n, e = problem.shape
    key = np.round(problem.desirability, 1)
    got = add_best_first(problem, np.zeros((n, e), bool), problem.fits, key, segment=segment)
    rows, cols = np.nonzero(problem.fits)
    order = np.argsort(-key[rows, cols], kind="stable")
    pairs = list(zip(rows[order].tolist(), cols[order].tolist(), strict=True))
    np.testing.assert_array_equal(got, sequential_greedy(problem, np.zeros((n, e), bool), pairs))


@pytest.mark.parametrize("seed", range(15))
def test_residual_and_addable_match_their_definitions_with_rows(seed: int) -> None:
    problem, x = planted_rows(seed)
    ok = addable(problem, x)
    n, e = problem.shape
    for i in range(n):
        for j in range(e):
            if x[i, j] or not problem.allowed[i, j]:
                assert not ok[i, j]
                continue
            y = x.copy()
            y[i, j] = True
            assert ok[i, j] == (not breaks_an_upper_bound(problem, y))


# --------------------------------------------------------------------------- rows: repair


@pytest.mark.parametrize("seed", range(150))
def test_repair_reaches_feasibility_on_loose_row_problems(seed: int) -> None:
    """No count minimums, lower bounds of at most one planted pair's weight: always repaired."""
    problem, _ = planted_rows(seed, soft=seed % 3 == 0)
    x = repair(problem, random_start(seed, problem.shape))
    assert fa.check(problem, x) == []


@pytest.mark.parametrize("seed", range(60))
def test_repair_with_tight_rows_is_feasible_or_names_a_row(seed: int) -> None:
    problem, _ = planted_rows(seed, tight=True, soft=seed % 3 == 0)
    try:
        x = repair(problem, random_start(seed, problem.shape))
    except fa.InfeasibleError as exc:
        assert "repair could not meet" in str(exc)
        assert any(f"meet {r.name} (" in str(exc) for r in problem.rows)
        return
    assert fa.check(problem, x) == []


def test_repair_with_tight_rows_mostly_succeeds() -> None:
    """A regression guard on strength, not a property: 100 tight planted row problems."""
    solved = 0
    for seed in range(100):
        problem, _ = planted_rows(seed, tight=True)
        try:
            repair(problem, random_start(seed, problem.shape))
            solved += 1
        except fa.InfeasibleError:
            pass
    assert solved >= 90


@pytest.mark.parametrize("seed", range(30))
def test_repair_keeps_a_feasible_assignment_with_rows(seed: int) -> None:
    problem, planted_x = planted_rows(seed, tight=True)
    np.testing.assert_array_equal(repair(problem, planted_x, fill=False), planted_x)


def test_repair_ignores_soft_rows() -> None:
    """A soft cap of 0 on every expert: repair still meets the minimum, and pays for it."""
    problem = fa.AlignmentProblem(
        np.ones((2, 2)), max_experts=1, min_experts=1, rows=[fa.Row("soft", "expert", upper=0, penalty=1.0)]
    )
    x = repair(problem, np.zeros((2, 2), bool))
    assert x.sum(axis=1).tolist() == [1, 1]
    assert problem.objective(x) == pytest.approx(0.0)


def test_repair_trims_a_weighted_expert_row_lowest_priority_first() -> None:
    """Expert 0 holds weights 1, 2, 3; its bound 3.5 needs 2.5 freed: the two worst go."""
    d = np.array([[0.5], [0.1], [0.9]])
    problem = fa.AlignmentProblem(
        d, rows=[fa.Row("size", "expert", [[1.0], [2.0], [3.0]], upper=3.5)]
    )
    x = np.ones((3, 1), bool)
    trim_experts(problem, x, d)
    assert x[:, 0].tolist() == [False, False, True]


def test_repair_trims_a_total_row_sparing_pairs_a_minimum_needs() -> None:
    """Four pairs of weight 1 under a total bound of 2: the two cheapest that no minimum needs go."""
    d = np.array([[0.1, 0.2], [0.3, 0.4]])
    problem = fa.AlignmentProblem(
        d, max_experts=2, min_experts=[1, 0], rows=[fa.Row("bytes", "total", upper=2.0)]
    )
    x = np.array([[True, False], [True, True]])
    trim_totals(problem, x, d)
    assert x.tolist() == [[True, False], [False, True]]
    x = np.ones((2, 2), bool)
    trim_totals(problem, x, d)
    assert fa.check(problem, x) == [] and x.sum() == 2


def test_repair_meets_a_client_row_lower_bound_best_per_unit() -> None:
    """Weight 2 is missing: the best pair per unit of it (0.5 per 1) first, then the next."""
    d = np.array([[0.5, -0.1, -1.0]])
    problem = fa.AlignmentProblem(
        d, max_experts=3, rows=[fa.Row("bandwidth", "client", [1.0, 2.0, 3.0], lower=2.0)]
    )
    x = repair(problem, np.zeros((1, 3), bool), fill=False)
    assert x.tolist() == [[True, True, False]]


def test_repair_meets_an_expert_row_lower_bound_by_a_trade() -> None:
    """Expert 0 needs weight 2 but holds client 0 (weight 1): the two clients trade experts."""
    problem = fa.AlignmentProblem(
        np.zeros((2, 2)),
        max_experts=1,
        min_experts=1,
        expert_max_clients=1,
        rows=[fa.Row("weight", "expert", [[1.0], [3.0]], lower=[2.0, 0.0])],
    )
    x = repair(problem, np.array([[True, False], [False, True]]), fill=False)
    assert x.tolist() == [[False, True], [True, False]]


def test_repair_names_a_row_it_cannot_meet() -> None:
    """A client row needs both experts, a total row allows one: each row alone looks fine."""
    problem = fa.AlignmentProblem(
        np.ones((1, 2)),
        max_experts=2,
        rows=[fa.Row("need", "client", 1.0, lower=2.0), fa.Row("budget", "total", 1.0, upper=1.0)],
    )
    assert problem.infeasibility_reason() is None
    with pytest.raises(fa.InfeasibleError, match=r"repair could not meet (need|budget) \("):
        repair(problem, np.zeros((1, 2), bool))


# --------------------------------------------------------------------------- rows: the guard


def guarded_path_problem(row: fa.Row) -> fa.AlignmentProblem:
    """Client 1 may only train expert 0, which client 0 holds; client 0 can move to expert 1
    (preferred) or 2; client 2 holds expert 1. ``row`` decides whether the move to 1 is allowed."""
    d = np.array([[0.5, 0.9, 0.1], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return fa.AlignmentProblem(
        d,
        max_experts=1,
        min_experts=1,
        expert_max_clients=[1, 2, 1],
        allowed=[[1, 1, 1], [1, 0, 0], [0, 1, 0]],
        rows=[row],
    )


@pytest.mark.parametrize(
    "row",
    [
        fa.Row("load", "expert", [[1.0], [1.0], [1.5]], upper=[9.0, 2.0, 9.0]),
        fa.Row("bytes", "total", [[1.0, 2.0, 0.5], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], upper=3.0),
    ],
    ids=["expert row", "total row"],
)
def test_alternating_paths_do_not_break_weighted_expert_or_total_rows(row: fa.Row) -> None:
    """Moving client 0 to expert 1 breaks the row; the path through expert 2 is taken instead."""
    problem = guarded_path_problem(row)
    start = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    assert row.pair_fits() is not None and row.pair_fits()[0, 1]  # the pair alone fits
    x = start.copy()
    assert augment_clients(problem, x, problem.desirability, np.array([1])) == 1
    assert x.tolist() == [[False, False, True], [True, False, False], [False, True, False]]
    assert fa.check(problem, x) == []
    loose = guarded_path_problem(fa.Row(row.name, row.over, row.weight, upper=99.0))
    y = start.copy()
    augment_clients(loose, y, loose.desirability, np.array([1]))
    assert y[0, 1]  # without the bound the preferred expert is taken


def test_alternating_paths_are_not_applied_when_every_path_breaks_a_row() -> None:
    row = fa.Row("load", "expert", [[1.0], [1.0], [1.5]], upper=[9.0, 2.0, 9.0])
    problem = fa.AlignmentProblem(
        guarded_path_problem(row).desirability,
        max_experts=1,
        min_experts=1,
        expert_max_clients=[1, 2, 1],
        allowed=[[1, 1, 0], [1, 0, 0], [0, 1, 0]],
        rows=[row],
    )
    start = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    x = start.copy()
    assert augment_clients(problem, x, problem.desirability, np.array([1])) == 0
    np.testing.assert_array_equal(x, start)
    with pytest.raises(fa.InfeasibleError):
        repair(problem, start)


def test_repack_is_undone_when_it_would_break_a_total_row() -> None:
    """The memory repack picks experts 1 and 2, which together break the total row."""
    problem = fa.AlignmentProblem(
        np.array([[1.0, 0.5, 0.4]]),
        max_experts=2,
        min_experts=2,
        expert_memory=[3.0, 1.0, 1.0],
        client_memory=[3.0],
        rows=[fa.Row("bytes", "total", [0.0, 5.0, 5.0], upper=6.0)],
    )
    for strict in (True, False):
        x = np.array([[True, False, False]])
        assert not repack(problem, x, problem.desirability, 0, strict=strict)
        assert x.tolist() == [[True, False, False]]
    free = fa.AlignmentProblem(
        problem.desirability, max_experts=2, min_experts=2, expert_memory=[3.0, 1.0, 1.0], client_memory=[3.0]
    )
    x = np.array([[True, False, False]])
    assert repack(free, x, free.desirability, 0)
    assert x.tolist() == [[False, True, True]]


def test_repack_is_undone_when_it_would_break_a_weighted_expert_row() -> None:
    problem = fa.AlignmentProblem(
        np.array([[1.0, 0.5, 0.4], [0.0, 1.0, 0.0]]),
        max_experts=2,
        min_experts=[2, 1],
        expert_memory=[3.0, 1.0, 1.0],
        client_memory=[3.0, 9.0],
        allowed=[[1, 1, 1], [0, 1, 0]],
        rows=[fa.Row("load", "expert", 1.0, upper=[9.0, 1.0, 9.0])],
    )
    x = np.array([[True, False, False], [False, True, False]])
    before = x.copy()
    assert not repack(problem, x, problem.desirability, 0)
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- rows: local search


@pytest.mark.parametrize("seed", range(40))
def test_local_search_keeps_feasibility_and_never_loses_with_rows(seed: int) -> None:
    problem, x = planted_rows(seed, tight=seed % 2 == 0, soft=seed % 3 == 0)
    y = local_search(problem, x)
    assert fa.check(problem, y) == []
    assert problem.objective(y) >= problem.objective(x) - 1e-9


@pytest.mark.parametrize("seed", range(20))
def test_local_search_never_loses_with_soft_rows_from_a_repaired_start(seed: int) -> None:
    problem, _ = planted_rows(seed, soft=True)
    x = repair(problem, random_start(seed, problem.shape))
    y = local_search(problem, x)
    assert fa.check(problem, y) == []
    assert problem.objective(y) >= problem.objective(x) - 1e-9


def test_local_search_does_not_replace_into_a_penalty() -> None:
    """Expert 1 is worth 0.3 more to the client but costs 1.0 in its soft cap: no move."""
    problem = fa.AlignmentProblem(
        np.array([[0.5, 0.8]]),
        max_experts=1,
        min_experts=1,
        rows=[fa.Row("soft", "expert", 1.0, upper=[1.0, 0.0], penalty=1.0)],
    )
    start = np.array([[True, False]])
    np.testing.assert_array_equal(local_search(problem, start), start)


def test_local_search_respects_weighted_expert_and_total_rows() -> None:
    """The replace that desirability wants breaks an expert row; the trade breaks a total row."""
    d = np.array([[0.1, 0.9], [0.8, 0.2]])
    start = np.array([[True, False], [False, True]])
    caps = fa.Row("load", "expert", [[2.0], [1.0]], upper=[9.0, 1.5])
    problem = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_max_clients=2, rows=[caps])
    y = local_search(problem, start)
    assert fa.check(problem, y) == []
    assert not y[0, 1]  # client 0 (weight 2) may not take expert 1
    budget = fa.Row("bytes", "total", [[1.0, 4.0], [3.0, 1.0]], upper=6.0)
    traded = fa.AlignmentProblem(d, max_experts=1, min_experts=1, expert_max_clients=1, rows=[budget])
    np.testing.assert_array_equal(local_search(traded, start), start)


def test_local_search_keeps_lower_bounds_when_dropping() -> None:
    d = np.array([[-1.0, -2.0, 0.5]])
    problem = fa.AlignmentProblem(
        d, max_experts=3, min_experts=1, rows=[fa.Row("floor", "client", [1.0, 1.0, 0.0], lower=1.0)]
    )
    y = local_search(problem, np.array([[True, True, False]]))
    assert fa.check(problem, y) == []
    assert y.tolist() == [[True, False, True]]


# --------------------------------------------------------------------------- soft rows in fill


def test_fill_treats_a_soft_cap_as_a_cap_then_adds_only_pairs_worth_the_penalty() -> None:
    problem = fa.AlignmentProblem(
        np.array([[0.9], [0.6], [0.3]]), rows=[fa.Row("load", "expert", upper=1, penalty=0.5)]
    )
    x = fill(problem, np.zeros((3, 1), bool))
    assert x[:, 0].tolist() == [True, True, False]


def test_fill_prices_each_band_of_a_soft_row() -> None:
    """Above the cap the first unit costs 0.2, every later one 0.5."""
    problem = fa.AlignmentProblem(
        np.array([[0.9], [0.6], [0.4], [0.3]]), rows=[fa.Row("load", "expert", upper=1, penalty=[0.2, 0.5])]
    )
    x = fill(problem, np.zeros((4, 1), bool))
    assert x[:, 0].tolist() == [True, True, False, False]
    assert problem.objective(x) == pytest.approx(0.9 + 0.6 - 0.2)


def test_fill_draws_in_a_negative_pair_a_soft_floor_pays_for() -> None:
    problem = fa.AlignmentProblem(
        np.array([[-0.5, -3.0]]), max_experts=2, rows=[fa.Row("floor", "client", lower=1, penalty=2.0)]
    )
    x = fill(problem, np.zeros((1, 2), bool))
    assert x.tolist() == [[True, False]]


def test_fill_with_an_explicit_priority_ignores_soft_rows() -> None:
    problem = fa.AlignmentProblem(
        np.array([[0.9], [0.6], [0.3]]), rows=[fa.Row("load", "expert", upper=1, penalty=0.5)]
    )
    x = fill(problem, np.zeros((3, 1), bool), priority=problem.desirability)
    assert x.all()
    assert fill(problem, np.zeros((3, 1), bool), priority=problem.desirability, soft=True).sum() == 2


@pytest.mark.parametrize("seed", range(30))
def test_fill_with_soft_rows_only_raises_the_objective(seed: int) -> None:
    problem, _ = planted_rows(seed, soft=True)
    rng = np.random.default_rng(seed)
    x = add_best_first(problem, np.zeros(problem.shape, bool), problem.fits & (rng.random(problem.shape) < 0.3), rng.random(problem.shape))
    before = problem.objective(x)
    y = fill(problem, x.copy())
    assert (y >= x).all() and not breaks_an_upper_bound(problem, y)
    assert problem.objective(y) >= before - 1e-9


@pytest.mark.parametrize("seed", range(40))
def test_soft_windows_price_every_unit_in_the_window(seed: int) -> None:
    """Narrow windows: the penalty is linear at the price up to the window's end; wide ones:
    at most the price per unit, and the window reaches as far as asked."""
    rng = np.random.default_rng(seed)
    prices = np.sort(rng.uniform(0.1, 2.0, int(rng.integers(1, 4))))
    lower = float(rng.integers(0, 4)) if rng.random() < 0.6 else None
    upper = (lower or 0.0) + float(rng.integers(0, 4)) if lower is None or rng.random() < 0.6 else None
    row = fa.AlignmentProblem(
        np.zeros((1, 1)), rows=[fa.Row("soft", "total", 1.0, lower=lower, upper=upper, penalty=list(prices))]
    ).row("soft")
    for u in rng.uniform(0.0, 9.0, 8).round(1):
        used = np.array([u])
        for reach in (None, np.array([rng.uniform(0.1, 3.0)])):
            end, price = window(row, used, reach)
            assert end[0] > u
            if reach is not None:
                assert end[0] >= u + reach[0] - 1e-12
            top = min(end[0], u + 12.0)
            for t in np.linspace(u, top, 7):
                extra = float(row.cost(np.array([t]))[0] - row.cost(used)[0])
                assert extra <= price[0] * (t - u) + 1e-9
                if reach is None:
                    assert extra == pytest.approx(price[0] * (t - u), abs=1e-9)


def test_repair_makes_room_in_a_full_total_row_for_a_minimum() -> None:
    """Client 2 fills the byte budget; clients 0 and 1 need an expert each: client 2's
    cheapest pairs make room (no path could: every addition needs budget)."""
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.9, 0.5, 0.8]])
    problem = fa.AlignmentProblem(
        d, max_experts=3, min_experts=[1, 1, 0], rows=[fa.Row("bytes", "total", upper=3.0)]
    )
    start = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]], bool)
    x = repair(problem, start, fill=False)
    assert fa.check(problem, x) == []
    assert x[2].tolist() == [True, False, False]  # its two cheapest pairs went
    assert x[0, 2] and x[1, 0]


def test_repair_gives_up_fast_when_a_total_row_cannot_hold_the_minimums() -> None:
    """Every client needs an expert, the budget holds half of them: counting proves it."""
    problem = fa.AlignmentProblem(
        np.ones((400, 4)), max_experts=2, min_experts=1, rows=[fa.Row("bytes", "total", upper=200.0)]
    )
    with pytest.raises(fa.InfeasibleError, match="no feasible assignment exists: bytes"):
        repair(problem, np.ones((400, 4), bool))
