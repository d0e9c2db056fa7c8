"""The cross-device fleet, its timeline, its data split and its settings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from fedalign.sim.config import CROSS_DEVICE, SimConfig, parse_strategy, preset  # noqa: E402
from fedalign.sim.data import load_digits  # noqa: E402
from fedalign.sim.experiments import with_gates  # noqa: E402
from fedalign.sim.partition import cross_device_partition  # noqa: E402
from fedalign.sim.population import make_population, make_timeline  # noqa: E402

FLEET = SimConfig(**{k: v for k, v in CROSS_DEVICE.items() if k != "dataset"})


def test_the_fleet_has_the_tiers_mix_and_spread():
    pop = make_population(FLEET, shared_memory=0.0, seed=0)
    assert pop.n_clients == 1000
    assert np.bincount(pop.tier_of).tolist() == [600, 300, 100]
    for t, median in enumerate(FLEET.tier_compute):
        drawn = pop.compute[pop.tier_of == t]
        assert 0.8 * median < np.median(drawn) < 1.25 * median
        assert drawn.max() / drawn.min() > 5  # log-normal spread around the median
    # memory and bandwidth are in the simulated model's units (divided by size_scale)
    phones = pop.tier_of == 0
    assert np.median(pop.bandwidth_up[phones]) == pytest.approx(0.75e6 / 5e3, rel=0.2)
    assert np.median(pop.slowdown) == pytest.approx(1.0, rel=0.15)
    profile = pop.profile(3, samples=40.0, max_experts=4)
    assert profile.compute == pop.compute[3] and profile.samples == 40.0  # no hidden slowdown


def test_the_shared_part_comes_off_the_reported_memory():
    a = make_population(FLEET, shared_memory=0.0, seed=1)
    b = make_population(FLEET, shared_memory=1e4, seed=1)
    np.testing.assert_allclose(b.memory, np.maximum(a.memory - 1e4, 0.0))


def test_a_few_hundred_online_correlated_over_rounds():
    cfg = FLEET.replace(rounds=200)
    pop = make_population(cfg, shared_memory=0.0, seed=0)
    line = make_timeline(cfg, pop, seed=0)
    online = line.online.sum(axis=1)
    assert 200 < online.mean() < 380 and online.min() > 150
    # long-run share per tier close to tier_online
    for t, p in enumerate(cfg.tier_online):
        assert line.online[:, pop.tier_of == t].mean() == pytest.approx(p, abs=0.03)
    # online now predicts online next round far better than chance (spells of ~4 rounds)
    stay = (line.online[1:] & line.online[:-1]).sum() / line.online[:-1].sum()
    assert stay == pytest.approx(1 - 1 / cfg.online_spell, abs=0.03)
    assert line.fading.mean() == pytest.approx(1.0, abs=0.02)
    # the timeline depends on the seed only
    again = make_timeline(cfg, pop, seed=0)
    assert np.array_equal(again.online, line.online) and np.array_equal(again.arrival, line.arrival)


def test_the_cross_device_split():
    data = load_digits(seed=0)
    part = cross_device_partition(
        data, 120, n_domains=4, sizes=(5, 50), label_alpha=0.3, test_per_domain=100, seed=0
    )
    sizes = part.sizes
    assert sizes.min() >= 5 and sizes.max() <= 50 and sizes.max() / sizes.min() >= 5
    assert np.bincount(part.client_group).tolist() == [30] * 4
    # label skew: most clients hold few classes
    classes = [len(np.unique(y)) for _, y in part.clients]
    assert np.median(classes) <= 5
    # a domain's clients hold distinct samples while its pool lasts
    for d in range(4):
        idx = np.concatenate([part.indices[i] for i in np.flatnonzero(part.client_group == d)])
        assert np.unique(idx).size == idx.size
    # each client sees its domain's transform: labels rotated, features permuted
    i = int(np.flatnonzero(part.client_group == 1)[0])
    t = part.transforms[1]
    x, y = part.clients[i]
    raw = part.indices[i]
    np.testing.assert_array_equal(y, (data.y_train[raw] + t.label_shift) % 10)
    np.testing.assert_array_equal(x, data.x_train[raw][:, t.permutation])
    assert part.x_test.shape[0] == 400 and np.bincount(part.test_group).tolist() == [100] * 4


def test_presets_and_settings():
    quick = preset("quick", scenario="cross-device")
    assert quick.rounds == 60 and quick.n_clients == 1000 and quick.n_experts == 16
    assert len(set(quick.expert_hidden)) == 3 and quick.max_experts == 4
    assert preset("full", scenario="cross-device").rounds == 150
    tiny = preset("tiny", scenario="cross-device")
    assert tiny.dataset == "digits" and tiny.rounds == 3
    assert preset("quick", scenario="cross-device", dataset="digits").n_clients == 120
    assert preset("quick").scenario == "fig3" and preset("quick") == SimConfig()
    for bad, match in [
        ({"tier_shares": (0.5, 0.5)}, "tier_shares: expected 3 values"),
        ({"tier_online": (0.2, 1.0, 0.5)}, "tier_online: expected probabilities below 1"),
        ({"expert_hidden": (4, 4)}, "expert_hidden: expected one width or n_experts=4"),
        ({"scenario": "edge"}, "scenario: expected one of"),
        ({"oort_exploration": (0.1, 0.5)}, "oort_exploration"),
        ({"client_samples": (10, 5)}, "client_samples"),
        ({"expert_max_trainers": 0}, "expert_max_trainers"),
    ]:
        with pytest.raises(ValueError, match=match):
            SimConfig(**bad)
    # JSON hands tuples back as lists: stored as tuples again
    assert SimConfig(tier_shares=[0.5, 0.3, 0.2]).tier_shares == (0.5, 0.3, 0.2)


def test_strategy_names_and_gates():
    assert parse_strategy("oort", 0.2).selection == "oort"
    s = parse_strategy("load-balanced/lagrangian@local", 0.2)
    assert (s.solver, s.balanced, s.selection, s.gate) == ("lagrangian", True, "plan", "local")
    b = parse_strategy("balanced", 0.2)
    assert b.defaults and b.solver == "auto" and b.usage_weight == 0.5  # the scheduler's default
    with pytest.raises(ValueError, match="names no gate"):
        parse_strategy("greedy@nowhere", 0.2)
    assert with_gates(["random", "oort@local"], "both") == ["random", "oort@local", "random@local"]
    assert with_gates(["random", "oort@global"], "local") == ["oort@global", "random@local"]
    assert with_gates(["random"], "global") == ["random"]
