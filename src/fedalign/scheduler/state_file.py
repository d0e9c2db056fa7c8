"""The scheduler's state file: a versioned, checksummed container, replaced compare-and-swap.

Layout: a magic line, a fixed header (format version, payload length, SHA-256 of the
payload), then an ``.npz`` payload holding the arrays and the JSON metadata as the array
``__meta__`` (no pickles). The payload's SHA-256, the *digest*, identifies a file's contents.

Writing (:func:`write_state`)
    The payload is streamed into a temporary file in the target's directory (an unnamed
    ``O_TMPFILE`` where Linux offers one, so a process killed mid-save leaves nothing behind;
    else an exclusive, uniquely named ``.<name>.<16 hex>.tmp``), fsynced, then put in place
    as one atomic step, and the directory is fsynced:

    - *a new file* (the caller expects none) is hard-linked to the target name, which fails
      if a file appeared there meanwhile: two writers never both create it;
    - *a replacement* happens under an exclusive ``flock`` on the file being replaced (the
      kernel drops it if the process dies: no lock file, nothing stale), and only if that
      file still holds the digest the caller expects (the one it loaded or last wrote);
      then the temporary file is renamed over it.

    Anything else at the target (another writer's state, a file that is not a state, a
    directory, a FIFO) is a :class:`~fedalign.StateConflictError` and nothing is written;
    ``expected=ANY`` replaces any regular file. Every failure removes the temporary file;
    complete temporary files a killed writer left between link and rename are removed by
    the next replacement (it holds the lock).

Reading (:func:`read_state`)
    The path is opened without blocking and must be a regular file (a FIFO or a directory
    is refused, never waited on). Magic, version, length and checksum are checked before
    anything is parsed; then the zip directory is checked before any member is inflated:
    at most :data:`MAX_MEMBERS` members, stored or deflated, unencrypted, whose declared
    sizes add up to at most :data:`MAX_EXPANSION` times the payload (plus 1 MiB) and at most
    ``max_bytes`` (:data:`MAX_STATE_BYTES`); each member's ``.npy`` header must describe a
    plain numeric array (booleans, integers, floats of at most 8 bytes) of exactly its
    declared size. The metadata must be JSON (deep nesting and over-long integers are
    refused by name). Anything else is :class:`~fedalign.InvalidStateError`.

The container knows nothing of what it holds: :mod:`fedalign.scheduler.persistence` decides
and checks the contents, and :meth:`fedalign.Scheduler.save` / :meth:`fedalign.Scheduler.load`
are the API users call.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

import numpy as np

from .._files import create_temp, fsync_directory, kind_of, stale_temps, temp_name
from ..errors import InvalidStateError, StateConflictError

try:  # POSIX: a replacement holds an advisory lock on the file it replaces
    import fcntl
except ImportError:  # pragma: no cover - Windows: compare without the lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ANY",
    "MAX_EXPANSION",
    "MAX_MEMBERS",
    "MAX_STATE_BYTES",
    "StateFile",
    "read_state",
    "write_state",
]

_MAGIC = b"FEDALIGN-SCHEDULER\n"
_HEADER = struct.Struct("<IQ32s")  # version, payload length, sha256 of payload

#: ``expected=ANY``: replace whatever regular file is at the target.
ANY: Final = "any"
#: Largest uncompressed payload :func:`read_state` inflates, by default (64 GiB; a registry
#: of a million clients by 64 experts is about 0.5 GiB).
MAX_STATE_BYTES = 1 << 36
#: Largest ratio of the uncompressed payload to the payload on disk. fedalign writes
#: uncompressed members (ratio about 1); a compressed writer would stay far below this.
MAX_EXPANSION = 16
#: Most members the payload's zip directory may list (fedalign writes about 25).
MAX_MEMBERS = 1024
#: Largest ``.npy`` header read (numpy's own default).
_MAX_NPY_HEADER = 10_000
_SLACK = 1 << 20
_CHUNK = 1 << 24
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_TMPFILE = getattr(os, "O_TMPFILE", 0)
_LINKAT = os.link in os.supports_dir_fd and os.link in os.supports_follow_symlinks
#: errno values of a file system without hard links (FAT, some network mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EMLINK}


class StateFile(NamedTuple):
    """What :func:`read_state` returns: the metadata (arrays under ``"arrays"``) and the
    payload's digest, which identifies the file's contents for a later compare-and-swap."""

    meta: dict[str, Any]
    digest: bytes


# --------------------------------------------------------------------------- writing


def write_state(
    path: str | os.PathLike[str],
    meta: Mapping[str, Any],
    arrays: Mapping[str, Any],
    *,
    version: int,
    expected: bytes | str | None,
) -> bytes:
    """Write ``meta`` (JSON-ready) and ``arrays`` (name -> numpy array) to ``path``.

    Parameters
    ----------
    path : path
    meta : mapping
    arrays : mapping of str to ndarray
    version : int
        The format version written in the header.
    expected : bytes, None or ANY
        What the caller believes is at ``path``: the digest of the state it loaded from or
        last wrote there, None for no file, or :data:`ANY` to replace any regular file.

    Returns
    -------
    bytes
        The digest of the file written.

    Raises
    ------
    StateConflictError
        ``path`` holds something else than ``expected`` says (another writer's state, a
        file that is not a state, a directory, a FIFO...), or another process is replacing
        it right now. Nothing is written.
    OSError
        The file cannot be written; ``path`` is untouched and no temporary file remains.
    """
    target = Path(path)
    kind = kind_of(target)
    if kind not in (None, "a file"):
        raise StateConflictError(f"{target} is {kind}, not a scheduler state file; nothing was written")
    with _temporary(target) as (fh, link):
        digest = _write_payload(fh, meta, arrays, version)
        if kind is None:
            try:
                link(target)  # atomic: fails if a file appeared meanwhile
            except FileExistsError:
                kind = "a file"  # someone created it since we looked: compare as a replacement
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                kind = "a file"  # no hard links here: a rename, without the atomic create
        if kind is not None:
            tmp = link(None)
            with _replacing(target, expected, keep=tmp):
                try:
                    os.replace(tmp, target)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
    fsync_directory(target.parent)
    return digest


def _write_payload(fh: IO[bytes], meta: Mapping[str, Any], arrays: Mapping[str, Any], version: int) -> bytes:
    """The container into ``fh`` (at its start), flushed and fsynced; returns the digest."""
    fh.write(_MAGIC + _HEADER.pack(0, 0, bytes(32)))
    start = fh.tell()
    np.savez(
        fh,
        __meta__=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        **arrays,
    )
    end = fh.seek(0, os.SEEK_END)
    digest = _sha256_range(fh, start, end)
    fh.seek(len(_MAGIC))
    fh.write(_HEADER.pack(version, end - start, digest))
    fh.flush()
    os.fsync(fh.fileno())
    return digest


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[tuple[IO[bytes], Callable[[Path | None], Path]]]:
    """An open temporary file next to ``target``, and ``link`` that names it.

    ``link(target)`` hard-links the file to ``target`` (atomically; ``FileExistsError`` if
    something is there). ``link(None)`` returns a name for it to be renamed from: its own
    for a named temporary file, else a fresh exclusive one. On any error every name made
    here is removed; an unnamed file then simply ceases to exist.
    """
    fd, named = _open_temporary(target)
    made: list[Path] = []

    def hard_link(to: Path) -> None:
        if named is not None:
            os.link(named, to)
            return
        # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names an O_TMPFILE file; os.link
        # calls linkat only when given a directory descriptor
        dfd = os.open(to.parent, os.O_RDONLY | _CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{fd}", to.name, dst_dir_fd=dfd, follow_symlinks=True)
        finally:
            os.close(dfd)

    def link(to: Path | None) -> Path:
        if to is not None:
            hard_link(to)
            return to
        if named is not None:
            return named
        while True:
            candidate = temp_name(target)
            try:
                hard_link(candidate)
            except FileExistsError:  # chance 2**-64 per try
                continue
            made.append(candidate)
            return candidate

    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh, link
    except BaseException:
        for name in made:
            name.unlink(missing_ok=True)
        raise
    finally:
        if named is not None:
            named.unlink(missing_ok=True)  # hard-linked or renamed by now, or failed


def _open_temporary(target: Path) -> tuple[int, Path | None]:
    """A read-write temporary file in ``target``'s directory: unnamed where possible."""
    if _TMPFILE and _LINKAT and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(target.parent, _TMPFILE | os.O_RDWR | _CLOEXEC, 0o600), None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
    return create_temp(target, 0o600, readable=True)


@contextlib.contextmanager
def _replacing(target: Path, expected: bytes | str | None, *, keep: Path) -> Iterator[None]:
    """Hold the lock on the file at ``target`` and check it is the one ``expected`` says.

    Locks the file itself (``flock``, exclusive, non-blocking), then checks that ``target``
    still names the locked file (a writer may have renamed a new one over it meanwhile) and
    that its digest is ``expected``. Removes the temporary files killed writers left (all
    but ``keep``, this writer's own).
    """
    try:
        fd = os.open(target, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:  # gone since we looked: nothing to compare or lock
        yield
        return
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateConflictError(
                    f"{target} is being replaced by another process right now; nothing was written"
                ) from None
        here, now = os.fstat(fd), _stat(target)
        if now is None or (here.st_dev, here.st_ino) != (now.st_dev, now.st_ino):
            raise StateConflictError(
                f"{target} was replaced by another writer while this one was saving; nothing was written"
            )
        if not stat.S_ISREG(here.st_mode):
            raise StateConflictError(f"{target} is not a regular file; nothing was written")
        if expected != ANY:
            with os.fdopen(os.dup(fd), "rb") as fh:
                found = _digest_of(fh)
            if found is None or found != expected:
                raise StateConflictError(_conflict(target, expected, found))
        for stale in stale_temps(target):
            if stale != keep:
                stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _digest_of(fh: IO[bytes]) -> bytes | None:
    """The digest in the header of an open state file (None: not a state file)."""
    head = fh.read(len(_MAGIC) + _HEADER.size)
    if len(head) < len(_MAGIC) + _HEADER.size or not head.startswith(_MAGIC):
        return None
    return bytes(_HEADER.unpack_from(head, len(_MAGIC))[2])


def _conflict(target: Path, expected: bytes | str | None, found: bytes | None) -> str:
    hint = "load it (Scheduler.load) to continue from it, or save with overwrite=True to replace it"
    if found is None:
        return f"{target} exists and is not a scheduler state file; refusing to replace it (overwrite=True replaces it)"
    if expected is None:
        return f"{target} already holds a scheduler state this scheduler did not load or save; {hint}"
    return (
        f"{target} was written by another writer since this scheduler last loaded or saved it "
        f"(digest {found.hex()[:12]}, expected {bytes(expected).hex()[:12]}); {hint}"  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- reading


def read_state(
    path: str | os.PathLike[str], *, newest: int, max_bytes: int = MAX_STATE_BYTES
) -> StateFile:
    """The metadata written by :func:`write_state`, with the arrays under ``"arrays"``.

    Parameters
    ----------
    path : path
    newest : int
        The newest format version the caller reads.
    max_bytes : int
        Largest uncompressed payload inflated (see :data:`MAX_STATE_BYTES`).

    Raises
    ------
    InvalidStateError
        Not a regular file, not a state file, truncated or padded, checksum mismatch, a
        format version above ``newest`` (or below 1), a payload that would inflate beyond
        the bounds, or an unreadable payload.
    FileNotFoundError
        No file at ``path``.
    OSError
        The file cannot be opened (permissions).
    """
    label = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)  # a FIFO opens without a writer
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise InvalidStateError(f"{label}: is {what}, not a fedalign scheduler state file")
    with os.fdopen(fd, "rb") as fh:
        magic = fh.read(len(_MAGIC))
        if magic != _MAGIC:
            raise InvalidStateError(f"{label}: not a fedalign scheduler state file")
        head = fh.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise InvalidStateError(f"{label}: truncated header")
        version, length, digest = _HEADER.unpack(head)
        if version > newest:
            raise InvalidStateError(
                f"{label}: format version {version} is newer than this fedalign reads "
                f"({newest}); upgrade fedalign"
            )
        if version < 1:
            raise InvalidStateError(f"{label}: invalid format version {version}")
        start = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        if end - start != length:
            raise InvalidStateError(
                f"{label}: truncated or padded ({end - start} payload bytes, expected {length})"
            )
        if _sha256_range(fh, start, end) != digest:
            raise InvalidStateError(f"{label}: checksum mismatch (the file is corrupt)")
        fh.seek(start)
        arrays = _read_payload(fh, label, min(max_bytes, MAX_EXPANSION * length + _SLACK))
    meta = _read_meta(arrays.pop("__meta__", None), label)
    meta["arrays"] = arrays
    return StateFile(meta, bytes(digest))


#: What a damaged or hostile zip payload can raise while it is parsed.
_ZIP_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    OverflowError,
)


def _read_payload(fh: IO[bytes], label: str, budget: int) -> dict[str, np.ndarray]:
    """The payload's arrays, with the zip directory and each ``.npy`` header checked first."""
    try:
        with zipfile.ZipFile(fh) as z:
            infos = z.infolist()
            _check_directory(infos, label, budget)
            return {info.filename[:-4]: _read_member(z, info, label) for info in infos}
    except InvalidStateError:
        raise
    except _ZIP_ERRORS as exc:
        raise InvalidStateError(f"{label}: unreadable payload ({type(exc).__name__}: {exc})") from None


def _check_directory(infos: list[zipfile.ZipInfo], label: str, budget: int) -> None:
    if len(infos) > MAX_MEMBERS:
        raise InvalidStateError(f"{label}: unreadable payload ({len(infos)} members, at most {MAX_MEMBERS})")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise InvalidStateError(f"{label}: unreadable payload (a member name repeats)")
    total = 0
    for info in infos:  # a few dozen members
        if not info.filename.endswith(".npy"):
            raise InvalidStateError(f"{label}: unreadable payload (member {info.filename[:40]!r} is not an array)")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise InvalidStateError(f"{label}: unreadable payload (member {info.filename[:40]!r}: unsupported storage)")
        total += info.file_size
    if total > budget:
        raise InvalidStateError(
            f"{label}: refused: the payload would inflate to {total} bytes, above the bound of "
            f"{budget} bytes (a decompression bomb, or a file from another program)"
        )


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> np.ndarray:
    """One ``.npy`` member, its header checked against its declared size before reading."""
    name = info.filename[:40]
    with z.open(info) as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(member, max_header_size=_MAX_NPY_HEADER)
        if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.hasobject or dtype.fields:
            raise InvalidStateError(f"{label}: unreadable payload (member {name!r} has dtype {dtype.str})")
        count = 1
        for k in shape:
            count *= int(k)
        nbytes = count * dtype.itemsize
        if nbytes != info.file_size - member.tell():
            raise InvalidStateError(
                f"{label}: unreadable payload (member {name!r} claims {nbytes} bytes of data, "
                f"holds {info.file_size - member.tell()})"
            )
        flat = np.empty(count, dtype=dtype)
        view = flat.view(np.uint8)
        done = 0
        while done < nbytes:  # in chunks: memory stays at the array itself
            block = member.read(min(_CHUNK, nbytes - done))
            if not block:
                raise InvalidStateError(f"{label}: unreadable payload (member {name!r} is short)")
            view[done : done + len(block)] = np.frombuffer(block, dtype=np.uint8)
            done += len(block)
    return flat.reshape(shape, order="F" if fortran else "C")


def _read_meta(raw: Any, label: str) -> dict[str, Any]:
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise InvalidStateError(f"{label}: unreadable payload (no metadata)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        raise InvalidStateError(f"{label}: unreadable payload (metadata nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, an over-long integer
        raise InvalidStateError(f"{label}: unreadable payload (metadata: {exc})") from None
    if not isinstance(meta, dict):
        raise InvalidStateError(f"{label}: unreadable payload (header is not an object)")
    return meta


def _sha256_range(fh: Any, start: int, end: int, chunk: int = 1 << 22) -> bytes:
    """SHA-256 of bytes ``[start, end)`` of an open binary file, read in chunks."""
    h = hashlib.sha256()
    fh.seek(start)
    left = end - start
    while left > 0:
        block = fh.read(min(chunk, left))
        if not block:
            break
        h.update(block)
        left -= len(block)
    return h.digest()
