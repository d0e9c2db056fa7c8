"""FedAlignController on NVFlare's task objects: payloads, averages, every kind of failure."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from nvflare.apis.controller_spec import TaskCompletionStatus
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils
from nvflare_helpers import N_EXPERTS, Ending, model_state, reply, trained

from fedalign.nvflare import BadReply, FedAlignController, SiteError, read_reply, wire
from fedalign.nvflare.client import error_reply, read_task
from fedalign.rounds.naming import expert_of_key

pytestmark = pytest.mark.nvflare

SHARED = ["trunk.weight", "gate.bias", "gate.steps"]


def honest(site: str, task: Any, model: Any) -> Shareable:
    return reply(model)


def expected_keys(experts: list[int]) -> list[str]:
    return SHARED + [k for j in experts for k in model_state() if expert_of_key(k) == j]


# ---------------------------------------------------------------------- what is sent


def test_each_site_gets_the_shared_arrays_and_only_its_experts(harness):
    h = harness(honest, num_rounds=2, train_config={"lr": 0.1})
    ctrl = h.run()
    assert len(ctrl.history) == 2
    for rnd, site, model in h.sent:
        task = read_task(model)
        plan = ctrl.history[rnd].assignment[site]
        assert task.expert_ids == plan and plan, (site, plan)
        assert list(model.params) == expected_keys(plan)
        assert model.meta[wire.ROUND] == ctrl.history[rnd].round
        assert task.config == {"lr": 0.1}
        assert model.current_round == rnd and model.total_rounds == 2
        for key, value in model.params.items():  # the global arrays, dtypes kept
            assert value.dtype == model_state()[key].dtype


def test_the_scheduler_learns_and_every_expert_is_averaged_over_its_sites(harness):
    h = harness(honest, num_rounds=1)
    ctrl = h.run()
    summary = ctrl.history[0]
    assert sorted(summary.completed) == ["site-1", "site-2", "site-3"]
    assert summary.dropouts == {}
    for expert, sites in summary.trained_by.items():
        assert sorted(sites) == sorted(s for s, e in summary.assignment.items() if expert in e)
    assert ctrl.scheduler.rounds_closed == 1
    assert summary.samples == 30


def test_per_expert_weighted_average_against_hand_computation(harness):
    samples = {"site-1": 10, "site-2": 30, "site-3": 60}
    delta = {"site-1": 1.0, "site-2": 2.0, "site-3": 4.0}
    h = harness(lambda s, t, m: reply(m, samples=samples[s], delta=delta[s]), num_rounds=1)
    ctrl = h.run()
    state, summary = ctrl.states[0], ctrl.history[0]
    start = model_state()
    w = {s: samples[s] for s in summary.completed}
    shared_delta = sum(w[s] * delta[s] for s in w) / sum(w.values())
    np.testing.assert_allclose(state["trunk.weight"], start["trunk.weight"] + shared_delta, rtol=1e-6)
    for j in range(N_EXPERTS):
        who = summary.trained_by.get(j, [])
        key = f"experts.{j}.0.bias"
        if not who:
            assert state[key] is not None and np.array_equal(state[key], start[key])
            continue
        d = sum(samples[s] * delta[s] for s in who) / sum(samples[s] for s in who)
        np.testing.assert_allclose(state[key], start[key] + d, rtol=1e-6)


def test_averages_do_not_depend_on_the_order_replies_arrive(harness):
    states = []
    for order in (["site-1", "site-2", "site-3"], ["site-3", "site-2", "site-1"]):
        delays = {s: 0.05 * k for k, s in enumerate(order)}
        h = harness(
            lambda s, t, m: reply(m, samples=7, delta=0.1 * int(s[-1])),
            delay=lambda site, d=delays: d[site],
            num_rounds=1,
        )
        states.append(h.run().states[0])
    for key in states[0]:
        assert np.array_equal(states[0][key], states[1][key]), key


def test_profiles_and_client_ids_reach_the_scheduler(harness):
    h = harness(
        honest,
        num_rounds=1,
        client_ids={"site-1": 0, "site-2": 1, "site-3": 2},
        profiles={"site-1": {"max-experts": 2}, "site-2": {"max_experts": 1, "memory": 5.0}},
        scheduler_args={
            "n_experts": N_EXPERTS,
            "solver": "flow",
            "seed": 0,
            "max_experts": None,
            "expert_memory": 1.0,
        },
    )
    ctrl = h.run()
    assert sorted(ctrl.scheduler.client_ids) == [0, 1, 2]
    assert ctrl.scheduler.profile(0).max_experts == 2
    assert ctrl.scheduler.profile(1).memory == 5.0
    assert ctrl.sites == {0: "site-1", 1: "site-2", 2: "site-3"}
    assert set(ctrl.history[0].assignment) == {0, 1, 2}
    assert [s for _, s, _ in h.sent] == ["site-1", "site-2", "site-3"]


def test_two_sites_mapped_to_one_client_id_the_second_sits_out(harness):
    h = harness(honest, num_rounds=1, client_ids={"site-1": "a", "site-2": "a", "site-3": "b"})
    ctrl = h.run()
    assert set(ctrl.history[0].assignment) == {"a", "b"}
    assert sorted(s for _, s, _ in h.sent) == ["site-1", "site-3"]


def test_num_clients_samples_a_seeded_cohort(harness):
    cohorts = []
    for _ in range(2):
        h = harness(honest, num_rounds=3, num_clients=2, seed=4)
        ctrl = h.run()
        cohorts.append([sorted(s.assignment) for s in ctrl.history])
    assert cohorts[0] == cohorts[1]
    assert all(len(c) == 2 for c in cohorts[0])


def test_summary_path_records_rounds_sites_and_changed_experts(harness, tmp_path):
    path = tmp_path / "summary.json"

    def fail_site_2(site, task, model):
        if site == "site-2":
            return FLModelUtils.to_shareable(error_reply("disk full"))
        return reply(model)

    h = harness(fail_site_2, num_rounds=2, summary_path=str(path))
    ctrl = h.run()
    rounds = json.loads(path.read_text())["rounds"]
    assert [r["round_index"] for r in rounds] == [0, 1]
    for entry, summary in zip(rounds, ctrl.history, strict=True):
        assert entry["dropouts"] == {"site-2": "error: disk full"}
        assert entry["sites"] == {"site-1": "site-1", "site-2": "site-2", "site-3": "site-3"}
        trained = sorted(int(e) for e in entry["trained_by"])
        assert entry["changed_experts"] == trained == sorted(summary.trained_by)
        assert entry["test_extra"] == entry["round_index"]  # what after_round returned


# ---------------------------------------------------------------------- failures


def _run_with_site_2(harness, answer) -> Any:
    """One round in which site-2 answers with ``answer(model)``; the others are honest."""
    h = harness(lambda s, t, m: answer(m) if s == "site-2" else reply(m), num_rounds=1)
    ctrl = h.run()
    summary = ctrl.history[0]
    assert "site-2" not in summary.completed
    assert sorted(summary.completed) == ["site-1", "site-3"]
    for sites in summary.trained_by.values():
        assert "site-2" not in sites
    start = model_state()
    mine = summary.assignment["site-2"]
    for key, value in ctrl.states[0].items():  # site-2's experts: unchanged unless others trained them
        j = expert_of_key(key)
        if j in mine and j not in summary.trained_by:
            assert np.array_equal(value, start[key]), key
    return summary


@pytest.mark.parametrize(
    "code", [ReturnCode.EXECUTION_EXCEPTION, ReturnCode.TASK_ABORTED, ReturnCode.EXECUTION_RESULT_ERROR]
)
def test_a_failed_return_code_is_a_dropout(harness, code):
    summary = _run_with_site_2(harness, lambda m: make_reply(code))
    assert summary.dropouts["site-2"] == f"error: the site returned {code}"
    assert summary.invalid == []


def test_an_error_reply_is_a_dropout_with_its_reason(harness):
    summary = _run_with_site_2(harness, lambda m: FLModelUtils.to_shareable(error_reply("OOM")))
    assert summary.dropouts["site-2"] == "error: OOM"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "timeout: no reply within train_timeout=0 s"),
        (TaskCompletionStatus.CLIENT_DEAD, "the site disconnected"),
        (TaskCompletionStatus.ABORTED, "the task was aborted"),
        (TaskCompletionStatus.CANCELLED, "the task was cancelled"),
    ],
)
def test_a_task_that_ends_without_a_reply_is_a_dropout(harness, status, reason):
    summary = _run_with_site_2(harness, lambda m: None if status is None else Ending(status))
    assert summary.dropouts["site-2"] == reason


def _model_reply(params: Any, meta: dict[str, Any], params_type: Any = ParamsType.FULL) -> Shareable:
    return FLModelUtils.to_shareable(FLModel(params_type=params_type, params=params, meta=meta))


def _tamper(model: Any, **changes: Any) -> Shareable:
    """An honest reply of ``model`` with some params or meta entries changed."""
    params = trained(model)
    task = read_task(model)
    meta = {
        wire.SAMPLES: 10,
        wire.REWARDS: [0.5] * len(task.expert_ids),
        wire.EXPERT_IDS: task.expert_ids,
    }
    for key, value in changes.items():
        if key == "params":
            params = value(params)
        elif value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return _model_reply(params, meta)


def _other_expert(model: Any) -> int:
    return next(j for j in range(N_EXPERTS) if j not in read_task(model).expert_ids)


MALFORMED = {
    "no samples": (lambda m: _tamper(m, **{wire.SAMPLES: None}), "missing meta 'fedalign.samples'"),
    "samples not a number": (lambda m: _tamper(m, **{wire.SAMPLES: "ten"}), "must be one number"),
    "negative samples": (lambda m: _tamper(m, **{wire.SAMPLES: -1}), "finite and >= 0"),
    "fractional samples": (lambda m: _tamper(m, **{wire.SAMPLES: 2.5}), "whole number"),
    "nan weight": (lambda m: _tamper(m, **{wire.WEIGHT: float("nan")}), "finite and >= 0"),
    "bad duration": (lambda m: _tamper(m, **{wire.DURATION: -3.0}), "finite and >= 0"),
    "rewards missing": (lambda m: _tamper(m, **{wire.REWARDS: None}), "must list"),
    "too many rewards": (lambda m: _tamper(m, **{wire.REWARDS: [0.1] * 5}), "must list"),
    "reward above 1": (
        lambda m: _tamper(m, **{wire.REWARDS: [2.0] * len(read_task(m).expert_ids)}),
        "Feedback.rewards",
    ),
    "echo differs": (lambda m: _tamper(m, **{wire.EXPERT_IDS: [_other_expert(m)]}), "differs"),
    "an extra expert": (
        lambda m: _tamper(
            m,
            params=lambda p: {**p, f"experts.{_other_expert(m)}.0.bias": np.zeros(2, np.float32)},
        ),
        "it was not given",
    ),
    "an unknown array": (
        lambda m: _tamper(m, params=lambda p: {**p, "decoder.w": np.zeros(1, np.float32)}),
        "unknown arrays",
    ),
    "a missing shared array": (
        lambda m: _tamper(m, params=lambda p: {k: v for k, v in p.items() if k != "trunk.weight"}),
        "missing arrays",
    ),
    "a wrong dtype": (
        lambda m: _tamper(m, params=lambda p: {**p, "trunk.weight": p["trunk.weight"].astype(np.float64)}),
        "expected float32",
    ),
    "a wrong shape": (
        lambda m: _tamper(m, params=lambda p: {**p, "gate.bias": np.zeros(7, np.float32)}),
        "expected float32[3]",
    ),
    "nan values": (
        lambda m: _tamper(m, params=lambda p: {**p, "trunk.weight": p["trunk.weight"] * np.nan}),
        "non-finite",
    ),
    "a diff": (
        lambda m: _model_reply(trained(m), {wire.SAMPLES: 1, wire.REWARDS: [0.5] * len(read_task(m).expert_ids)}, ParamsType.DIFF),
        "params_type",
    ),
    "metrics only": (
        lambda m: FLModelUtils.to_shareable(FLModel(metrics={"loss": 1.0}, meta={wire.SAMPLES: 3})),
        "params",
    ),
    "no DXO at all": (lambda m: Shareable(), "cannot read the FLModel"),
    "a DXO of another kind": (
        lambda m: DXO(DataKind.STATISTICS, data={"x": 1}).to_shareable(),
        "missing meta",
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_reply_is_rejected_whole(harness, kind):
    answer, needle = MALFORMED[kind]
    summary = _run_with_site_2(harness, answer)
    assert summary.invalid == ["site-2"]
    reason = summary.dropouts["site-2"]
    assert reason.startswith("invalid reply: ") and needle in reason, reason


def test_a_reply_for_another_sites_task_is_ignored(harness):
    def answer(site, task, model):
        return reply(model)

    h = harness(answer, num_rounds=1)
    ctrl = h.controller
    original = ctrl._result_received

    def misrouted(client_task, fl_ctx):
        client_task.client.name = "site-9"  # a result naming a site the task was not for
        original(client_task, fl_ctx)

    ctrl._result_received = misrouted
    h.run()
    assert ctrl.history[0].completed == []
    assert set(ctrl.history[0].dropouts.values()) == {"no reply (task ended: ok)"}


def test_a_task_of_an_earlier_round_settles_nobody(harness):
    """A task left standing by an earlier round (an abort) must not settle this round's site."""
    stale: list[Any] = []

    def answer(site, task, model):
        if model.current_round == 0 and site == "site-1":
            stale.append(task)
        return reply(model)

    # site-1 answers last: a stale ending counted for it would close the round without it
    h = harness(answer, num_rounds=2, delay=lambda site: 0.3 if site == "site-1" else 0.0)
    ctrl = h.controller
    original = ctrl._start_collecting

    def collecting(round_index, sites):
        original(round_index, sites)
        if round_index == 1 and stale:  # round 0's task of site-1 ends again, late
            ctrl._task_done(stale[0], None)

    ctrl._start_collecting = collecting
    h.run()
    assert sorted(ctrl.history[1].completed) == ["site-1", "site-2", "site-3"]


def test_a_late_result_is_ignored(harness, caplog):
    h = harness(honest, num_rounds=1)
    ctrl = h.run()
    from nvflare.apis.client import Client

    ctrl.process_result_of_unknown_task(Client("site-2", "t"), "train", "id", make_reply(ReturnCode.OK), ctrl.fl_ctx)
    assert len(ctrl.history) == 1


def test_the_abort_signal_stops_the_run(harness):
    calls = []

    def answer(site, task, model):
        calls.append(site)
        h.controller.abort_signal.trigger(True)
        return reply(model)

    h = harness(answer, num_rounds=3)
    ctrl = h.run()
    assert len(ctrl.history) == 1


def test_a_site_that_never_answers_in_any_round_does_not_stop_the_run(harness):
    h = harness(lambda s, t, m: None if s == "site-3" else reply(m), num_rounds=3)
    ctrl = h.run()
    assert len(ctrl.history) == 3
    for summary in ctrl.history:
        if "site-3" in summary.assignment and summary.assignment["site-3"]:
            assert summary.dropouts["site-3"].startswith("timeout")


# ---------------------------------------------------------------------- read_reply


def test_read_reply_gives_arrays_feedback_and_weight():
    model = FLModel(
        params={"a": np.zeros(1)},
        meta={wire.SAMPLES: 12, wire.REWARDS: [0.25, 1.0], wire.DURATION: 3.5, wire.WEIGHT: 6},
    )
    arrays, feedback, weight = read_reply(model, [2, 0])
    assert list(arrays) == ["a"]
    assert feedback.samples == 12 and feedback.duration == 3.5
    assert dict(feedback.rewards) == {2: 0.25, 0: 1.0}
    assert weight == 6.0
    _, _, weight = read_reply(FLModel(params={}, meta={wire.SAMPLES: 4, wire.REWARDS: [1]}), [1])
    assert weight == 4.0


def test_read_reply_raises_site_error_and_bad_reply():
    with pytest.raises(SiteError, match="gpu lost"):
        read_reply(error_reply("gpu lost"), [0])
    with pytest.raises(BadReply, match="no meta"):
        read_reply(object(), [0])


# ---------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_rounds": 0}, "num_rounds"),
        ({"num_rounds": True}, "num_rounds"),
        ({"num_clients": 0}, "num_clients"),
        ({"train_timeout": -1}, "train_timeout"),
        ({"train_timeout": 1.5}, "train_timeout"),
        ({"dropout_duration": -1.0}, "dropout_duration"),
        ({"dropout_duration": float("nan")}, "dropout_duration"),
        ({"scheduler_args": {"n_experts": 0}}, "scheduler_args"),
        ({"scheduler_args": {"n_experts": 2, "colour": "red"}}, "scheduler_args"),
        ({"profiles": {"site-1": {"max-experts": "two"}}}, r"profiles\['site-1'\]"),
        ({"profiles": {"site-1": {"memory": -1}}}, r"profiles\['site-1'\]"),
    ],
)
def test_bad_arguments_fail_when_the_controller_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FedAlignController(**kwargs)


def test_a_dict_argument_must_be_a_dict():
    with pytest.raises(TypeError, match="client_ids"):
        FedAlignController(client_ids=["site-1"])  # type: ignore[arg-type]


def test_without_scheduler_args_or_persistor_the_run_says_what_is_missing(harness):
    ctrl = FedAlignController(persistor_id="")
    with pytest.raises(ValueError, match="scheduler_args: needed"):
        ctrl.build_scheduler()


def test_the_job_api_exports_every_argument(tmp_path):
    """FedJob writes a component's arguments by reading attributes of the same names."""
    from nvflare.job_config.api import FedJob

    args = {
        "num_rounds": 3,
        "scheduler_args": {"n_experts": 2, "solver": "greedy"},
        "num_clients": 2,
        "client_ids": {"site-1": 0},
        "profiles": {"site-1": {"max-experts": 2}},
        "train_config": {"lr": 0.5},
        "train_timeout": 30,
        "dropout_duration": 12.5,
        "summary_path": "/tmp/s.json",
        "task_name": "fit",
        "seed": 3,
        "persistor_id": "",
        "task_check_period": 0.25,
    }
    job = FedJob(name="export", min_clients=1)
    job.set_app_packages(["fedalign"])
    job.to_server(FedAlignController(**args))
    job.export_job(str(tmp_path))
    config = json.loads((tmp_path / "export" / "app_server" / "config" / "config_fed_server.json").read_text())
    (workflow,) = config["workflows"]
    assert workflow["path"] == "fedalign.nvflare.controller.FedAlignController"
    assert workflow["args"] == args
    assert not (tmp_path / "export" / "app_server" / "custom").exists()  # fedalign is never copied
    FedAlignController(**workflow["args"])  # and the exported arguments build it again
