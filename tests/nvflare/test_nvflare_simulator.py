"""The example job on NVFlare's simulator: 3 sites, 2 rounds, one site failing in round 2.

Runs ``examples/nvflare-moe/job.py`` (FedAlignController on the server, the Client API script
on every site, each in its own process, all offline on this machine) and checks the
controller's JSON summary: every site trained exactly the experts it was sent, each expert
was averaged over exactly the sites that were sent it and completed, the failing site is a
dropout with its error as the reason and its experts did not move unless another site
trained them, and the round completed with the others. The simulator runs in its own
session and its whole process group is killed, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nvflare")
pytest.importorskip("torch")

from nvflare_helpers import check_job_summary  # noqa: E402

# xdist_group: the end-to-end runs share one worker (make test: --dist loadgroup)
pytestmark = [pytest.mark.nvflare, pytest.mark.slow, pytest.mark.xdist_group("e2e")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nvflare-moe"
RUN_TIMEOUT = 400.0  # s; two rounds took 40-60 s on a loaded 2-core machine


def test_three_sites_two_rounds_one_failing_in_round_two(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    log_path = tmp_path / "job.log"
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
        try:
            status = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the simulator and every site process
            except ProcessLookupError:
                pass
            proc.wait()
    tail = log_path.read_text(errors="replace")[-4000:]
    assert status == 0, f"job.py ended with {status}:\n{tail}"
    check_job_summary(summary_path, tail)
