"""A real NVFlare deployment in POC mode: a server and three clients as separate processes.

``nvflare poc prepare`` provisions a project (certificates, startup kits) for a server and
``site-1`` .. ``site-3`` on free ports, ``nvflare poc start`` starts the server and the three
clients as processes of their own, and the example job (``examples/nvflare-moe``, exported)
is submitted through the admin API (``nvflare job submit``) for two rounds, with ``site-2``
failing in round 2. Everything runs offline on this machine: ``HOME`` is a temporary folder
(NVFlare keeps its POC configuration in ``~/.nvflare``), the workspace too. The controller's
JSON summary is checked as in the simulator test. ``nvflare poc stop`` ends the deployment,
and the process group of ``nvflare poc start`` (server and clients) is killed whatever
happens.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nvflare")
pytest.importorskip("torch")

from nvflare_helpers import check_job_summary  # noqa: E402

pytestmark = [pytest.mark.nvflare, pytest.mark.slow]

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nvflare-moe"
STEP_TIMEOUT = 240.0  # s for prepare, start, submit (a loaded 2-core machine)
JOB_TIMEOUT = 400.0  # s for the two rounds

if not (BIN / "nvflare").exists():
    pytest.skip("NVFlare's console script is not installed next to Python", allow_module_level=True)


def _free_ports(n: int) -> list[int]:
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


def _run(args: list[str], env: dict[str, str], log: Path, timeout: float = STEP_TIMEOUT) -> str:
    """Run one ``nvflare`` command to completion; its output is appended to ``log``."""
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_two_rounds_on_a_poc_deployment_with_three_clients(tmp_path: Path) -> None:
    home, workspace, jobs = tmp_path / "home", tmp_path / "poc", tmp_path / "jobs"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # start.sh runs python3
        "PYTHONUNBUFFERED": "1",
    }
    nvflare = str(BIN / "nvflare")
    log = tmp_path / "commands.log"
    summary_path = tmp_path / "summary.json"

    _run([nvflare, "poc", "config", "-pw", str(workspace)], env, log)
    _run([nvflare, "poc", "prepare", "-n", "3", "--force"], env, log)
    # the default project listens on 8002: move it to free ports and provision again
    project = (workspace / "project.yml").read_text()
    fl_port, admin_port = _free_ports(2)
    project, count = re.subn(r"fed_learn_port: \d+", f"fed_learn_port: {fl_port}", project)
    assert count == 1, project
    project = project.replace(
        f"fed_learn_port: {fl_port}", f"fed_learn_port: {fl_port}\n  admin_port: {admin_port}"
    )
    custom = tmp_path / "project.yml"
    custom.write_text(project)
    _run([nvflare, "poc", "prepare", "-i", str(custom), "--force"], env, log)

    _run(
        [
            sys.executable, str(EXAMPLE / "job.py"),
            "--sites", "3", "--rounds", "2", "--fail", "site-2:1",
            "--profiles", '{"site-1": {"max-experts": 2}}',
            "--summary", str(summary_path), "--export", str(jobs),
        ],
        env,
        log,
    )  # fmt: skip

    start_log = tmp_path / "poc-start.log"
    with open(start_log, "wb") as out:
        # its own session: the server and client processes it starts share its group
        starter = subprocess.Popen(
            [nvflare, "poc", "start", "--timeout", str(int(STEP_TIMEOUT))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert starter.wait(timeout=STEP_TIMEOUT + 30) == 0, start_log.read_text()[-3000:]
        started = start_log.read_text()
        assert f"localhost:{fl_port}" in started, started[-3000:]
        submitted = _run([nvflare, "job", "submit", "-j", str(jobs / "nvflare-moe")], env, log)
        match = re.search(r"job_id: (\S+)", submitted)
        assert match, submitted
        waited = _run(
            [nvflare, "job", "wait", match.group(1), "--timeout", str(int(JOB_TIMEOUT))],
            env,
            log,
            timeout=JOB_TIMEOUT + 60,
        )
        assert "COMPLETED" in waited, waited
        deadline = time.monotonic() + 30
        while not summary_path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        check_job_summary(summary_path, log.read_text()[-4000:])
    finally:
        try:
            subprocess.run(
                [nvflare, "poc", "stop", "--no-wait"], env=env, capture_output=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            pass
        time.sleep(2)
        try:
            os.killpg(starter.pid, signal.SIGKILL)  # server and clients, whatever is left
        except ProcessLookupError:
            pass
