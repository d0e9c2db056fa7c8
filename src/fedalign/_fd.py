"""Process-level redirection of file descriptors 1 and 2 (private).

Native solver libraries (HiGHS, CBC, ...) write to the process's file descriptors, not to
``sys.stdout``, so ``contextlib.redirect_stdout`` cannot catch them. The context managers here
swap descriptors 1 and/or 2 themselves:

* :func:`native_silence` points both to the null device (a banner printed from C++ before
  any quiet option can be set);
* :func:`stdout_to_stderr` points stdout to stderr (``fedalign solve`` keeps stdout for its
  JSON result).

Python-level buffers are flushed before every swap and C stdio buffers before and after,
so nothing written before is lost and nothing written inside leaks out later. One re-entrant
lock serialises the swaps of every thread. Where descriptors cannot be duplicated (an
embedded interpreter) the swap is skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["native_silence", "stdout_to_stderr"]

#: Serialises the swaps of the process's file descriptors 1 and 2.
_FD_LOCK = threading.RLock()


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (a native banner may still sit in them)."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no libc to load (Windows)
        pass


def _flush_python() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def _swap(targets: dict[int, int | str]) -> list[tuple[int, int]] | None:
    """Point each descriptor of ``targets`` to another descriptor or to a path.

    Returns the ``(fd, saved copy)`` pairs that :func:`_restore` puts back, or None when
    descriptors cannot be duplicated (nothing was changed). Call with the lock held.
    """
    _flush_python()
    _flush_c_stdio()
    saved: list[tuple[int, int]] = []
    opened: list[int] = []
    try:
        for fd in targets:
            saved.append((fd, os.dup(fd)))
        sources = []
        for target in targets.values():
            if isinstance(target, str):
                opened.append(os.open(target, os.O_WRONLY))
                sources.append(opened[-1])
            else:
                sources.append(target)
    except OSError:
        for _, copy in saved:
            os.close(copy)
        for fd in opened:
            os.close(fd)
        return None
    for fd, source in zip(targets, sources, strict=True):
        os.dup2(source, fd)
    for fd in opened:
        os.close(fd)
    return saved


def _restore(saved: list[tuple[int, int]]) -> None:
    """Undo :func:`_swap`: flush what native code wrote, then put the saved copies back."""
    _flush_python()
    _flush_c_stdio()
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


@contextlib.contextmanager
def native_silence() -> Iterator[None]:
    """Send what native code writes to file descriptors 1 and 2 to the null device.

    Meant for short stretches (building a native solver object that prints a banner before
    its quiet option can be set). The lock is held throughout, so output of other threads in
    that instant is dropped too.
    """
    with _FD_LOCK:
        saved = _swap({1: os.devnull, 2: os.devnull})
        if saved is None:
            yield
            return
        try:
            yield
        finally:
            _restore(saved)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send anything written to stdout, by Python or by native code, to stderr.

    Both levels move: ``sys.stdout`` is redirected to ``sys.stderr`` and file descriptor 1
    points to descriptor 2. The lock is held only while swapping, so this may wrap a long
    solve (during which :func:`native_silence` may nest). Without descriptors to swap, only
    the Python level moves.
    """
    with _FD_LOCK:
        saved = _swap({1: 2})
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            with _FD_LOCK:
                _restore(saved)
