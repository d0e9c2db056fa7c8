"""The example job on NVFlare's simulator: 3 sites, 2 rounds, one site failing in round 2.

Runs ``examples/nvflare-moe/job.py`` (FedAlignController on the server, the Client API script
on every site, each in its own process, all offline on this machine) and checks the
controller's JSON summary: every site trained exactly the experts it was sent, each expert
was averaged over exactly the sites that were sent it and completed, the failing site is a
dropout with its error as the reason and its experts did not move unless another site
trained them, and the round completed with the others. job.py, the simulator and the sites
are killed by process group, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nvflare")
pytest.importorskip("torch")

from nvflare_helpers import check_job_summary  # noqa: E402

from fedalign.nvflare.engine import SITE_START_FAILURES  # noqa: E402

pytestmark = [pytest.mark.nvflare, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nvflare-moe"
RUN_TIMEOUT = 400.0  # s; two rounds took 40-60 s on a loaded 2-core machine


def _run_job(tmp_path: Path, summary_path: Path, log_path: Path) -> int | None:
    """Run the example job once; its exit status, or None if it had to be killed."""
    command = [
        sys.executable,
        str(EXAMPLE / "job.py"),
        "--sites", "3",
        "--rounds", "2",
        "--fail", "site-2:1",  # NVFlare counts rounds from 0: the second round
        "--profiles", '{"site-1": {"max-experts": 2}}',
        "--summary", str(summary_path),
        "--workspace", str(tmp_path / "workspace"),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        status: int | None = None
        try:
            while time.monotonic() < deadline:
                status = proc.poll()
                if status is not None:
                    break
                text = log_path.read_text(errors="replace")
                if any(marker in text for marker in SITE_START_FAILURES):
                    break  # a site never came up: it would stall its rounds (see below)
                time.sleep(1.0)
        finally:
            _kill_tree(proc.pid)
            proc.wait()
    return status


def _kill_tree(pid: int) -> None:
    """Kill ``pid`` and everything it started, by process group.

    ``FedJob.simulator_run`` starts the simulator in a session of its own (and the simulator
    its site workers in theirs), so killing job.py's group alone would orphan them.
    """
    import psutil  # an NVFlare dependency

    groups = {pid}
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                groups.add(os.getpgid(child.pid))
            except ProcessLookupError:
                pass
    except psutil.NoSuchProcess:
        pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_three_sites_two_rounds_one_failing_in_round_two(tmp_path: Path) -> None:
    # On a loaded machine NVFlare's simulator sometimes loses a site process at start-up
    # ("Communication error with client ..."); that site never answers. Such a run is
    # started once more: the job is seeded, so any complete run must pass the checks.
    for attempt in (1, 2):
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        summary_path, log_path = folder / "summary.json", folder / "job.log"
        status = _run_job(folder, summary_path, log_path)
        tail = log_path.read_text(errors="replace")[-4000:]
        if status is None and attempt == 1 and any(m in tail for m in SITE_START_FAILURES):
            continue
        break
    assert status == 0, f"job.py ended with {status}:\n{tail}"
    check_job_summary(summary_path, tail)
