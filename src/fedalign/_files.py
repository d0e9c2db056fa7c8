"""Files written whole or not at all: an exclusive temporary file next to the target, renamed.

Every file fedalign writes for a user (``fedalign solve --output``, a benchmark's results, a
scheduler's state) goes through a temporary file in the target's own directory, created with
``O_CREAT | O_EXCL`` under a name no other writer can hold (``.<name>.<16 hex digits>.tmp``),
flushed, fsynced and renamed over the target; the directory is fsynced after. A reader
therefore sees the old file or the new one, never a mix, and two writers never share a
temporary file. Every failure path removes the temporary file; :func:`stale_temps` finds
those a killed process could not (their names match :func:`temp_pattern` exactly, so they
are told apart from any other file).

Private to fedalign: its names are public so that the CLI, ``bench`` and the scheduler's
state file share them.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

__all__ = [
    "create_temp",
    "temp_name",
    "fsync_directory",
    "kind_of",
    "stale_temps",
    "temp_pattern",
    "write_text_atomic",
]

#: Attempts at a fresh random name before giving up (each collides with chance 2**-64).
_ATTEMPTS = 16

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def temp_pattern(target: Path) -> re.Pattern[str]:
    """The names :func:`create_temp` gives temporary files of ``target`` (and nothing else)."""
    return re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{16}}\.tmp")


def temp_name(target: Path) -> Path:
    """A fresh random temporary name for ``target``, in its directory (not created)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")


def create_temp(target: Path, mode: int = 0o666, *, readable: bool = False) -> tuple[int, Path]:
    """A new, empty file next to ``target``, created exclusively under a fresh random name.

    Parameters
    ----------
    target : Path
        The file the temporary file will be renamed to.
    mode : int
        Permission bits (the process umask applies).
    readable : bool
        Open it for reading too (else write-only).

    Returns
    -------
    (int, Path)
        An open descriptor and the temporary file's path.

    Raises
    ------
    OSError
        The directory does not exist or cannot be written.
    """
    access = os.O_RDWR if readable else os.O_WRONLY
    flags = access | os.O_CREAT | os.O_EXCL | _CLOEXEC | _BINARY
    for _ in range(_ATTEMPTS):
        tmp = temp_name(target)
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary file name after {_ATTEMPTS} tries")


def kind_of(path: Path) -> str | None:
    """What is at ``path``: None (nothing), ``"a file"``, or what else it is (``"a directory"``,
    ``"a FIFO"``...). A symbolic link is followed; a dangling one reads as nothing."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a parent is a file: nothing can be there
        return None
    if stat.S_ISREG(mode):
        return "a file"
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable, where the platform allows it (else nothing)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` whole or not at all (temporary file, fsync, rename).

    Raises
    ------
    IsADirectoryError
        ``path`` is a directory.
    FileExistsError
        ``path`` is something else that is not a regular file (a FIFO, a socket, a device):
        it is never replaced.
    OSError
        Any other failure to write; the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    kind = kind_of(target)
    if kind == "a directory":
        raise IsADirectoryError(f"{target} is a directory")
    if kind not in (None, "a file"):
        raise FileExistsError(f"{target} is {kind}, not a regular file; it is left as it is")
    fd, tmp = create_temp(target)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def stale_temps(target: Path) -> list[Path]:
    """Temporary files of ``target`` left in its directory (by a killed writer, say).

    Only names :func:`create_temp` makes for this very target are listed; a caller removes
    them only when it knows no other writer is at work on ``target`` (it holds its lock).
    """
    pattern = temp_pattern(target)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return [target.parent / name for name in names if pattern.fullmatch(name)]
