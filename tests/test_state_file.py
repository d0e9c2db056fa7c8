"""Scheduler state files: crash safety, two writers, and hostile contents behind a valid checksum.

- A save killed at any moment leaves the previous file intact and no temporary file (an
  unnamed ``O_TMPFILE`` on Linux); injected failures leave nothing either.
- Two writers never silently overwrite each other: a save replaces only the file the
  scheduler loaded or last saved (compare-and-swap under a lock on the file itself).
- A file whose checksum is right but whose contents are hostile is refused with
  ``InvalidStateError`` at load, never loaded to fail later; a FIFO or a directory is a
  named error and never hangs.

Random byte flips and truncations are in ``tests/test_hostile.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedalign as fa
from fedalign._files import temp_pattern
from fedalign.scheduler import state_file
from hostile_strategies import pack, reseal, unpack

ROOT = Path(__file__).resolve().parents[1]
SOLVER = "greedy"


def _scheduler(n: int = 12, e: int = 3, seed: int = 0) -> fa.Scheduler:
    """A scheduler after two closed rounds, with a third open and one report in."""
    rng = np.random.default_rng(seed)
    s = fa.Scheduler(e, solver=SOLVER, seed=seed, expert_memory=1.0, deadline_percentile=90,
                     expert_max_clients=-(-n // e))
    s.register_many(range(n), [fa.ClientProfile(memory=2.0, compute=float(rng.uniform(50, 200)),
                                                samples=64, availability=0.9) for _ in range(n)])
    for _ in range(2):
        plan = s.plan(range(n))
        for c, experts in plan.assignment.items():
            s.report(c, fa.Feedback(samples=64, rewards={j: float(rng.random()) for j in experts},
                                    duration=float(rng.uniform(0.5, 2))))
        s.end_round()
    plan = s.plan(range(n))
    s.report(0, fa.Feedback(samples=10, rewards={j: 0.5 for j in plan.assignment[0]}, duration=1.0))
    return s


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- crash safety

_CHILD = r"""
import os, sys, time
import numpy as np
import fedalign as fa
from fedalign.scheduler import state_file

path, mode = sys.argv[1], sys.argv[2]
if mode.endswith("-named"):
    state_file._TMPFILE = 0  # the fallback: an exclusive named temporary file
s = fa.Scheduler.load(path)
if mode.startswith("stall"):
    real = np.savez

    def stall(fh, **arrays):  # half the payload on disk, then wait to be killed
        fh.write(b"PK" + bytes(1 << 20))
        fh.flush()
        print("MID", flush=True)
        time.sleep(60)

    np.savez = stall
    s.save(path)
else:  # save again and again: the parent kills it at some random moment
    s.end_round()
    for k in range(1000):
        s.register(f"extra-{k}")
        s.save(path)
        print("SAVED", flush=True)
"""


def _child(path: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


@pytest.mark.parametrize("mode", ["stall", "stall-named"])
def test_save_killed_mid_write_keeps_the_old_file(tmp_path: Path, mode: str) -> None:
    """SIGKILL while the payload is half written: the old file is untouched, and with
    O_TMPFILE not even a temporary file remains (the named fallback leaves one, which the
    next save removes)."""
    if mode == "stall" and not (state_file._TMPFILE and state_file._LINKAT):
        pytest.skip("no O_TMPFILE here")
    path = tmp_path / "s.fas"
    _scheduler(n=2000, e=8).save(path)
    before = path.read_bytes()
    child = _child(path, mode)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "MID"
    finally:
        child.kill()
        child.wait()
    assert path.read_bytes() == before
    leftovers = [n for n in _names(tmp_path) if n != "s.fas"]
    if mode == "stall":
        assert leftovers == []
    else:
        assert len(leftovers) == 1 and temp_pattern(path).fullmatch(leftovers[0])
    sched = fa.Scheduler.load(path)
    sched.save(path)  # the next save (holding the lock) removes what a killed one left
    assert _names(tmp_path) == ["s.fas"]


def test_save_killed_at_random_moments_always_leaves_a_loadable_file(tmp_path: Path) -> None:
    """A child saves in a loop; it is killed at random moments: every time, the file loads
    (old or new), nothing but the file and at most a complete temporary file is there, and
    the next save leaves the file alone."""
    path = tmp_path / "s.fas"
    _scheduler(n=3000, e=8).save(path)
    rng = np.random.default_rng(0)
    for _ in range(3):
        child = _child(path, "loop")
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "SAVED"
            for _ in range(int(rng.integers(0, 4))):
                child.stdout.readline()
            threading.Event().wait(float(rng.uniform(0, 0.05)))
        finally:
            child.kill()
            child.wait()
        sched = fa.Scheduler.load(path)
        assert all(n == "s.fas" or temp_pattern(path).fullmatch(n) for n in _names(tmp_path))
        sched.save(path)
        assert _names(tmp_path) == ["s.fas"]


@pytest.mark.parametrize("fail", ["link", "replace", "fsync", "savez"])
@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named"])
def test_injected_failures_leave_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str, tmpfile: bool
) -> None:
    if not tmpfile:
        monkeypatch.setattr(state_file, "_TMPFILE", 0)
    path = tmp_path / "s.fas"
    s = _scheduler()
    if fail != "link":  # a first save, then a failed replacement
        s.save(path)
    before = path.read_bytes() if path.exists() else None
    s.end_round()

    def boom(*args: Any, **kwargs: Any) -> None:
        if fail == "savez":
            args[0].write(b"PK" + bytes(5000))
        raise OSError("disk pulled out")

    monkeypatch.setattr(np if fail == "savez" else os, fail, boom)
    with pytest.raises(OSError, match="disk pulled out"):
        s.save(path)
    monkeypatch.undo()
    assert (path.read_bytes() if path.exists() else None) == before
    assert _names(tmp_path) == ([] if before is None else ["s.fas"])


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named"])
def test_saves_create_then_replace_and_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmpfile: bool
) -> None:
    if not tmpfile:
        monkeypatch.setattr(state_file, "_TMPFILE", 0)
    path = tmp_path / "s.fas"
    stale = tmp_path / f".s.fas.{'ab' * 8}.tmp"  # a killed writer's complete temporary file
    other = tmp_path / f".t.fas.{'ab' * 8}.tmp"  # another target's: not this save's to remove
    s = _scheduler()
    s.save(path)
    for leftover in (stale, other):
        leftover.write_bytes(b"left by a killed save")
    for _ in range(3):
        s.end_round()
        s.plan(range(4))
        s.save(path)
        assert _names(tmp_path) == sorted(["s.fas", other.name])
        assert fa.Scheduler.load(path).round == s.round
    assert oct(path.stat().st_mode & 0o777) == oct(0o600 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- two writers


def test_a_fresh_scheduler_does_not_overwrite_another_state(tmp_path: Path) -> None:
    path = tmp_path / "s.fas"
    _scheduler(seed=0).save(path)
    before = path.read_bytes()
    other = _scheduler(seed=1)
    with pytest.raises(fa.StateConflictError, match="did not load or save"):
        other.save(path)
    assert path.read_bytes() == before and _names(tmp_path) == ["s.fas"]
    other.save(path, overwrite=True)
    assert path.read_bytes() != before
    other.save(path)  # now it is the one that wrote it


def test_lost_update_is_refused(tmp_path: Path) -> None:
    """Two servers resume from one file; the first saves; the second's save would erase
    the first's rounds: refused, naming both digests."""
    path = tmp_path / "s.fas"
    _scheduler().save(path)
    a, b = fa.Scheduler.load(path), fa.Scheduler.load(path)
    a.end_round()
    a.save(path)
    saved = path.read_bytes()
    b.end_round()
    with pytest.raises(fa.StateConflictError, match="another writer since this scheduler last"):
        b.save(path)
    assert path.read_bytes() == saved
    assert isinstance(fa.StateConflictError("x"), OSError)


def test_knowledge_of_the_file_survives_load_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "s.fas"
    s = _scheduler()
    s.save(path)
    s.load_state_dict(_scheduler(seed=3).state_dict())
    s.save(path)


def test_a_save_in_progress_elsewhere_is_a_conflict(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "s.fas"
    s = _scheduler()
    s.save(path)
    before = path.read_bytes()
    with open(path, "rb") as held:  # another process replacing it holds this lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(fa.StateConflictError, match="being replaced by another process"):
            s.save(path)
    assert path.read_bytes() == before and _names(tmp_path) == ["s.fas"]
    s.save(path)


def test_creating_races_with_another_creator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both saw no file; the other created it first: the atomic link refuses to replace it."""
    path = tmp_path / "s.fas"
    real = state_file.kind_of
    first = _scheduler(seed=5)

    def late(target: Path) -> str | None:
        kind = real(target)
        monkeypatch.setattr(state_file, "kind_of", real)
        first.save(path)  # created right after this writer looked
        return kind

    monkeypatch.setattr(state_file, "kind_of", late)
    with pytest.raises(fa.StateConflictError, match="did not load or save"):
        _scheduler(seed=6).save(path)
    before = path.read_bytes()
    assert fa.Scheduler.load(path).config.seed == 5 and path.read_bytes() == before
    assert _names(tmp_path) == ["s.fas"]


@pytest.mark.parametrize("what", ["not a state", "directory", "fifo"])
def test_save_never_replaces_what_is_not_its_state(tmp_path: Path, what: str) -> None:
    path = tmp_path / "s.fas"
    if what == "not a state":
        path.write_text("my notes")
    elif what == "directory":
        path.mkdir()
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    with pytest.raises(fa.StateConflictError):
        _scheduler().save(path)
    assert _names(tmp_path) == ["s.fas"]
    if what == "not a state":
        assert path.read_text() == "my notes"
        _scheduler().save(path, overwrite=True)  # a regular file may be replaced on request
    else:
        with pytest.raises(fa.StateConflictError, match="a directory" if what == "directory" else "a FIFO"):
            _scheduler().save(path, overwrite=True)


def test_overwrite_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="overwrite: expected a bool"):
        _scheduler().save(tmp_path / "s.fas", overwrite="yes")  # type: ignore[arg-type]
    assert _names(tmp_path) == []


# --------------------------------------------------------------------------- reading


def _load_in_thread(path: Path) -> BaseException | None:
    """Load ``path`` in a thread; fail the test if it is still waiting after 10 s."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fa.Scheduler.load(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box[0] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "Scheduler.load hung"
    return box[0]


def test_a_fifo_or_a_directory_is_a_named_error_and_never_hangs(tmp_path: Path) -> None:
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        exc = _load_in_thread(tmp_path / "fifo")
        assert isinstance(exc, fa.InvalidStateError) and "FIFO" in str(exc)
    exc = _load_in_thread(tmp_path)
    assert isinstance(exc, fa.InvalidStateError) and "directory" in str(exc)
    exc = _load_in_thread(tmp_path / "missing")
    assert isinstance(exc, FileNotFoundError)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]]:
    path = tmp_path / "s.fas"
    _scheduler().save(path)
    meta, arrays = unpack(path)
    return path, meta, arrays


def _refused(path: Path, match: str) -> None:
    with pytest.raises(fa.InvalidStateError, match=match):
        fa.Scheduler.load(path)


def test_forged_files_load_when_nothing_is_changed(saved: tuple[Path, dict[str, Any], dict[str, np.ndarray]]) -> None:
    path, meta, arrays = saved
    pack(path, meta, arrays)
    fa.Scheduler.load(path)
    pack(path, meta, arrays, compress=True)  # a compressed payload is still a state
    fa.Scheduler.load(path)


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: json.dumps(m)[:-1] + ', "x": ' + _nest(100_000) + "}", "nested too deeply"),
        (lambda m: json.dumps(m).replace('"rounds_closed": 2', '"rounds_closed": 1' + "0" * 5000), "unreadable payload"),
        (lambda m: json.dumps(m).replace('"rounds_closed": 2', '"rounds_closed": 1' + "0" * 400), r"scalars\.rounds_closed"),
        (lambda m: json.dumps({**m, "scalars": {**m["scalars"], "open_round": -1, "last_round": -1}}), r"scalars\.open_round"),
        (lambda m: json.dumps({**m, "scalars": {**m["scalars"], "rounds_closed": 9}}), r"scalars\.rounds_closed: 9 rounds"),
        (lambda m: json.dumps({**m, "scalars": {**m["scalars"], "open_round": 1}}), "not the last planned round"),
        (lambda m: json.dumps({**m, "scalars": {**m["scalars"], "last_round": True}}), r"scalars\.last_round"),
        (lambda m: json.dumps({**m, "client_ids": [1.5] + m["client_ids"][1:]}), r"client_ids\[0\]: expected an int or a str"),
        (lambda m: json.dumps({**m, "client_ids": [0] + m["client_ids"][1:] * 1 if False else [0, 0] + m["client_ids"][2:]}), "duplicate"),
        (lambda m: json.dumps({**m, "client_ids": {"a": 1}}), "client_ids: expected a list"),
        (lambda m: json.dumps({**m, "rng": {**m["rng"], "state": {"state": 10**400, "inc": 1}}}), "malformed"),
        (lambda m: json.dumps({**m, "rng": [1, 2]}), "rng: expected an object"),
        (lambda m: json.dumps({**m, "settings": {**m["settings"], "n_experts": 2**40}}), "n_experts"),
        (lambda m: json.dumps({**m, "format_version": True}), "format_version"),
        (lambda m: json.dumps([m]), "header is not an object"),
        (lambda m: "not json", "metadata"),
        (lambda m: b"\xff\xfe", "metadata"),
    ],
    ids=["deep-json", "int-beyond-str", "huge-int", "negative-open-round", "closed-too-many",
         "open-not-last", "bool-round", "float-id", "duplicate-id", "dict-ids", "rng-huge",
         "rng-list", "settings", "bool-version", "meta-list", "meta-text", "meta-bytes"],
)
def test_hostile_metadata_is_refused(
    saved: tuple[Path, dict[str, Any], dict[str, np.ndarray]], edit: Any, match: str
) -> None:
    path, meta, arrays = saved
    pack(path, edit(meta), arrays)
    _refused(path, match)


ARRAY_EDITS: list[tuple[str, str, Any, str]] = [
    ("reliability 5", "prof.reliability", lambda a: _set(a, 0, 5.0), r"reliability\[0\]: invalid value 5\.0"),
    ("negative memory", "prof.profile", lambda a: _set(a, (0, 0), -1.0), r"profile\[:, 0\] \(memory\)\[0\]"),
    ("memory beyond its bounds", "prof.profile", lambda a: _set(a, (0, 0), 1e300), r"\(memory\)"),
    ("availability 2", "prof.profile", lambda a: _set(a, (1, 5), 2.0), r"\(availability\)"),
    ("zero compute", "prof.profile", lambda a: _set(a, (1, 1), 0.0), r"\(compute\)"),
    ("NaN fitness", "fit.fitness", lambda a: _set(a, (0, 0), np.nan), r"fitness\[0, 0\]"),
    ("fitness 1.5", "fit.fitness", lambda a: _set(a, (2, 1), 1.5), r"fitness\[2, 1\]"),
    ("complex fitness", "fit.fitness", lambda a: a.astype(np.complex64), "dtype"),
    ("text fitness", "fit.fitness", lambda a: a.astype("U8"), "dtype"),
    ("longdouble fitness", "fit.fitness", lambda a: a.astype(np.longdouble), "dtype"),
    ("negative count", "fit.count", lambda a: _set(a.astype(np.int32), (0, 0), -1), r"count\[0, 0\]"),
    ("count beyond uint16", "fit.count", lambda a: _set(a.astype(np.int64), (0, 0), 70000), r"count\[0, 0\]"),
    ("float count", "fit.count", lambda a: a.astype(np.float64), "expected int values"),
    ("future stamp", "fit.synced", lambda a: _set(a, 0, 99), r"synced\[0\]"),
    ("infinite usage", "use.usage", lambda a: _set(a, 0, np.inf), r"usage\[0\]"),
    ("negative pending", "use.pending", lambda a: _set(a, 1, -1.0), r"pending\[1\]"),
    ("max_experts -2", "prof.max_experts", lambda a: _set(a, 0, -2), r"max_experts\[0\]"),
    ("zero ratio", "prof.ratios", lambda a: _set(a, (0, 0), 0.0), r"ratios\[0, 0\]"),
    ("cursor past window", "prof.ratio_next", lambda a: _set(a, 0, 200), r"ratio_next\[0\]"),
    ("negative samples seen", "prof.seen_samples", lambda a: _set(a, 0, -3.0), r"seen_samples\[0\]"),
    ("repeated cohort row", "open.rows", lambda a: _set(a, 1, a[0]), "appears twice"),
    ("row outside", "open.rows", lambda a: _set(a, 0, 10**6), "outside the registry"),
    ("reward 3", "open.rewards", lambda a: _set(a, (0, 0), 3.0), r"open\.rewards\[0, 0\]"),
    ("negative deadline", "open.deadline", lambda a: _set(a, 0, -1.0), r"open\.deadline\[0\]"),
    ("samples beyond Feedback's", "open.samples", lambda a: _set(a, 0, 1e300), r"open\.samples\[0\]"),
    ("float flags", "open.reported", lambda a: a.astype(np.float64), "expected bool values"),
    ("reward not assigned", "open.trained", lambda a: np.ones_like(a), "not given"),
    ("wrong shape", "fit.fitness", lambda a: a[:, :2], "shape"),
    ("missing", "prof.ratios", None, "malformed"),
]


def _set(a: np.ndarray, where: Any, value: Any) -> np.ndarray:
    a = np.array(a)
    a[where] = value
    return a


@pytest.mark.parametrize(("what", "name", "edit", "match"), ARRAY_EDITS, ids=[e[0] for e in ARRAY_EDITS])
def test_hostile_arrays_are_refused_at_load(
    saved: tuple[Path, dict[str, Any], dict[str, np.ndarray]], what: str, name: str, edit: Any, match: str
) -> None:
    """Negative open round, reliability 5, negative memory, NaN fitness...: a valid checksum
    over an invalid state is refused when loaded, never loaded to fail later."""
    path, meta, arrays = saved
    arrays = dict(arrays)
    if edit is None:
        del arrays[name]
    else:
        arrays[name] = edit(arrays[name])
    pack(path, meta, arrays)
    _refused(path, match)
    state = {**meta, "arrays": arrays}  # the same state given as a dict
    with pytest.raises(fa.InvalidStateError):
        fa.Scheduler.from_state_dict(state)


def test_decompression_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    """A 50 MB member deflated to ~50 kB (1,000x): refused from the zip directory alone."""
    path = tmp_path / "bomb.fas"
    pack(path, {"format_version": 1}, {"fit.fitness": np.zeros((50 << 20) // 8)}, compress=True)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        _refused(path, "inflate to .* above the bound")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20


def test_absolute_bound_on_the_payload(saved: tuple[Path, dict[str, Any], dict[str, np.ndarray]]) -> None:
    path, _, _ = saved
    with pytest.raises(fa.InvalidStateError, match="above the bound of 1000 bytes"):
        state_file.read_state(path, newest=1, max_bytes=1000)
    assert state_file.MAX_STATE_BYTES == 1 << 36


def _member_with_header(shape: tuple[int, ...], data: bytes, dtype: str = "<f8") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"fit.fitness.npy": _member_with_header((10**12,), bytes(80))}, "claims 8000000000000 bytes"),
        ({"fit.fitness.npy": _member_with_header((10,), bytes(40))}, "claims 80 bytes"),
        ({"fit.fitness.npy": _member_with_header((2,), bytes(32), "<c16")}, "dtype"),
        ({"fit.fitness.npy": _member_with_header((2,), bytes(16), "|O")}, "unreadable payload"),
        ({"notes.txt": b"hello"}, "not an array"),
        ({f"m{k}.npy": _member_with_header((0,), b"") for k in range(1100)}, "members, at most 1024"),
    ],
    ids=["huge-shape", "short-data", "complex", "object", "not-npy", "too-many"],
)
def test_hostile_members_are_refused(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    path = pack(tmp_path / "s.fas", {"format_version": 1}, {}, raw_members=members)
    _refused(path, match)


def test_unsupported_zip_storage_is_refused(tmp_path: Path) -> None:
    for flag, method in ((0x1, None), (0, zipfile.ZIP_BZIP2)):
        path = tmp_path / "s.fas"
        pack(path, {"format_version": 1}, {"x": np.zeros(3)})
        raw = bytearray(path.read_bytes())
        central = raw.rfind(b"PK\x01\x02")  # the last member's central directory entry
        raw[central + 8] |= flag  # "encrypted"
        if method is not None:
            raw[central + 10 : central + 12] = method.to_bytes(2, "little")
        path.write_bytes(reseal(bytes(raw)))
        _refused(path, "unsupported storage")


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.fas"
    pack(path, {"format_version": 1}, {"a": np.zeros(2), "b": np.ones(2)})
    raw = path.read_bytes().replace(b"b.npy", b"a.npy")  # local headers and directory alike
    path.write_bytes(reseal(raw))
    _refused(path, "repeats|unreadable")


def test_states_the_profiler_writes_always_load(tmp_path: Path) -> None:
    """Even with degenerate bounds (a speed range with no positive value, which clipping
    answers with 1.0), what the library stores passes the checks at load."""
    bounds = fa.ProfileBounds(compute=(0.0, 0.0), bandwidth_up=(0.0, 0.0), latency=(5.0, 5.0))
    s = fa.Scheduler(2, solver=SOLVER, profile_bounds=bounds)
    s.register_many(range(3), fa.ClientProfile(compute=50.0, bandwidth_up=1e6, latency=0.1, samples=7))
    s.save(tmp_path / "s.fas")
    t = fa.Scheduler.load(tmp_path / "s.fas")
    assert t.profile(0) == s.profile(0) and t.profile(0).compute == 1.0
