"""Device tiers: seeded fleets, reported profiles, time model, dropouts."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign import ClientProfile
from fedalign.sim.devices import DEFAULT_TIERS, make_fleet


def test_fleet_mix_and_seeding():
    a = make_fleet(20, expert_bytes=1000, shared_bytes=200, seed=3)
    b = make_fleet(20, expert_bytes=1000, shared_bytes=200, seed=3)
    c = make_fleet(20, expert_bytes=1000, shared_bytes=200, seed=4)
    assert np.array_equal(a.tier_of, b.tier_of) and not np.array_equal(a.tier_of, c.tier_of)
    counts = np.bincount(a.tier_of, minlength=len(DEFAULT_TIERS))
    assert counts.tolist() == [8, 7, 5]  # shares 0.4 / 0.35 / 0.25 of 20
    assert set(a.max_experts.tolist()) == {1, 2, 4}


def test_profile_memory_fits_exactly_max_experts():
    fleet = make_fleet(6, expert_bytes=1000, shared_bytes=200, seed=0)
    for i in range(6):
        p = fleet.profile(i, samples=50)
        assert isinstance(p, ClientProfile)
        k = p.max_experts
        # memory holds the shared part and k experts, not k + 1
        assert fleet.shared_bytes + k * 1000 <= p.memory < fleet.shared_bytes + (k + 1) * 1000
        assert p.samples == 50


def test_time_model_scales_with_experts_and_samples():
    fleet = make_fleet(3, expert_bytes=10_000, shared_bytes=1000, seed=0)
    c = np.array([0, 0, 0])
    t = fleet.nominal_seconds(c, np.array([1, 2, 2]), np.array([100, 100, 200]))
    assert t[0] < t[1] < t[2]
    tier = fleet.tiers[fleet.tier_of[0]]
    per_expert = (
        tier.latency
        + 10_000 / tier.bandwidth_down
        + 10_000 / tier.bandwidth_up
        + 100 / tier.compute
    )
    shared = 1000 / tier.bandwidth_down + 1000 / tier.bandwidth_up
    assert t[0] == pytest.approx(per_expert + shared)


def test_round_seconds_luck_is_independent_of_assignment():
    fleet = make_fleet(10, expert_bytes=1000, shared_bytes=100, seed=0)
    clients = np.arange(10)
    s1, v1 = fleet.round_seconds(
        clients, np.ones(10, int), np.full(10, 50), np.random.default_rng(5)
    )
    s2, v2 = fleet.round_seconds(clients, np.full(10, 2), np.full(10, 50), np.random.default_rng(5))
    assert np.array_equal(v1, v2)
    assert np.all(np.isinf(s1[v1])) and np.all(np.isfinite(s1[~v1]))
    assert np.all(s2[~v2] > s1[~v1])


def test_errors():
    with pytest.raises(ValueError, match="n_clients"):
        make_fleet(0, expert_bytes=1, shared_bytes=1)
    with pytest.raises(ValueError, match="tiers"):
        make_fleet(3, expert_bytes=1, shared_bytes=1, tiers=())
