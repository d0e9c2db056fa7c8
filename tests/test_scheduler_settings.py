"""The scheduler package's parts: SchedulerSettings, the desirability, hostile settings."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import fedalign as fa
from fedalign.scheduler import STATE_FORMAT_VERSION, Feedback, Plan, Scheduler, SchedulerSettings
from fedalign.scheduler.desirability import desirability, exploration_bonus
from fedalign.solvers import registered_solvers

SOLVER = next(s for s in ("greedy", "topk", "flow") if s in registered_solvers())


def test_package_exports_what_the_module_did() -> None:
    assert Scheduler is fa.Scheduler and Feedback is fa.Feedback and Plan is fa.Plan
    assert STATE_FORMAT_VERSION == 1


# --------------------------------------------------------------------------- settings object


def test_one_table_entry_and_one_field_per_constructor_argument() -> None:
    args = [p for p in inspect.signature(Scheduler.__init__).parameters if p != "self"]
    assert len(args) == 34  # main's 32 + max_report_factor, max_report_samples (feedback bound)
    assert [f.name for f in dataclasses.fields(SchedulerSettings)] == args
    assert list(SchedulerSettings._parameter_constraints) == args


def test_settings_are_frozen_and_canonical() -> None:
    s = SchedulerSettings(
        3, solver=SOLVER, expert_memory=np.float32(2), expert_ids=np.array([4, 5, 6]),
        expert_max_clients=[np.int64(2), 3.0, 4], seed=np.int64(5), solver_options=None,
    )
    assert s.expert_memory == (2.0, 2.0, 2.0) and s.expert_ids == (4, 5, 6)
    assert s.expert_min_clients == (0, 0, 0) and s.expert_cost == (1.0, 1.0, 1.0)
    assert s.expert_max_clients == (2, 3, 4) and all(type(v) is int for v in s.expert_max_clients)
    assert type(s.seed) is int and s.profile_bounds == fa.ProfileBounds()
    assert dict(s.solver_options) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.usage_weight = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.solver_options["x"] = 1  # type: ignore[index]


def test_settings_dict_round_trip_and_replace_validates() -> None:
    s = SchedulerSettings(2, solver=SOLVER, expert_bytes=[1, 2], deadline_percentile=90,
                          profile_bounds=fa.ProfileBounds(latency=(0.0, 5.0)), expert_ids=["a", "b"])
    d = s.to_dict()
    assert d["expert_bytes"] == [1.0, 2.0] and d["profile_bounds"]["latency"] == [0.0, 5.0]
    again = SchedulerSettings.from_dict(d)
    assert again == s and hash(again) == hash(s) and again.to_dict() == d
    assert dataclasses.replace(s, usage_weight=2).usage_weight == 2.0
    with pytest.raises(ValueError, match="usage_weight"):
        dataclasses.replace(s, usage_weight=-1)
    with pytest.raises(TypeError):
        SchedulerSettings.from_dict({**d, "no_such_setting": 1})


def test_scheduler_reads_its_settings_object() -> None:
    s = Scheduler(3, solver=SOLVER, usage_weight=0.25, seed=1)
    assert isinstance(s.config, SchedulerSettings) and s.config.usage_weight == 0.25
    assert s.settings == s.config.to_dict()
    t = Scheduler.from_settings(s.config)
    assert t.settings == s.settings and t.n_clients == 0 and t.expert_ids == (0, 1, 2)
    for x in (s, t):
        x.register_many(range(4))
    assert s.plan(range(4)).assignment == t.plan(range(4)).assignment
    with pytest.raises(TypeError, match="SchedulerSettings"):
        Scheduler.from_settings(s.settings)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- hostile settings


SCALARS = ["fitness_weight", "usage_weight", "fitness_ema", "fitness_decay", "fitness_prior",
           "usage_decay", "time_limit", "time_weight", "exploration_weight", "min_experts",
           "max_experts", "samples_per_round", "deadline", "deadline_percentile",
           "profile_window", "dropout_inflation"]
HOSTILE = [10**400, -(10**400), 1e400, float("nan"), 1 + 2j, "1", b"1", np.array(1.0),
           np.array([1.0]), [1.0], {"v": 1.0}, True]


@pytest.mark.parametrize("name", SCALARS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_scalar_settings_are_named_value_errors(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected "):
        Scheduler(3, solver=SOLVER, **{name: value})


@pytest.mark.parametrize("value", [-1, 1.5, "1", 1j, np.array(1), True], ids=repr)
def test_hostile_seed_and_n_experts(value: object) -> None:
    with pytest.raises(ValueError, match=r"^seed: expected an int >= 0 or None"):
        Scheduler(3, solver=SOLVER, seed=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^n_experts: expected an int"):
        Scheduler(value, solver=SOLVER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^n_experts: expected an int"):
        Scheduler(10**400, solver=SOLVER)


def _nested(depth: int) -> list:
    value: list = [1.0]
    for _ in range(depth):
        value = [value]
    return value


PER_EXPERT = ["expert_memory", "expert_bytes", "expert_cost", "expert_min_clients",
              "expert_max_clients"]


@pytest.mark.parametrize("name", PER_EXPERT)
@pytest.mark.parametrize(
    ("value", "where"),
    [(10**400, ""), ([1, 10**400, 1], r"\[1\]"), (1j, ""), ([1, 1j, 1], r"\[1\]"),
     ("1", ""), ([1, "1", 1], r"\[1\]"), ([1, None, 1], r"\[1\]"), ([1, -1, 1], r"\[1\]"),
     ([1, float("inf"), 1], r"\[1\]"), ([1, 1], ""), ([[1, 1, 1]], ""),
     (_nested(5000), r"\[0, 0, "), ({"a": 1}, "")],
    ids=["huge", "huge-item", "complex", "complex-item", "text", "text-item", "none-item",
         "negative-item", "inf-item", "short", "2-d", "nested-5000", "dict"],
)
def test_hostile_per_expert_settings_name_the_position(name: str, value: object, where: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}{where}"):
        Scheduler(3, solver=SOLVER, **{name: value})


def test_cross_field_rules() -> None:
    with pytest.raises(ValueError, match=r"^deadline: give either deadline or deadline_percentile"):
        Scheduler(2, solver=SOLVER, deadline=1.0, deadline_percentile=50)
    with pytest.raises(ValueError, match=r"^time_weight: needs a deadline policy"):
        Scheduler(2, solver=SOLVER, time_weight=0.1)
    with pytest.raises(ValueError, match=r"^expert_min_clients\[1\]: 3 is above expert_max_clients\[1\] = 2"):
        Scheduler(2, solver=SOLVER, expert_min_clients=[0, 3], expert_max_clients=2)
    with pytest.raises(ValueError, match=r"^expert_ids: expected 2 unique ids, got 3"):
        Scheduler(2, solver=SOLVER, expert_ids=["a", "b", "c"])


# --------------------------------------------------------------------------- desirability


def test_desirability_by_hand() -> None:
    s = SchedulerSettings(2, solver=SOLVER, fitness_weight=2.0, usage_weight=0.5, deadline=4.0,
                          time_weight=1.0, exploration_weight=0.1)
    fit = np.array([[0.5, 0.25], [1.0, 0.0]])
    u_norm = np.array([1.0, 0.5])
    t = np.array([[2.0, 1.0], [4.0, 0.0]])
    counts = np.array([[0, 3], [1, 0]], dtype=np.uint16)
    d, terms = desirability(s, fitness=fit, usage=np.array([10.0, 5.0]), usage_norm=u_norm,
                            train_time=t, deadline=np.array([4.0, 2.0]), times_trained=counts,
                            rounds_closed=2)
    bonus = np.sqrt(np.log(4) / (1 + counts))
    expected = 2.0 * fit - 0.5 * u_norm - t / np.array([[4.0], [2.0]]) + 0.1 * bonus
    np.testing.assert_allclose(d, expected)
    assert list(terms) == ["fitness", "usage", "usage_norm", "time", "exploration"]
    np.testing.assert_allclose(terms["exploration"], bonus)
    np.testing.assert_allclose(exploration_bonus(counts, 2), bonus)
    with pytest.raises(ValueError, match="times_trained"):
        desirability(s, fitness=fit, usage=u_norm, usage_norm=u_norm, train_time=t,
                     deadline=np.ones(2))


def test_desirability_without_deadline_or_exploration() -> None:
    s = SchedulerSettings(2, solver=SOLVER)
    fit = np.full((3, 2), 0.5)
    d, terms = desirability(s, fitness=fit, usage=np.zeros(2), usage_norm=np.array([0.0, 1.0]))
    np.testing.assert_allclose(d, [[0.5, 0.0]] * 3)
    assert np.isnan(terms["time"]).all() and terms["time"].shape == (3, 2)
    np.testing.assert_array_equal(terms["exploration"], np.zeros((3, 2)))


def test_large_counts_that_worked_before_still_work() -> None:
    s = Scheduler(2, solver=SOLVER, expert_max_clients=10**10, min_experts=10**12, seed=10**30)
    s.register_many(range(3))
    assert sum(len(v) for v in s.plan(range(3)).assignment.values()) >= 3
    assert s.config.expert_max_clients == (10**10, 10**10)
    with pytest.raises(ValueError, match=r"^expert_max_clients\[0\]: expected an int in \[0, "):
        Scheduler(2, solver=SOLVER, expert_max_clients=[2**60, 1])
