"""A native call that ignores its own clock, run in a forked child stopped at a deadline.

Some native solvers do not look at their time limit everywhere: HiGHS' MIP set-up (the
clique partition of the objective, ``HighsObjectiveFunction::setupCliquePartition``) ran
40-60 s under a 5 s limit on a 2,000 x 32 problem. A thread cannot be stopped from Python, so
:func:`call` runs the function in a child process and kills it when the time is up; the
caller then returns what it had before the call, or raises
:class:`~fedalign.TimeLimitError`.

The child is a plain ``os.fork()`` of this process: it starts in milliseconds with
everything already imported and every argument already in memory (copy on write), and it
never re-imports the caller's main script (``multiprocessing``'s spawn and forkserver
methods would run an unguarded script again). It computes, sends the pickled result through
a pipe and leaves with ``os._exit``. ``after_fork`` runs first in the child: HiGHS needs its
global thread pool rebuilt there, since the parent's worker threads do not exist in a
child. Where ``fork`` is missing (Windows) the function runs in this process, unbounded,
and :class:`Outcome` says so.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "call"]


@dataclass
class Outcome:
    """What :func:`call` got.

    Attributes
    ----------
    finished : bool
        The function returned (``value`` holds its result) before the time was up.
    value : Any
        The function's result (None when it did not finish).
    seconds : float
        Wall-clock seconds of the call, fork and stop of the child included.
    isolated : bool
        Whether it ran in a child process (False: in this process, unbounded).
    """

    finished: bool
    value: Any
    seconds: float
    isolated: bool


def _child(write_fd: int, fn: Callable[..., Any], args: tuple[Any, ...], after_fork: Callable[[], None] | None) -> None:
    """In the child: run, send ("ok", result) or ("error", exception), and exit at once."""
    try:
        try:
            if after_fork is not None:
                after_fork()
            message: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            message = ("error", exc)
        try:
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps(("error", RuntimeError(f"worker result not picklable: {exc!r}")))
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)  # never return into the parent's stack (its test runner, its server)


def _receive(read_fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None if the deadline comes first."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float,
    *,
    after_fork: Callable[[], None] | None = None,
) -> Outcome:
    """``fn(*args)`` in a forked child, killed after ``timeout`` seconds.

    The result must be picklable; an exception raised by ``fn`` is raised here.
    """
    start = time.perf_counter()
    if not hasattr(os, "fork"):
        return Outcome(True, fn(*args), time.perf_counter() - start, False)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is not collected)
        os.close(read_fd)
        _child(write_fd, fn, args, after_fork)
    os.close(write_fd)
    data: bytes | None = None
    try:
        data = _receive(read_fd, start + timeout)
    finally:
        os.close(read_fd)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    if not data:  # out of time, or the child died without an answer
        return Outcome(False, None, seconds, True)
    kind, value = pickle.loads(data)
    if kind == "error":
        raise value
    return Outcome(True, value, seconds, True)
