"""Scheduler state files stay readable: format version 1, as written by fedalign 0.1.0.

``tests/data/scheduler-v1.fas`` was written by :meth:`fedalign.Scheduler.save` at commit
``ab3fda0`` (before the scheduler became a package), mid-round, with every kind of setting,
int and str client ids, cold-start fitness, dropouts and a silent client.
``tests/data/scheduler-v1-problems.npz`` holds the problems that same code built from it
(``build_problem`` over every client, with the round open and after ``end_round``); they do
not depend on any solver, so a solver's rewrite cannot move them.

The container is parsed here by hand, from its documented layout, so these tests pin the
layout itself rather than whichever module reads it today.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedalign as fa

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "scheduler-v1.fas"
MAGIC = b"FEDALIGN-SCHEDULER\n"
HEADER = struct.Struct("<IQ32s")  # format version, payload length, SHA-256 of the payload


def read_container(path: Path) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """``(version, JSON header, arrays)`` of a state file, read from the documented layout."""
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    version, length, digest = HEADER.unpack_from(raw, len(MAGIC))
    payload = raw[len(MAGIC) + HEADER.size :]
    assert len(payload) == length and hashlib.sha256(payload).digest() == digest
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    return version, meta, arrays


def _assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)  # same names, in the same order
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


#: Settings added after the golden file was written, with their defaults: an old file loads
#: with them, and is saved with them.
NEWER_SETTINGS = {"max_report_factor": 10.0, "max_report_samples": 1e9,
                  "round_bytes": None, "shared_bytes": 0.0, "balance_weight": 0.0}  # 0: the file predates the load row


def _with_newer_settings(meta: dict) -> dict:
    return {**meta, "settings": {**meta["settings"], **NEWER_SETTINGS}}


def test_golden_file_is_format_version_1() -> None:
    version, meta, arrays = read_container(GOLDEN)
    assert version == 1 == fa.scheduler.STATE_FORMAT_VERSION
    assert meta["format_version"] == 1
    assert set(meta) == {"format_version", "settings", "client_ids", "scalars", "rng"}
    assert meta["scalars"] == {"rounds_closed": 3, "last_round": 3, "open_round": 3}
    assert "open.rewards" in arrays and "prof.ratios" in arrays


def test_golden_file_loads_into_the_state_it_holds() -> None:
    _, meta, arrays = read_container(GOLDEN)
    sched = fa.Scheduler.load(GOLDEN)
    state = sched.state_dict()
    assert {k: v for k, v in state.items() if k != "arrays"} == _with_newer_settings(meta)
    _assert_same_arrays(state["arrays"], arrays)
    assert sched.settings == _with_newer_settings(meta)["settings"]
    assert sched.client_ids == meta["client_ids"]
    assert sched.round == 3 and sched.rounds_closed == 3


def test_saving_a_loaded_golden_file_writes_the_same_layout(tmp_path: Path) -> None:
    version, meta, arrays = read_container(GOLDEN)
    fa.Scheduler.load(GOLDEN).save(tmp_path / "again.fas")
    version2, meta2, arrays2 = read_container(tmp_path / "again.fas")
    assert version2 == version and meta2 == _with_newer_settings(meta)
    _assert_same_arrays(arrays2, arrays)


@pytest.mark.parametrize("when", ["open", "closed"])
def test_golden_file_builds_the_problems_the_old_code_built(when: str) -> None:
    sched = fa.Scheduler.load(GOLDEN)
    if when == "closed":
        sched.end_round()
    problem, terms = sched.build_problem(sched.client_ids)
    with np.load(DATA / "scheduler-v1-problems.npz") as z:
        expected = {k[len(when) + 1 :]: z[k] for k in z.files if k.startswith(when + ".")}
    for name in ("desirability", "max_experts", "min_experts", "client_memory", "train_time",
                 "deadline", "expert_max_clients"):
        np.testing.assert_array_equal(getattr(problem, name), expected[name], err_msg=name)
    assert list(terms) == [k[len("terms.") :] for k in expected if k.startswith("terms.")]
    for k, v in terms.items():
        np.testing.assert_array_equal(v, expected[f"terms.{k}"], err_msg=k)
