"""Hypothesis strategies for alignment problems, and a brute-force optimum for tiny ones.

Every property test of the project draws its problems from here (attrs' habit: all the
generators in one file, composed with ``@st.composite``).

Strategies
----------
``problems()``
    Any valid problem: every constraint kind, drawn independently, so it may be feasible or
    not. Use it where both outcomes are checked (against :func:`brute_force` on tiny ones).
``planted_problems()`` / ``feasible_problems()``
    Feasible by construction: a random assignment is planted first and every constraint is
    derived so that it holds. ``slack`` says how hard the problem is:

    * ``"none"`` -- no minimums at all (the empty assignment is feasible): every solver,
      heuristic or not, must find a feasible assignment.
    * ``"loose"`` -- at most one expert required per client, no per-expert minimums or caps:
      still easy enough that every solver must succeed.
    * ``"tight"`` -- minimums up to the planted counts and capacities equal to the planted
      use: exact solvers must succeed, heuristics may raise ``InfeasibleError``.
``warm_pairs()``
    ``(earlier, problem)``: a tiny problem and one to warm-start it from: the same problem,
    a *related* one (clients reordered, desirability drifted, maybe a client renamed: what
    consecutive rounds look like) or an *unrelated* one (any shape, ids and rows).
``infeasible_problems()``
    Provably infeasible, for a reason drawn from :data:`INFEASIBLE_REASONS` (each comes
    with its proof in :func:`_break`).
``row_problems()``
    Problems with rows given as :class:`fedalign.Row`: 0-3 client rows, 0-2 weighted expert
    rows (lower and/or upper), 0-1 total rows, and with ``soft=True`` 1-2 soft rows, on top
    of a planted problem. ``planted=True`` derives every bound from the planted assignment
    (feasible; ``slack`` as above); ``planted=False`` moves each bound at random around it,
    so the problem may be infeasible.

Sizes: ``max_pairs`` bounds ``n_clients * n_experts``; keep it at 12 or below for
:func:`brute_force`, and raise ``max_clients`` / ``max_experts`` for moderate problems
(about 60 x 10). Small arrays are drawn element by element (so Hypothesis shrinks them to
readable counterexamples); larger ones come from a NumPy generator seeded by a drawn integer.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from fedalign.problem import BUILTIN_ROWS, AlignmentProblem
from fedalign.rows import Row

__all__ = [
    "INFEASIBLE_REASONS",
    "BruteForce",
    "brute_force",
    "describe",
    "feasible_problems",
    "ids",
    "infeasible_problems",
    "objective_tolerance",
    "planted_problems",
    "problem_kwargs",
    "problems",
    "reordered",
    "row_problems",
    "shapes",
    "warm_pairs",
]

#: Arrays with at most this many entries are drawn element by element.
_ELEMENTWISE = 48

#: Largest ``n_clients * n_experts`` that :func:`brute_force` enumerates.
BRUTE_FORCE_MAX_PAIRS = 16

Sampler = Callable[[np.random.Generator, tuple[int, ...]], NDArray[Any]]


# --------------------------------------------------------------------------- small helpers


def _array(
    draw: st.DrawFn,
    shape: tuple[int, ...],
    elements: st.SearchStrategy[Any],
    sampler: Sampler,
    dtype: Any = np.float64,
) -> NDArray[Any]:
    """An array of ``shape``: drawn entry by entry when small, else from a seeded generator."""
    size = int(np.prod(shape))
    if size <= _ELEMENTWISE:
        return draw(hnp.arrays(dtype, shape, elements=elements, fill=st.nothing()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return np.asarray(sampler(rng, shape), dtype=dtype)


def _ints(draw: st.DrawFn, shape: tuple[int, ...], lo: int, hi: int) -> NDArray[np.int64]:
    """Integers in ``[lo, hi]``."""
    return _array(
        draw,
        shape,
        st.integers(lo, hi),
        lambda rng, s: rng.integers(lo, hi + 1, s),
        dtype=np.int64,
    )


def _bools(draw: st.DrawFn, shape: tuple[int, ...], density: float) -> NDArray[np.bool_]:
    """Booleans, True with probability about ``density``."""
    if density <= 0.0:
        return np.zeros(shape, dtype=bool)
    if density >= 1.0:
        return np.ones(shape, dtype=bool)
    return _array(
        draw,
        shape,
        st.integers(0, 99).map(lambda k: k < 100 * density),
        lambda rng, s: rng.random(s) < density,
        dtype=bool,
    )


def _grid(draw: st.DrawFn, shape: tuple[int, ...], lo: int, hi: int, step: float) -> NDArray[np.float64]:
    """Floats ``k * step`` with integer ``k`` in ``[lo, hi]`` (exact in binary when step is)."""
    return _ints(draw, shape, lo, hi).astype(np.float64) * step


#: Kinds of desirability matrix: (element strategy, generator sampler).
_DESIRABILITY: dict[str, tuple[st.SearchStrategy[float], Sampler]] = {
    "grid": (
        st.integers(-1000, 1000).map(lambda k: k / 1000),
        lambda rng, s: rng.integers(-1000, 1001, s) / 1000,
    ),
    "fitness": (
        st.integers(0, 100).map(lambda k: k / 100),
        lambda rng, s: rng.integers(0, 101, s) / 100,
    ),
    "ties": (
        st.integers(-2, 3).map(float),
        lambda rng, s: rng.integers(-2, 4, s).astype(np.float64),
    ),
    "float": (
        st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False),
        lambda rng, s: rng.uniform(-1.0, 1.0, s),
    ),
    "wide": (
        st.integers(-(10**6), 10**6).map(lambda k: k / 1000),
        lambda rng, s: rng.integers(-(10**6), 10**6 + 1, s) / 1000,
    ),
    "zeros": (st.just(0.0), lambda rng, s: np.zeros(s)),
}


def desirabilities(draw: st.DrawFn, shape: tuple[int, int]) -> NDArray[np.float64]:
    """A desirability matrix of a drawn kind: ties, zeros, negatives, fine floats, wide range."""
    kind = draw(st.sampled_from(sorted(_DESIRABILITY)))
    elements, sampler = _DESIRABILITY[kind]
    return _array(draw, shape, elements, sampler)


@st.composite
def shapes(
    draw: st.DrawFn,
    *,
    min_clients: int = 0,
    max_clients: int = 6,
    min_experts: int = 1,
    max_experts: int = 4,
    max_pairs: int | None = 12,
) -> tuple[int, int]:
    """``(n_clients, n_experts)`` within the bounds and ``n_clients * n_experts <= max_pairs``."""
    n = draw(st.integers(min_clients, max_clients))
    hi = max_experts if max_pairs is None or n == 0 else min(max_experts, max_pairs // n)
    hi = max(hi, min_experts)
    e = draw(st.integers(min_experts, hi))
    return n, e


_ID_ATOMS: dict[str, st.SearchStrategy[Hashable]] = {
    "int": st.integers(-(10**12), 10**12),
    "str": st.text(min_size=0, max_size=6),
    "tuple": st.tuples(st.sampled_from(["c", "e", "node"]), st.integers(0, 99)),
    "mixed": st.one_of(st.integers(-50, 50), st.text(max_size=3)),
    "bytes": st.binary(max_size=3),
}


@st.composite
def ids(draw: st.DrawFn, n: int, *, json: bool = False) -> list[Hashable] | None:
    """``None`` (default ids) or ``n`` unique hashable ids of one drawn type.

    ``json=True`` keeps to strings and integers whose string forms are also unique, as the
    command line's JSON object keys need.
    """
    kinds = ["int", "str", "mixed"] if json else sorted(_ID_ATOMS)
    kind = draw(st.sampled_from([None, *kinds]))
    if kind is None:
        return None
    atom = _ID_ATOMS[kind]
    key: Callable[[Hashable], Hashable] = str if json else (lambda v: v)
    return draw(st.lists(atom, min_size=n, max_size=n, unique_by=key))


def _scalar_or_vector(draw: st.DrawFn, vector: NDArray[Any], scalar: Any) -> Any:
    """Either the per-item ``vector`` or the equivalent-or-stricter ``scalar`` form."""
    if draw(st.booleans()):
        return scalar
    return vector


# --------------------------------------------------------------------------- any problem


@st.composite
def problem_kwargs(
    draw: st.DrawFn,
    *,
    min_clients: int = 0,
    max_clients: int = 4,
    min_experts: int = 1,
    max_experts: int = 4,
    max_pairs: int | None = 12,
    json_ids: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of a valid :class:`AlignmentProblem`, every constraint kind drawn
    independently (the problem may be infeasible)."""
    n, e = draw(
        shapes(
            min_clients=min_clients,
            max_clients=max_clients,
            min_experts=min_experts,
            max_experts=max_experts,
            max_pairs=max_pairs,
        )
    )
    kw: dict[str, Any] = {"desirability": desirabilities(draw, (n, e))}

    max_e = _ints(draw, (n,), 0, e + 1)
    kw["max_experts"] = _scalar_or_vector(draw, max_e, draw(st.integers(0, e + 1)))
    max_vec = np.broadcast_to(kw["max_experts"], (n,))
    if draw(st.booleans()):
        kw["min_experts"] = np.minimum(_ints(draw, (n,), 0, 2), max_vec)
    elif n and draw(st.booleans()):
        kw["min_experts"] = min(int(max_vec.min()), draw(st.integers(0, 1)))

    if draw(st.booleans()):
        kw["expert_memory"] = _memory_sizes(draw, e)
        kw["client_memory"] = _grid(draw, (n,), 0, 16, 0.25)
    if draw(st.booleans()):
        kw["train_time"] = _grid(draw, (n, e), 0, 12, 0.5)
        deadline = _grid(draw, (n,), 1, 24, 0.5)
        kw["deadline"] = _scalar_or_vector(draw, deadline, float(draw(st.integers(1, 24)) * 0.5))

    if draw(st.booleans()):
        cap = _ints(draw, (e,), 0, n + 1)
        kw["expert_max_clients"] = _scalar_or_vector(draw, cap, draw(st.integers(0, n + 1)))
    cap_vec = np.broadcast_to(kw.get("expert_max_clients", n), (e,))
    if draw(st.booleans()):
        kw["expert_min_clients"] = np.minimum(_ints(draw, (e,), 0, 2), cap_vec)

    density = draw(st.sampled_from([None, 0.3, 0.6, 0.9]))
    if density is not None:
        kw["allowed"] = _bools(draw, (n, e), density)
    kw["client_ids"] = draw(ids(n, json=json_ids))
    kw["expert_ids"] = draw(ids(e, json=json_ids))
    return kw


def _memory_sizes(draw: st.DrawFn, e: int) -> NDArray[np.float64]:
    """Expert sizes: all equal (reduces to a count) or unequal, zeros included."""
    kind = draw(st.sampled_from(["equal", "unequal", "float"]))
    if kind == "equal":
        return np.full(e, draw(st.sampled_from([0.0, 0.5, 1.0, 2.5])))
    if kind == "unequal":
        return _grid(draw, (e,), 0, 16, 0.25)
    return _array(
        draw,
        (e,),
        st.floats(0.0, 4.0, allow_nan=False, allow_infinity=False),
        lambda rng, s: rng.uniform(0.0, 4.0, s),
    )


@st.composite
def problems(draw: st.DrawFn, **kwargs: Any) -> AlignmentProblem:
    """A valid problem of any constraint mix (see :func:`problem_kwargs` for the bounds)."""
    return AlignmentProblem(**draw(problem_kwargs(**kwargs)))


# --------------------------------------------------------------------------- feasible problems

SLACKS = ("none", "loose", "tight")


@st.composite
def planted_problems(
    draw: st.DrawFn,
    *,
    slack: str = "any",
    min_clients: int = 1,
    max_clients: int = 4,
    min_experts: int = 1,
    max_experts: int = 4,
    max_pairs: int | None = 12,
    knapsack: bool = True,
    json_ids: bool = False,
) -> tuple[AlignmentProblem, NDArray[np.bool_]]:
    """A problem feasible by construction and the planted assignment that proves it.

    Parameters
    ----------
    slack : {"none", "loose", "tight", "any"}
        How hard the problem is (see the module docstring); ``"any"`` draws one.
    knapsack : bool
        Whether memory and deadline rows may appear.
    """
    kw, planted = draw(
        _planted_kwargs(
            slack=slack,
            min_clients=min_clients,
            max_clients=max_clients,
            min_experts=min_experts,
            max_experts=max_experts,
            max_pairs=max_pairs,
            knapsack=knapsack,
            json_ids=json_ids,
        )
    )
    return AlignmentProblem(**kw), planted


@st.composite
def _planted_kwargs(
    draw: st.DrawFn,
    *,
    slack: str,
    min_clients: int,
    max_clients: int,
    min_experts: int,
    max_experts: int,
    max_pairs: int | None,
    knapsack: bool,
    json_ids: bool,
) -> tuple[dict[str, Any], NDArray[np.bool_]]:
    if slack not in (*SLACKS, "any"):
        raise ValueError(f"slack: expected one of {SLACKS} or 'any', got {slack!r}")
    mode = draw(st.sampled_from(SLACKS)) if slack == "any" else slack
    n, e = draw(
        shapes(
            min_clients=min_clients,
            max_clients=max_clients,
            min_experts=min_experts,
            max_experts=max_experts,
            max_pairs=max_pairs,
        )
    )
    x = _bools(draw, (n, e), draw(st.sampled_from([0.0, 0.25, 0.5, 0.8])))
    counts = x.sum(axis=1).astype(np.int64)
    loads = x.sum(axis=0).astype(np.int64)
    kw: dict[str, Any] = {"desirability": desirabilities(draw, (n, e))}

    if draw(st.booleans()):
        kw["allowed"] = x | _bools(draw, (n, e), draw(st.sampled_from([0.0, 0.3, 0.7])))

    top = int(counts.max(initial=0))
    kw["max_experts"] = _scalar_or_vector(
        draw, counts + _ints(draw, (n,), 0, 2), top + draw(st.integers(0, 2))
    )
    if mode == "loose":
        kw["min_experts"] = np.minimum(counts, 1) * _ints(draw, (n,), 0, 1)
    elif mode == "tight":
        low = int(counts.min(initial=0))
        kw["min_experts"] = _scalar_or_vector(
            draw, np.maximum(counts - _ints(draw, (n,), 0, 1), 0), low
        )

    if knapsack and draw(st.booleans()):
        e_mem = _memory_sizes(draw, e)
        used = x.astype(np.float64) @ e_mem
        kw["expert_memory"] = e_mem
        kw["client_memory"] = used + _capacity_slack(draw, n, mode)
    if knapsack and draw(st.booleans()):
        t = _grid(draw, (n, e), 0, 12, 0.5)
        used = np.where(x, t, 0.0).sum(axis=1)
        deadline = used + _capacity_slack(draw, n, mode)
        deadline = np.where(deadline > 0, deadline, 0.5)
        kw["train_time"] = t
        kw["deadline"] = _scalar_or_vector(draw, deadline, float(deadline.max(initial=1.0)))

    if mode != "loose" and draw(st.booleans()):
        kw["expert_max_clients"] = _scalar_or_vector(
            draw, loads + _ints(draw, (e,), 0, 2), int(loads.max(initial=0)) + draw(st.integers(0, 1))
        )
    if mode == "tight":
        kw["expert_min_clients"] = _scalar_or_vector(
            draw, np.maximum(loads - _ints(draw, (e,), 0, 1), 0), int(loads.min(initial=0))
        )
    kw["client_ids"] = draw(ids(n, json=json_ids))
    kw["expert_ids"] = draw(ids(e, json=json_ids))
    return kw, x


def _capacity_slack(draw: st.DrawFn, n: int, mode: str) -> NDArray[np.float64]:
    """Capacity left over the planted use: often none at all when tight."""
    if mode == "tight" and draw(st.booleans()):
        return np.zeros(n)
    return _grid(draw, (n,), 0, 8, 0.5)


def feasible_problems(*, slack: str = "any", **kwargs: Any) -> st.SearchStrategy[AlignmentProblem]:
    """Problems feasible by construction (:func:`planted_problems` without the plant)."""
    return planted_problems(slack=slack, **kwargs).map(lambda pair: pair[0])


# --------------------------------------------------------------------------- infeasible problems

#: Reasons :func:`infeasible_problems` can draw. The first five are caught by
#: ``AlignmentProblem.infeasibility_reason``; ``hall`` and ``two_knapsacks`` need a search.
INFEASIBLE_REASONS = (
    "min_above_allowed",
    "expert_slots",
    "memory",
    "deadline",
    "seats",
    "hall",
    "two_knapsacks",
)


@st.composite
def infeasible_problems(
    draw: st.DrawFn,
    *,
    reasons: tuple[str, ...] = INFEASIBLE_REASONS,
    max_clients: int = 4,
    max_experts: int = 4,
    max_pairs: int | None = 12,
    json_ids: bool = False,
) -> AlignmentProblem:
    """A provably infeasible problem: a feasible one, broken for a drawn reason."""
    reason = draw(st.sampled_from(reasons))
    lo_e = 3 if reason == "two_knapsacks" else 2
    kw, _ = draw(
        _planted_kwargs(
            slack="none",
            min_clients=2,
            max_clients=max(2, max_clients),
            min_experts=lo_e,
            max_experts=max(lo_e, max_experts),
            max_pairs=max_pairs,
            knapsack=True,
            json_ids=json_ids,
        )
    )
    return AlignmentProblem(**_break(draw, kw, reason))


def _break(draw: st.DrawFn, kw: dict[str, Any], reason: str) -> dict[str, Any]:
    """Make the problem of ``kw`` infeasible for ``reason``; each branch states its proof."""
    n, e = kw["desirability"].shape
    kw = dict(kw)
    i = draw(st.integers(0, n - 1))
    max_e = np.broadcast_to(kw["max_experts"], (n,)).copy()
    min_e = np.zeros(n, dtype=np.int64)
    allowed = np.ones((n, e), bool) if kw.get("allowed") is None else kw["allowed"].copy()
    kw.pop("expert_min_clients", None)

    if reason == "min_above_allowed":
        # Client i needs one more expert than it is allowed to train.
        allowed[i] = _bools(draw, (e,), 0.5)
        allowed[i, draw(st.integers(0, e - 1))] = False
        min_e[i] = int(allowed[i].sum()) + 1
    elif reason == "expert_slots":
        # Each client takes at most one expert, but the experts need more trainings in all.
        max_e = _ints(draw, (n,), 0, 1)
        need = int(max_e.sum()) + 1 + draw(st.integers(0, 1))
        kw["expert_min_clients"] = _spread(draw, need, e, cap=n)
        kw.pop("expert_max_clients", None)
    elif reason in ("memory", "deadline"):
        # Client i must train m experts, but even its m smallest / fastest do not fit.
        m = draw(st.integers(1, e))
        min_e[i] = m
        allowed[i] = True
        if reason == "memory":
            sizes = _grid(draw, (e,), 1, 16, 0.25)
            cap = np.full(n, float(sizes.sum()))
            cap[i] = np.sort(sizes)[:m].sum() - 0.125
            kw["expert_memory"], kw["client_memory"] = sizes, cap
        else:
            t = _grid(draw, (n, e), 1, 12, 0.5)
            dl = t.sum(axis=1) + 1.0
            dl[i] = np.sort(t[i])[:m].sum() - 0.25
            kw["train_time"], kw["deadline"] = t, dl
    elif reason == "seats":
        # Every client needs an expert, but the experts accept fewer than n clients in all.
        min_e[:] = 1
        kw["expert_max_clients"] = _spread(draw, n - 1 - draw(st.integers(0, 1)), e, cap=n)
    elif reason == "hall":
        # k clients may only train t < k experts that accept one client each (Hall's
        # condition fails for them), while the counting arguments still pass.
        k = draw(st.integers(2, n))
        t_count = draw(st.integers(1, min(k - 1, e - 1)))
        allowed[:k] = False
        allowed[:k, :t_count] = True
        min_e[:k] = 1
        cap = np.full(e, n, dtype=np.int64)
        cap[:t_count] = 1
        kw["expert_max_clients"] = cap
    elif reason == "two_knapsacks":
        # Client i needs two experts. The two small ones are too slow together; any other
        # pair holds a large one and overflows memory. Each knapsack alone would allow it.
        a, b = draw(st.lists(st.integers(0, e - 1), min_size=2, max_size=2, unique=True))
        sizes = np.full(e, 10.0)
        sizes[[a, b]] = 1.0
        t = _grid(draw, (n, e), 0, 4, 0.5)
        t[i] = 1.0
        t[i, [a, b]] = 10.0
        cap = np.full(n, float(sizes.sum()))
        cap[i] = 2.0
        dl = t.sum(axis=1) + 1.0
        dl[i] = 11.0
        min_e[i] = 2
        allowed[i] = True
        kw.update(expert_memory=sizes, client_memory=cap, train_time=t, deadline=dl)
    else:
        raise ValueError(f"reason: unknown {reason!r}; choose from {INFEASIBLE_REASONS}")

    kw["min_experts"] = min_e
    kw["max_experts"] = np.maximum(max_e, min_e)
    kw["allowed"] = allowed
    if "expert_max_clients" in kw and kw["expert_max_clients"] is not None:
        emin = np.broadcast_to(kw.get("expert_min_clients", 0), (e,))
        kw["expert_max_clients"] = np.maximum(np.broadcast_to(kw["expert_max_clients"], (e,)), emin)
    return kw


def _spread(draw: st.DrawFn, total: int, k: int, *, cap: int) -> NDArray[np.int64]:
    """``k`` integers in ``[0, cap]`` summing to ``total`` (needs ``total <= k * cap``)."""
    out = np.zeros(k, dtype=np.int64)
    weights = _ints(draw, (k,), 1, 4)
    for _ in range(total):  # total is small: a few units, dealt by weight
        room = np.flatnonzero(out < cap)
        j = room[np.argmax(weights[room] - out[room])]
        out[j] += 1
    return out


# --------------------------------------------------------------------------- rows

#: How a row's weight is given: one number, per expert, per client, or per pair.
_WEIGHT_KINDS = ("unit", "scalar", "per-expert", "per-client", "per-pair")


def _row_weight(draw: st.DrawFn, n: int, e: int) -> tuple[Any, NDArray[np.float64]]:
    """A row weight as a user gives it, and its dense (n, E) form."""
    kind = draw(st.sampled_from(_WEIGHT_KINDS))
    if kind == "unit":
        return 1.0, np.ones((n, e))
    if kind == "scalar":
        w = float(draw(st.integers(1, 6))) * 0.5
        return w, np.full((n, e), w)
    if kind == "per-expert":
        w = _grid(draw, (e,), 0, 8, 0.5)
        return w, np.broadcast_to(w, (n, e)).copy()
    if kind == "per-client":
        w = _grid(draw, (n, 1), 0, 8, 0.5)
        return w, np.broadcast_to(w, (n, e)).copy()
    w = _grid(draw, (n, e), 0, 8, 0.5)
    return w, w


def _row_bounds(
    draw: st.DrawFn,
    used: NDArray[np.float64],
    unit: NDArray[np.float64],
    mode: str,
) -> tuple[Any, Any]:
    """Lower and upper bounds around the planted ``used`` (one value per row).

    ``unit`` is a typical weight of one pair of each row: ``"loose"`` lower bounds ask for at
    most that much (one pair's worth, as loose problems need at most one expert per client),
    ``"tight"`` ones for up to the planted use, and ``"random"`` bounds move either way.
    """
    sides = draw(st.sampled_from(["upper", "lower", "both"]))
    m = used.size
    lower = upper = None
    if sides in ("upper", "both"):
        if mode == "random":
            upper = np.maximum(used + _grid(draw, (m,), -4, 4, 0.5), 0.0)
        elif mode == "tight":
            upper = used + _grid(draw, (m,), 0, 1, 0.5)
        else:
            upper = used + _grid(draw, (m,), 0, 8, 0.5)
    if sides in ("lower", "both"):
        if mode == "random":
            lower = np.maximum(used + _grid(draw, (m,), -4, 4, 0.5), 0.0)
        elif mode == "tight":
            lower = np.maximum(used - _grid(draw, (m,), 0, 1, 0.5), 0.0)
        else:
            lower = np.minimum(used, unit) * _grid(draw, (m,), 0, 2, 0.5)
        if upper is not None:
            lower = np.minimum(lower, upper)
    if m == 1:  # a total row: plain floats, as a user writes them
        return (None if lower is None else float(lower[0])), (None if upper is None else float(upper[0]))
    return lower, upper


def _rows_over(
    draw: st.DrawFn, x: NDArray[np.bool_], over: str, count: int, mode: str, prefix: str
) -> list[Row]:
    """``count`` hard rows over ``over``, bounds derived from assignment ``x``."""
    n, e = x.shape
    out = []
    axis = {"client": 1, "expert": 0, "total": None}[over]
    for k in range(count):
        weight, dense = _row_weight(draw, n, e)
        used = np.atleast_1d((np.where(x, dense, 0.0)).sum(axis=axis))
        held = np.where(x, dense, np.inf).min(axis=axis, initial=np.inf)
        unit = np.atleast_1d(np.where(np.isfinite(held), held, 0.0))
        if over == "total":
            unit = np.atleast_1d(0.25 * used)
        lower, upper = _row_bounds(draw, used, unit, mode)
        if lower is None and upper is None:
            continue
        out.append(Row(f"{prefix}{k}", over, weight, lower=lower, upper=upper))
    return out


def _soft_rows(draw: st.DrawFn, x: NDArray[np.bool_]) -> list[Row]:
    """1-2 soft rows: a load target per expert (count bands), a byte target per round."""
    n, e = x.shape
    out: list[Row] = []
    kinds = draw(st.lists(st.sampled_from(["load", "bytes", "floor"]), min_size=1, max_size=2, unique=True))
    prices = sorted(draw(st.lists(st.integers(1, 8), min_size=1, max_size=3)))
    penalty: Any = [p * 0.25 for p in prices] if len(prices) > 1 or draw(st.booleans()) else prices[0] * 0.25
    for kind in kinds:
        if kind == "load":
            upper = draw(st.integers(0, max(1, n // 2)))
            out.append(Row("soft load", "expert", 1.0, upper=upper, penalty=penalty))
        elif kind == "bytes":
            weight, _ = _row_weight(draw, n, e)
            out.append(Row("soft bytes", "total", weight, upper=float(draw(st.integers(0, 6))), penalty=penalty))
        else:
            out.append(Row("soft floor", "client", 1.0, lower=float(draw(st.integers(0, 2))), penalty=penalty))
    return out


@st.composite
def row_problems(
    draw: st.DrawFn,
    *,
    planted: bool = True,
    slack: str = "loose",
    soft: bool = False,
    min_clients: int = 1,
    max_clients: int = 4,
    min_experts: int = 1,
    max_experts: int = 4,
    max_pairs: int | None = 12,
    json_ids: bool = False,
) -> AlignmentProblem:
    """A problem with rows given as :class:`fedalign.Row` (see the module docstring).

    Parameters
    ----------
    planted : bool
        Bounds derived from a planted assignment (feasible), or moved at random around it.
    slack : {"none", "loose", "tight"}
        How hard a planted problem is; the keyword rows follow :func:`planted_problems`.
    soft : bool
        Add 1-2 soft rows (which never make a problem infeasible).
    """
    kw, x = draw(
        _planted_kwargs(
            slack=slack,
            min_clients=min_clients,
            max_clients=max_clients,
            min_experts=min_experts,
            max_experts=max_experts,
            max_pairs=max_pairs,
            knapsack=draw(st.booleans()),
            json_ids=json_ids,
        )
    )
    mode = "random" if not planted else "loose" if slack in ("none", "loose") else "tight"
    rows = _rows_over(draw, x, "client", draw(st.integers(0, 3)), mode, "client row ")
    rows += _rows_over(draw, x, "expert", draw(st.integers(0, 2)), mode, "expert row ")
    rows += _rows_over(draw, x, "total", draw(st.integers(0, 1)), mode, "total row ")
    if slack == "none" and planted:
        rows = [Row(r.name, r.over, r.weight, upper=r.upper) for r in rows if r.upper is not None]
    if soft:
        rows += _soft_rows(draw, x)
    kw["rows"] = rows
    return AlignmentProblem(**kw)


# --------------------------------------------------------------------------- warm starts


def reordered(
    problem: AlignmentProblem,
    perm: NDArray[np.intp],
    desirability: NDArray[np.float64] | None = None,
    client_ids: list[Hashable] | None = None,
) -> AlignmentProblem:
    """``problem`` with its clients in the order ``perm`` (every per-client value and row
    moved with them), optionally with another desirability and other client ids."""
    n = problem.n_clients
    kw: dict[str, Any] = {
        "max_experts": problem.max_experts[perm],
        "min_experts": problem.min_experts[perm],
        "expert_min_clients": problem.expert_min_clients,
        "expert_max_clients": problem.expert_max_clients,
        "allowed": problem.allowed[perm],
        "expert_ids": list(problem.expert_ids),
        "client_ids": [problem.client_ids[i] for i in perm] if client_ids is None else client_ids,
    }
    if problem.expert_memory is not None and problem.client_memory is not None:
        kw.update(expert_memory=problem.expert_memory, client_memory=problem.client_memory[perm])
    if problem.train_time is not None and problem.deadline is not None:
        kw.update(train_time=problem.train_time[perm], deadline=problem.deadline[perm])
    rows = []
    for row in problem.rows:
        if row.name in BUILTIN_ROWS:
            continue
        w = row.weight if row.weight.shape[0] == 1 or n == 0 else row.weight[perm]
        on_clients = row.over == "client"
        lower = None if row.lower is None else (row.lower[perm] if on_clients else row.lower)
        upper = None if row.upper is None else (row.upper[perm] if on_clients else row.upper)
        rows.append(Row(row.name, row.over, w, lower=lower, upper=upper, penalty=row.penalty))
    d = problem.desirability[perm] if desirability is None else desirability
    return AlignmentProblem(d, rows=rows, **kw)


@st.composite
def warm_pairs(draw: st.DrawFn, **sizes: Any) -> tuple[AlignmentProblem, AlignmentProblem]:
    """``(earlier, problem)``: ``problem`` tiny (:func:`brute_force` can check it), ``earlier``
    the problem a warm start comes from (see the module docstring)."""
    problem = draw(st.one_of(problems(**sizes), feasible_problems(**sizes), row_problems(**sizes),
                             row_problems(soft=True, **sizes)))
    kind = draw(st.sampled_from(["same", "related", "unrelated"]))
    if kind == "same":
        return problem, problem
    if kind == "unrelated":
        return draw(st.one_of(problems(**sizes), row_problems(**sizes))), problem
    n = problem.n_clients
    perm = np.asarray(draw(st.permutations(range(n))), dtype=np.intp) if n else np.zeros(0, np.intp)
    drift = draw(st.sampled_from([0.0, 0.05, 0.5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    d = problem.desirability[perm] + drift * rng.standard_normal((n, problem.n_experts))
    ids_now = [problem.client_ids[i] for i in perm]
    if n and draw(st.booleans()) and "fresh client" not in ids_now:
        ids_now[0] = "fresh client"  # one client of the earlier round is gone, a new one came
    # The earlier round is this one reordered back and drifted: what consecutive rounds share.
    return reordered(problem, perm, d, ids_now), problem


# --------------------------------------------------------------------------- brute force


@dataclass(frozen=True)
class BruteForce:
    """Everything enumeration knows about a tiny problem.

    Attributes
    ----------
    optimum : float or None
        Best objective over feasible assignments; None when infeasible.
    assignment : (n, E) bool array or None
        One optimal assignment.
    n_feasible : int
        How many of the ``2 ** (n * E)`` assignments are feasible.
    """

    optimum: float | None
    assignment: NDArray[np.bool_] | None
    n_feasible: int

    @property
    def feasible(self) -> bool:
        """Whether any feasible assignment exists."""
        return self.optimum is not None


def all_assignments(n: int, e: int) -> NDArray[np.bool_]:
    """Every (n, E) binary assignment, as a ``(2 ** (n * E), n, E)`` bool array."""
    m = n * e
    if m > BRUTE_FORCE_MAX_PAIRS:
        raise ValueError(f"brute force: {n} x {e} = {m} pairs is above {BRUTE_FORCE_MAX_PAIRS}")
    codes = np.arange(2**m, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(m, dtype=np.int64)) & 1).astype(bool)
    return bits.reshape(2**m, n, e)


def _stack_usage(row: Row, xs: NDArray[np.bool_]) -> NDArray[np.float64]:
    """A row's usage for every assignment of a stack: ``(len(xs), row.size)``."""
    weighted = np.where(xs, row.dense[None, :, :], 0.0)
    if row.over == "client":
        return weighted.sum(axis=2)
    if row.over == "expert":
        return weighted.sum(axis=1)
    return weighted.sum(axis=(1, 2))[:, None]


def feasible_mask(problem: AlignmentProblem, xs: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For a stack ``xs`` of (n, E) assignments, which satisfy every hard row (vectorised)."""
    ok = ~(xs & ~problem.allowed).any(axis=(1, 2))
    for row in problem.rows:
        if row.soft:
            continue
        used = _stack_usage(row, xs)
        if row.upper_cap is not None:
            ok &= (used <= row.upper_cap).all(axis=1)
        if row.lower_cap is not None:
            ok &= (used >= row.lower_cap).all(axis=1)
    return ok


def stack_objective(problem: AlignmentProblem, xs: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The objective (desirability minus soft penalties) of every assignment of a stack."""
    n, e = problem.shape
    values = xs.reshape(len(xs), n * e).astype(np.float64) @ problem.desirability.ravel()
    for row in problem.soft_rows:
        used = _stack_usage(row, xs)
        values -= row.cost(used).sum(axis=1)
    return values


def brute_force(problem: AlignmentProblem) -> BruteForce:
    """The optimum of a tiny problem by enumerating all ``2 ** (n * E)`` assignments.

    Raises
    ------
    ValueError
        If ``n_clients * n_experts`` is above :data:`BRUTE_FORCE_MAX_PAIRS`.
    """
    n, e = problem.shape
    xs = all_assignments(n, e)
    ok = feasible_mask(problem, xs)
    if not ok.any():
        return BruteForce(None, None, 0)
    values = stack_objective(problem, xs)
    best = int(np.argmax(np.where(ok, values, -np.inf)))
    return BruteForce(float(values[best]), xs[best].copy(), int(ok.sum()))


def objective_tolerance(problem: AlignmentProblem) -> float:
    """Absolute slack when comparing objectives: exact solvers may scale desirabilities to
    integers, so they are held to about six significant digits of ``sum(|d|)`` (plus the
    largest penalty a soft row could charge)."""
    scale = float(np.abs(problem.desirability).sum())
    for row in problem.soft_rows:
        scale += float(row.cost(np.full(row.size, row.dense.sum())).sum())
    return 1e-6 * max(1.0, scale)


def describe(problem: AlignmentProblem) -> str:
    """A full, reproducible text form of a problem (for Hypothesis' ``note``)."""
    return "AlignmentProblem(**" + repr(problem.to_dict()) + ")"
