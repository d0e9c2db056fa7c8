"""Variance of one ε-LDP reward in [0, 1]: the mechanisms fedalign offers and three others.

For a reward ``r`` and ``ε`` (default 1), the variance of the unbiased noisy reward of:
``laplace`` and ``duchi`` (:func:`fedalign.privacy.privatize_rewards`), randomized response
on a stochastically rounded reward (``r`` rounded to 1 with probability ``r``, the bit kept
with probability ``e^ε / (1 + e^ε)``, then debiased), Wang et al.'s piecewise mechanism and
their hybrid of piecewise and Duchi (ICDE 2019). Each is drawn 400,000 times (its mean is
printed too, to show it is unbiased) beside its closed form. docs/trust.md ("Which
mechanism") quotes the table.

Then the fitness estimate those rewards feed (``--pairs`` pairs of true reward 0.6, one
privatized reward per round for ``--rounds`` rounds): its mean and variance over the pairs
with the fixed rate ``fitness_ema=0.3`` and with the noise-aware gain
(:class:`fedalign.FitnessTracker`, ``noise=``), quoted in docs/trust.md ("Noise-aware
fitness").

Run::

    .venv/bin/python benchmarks/ldp_mechanisms.py [--epsilon 1] [--draws 400000]
        [--pairs 2000] [--rounds 20]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from fedalign.privacy import noise_variance, privatize_rewards
from fedalign.scores import FitnessTracker

Draw = Callable[[float, float, int, np.random.Generator], NDArray[np.float64]]


def fedalign_mechanism(name: str) -> Draw:
    """Draws from :func:`fedalign.privacy.privatize_rewards` with ``mechanism=name``."""

    def draw(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        # one report per draw: a report of n rewards would split ε between them
        return np.array([privatize_rewards({0: r}, eps, rng=rng, mechanism=name)[0] for _ in range(n)])

    return draw


def laplace(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Laplace noise of scale 1 / ε (as ``privatize_rewards``, vectorised)."""
    return r + rng.laplace(0.0, 1.0 / eps, n)


def duchi(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Duchi et al.'s one-bit mechanism (as ``privatize_rewards``, vectorised)."""
    e = np.exp(eps)
    c = (e + 1) / (e - 1)
    p_up = 0.5 + (2 * r - 1) * (e - 1) / (2 * (e + 1))
    return (np.where(rng.random(n) < p_up, c, -c) + 1) / 2


def rounded_rr(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Randomized response on ``r`` rounded stochastically to a bit, debiased."""
    bit = rng.random(n) < r
    keep = np.exp(eps) / (1 + np.exp(eps))
    sent = np.where(rng.random(n) < keep, bit, ~bit).astype(np.float64)
    return (sent - (1 - keep)) / (2 * keep - 1)


def piecewise(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Wang et al.'s piecewise mechanism on ``x = 2r - 1`` in [-1, 1], mapped back to [0, 1]."""
    x, h = 2 * r - 1, np.exp(eps / 2)
    c = (h + 1) / (h - 1)
    lo = (c + 1) / 2 * x - (c - 1) / 2
    hi = lo + c - 1
    inside = rng.random(n) < h / (h + 1)
    u = rng.random(n) * ((lo + c) + (c - hi))  # uniform over [-c, lo) and (hi, c]
    outside = np.where(u < lo + c, -c + u, hi + (u - (lo + c)))
    return (np.where(inside, lo + rng.random(n) * (hi - lo), outside) + 1) / 2


def hybrid(r: float, eps: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Piecewise with probability ``1 - e^(-ε/2)`` (ε > 0.61), else Duchi."""
    pick = rng.random(n) < 1 - np.exp(-eps / 2)
    return np.where(pick, piecewise(r, eps, n, rng), duchi(r, eps, n, rng))


def closed_form(name: str, r: float, eps: float) -> float:
    """The variance of ``name`` at ``r`` (``x = 2r - 1``; variances on [-1, 1] divided by 4)."""
    x, e, h = 2 * r - 1, np.exp(eps), np.exp(eps / 2)
    c = (e + 1) / (e - 1)
    duchi_v = (c**2 - x**2) / 4
    pm_v = (x**2 / (h - 1) + (h + 3) / (3 * (h - 1) ** 2)) / 4
    a = 1 - np.exp(-eps / 2)
    return float(
        {
            "laplace": 2 / eps**2,
            "duchi": duchi_v,
            "rounded randomized response": duchi_v,
            "piecewise": pm_v,
            "hybrid": a * pm_v + (1 - a) * duchi_v,
        }[name]
    )


def fitness_spread(
    mechanism: str, eps: float, pairs: int, rounds: int, *, aware: bool, rng: np.random.Generator
) -> tuple[float, float]:
    """Mean and variance over ``pairs`` of the fitness after ``rounds`` privatized rewards of
    0.6 each, with the noise-aware gain (``aware``) or the fixed rate 0.3."""
    tracker = FitnessTracker(1, ema=0.3)
    tracker.add(pairs)
    rows, trained = np.arange(pairs), np.ones((pairs, 1), dtype=bool)
    noise = np.full((pairs, 1), noise_variance(eps, 1, mechanism)) if aware else None
    draw = laplace if mechanism == "laplace" else duchi
    for _ in range(rounds):
        tracker.record(rows, trained, draw(0.6, eps, pairs, rng)[:, None], noise=noise)
        tracker.close_round()
    f = tracker.get(rows)[:, 0]
    return float(f.mean()), float(f.var())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--draws", type=int, default=400_000)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rewards = (0.1, 0.5, 0.9)
    mechanisms: dict[str, Draw] = {
        "laplace": laplace,
        "duchi": duchi,
        "rounded randomized response": rounded_rr,
        "piecewise": piecewise,
        "hybrid": hybrid,
    }
    # the vectorised copies draw what fedalign draws: check on a few thousand draws
    for name in ("laplace", "duchi"):
        ours = fedalign_mechanism(name)(0.9, args.epsilon, 4000, rng)
        assert abs(ours.var() - closed_form(name, 0.9, args.epsilon)) < 0.15, name
    print(f"epsilon = {args.epsilon:g}, {args.draws:,} draws each: variance (mean) per reward r")
    print("| mechanism | " + " | ".join(f"r = {r}" for r in rewards) + " |")
    print("|---|" + "---|" * len(rewards))
    for name, draw in mechanisms.items():
        cells = []
        for r in rewards:
            y = draw(r, args.epsilon, args.draws, rng)
            cells.append(f"{y.var():.3f} ({y.mean():.3f}; exact {closed_form(name, r, args.epsilon):.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nfitness after {args.rounds} rounds of one reward of 0.6, {args.pairs} pairs: mean / variance")
    print("| mechanism | fixed rate 0.3 | noise-aware |")
    print("|---|---|---|")
    for name in ("laplace", "duchi"):
        fixed, aware = (
            fitness_spread(name, args.epsilon, args.pairs, args.rounds, aware=a, rng=rng) for a in (False, True)
        )
        print(f"| {name} | {fixed[0]:.3f} / {fixed[1]:.3f} | {aware[0]:.3f} / {aware[1]:.3f} |")


if __name__ == "__main__":
    main()
