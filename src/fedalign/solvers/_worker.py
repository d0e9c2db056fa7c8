"""A native call that ignores its own clock, run in a forked child stopped at a deadline.

Some native solvers do not look at their time limit everywhere: HiGHS' MIP set-up (the
clique partition of the objective, ``HighsObjectiveFunction::setupCliquePartition``) ran
40-60 s under a 5 s limit on a 2,000 x 32 problem. A thread cannot be stopped from Python, so
:func:`call` runs the function in a child process and kills it when the time is up; the
caller then returns what it had before the call, or raises
:class:`~fedalign.TimeLimitError`. :func:`start` splits the call in two: the child starts at
once and this process computes its own fallback meanwhile (``flow`` does: a quick plan while
the exact min-cost flow runs), then :meth:`Pending.wait` collects the child's answer or kills
it at the deadline.

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

__all__ = ["Outcome", "Pending", "call", "start"]


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
    """Everything the child writes until it closes the pipe; None if the deadline comes first.

    An answer already waiting in the pipe is read even when the deadline has passed (the
    caller may have been busy with its own fallback meanwhile).
    """
    chunks: list[bytes] = []
    while True:
        left = max(0.0, deadline - time.perf_counter())
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Pending:
    """A call started by :func:`start`: the child runs while this process does other work.

    :meth:`wait` collects the result (killing the child if the deadline comes first),
    :meth:`ready` asks without waiting, :meth:`cancel` kills the child. Every path ends in
    :meth:`wait` or :meth:`cancel` (a ``try``/``finally`` in the caller), so no child outlives
    the call that started it.
    """

    def __init__(self, start: float, pid: int | None, read_fd: int | None, done: Outcome | None = None) -> None:
        self.start = start
        self._pid = pid
        self._read_fd = read_fd
        self._done = done
        self._error: BaseException | None = None

    def ready(self) -> bool:
        """Whether the child has begun to answer (or died); a fallback may stop here."""
        if self._done is not None or self._read_fd is None:
            return True
        readable, _, _ = select.select([self._read_fd], [], [], 0)
        return bool(readable)

    def wait(self, deadline: float) -> Outcome:
        """The outcome, waiting until ``deadline`` (a :func:`time.perf_counter` value) at most.

        The result must be picklable; an exception raised by the function is raised here.
        """
        if self._done is None:
            data: bytes | None = None
            try:
                assert self._read_fd is not None
                data = _receive(self._read_fd, deadline)
            finally:
                self._close(kill=data is None)
            seconds = time.perf_counter() - self.start
            kind, value = pickle.loads(data) if data else ("lost", None)
            # out of time, or the child died without an answer: not finished
            self._done = Outcome(kind == "ok", value if kind == "ok" else None, seconds, True)
            if kind == "error":
                self._error = value
        if self._error is not None:
            raise self._error
        return self._done

    def cancel(self) -> None:
        """Kill the child now if it still runs (nothing happens after :meth:`wait`)."""
        if self._done is None:
            self._close(kill=True)
            self._done = Outcome(False, None, time.perf_counter() - self.start, True)

    def _close(self, *, kill: bool) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._pid is not None:
            if kill:
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None


def start(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    after_fork: Callable[[], None] | None = None,
) -> Pending:
    """Start ``fn(*args)`` in a forked child and return at once; collect it with :meth:`Pending.wait`.

    Where ``fork`` is missing the function runs here, to the end, before this returns.
    """
    begin = time.perf_counter()
    if not hasattr(os, "fork"):
        return Pending(begin, None, None, Outcome(True, fn(*args), time.perf_counter() - begin, False))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is not collected)
        os.close(read_fd)
        _child(write_fd, fn, args, after_fork)
    os.close(write_fd)
    return Pending(begin, pid, read_fd)


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
    pending = start(fn, args, after_fork=after_fork)
    return pending.wait(pending.start + timeout)
