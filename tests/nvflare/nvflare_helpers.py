"""Helpers of the NVFlare tests: the controller on NVFlare's own task objects, no engine.

:class:`Harness` runs a :class:`~fedalign.nvflare.FedAlignController` the way NVFlare's
server does, minus the network: ``broadcast`` (the Controller API the workflow schedules its
tasks with) is replaced by a stand-in that hands each task to a *responder* on a thread of
its own, as NVFlare's communication threads would, and the responder's answer comes back
through the task's own ``result_received_cb`` and ``task_done_cb`` with real
:class:`~nvflare.apis.controller_spec.ClientTask` and
:class:`~nvflare.apis.shareable.Shareable` objects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    from nvflare.apis.client import Client
    from nvflare.apis.controller_spec import ClientTask, Task, TaskCompletionStatus
    from nvflare.apis.fl_constant import ReservedKey
    from nvflare.apis.fl_context import FLContext
    from nvflare.apis.shareable import Shareable
    from nvflare.apis.signal import Signal
    from nvflare.app_common.utils.fl_model_utils import FLModelUtils

    from fedalign.nvflare import FedAlignController
    from fedalign.nvflare.client import read_task
except ModuleNotFoundError as exc:  # without the nvflare extra these tests are not collected
    if exc.name is None or not exc.name.startswith("nvflare"):
        raise
    collect_ignore_glob = ["test_*.py"]

N_EXPERTS = 3


def model_state(n_experts: int = N_EXPERTS, seed: int = 0) -> dict[str, np.ndarray]:
    """A toy MoE state dict: shared trunk and gate, experts named ``experts.<j>.*``."""
    rng = np.random.default_rng(seed)
    state = {
        "trunk.weight": rng.normal(size=(4, 3)).astype(np.float32),
        "gate.bias": rng.normal(size=(n_experts,)).astype(np.float32),
        "gate.steps": np.array([5], dtype=np.int64),
    }
    for j in range(n_experts):
        state[f"experts.{j}.0.weight"] = rng.normal(size=(2, 4)).astype(np.float32)
        state[f"experts.{j}.0.bias"] = rng.normal(size=(2,)).astype(np.float32)
    return state


class FakeEngine:
    """What the controller asks of NVFlare's server engine: the connected sites, events."""

    def __init__(self, sites: list[str]) -> None:
        self.clients = [Client(name, f"token-{name}") for name in sites]
        self.events: list[str] = []

    def get_clients(self) -> list[Any]:
        return list(self.clients)

    def fire_event(self, event_type: str, fl_ctx: Any) -> None:
        self.events.append(event_type)

    def get_component(self, component_id: str) -> Any:
        return None


#: A responder answers one task: ``(site, task, model) -> Shareable | None | Ending``.
Responder = Callable[[str, Any, Any], Any]


@dataclass
class Ending:
    """A task that ends without a result, with NVFlare's completion status."""

    status: Any


@dataclass
class Harness:
    """A controller wired to a fake engine; ``run()`` runs its whole workflow."""

    controller: Any
    responder: Responder
    sent: list[tuple[int, str, Any]] = field(default_factory=list)  # (round, site, FLModel)
    delay: Callable[[str], float] = lambda site: 0.0

    def __post_init__(self) -> None:
        ctrl = self.controller
        sites = ctrl._test_sites
        self.engine = FakeEngine(sites)
        fl_ctx = FLContext()
        fl_ctx.set_prop(ReservedKey.ENGINE, self.engine, private=True, sticky=True)
        ctrl.fl_ctx = fl_ctx
        ctrl.engine = self.engine
        ctrl.abort_signal = Signal()
        ctrl.broadcast = self._broadcast
        self._threads: list[threading.Thread] = []
        self._round = -1

    def _broadcast(self, task: Task, fl_ctx: Any, targets: list[str], min_responses: int) -> None:
        assert min_responses == 1 and len(targets) == 1, (targets, min_responses)
        site = targets[0]
        model = FLModelUtils.from_shareable(task.data)
        self.sent.append((model.current_round, site, model))
        thread = threading.Thread(target=self._answer, args=(site, task, model), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _answer(self, site: str, task: Task, model: Any) -> None:
        time.sleep(self.delay(site))
        answer = self.responder(site, task, model)
        ctx = FLContext()
        if isinstance(answer, Ending):
            task.completion_status = answer.status
        elif answer is not None:
            client_task = ClientTask(Client(site, "t"), task)
            client_task.result = answer
            task.result_received_cb(client_task=client_task, fl_ctx=ctx)
            task.completion_status = TaskCompletionStatus.OK
        else:
            task.completion_status = TaskCompletionStatus.TIMEOUT
        task.task_done_cb(task=task, fl_ctx=ctx)

    def run(self) -> Any:
        self.controller.run()
        for thread in self._threads:
            thread.join(timeout=5)
        return self.controller


class ToyController(FedAlignController):
    """FedAlignController whose initial model is :func:`model_state` (no persistor)."""

    def __init__(self, *, sites: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("scheduler_args", {"n_experts": N_EXPERTS, "solver": "flow", "seed": 0})
        kwargs.setdefault("persistor_id", "")
        kwargs.setdefault("task_check_period", 0.01)
        super().__init__(**kwargs)
        self._test_sites = list(sites or ["site-1", "site-2", "site-3"])

    def initial_state(self) -> dict[str, np.ndarray]:
        return model_state()

    def after_round(self, round_index: int, state: Any, summary: Any) -> dict[str, Any]:
        self.states.append(state)  # the global state after each round, for the tests
        return {"test_extra": round_index}

    @property
    def states(self) -> list[dict[str, np.ndarray]]:
        if not hasattr(self, "_states"):
            self._states: list[dict[str, np.ndarray]] = []
        return self._states


def trained(model: Any, delta: float = 1.0) -> dict[str, np.ndarray]:
    """What an honest site returns: every received array, moved by ``delta``."""
    out = {}
    for key, value in model.params.items():
        value = np.asarray(value)
        out[key] = (value + np.asarray(delta).astype(value.dtype)).astype(value.dtype)
    return out


def reply(model: Any, *, samples: int = 10, delta: float = 1.0, **kwargs: Any) -> Shareable:
    """An honest training reply as the site's Client API would send it."""
    from fedalign.nvflare.client import train_reply

    task = read_task(model)
    fl = train_reply(
        task,
        kwargs.pop("params", None) or trained(model, delta),
        samples=samples,
        rewards=kwargs.pop("rewards", {j: 0.5 for j in task.expert_ids}),
        **kwargs,
    )
    return FLModelUtils.to_shareable(fl)


def check_job_summary(summary_path: Path, tail: str) -> None:
    """The example job's summary: 3 sites, 2 rounds, ``site-2`` failing in round 2 (index 1),
    ``site-1`` allowed two experts.

    Every site trained exactly the experts it was sent, each expert was averaged over
    exactly the sites that were sent it and completed, the failing site is a dropout with
    its error as the reason, its experts did not move unless another site trained them, and
    the round completed with the others. ``tail`` (a log's end) is shown on failure.
    """
    assert summary_path.exists(), tail
    rounds = json.loads(summary_path.read_text())["rounds"]
    assert [r["round_index"] for r in rounds] == [0, 1], tail

    site_of = rounds[0]["sites"]
    assert sorted(site_of.values()) == ["site-1", "site-2", "site-3"]
    client = {site: c for c, site in site_of.items()}
    for r in rounds:
        sent = {c: e for c, e in r["assignment"].items() if e}
        assert all(len(e) <= (2 if c == client["site-1"] else 1) for c, e in sent.items())
        completed = {str(c) for c in r["completed"]}
        # each expert averaged over exactly the sites that were sent it and completed
        expected = {
            str(j): sorted(c for c in completed if j in sent[c])
            for j in {j for c in completed for j in sent[c]}
        }
        got = {j: sorted(str(c) for c in cs) for j, cs in r["trained_by"].items()}
        assert got == expected, tail
        assert r["changed_experts"] == sorted(int(j) for j in expected)
        assert 0.0 <= r["accuracy"] <= 1.0

    first, second = rounds
    assert first["dropouts"] == {} and len(first["completed"]) == 3
    failing = client["site-2"]
    assert second["dropouts"] == {
        failing: "error: RuntimeError: site-2 fails round 1 (--fail-rounds)"
    }
    assert sorted(str(c) for c in second["completed"]) == sorted(
        c for c in second["assignment"] if c != failing
    )
    assert all(failing not in [str(c) for c in cs] for cs in second["trained_by"].values())
    # the failing site's experts keep their value unless another site trained them
    theirs = set(second["assignment"][failing])
    untouched = theirs - {int(j) for j in second["trained_by"]}
    assert not untouched & set(second["changed_experts"])
