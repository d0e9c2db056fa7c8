"""Oort's participant selection, by hand."""

from __future__ import annotations

import math

import numpy as np

from fedalign.sim.selection import OortSelector


def _oort(**kw):
    args = dict(preferred=10.0, pacer_step=5.0, pacer_window=2, seed=0)
    args.update(kw)
    return OortSelector(6, **args)


def test_scores_normalise_add_staleness_and_penalise_slow_clients():
    o = _oort()
    o.rank(np.arange(6), 3, np.ones(6))  # round 1: nothing explored yet
    o.update([0, 1, 2], [4.0, 2.0, 1.0], [5.0, 20.0, 8.0], [True, True, True])
    assert np.isnan(o.scores([3])).all()  # never explored
    s = o.scores([0, 1, 2])
    # round 2 now: utilities 4, 2, 1 -> clipped at their 95th percentile (3.8), min 1, range 2.8
    clip = float(np.quantile([4.0, 2.0, 1.0], 0.95))
    norm = (np.minimum([4.0, 2.0, 1.0], clip) - 1.0) / (clip - 1.0)
    stale = math.sqrt(0.1 * math.log(2) / 1)  # last took part in round 1
    expected = norm + stale
    expected[1] *= (10.0 / 20.0) ** 2  # client 1 took 20 s, twice the preferred 10 s
    np.testing.assert_allclose(s, expected)


def test_rank_exploits_explored_clients_and_explores_fast_new_ones():
    o = _oort(exploration=(0.5, 0.5))
    o.utility[:3] = [10.0, 5.0, 1.0]
    o.last_round[:3] = 1
    o.round = 1
    speed = np.array([1.0, 1.0, 1.0, 100.0, 1e-9, 1e-9])  # client 3 is by far the fastest new one
    order = o.rank(np.arange(6), 2, speed)
    # half of 2 picks exploit (client 0: the best score, the only one within 0.95 of the
    # cut-off), half explore (client 3: almost all the weight)
    assert order[:2].tolist() == [0, 3]
    assert sorted(order.tolist()) == list(range(6))
    # the rest: explored clients by score, then new ones, faster first
    assert order[2:4].tolist() == [1, 2]
    assert o.epsilon == 0.5  # at its minimum


def test_too_few_unexplored_clients_are_made_up_by_exploitation():
    o = _oort(exploration=(0.9, 0.2))
    o.utility[:5] = [5.0, 4.0, 3.0, 2.0, 1.0]
    o.last_round[:5] = 1
    o.round = 1
    order = o.rank(np.arange(6), 4, np.ones(6))
    picked = set(order[:4].tolist())
    assert 5 in picked  # the one unexplored client
    assert len(picked & {0, 1, 2, 3, 4}) == 3


def test_the_pacer_relaxes_the_preferred_duration_when_utility_falls():
    o = _oort(pacer_window=2)
    for utility in (5.0, 5.0, 1.0, 1.0):
        o.rank(np.arange(6), 1, np.ones(6))
        o.update([0], [utility], [1.0], [True])
    assert o.preferred == 15.0  # the last 2 rounds gathered 2 < 10: one step of 5 s
    for utility in (1.0, 1.0):
        o.rank(np.arange(6), 1, np.ones(6))
        o.update([0], [utility], [1.0], [True])
    assert o.preferred == 15.0  # equal utility: no change


def test_a_dropout_keeps_its_utility_and_records_the_wait():
    o = _oort()
    o.rank(np.arange(6), 2, np.ones(6))
    o.update([0, 1], [3.0, 9.0], [4.0, 50.0], [True, False])
    assert o.utility[0] == 3.0 and np.isnan(o.utility[1])
    assert o.duration[1] == 50.0 and o.last_round[1] == 1
