"""A real Flower deployment on loopback: one SuperLink, three SuperNodes, ``flwr run``.

Runs examples/flower-moe for two rounds in insecure mode on 127.0.0.1 only (free ports picked
at start), with one node that raises in round 2, and checks from the ServerApp's summary that
every node trained exactly the experts it was sent, that each expert was averaged over the
nodes that trained it, and that the failing node became a dropout while the round completed.
A second deployment has one node poisoning its updates with a claim of 10**12 examples, and
the ServerApp's median and reply screen on (docs/trust.md): the node is screened out of every
average and the global model keeps learning.
Every process is started in its own session and killed with its group, whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch")

pytestmark = [pytest.mark.flower, pytest.mark.slow]

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower-moe"
START_TIMEOUT = 60.0  # s for the SuperLink to listen
RUN_TIMEOUT = 300.0  # s for `flwr run` (two rounds; generous for a loaded 2-core machine)

if not (BIN / "flower-superlink").exists() or not (BIN / "flwr").exists():
    pytest.skip(
        "Flower's console scripts are not installed next to Python", allow_module_level=True
    )


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"flower-superlink exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"flower-superlink did not listen on 127.0.0.1:{port} within {START_TIMEOUT} s")


class _Processes:
    """Processes started in their own sessions; :meth:`stop` ends every group, always."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # closed in stop()
        self.logs.append(out)
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def _signal(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every group, wait up to ``grace`` seconds, then SIGKILL what is left."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # stragglers and children (flower-superexec, flwr-clientapp)
        for proc in self.procs:
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
        for out in self.logs:
            out.close()


def _deploy(tmp_path: Path, node_configs: list[str], run_config: str) -> dict:
    """Run examples/flower-moe on a SuperLink with one SuperNode per ``node_configs`` entry
    (``run_config`` added to the summary path); the ServerApp's summary."""
    link_port, *node_ports = _free_ports(1 + len(node_configs))
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "loopback"\n\n'
        f'[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    summary_path = tmp_path / "summary.json"

    procs = _Processes(env)
    try:
        link_log = tmp_path / "superlink.log"
        link = procs.start(
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(link_port),
            ],
            link_log,
        )
        _wait_listening(link_port, link, link_log)
        for k, (port, config) in enumerate(zip(node_ports, node_configs, strict=True)):
            procs.start(
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link_port}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--node-config",
                    config,
                ],
                tmp_path / f"supernode{k}.log",
            )
        run_config = f"summary-path='{summary_path}' {run_config}"
        try:
            run = subprocess.run(
                [
                    str(BIN / "flwr"),
                    "run",
                    str(app),
                    "loopback",
                    "--stream",
                    "--run-config",
                    run_config,
                ],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"flwr run did not finish within {RUN_TIMEOUT} s: {str(exc.stdout)[-3000:]}"
            )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert summary_path.exists(), run.stdout[-3000:] + link_log.read_text()[-3000:]
    finally:
        procs.stop()
    return json.loads(summary_path.read_text())


def test_two_rounds_on_a_superlink_with_three_supernodes(tmp_path: Path) -> None:
    node_configs = [
        "partition-id=0 num-partitions=3 max-experts=2",
        "partition-id=1 num-partitions=3 fail-rounds=2",
        "partition-id=2 num-partitions=3",
    ]
    summary = _deploy(
        tmp_path,
        node_configs,
        "num-server-rounds=2 expert-max-clients=2 min-nodes=3 round-timeout=150.0",
    )
    node_of = {info["partition-id"]: int(node) for node, info in summary["node_info"].items()}
    assert sorted(node_of) == [0, 1, 2]
    first, second = summary["rounds"]

    # Round 1: everyone trains; capacity from node_config reached the scheduler.
    assert first["dropouts"] == {}
    assert sorted(first["completed"]) == sorted(node_of.values())
    assignment = {int(n): e for n, e in first["assignment"].items()}
    assert len(assignment[node_of[0]]) == 2  # max-experts=2 on that SuperNode
    assert all(len(assignment[node_of[p]]) == 1 for p in (1, 2))
    _check_averaged_over_trainers(first, assignment)

    # Round 2: partition 1 raises; the round completes with the other two.
    failed = node_of[1]
    assert list(second["dropouts"]) == [str(failed)]
    assert second["dropouts"][str(failed)].startswith("error")
    assert sorted(second["completed"]) == sorted([node_of[0], node_of[2]])
    assignment = {int(n): e for n, e in second["assignment"].items() if int(n) != failed}
    _check_averaged_over_trainers(second, assignment)
    only_failed = set(second["assignment"][str(failed)]) - {
        e for es in assignment.values() for e in es
    }
    assert not only_failed & set(second["experts_changed"])  # nothing averaged from missing data

    assert all(0.0 <= r["accuracy"] <= 1.0 for r in summary["rounds"])
    assert len(summary["fitness"]) == 3


def test_a_poisoning_supernode_claiming_10_to_the_12_examples_is_screened(tmp_path: Path) -> None:
    """One SuperNode returns its update scaled by 10 and sign-flipped, claiming 10**12
    examples, in both rounds; with the median and the reply screen it is left out of every
    average and the global model keeps learning from the other two."""
    node_configs = [
        "partition-id=0 num-partitions=3",
        "partition-id=1 num-partitions=3 poison-rounds='1,2'",
        "partition-id=2 num-partitions=3",
    ]
    summary = _deploy(
        tmp_path,
        node_configs,
        "num-server-rounds=2 min-nodes=3 round-timeout=150.0 aggregation='median' screen=true",
    )
    node_of = {info["partition-id"]: int(node) for node, info in summary["node_info"].items()}
    poisoner = str(node_of[1])
    for record in summary["rounds"]:
        assert sorted(record["completed"]) == sorted(node_of.values())  # a valid reply...
        assert list(record["screened"]) == [poisoner]  # ...judged implausible
        assert all(poisoner not in map(str, nodes) for nodes in record["trained_by"].values())
    accuracy = [r["accuracy"] for r in summary["rounds"]]
    # not destroyed: every round well above chance (0.1; undefended, such a node drives the
    # model away: tests/flower/test_flower_defenses.py). Round-to-round moves are not
    # asserted: with three real node processes the plan (and so the accuracy after two
    # rounds) varies from run to run (seen: 0.349, 0.433 clean; 0.437, 0.377 screened).
    assert min(accuracy) > 0.25, accuracy


def _check_averaged_over_trainers(record: dict, assignment: dict[int, list[int]]) -> None:
    """Each expert was averaged over exactly the completed nodes that were sent it."""
    expected: dict[int, set[int]] = {}
    for node, experts in assignment.items():
        for e in experts:
            expected.setdefault(e, set()).add(node)
    trained_by = {int(e): set(nodes) for e, nodes in record["trained_by"].items()}
    assert trained_by == expected
    assert sorted(record["experts_changed"]) == sorted(expected)
