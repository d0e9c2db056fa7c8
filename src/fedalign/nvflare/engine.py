"""``fedalign simulate --engine nvflare``: the harness's experiment on NVIDIA FLARE's simulator.

:func:`run_strategy` is the NVFlare twin of :func:`fedalign.sim.server.run_strategy`: same
inputs (a seed's :class:`~fedalign.sim.server.Setup` and a
:class:`~fedalign.sim.config.Strategy`), same output (a
:class:`~fedalign.sim.server.RunResult`), but every round goes through NVFlare: a
:class:`FleetController` (a :class:`~fedalign.nvflare.FedAlignController`) plans with the same
scheduler and schedules one task per site (``site-<i>`` is client ``i``); every site runs the
Client API script :mod:`fedalign.nvflare.moe_site` (:func:`fedalign.nvflare.client.train_moe`);
replies are checked and averaged per expert by the round driver.

NVFlare's simulator runs the server and each site in processes of its own and builds the
controller from the job's JSON configuration, so nothing is handed over in memory: the engine
writes the seed's settings to ``world.json``, the server and every site rebuild the same world
from it (:func:`fedalign.sim.server.make_setup` is deterministic), and the controller writes
the measurements to ``results.json`` after every round, which the engine reads (progress
included) while the simulator runs.

To make the two engines comparable under a seed, the controller replays the local runner's
random streams: the cohort of each round and the device luck (slowdowns, sites that vanish
or miss the deadline) are drawn from the same generator in the same order, the scheduler is
built and pre-registered identically (:func:`fedalign.sim.server.make_scheduler`), sites train
with the same seeds, replies are averaged in the same order. A site the simulated fleet drops
is told so in its task and answers with an error reply, which the controller records as a
dropout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..rounds import ActiveRound, RoundSummary
from . import wire
from .controller import FedAlignController, State, _write_json

__all__ = [
    "SITE_START_FAILURES",
    "FleetController",
    "SiteStartFailure",
    "compare_engines",
    "run_nvflare_experiment",
    "run_strategy",
    "simulator_command",
]


def _site(index: int) -> str:
    return f"site-{index}"


#: Lines of the simulator's log that mean a site process never came up (seen on a loaded
#: machine: the simulator's connection to a new site worker was reset). That site would
#: never answer, so the run is stopped and started again instead of waiting for it.
SITE_START_FAILURES = (
    "Communication error with client",
    "Subprocess died for client",
    "Failed to create connection to the child process",
)


class SiteStartFailure(RuntimeError):
    """A simulated site's process did not start; the run can be tried again."""


class FleetController(FedAlignController):
    """The controller of ``--engine nvflare``: the simulated fleet's rounds, measured.

    Parameters
    ----------
    world : str
        JSON file ``{"config": SimConfig.to_dict(), "seed": N}`` the engine wrote.
    strategy : str
        The strategy's name (``greedy``, ``load-balanced/flow`` ...).
    results_path : str
        Where the measurements go (rewritten after every round).
    num_rounds : int
        ``config.rounds``.
    train_timeout : int
        Seconds a site has for a round's task (0: forever).
    task_check_period : float
        Seconds between checks for finished tasks.
    """

    def __init__(
        self,
        *,
        world: str,
        strategy: str,
        results_path: str,
        num_rounds: int = 1,
        train_timeout: int = 0,
        task_check_period: float = 0.1,
    ) -> None:
        super().__init__(
            num_rounds=num_rounds,
            train_timeout=train_timeout,
            persistor_id="",
            task_check_period=task_check_period,
        )
        self.world = str(world)
        self.strategy = str(strategy)
        self.results_path = str(results_path)
        self.setup: Any = None
        self._measured: dict[str, Any] = {}

    def build_scheduler(self) -> Any:
        """The local runner's scheduler (every client pre-registered with its device)."""
        import torch

        from ..sim.config import SimConfig, parse_strategy
        from ..sim.model import MoEModel
        from ..sim.server import make_scheduler, make_setup

        torch.set_num_threads(1)  # evaluation as in the local runner: one thread
        with open(self.world, encoding="utf-8") as f:
            world = json.load(f)
        config = SimConfig(**world["config"])
        self.setup = setup = make_setup(config, int(world["seed"]))
        strategy = parse_strategy(self.strategy, config.usage_weight)
        n, e = config.n_clients, config.n_experts
        self.client_ids = {_site(i): i for i in range(n)}
        self.dropout_duration = setup.deadline
        # cohorts and device luck: the local runner's stream, drawn in the same order
        self._world_rng = np.random.default_rng([setup.seed, 7919])
        self._cohort = np.zeros(0, dtype=np.int64)
        self._worker = MoEModel(
            setup.data.n_features,
            setup.data.n_classes,
            e,
            expert_hidden=config.expert_hidden,
            trunk_hidden=config.trunk_hidden,
            top_k=config.top_k,
        )
        self._measured = {
            "strategy": self.strategy,
            "seed": setup.seed,
            "accuracy": [],
            "domain_accuracy": [],
            "bytes_up": [],
            "bytes_down": [],
            "seconds": [],
            "expert_load": np.zeros((n, e), dtype=np.int64),
            "trained_load": np.zeros((n, e), dtype=np.int64),
            "round_load": [],
            "dropouts": [],
            "solver_seconds": [],
        }
        self._up = self._down = 0
        self._clock = 0.0
        self._dropped = 0
        return make_scheduler(setup, strategy, seed=setup.seed)

    def initial_state(self) -> State:
        return {k: v.numpy().copy() for k, v in self.setup.initial_state.items()}

    def sample_cohort(self, round_index: int, sites: list[str]) -> list[str]:
        n = self.setup.config.n_clients
        missing = sorted(set(map(_site, range(n))) - set(sites))
        if missing:
            raise RuntimeError(f"simulated site {missing[0]} is not connected")
        size = self.setup.config.cohort_size or n
        self._cohort = np.sort(self._world_rng.choice(n, size=size, replace=False))
        return [_site(int(c)) for c in self._cohort]

    def site_configs(self, round_index: int, current: ActiveRound) -> dict[str, dict[str, Any]]:
        """Draw the round's device luck; tell each site its simulated seconds or its dropout."""
        setup, cohort = self.setup, self._cohort
        n_assigned = np.array([len(current.experts(int(c))) for c in cohort], dtype=np.int64)
        seconds, vanished = setup.fleet.round_seconds(
            cohort, n_assigned, setup.samples[cohort], self._world_rng
        )
        late = ~vanished & (seconds > setup.deadline)
        self._dropped = int(vanished.sum() + late.sum())
        self._clock += setup.deadline if self._dropped else float(np.max(seconds, initial=0.0))
        self._measured["solver_seconds"].append(float(current.solver_seconds or 0.0))
        out: dict[str, dict[str, Any]] = {}
        for pos, client in enumerate(cohort.tolist()):
            experts = current.experts(client)
            self._measured["expert_load"][client, experts] += 1
            if not experts:
                continue
            if vanished[pos] or late[pos]:
                out[_site(client)] = {wire.SIMULATE_DROPOUT: True}
            else:
                out[_site(client)] = {wire.SIMULATED_SECONDS: float(seconds[pos])}
        return out

    def after_round(
        self, round_index: int, state: State, summary: RoundSummary
    ) -> dict[str, Any] | None:
        """Measure the round as the local runner does, evaluate, write ``results_path``."""
        from ..sim.model import load_partial_state
        from ..sim.server import evaluate

        m = self._measured
        load = np.zeros(self.setup.config.n_experts, dtype=np.int64)
        for client in summary.completed:
            experts = summary.assignment[client]
            m["trained_load"][client, experts] += 1  # type: ignore[index]
            load[experts] += 1
        self._up += summary.bytes_received
        self._down += summary.bytes_sent
        load_partial_state(self._worker, state)
        accuracy, per_domain = evaluate(self._worker, self.setup.partition)
        m["accuracy"].append(accuracy)
        m["domain_accuracy"].append(per_domain)
        m["bytes_up"].append(int(self._up))
        m["bytes_down"].append(int(self._down))
        m["seconds"].append(float(self._clock))
        m["round_load"].append(load.tolist())
        m["dropouts"].append(self._dropped)
        _write_json(
            self.results_path,
            {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in m.items()},
        )
        return {"accuracy": accuracy}


def simulator_command(job_dir: str | Path, workspace: str | Path, sites: Sequence[str]) -> list[str]:
    """The command that runs a job on NVFlare's simulator, one thread per site.

    The same command ``FedJob.simulator_run`` starts (``nvflare simulator``), run here as
    our own child process so that its logs go to a file and a timeout can end it.
    """
    return [
        sys.executable,
        "-m",
        "nvflare.private.fed.app.simulator.simulator",
        str(job_dir),
        "-w",
        str(workspace),
        "-c",
        ",".join(sites),
        "-t",
        str(len(sites)),
    ]


def run_strategy(
    setup: Any,
    strategy: Any,
    *,
    on_round: Callable[[int, float], None] | None = None,
    workspace: str | Path | None = None,
    timeout: float = 3600.0,
    round_timeout: int = 0,
    attempts: int = 2,
) -> Any:
    """Run one strategy for ``config.rounds`` rounds on NVFlare's simulator.

    Parameters
    ----------
    setup : fedalign.sim.server.Setup
        The seed's world (:func:`fedalign.sim.server.make_setup`); not modified.
    strategy : fedalign.sim.config.Strategy
    on_round : callable(round, accuracy), optional
        Called after each round's central evaluation (round from 0), while the simulator
        runs.
    workspace : str or Path, optional
        Folder for the job, the simulator's workspace and its log (``simulator.log``);
        default a temporary folder, removed afterwards.
    timeout : float
        Seconds the whole simulation may take; then it is stopped and this raises.
    round_timeout : int
        Seconds a site has for one round's task (0: forever).
    attempts : int >= 1
        Runs to try when a site's process fails to start (:data:`SITE_START_FAILURES` in
        the log): the run is stopped at once and started again in a fresh folder. The
        seeded run gives the same result whichever attempt completes it.

    Returns
    -------
    fedalign.sim.server.RunResult
        The same measurements as the local runner.

    Raises
    ------
    RuntimeError
        The simulator failed, timed out, or finished fewer rounds than configured (the
        message ends with the tail of its log); :class:`SiteStartFailure` when a site did
        not start in any attempt.
    """
    if workspace is None:
        with tempfile.TemporaryDirectory(prefix="fedalign-nvflare-") as tmp:
            return _attempts(setup, strategy, Path(tmp), on_round, timeout, round_timeout, attempts)
    root = Path(workspace)
    root.mkdir(parents=True, exist_ok=True)
    return _attempts(setup, strategy, root, on_round, timeout, round_timeout, attempts)


def _attempts(
    setup: Any,
    strategy: Any,
    root: Path,
    on_round: Callable[[int, float], None] | None,
    timeout: float,
    round_timeout: int,
    attempts: int,
) -> Any:
    """:func:`_run`, again in a fresh folder when a site's process did not start."""
    import logging

    reported = -1

    def once(round_index: int, accuracy: float) -> None:
        # a second attempt replays the rounds the first one reported: report each once
        nonlocal reported
        if on_round is not None and round_index > reported:
            reported = round_index
            on_round(round_index, accuracy)

    for attempt in range(1, max(1, int(attempts)) + 1):
        folder = root if attempt == 1 else root / f"attempt-{attempt}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return _run(setup, strategy, folder, once, timeout, round_timeout)
        except SiteStartFailure as exc:
            if attempt >= attempts:
                raise
            logging.getLogger(__name__).warning(
                "NVFlare simulation of %r, attempt %d: %s; starting again",
                strategy.name,
                attempt,
                str(exc).split(";")[0],
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _run(
    setup: Any,
    strategy: Any,
    root: Path,
    on_round: Callable[[int, float], None] | None,
    timeout: float,
    round_timeout: int,
) -> Any:
    cfg = setup.config
    results = root / "results.json"
    results.unlink(missing_ok=True)
    sites = [_site(i) for i in range(cfg.n_clients)]
    _export_job(setup, strategy, root, results, round_timeout)
    log_path = root / "simulator.log"
    command = simulator_command(root / "jobs" / "fedalign", root / "workspace", sites)
    with open(log_path, "wb") as log:
        # its own session: a timeout ends the simulator and every site process it started
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _watch(proc, strategy.name, results, log_path, on_round, timeout)
        finally:
            _stop(proc)
    measured = json.loads(results.read_text()) if results.exists() else {}
    if len(measured.get("accuracy", [])) != cfg.rounds:
        done = len(measured.get("accuracy", []))
        raise RuntimeError(
            f"the NVFlare run of {strategy.name!r} finished {done} of {cfg.rounds} rounds "
            f"(simulator exit status {proc.returncode})" + _log_tail(log_path)
        )
    return _run_result(setup, strategy, measured)


def _export_job(setup: Any, strategy: Any, root: Path, results: Path, round_timeout: int) -> None:
    """Write the seed's world and export the NVFlare job (controller + MoE site script)."""
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.script_runner import FrameworkType, ScriptRunner

    from . import moe_site

    cfg = setup.config
    world = root / "world.json"
    world.write_text(json.dumps({"config": cfg.to_dict(), "seed": int(setup.seed)}))
    job = FedJob(name="fedalign", min_clients=cfg.n_clients)
    job.set_app_packages(["fedalign"])  # installed on every site: never copied into the job
    job.to_server(
        FleetController(
            world=str(world),
            strategy=strategy.name,
            results_path=str(results),
            num_rounds=cfg.rounds,
            train_timeout=int(round_timeout),
        )
    )
    job.to_clients(
        ScriptRunner(
            script=str(Path(moe_site.__file__).resolve()),
            script_args=f"--world {world}",
            framework=FrameworkType.NUMPY,
        )
    )
    job.export_job(str(root / "jobs"))


def _watch(
    proc: subprocess.Popen[bytes],
    name: str,
    results: Path,
    log_path: Path,
    on_round: Callable[[int, float], None] | None,
    timeout: float,
) -> None:
    """Follow the simulator until it exits: progress from ``results``; a site that does not
    start (:class:`SiteStartFailure`) or a run past ``timeout`` raises."""
    deadline = time.monotonic() + timeout
    reported = 0
    while True:
        finished = proc.poll() is not None
        reported = _report_progress(results, reported, on_round)
        if finished:
            return
        failure = _site_start_failure(log_path)
        if failure:
            raise SiteStartFailure(
                f"a site of the NVFlare simulation of {name!r} did not start "
                f"({failure})" + _log_tail(log_path)
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the NVFlare simulation of {name!r} took more than {timeout} s" + _log_tail(log_path)
            )
        time.sleep(0.5)


def _run_result(setup: Any, strategy: Any, measured: dict[str, Any]) -> Any:
    """The controller's measurements as the local runner's ``RunResult``."""
    from ..sim.server import RunResult

    result = RunResult(strategy.name, setup.seed)
    for key in ("accuracy", "domain_accuracy", "bytes_up", "bytes_down", "seconds"):
        setattr(result, key, measured[key])
    result.round_load = measured["round_load"]
    result.dropouts = measured["dropouts"]
    result.solver_seconds = measured["solver_seconds"]
    result.expert_load = np.asarray(measured["expert_load"], dtype=np.int64)
    result.trained_load = np.asarray(measured["trained_load"], dtype=np.int64)
    return result


def _report_progress(
    results: Path, reported: int, on_round: Callable[[int, float], None] | None
) -> int:
    """Call ``on_round`` for the rounds ``results`` holds beyond the first ``reported``."""
    if on_round is None or not results.exists():
        return reported
    try:
        accuracy = json.loads(results.read_text()).get("accuracy", [])
    except (OSError, ValueError):  # pragma: no cover - written atomically; be safe anyway
        return reported
    for k in range(reported, len(accuracy)):
        on_round(k, float(accuracy[k]))
    return max(reported, len(accuracy))


def _site_start_failure(path: Path) -> str:
    """The first log line saying a site's process did not start, or ``""``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if any(marker in line for marker in SITE_START_FAILURES):
            return line.strip()
    return ""


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End the simulator's process group: SIGTERM, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig is signal.SIGTERM:
            # the simulator itself is gone; its site processes share its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return f"; the end of {path}:\n{text[-chars:]}"


def run_nvflare_experiment(
    config: Any,
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1),
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run a comparison through NVFlare: :func:`fedalign.sim.experiments.run_experiment` with
    ``engine="nvflare"`` and :func:`run_strategy` as its ``runner``.

    Parameters
    ----------
    config : fedalign.sim.config.SimConfig
    strategies : sequence of str, optional
        Default :data:`fedalign.sim.config.DEFAULT_STRATEGIES`.
    seeds : sequence of int
    out_dir : str or Path, optional
        Where ``results.json`` (with ``config.engine == "nvflare"``), the summary and the
        plots go.
    progress, plots : bool

    Returns
    -------
    dict
        ``results.json``'s content.
    """
    from ..sim.config import DEFAULT_STRATEGIES
    from ..sim.experiments import run_experiment

    return run_experiment(
        config,
        list(strategies) if strategies else DEFAULT_STRATEGIES,
        seeds,
        out_dir=out_dir,
        engine="nvflare",
        runner=run_strategy,
        progress=progress,
        plots=plots,
    )


def compare_engines(config: Any, strategies: Sequence[str], seed: int = 0) -> list[dict[str, Any]]:
    """Run each strategy under ``seed`` locally and through NVFlare; one row per strategy.

    Rows: ``strategy``, ``local`` and ``nvflare`` final accuracy, ``max_round_diff`` (largest
    per-round accuracy difference), ``same_expert_load``, and the wall-clock seconds of each
    (:func:`fedalign.sim.experiments.compare_engines`).
    """
    from ..sim.experiments import compare_engines as compare

    return compare(config, strategies, seed, engine="nvflare", runner=run_strategy)


def _main(argv: Sequence[str] | None = None) -> None:
    """``python -m fedalign.nvflare.engine``: compare the local and the NVFlare engine."""
    from ..sim.experiments import compare_engines_main

    compare_engines_main("nvflare", compare_engines, argv)


if __name__ == "__main__":
    _main()
