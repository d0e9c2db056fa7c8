"""The scheduler's state file: a versioned, checksummed container written atomically.

Layout: a magic line, a fixed header (format version, payload length, SHA-256 of the
payload), then an ``.npz`` payload holding the arrays and the JSON metadata as the array
``__meta__`` (no pickles). :func:`write_state` streams the arrays into a temporary file in
the target's directory, fsyncs it and renames it over the target, so a crash mid-save
leaves any previous file intact. :func:`read_state` checks magic, version, length and
checksum before it parses anything.

The container knows nothing of what it holds: :mod:`fedalign.scheduler.persistence` decides
the contents, and :meth:`fedalign.Scheduler.save` / :meth:`fedalign.Scheduler.load` are the
API users call.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidStateError

__all__ = ["read_state", "write_state"]

_MAGIC = b"FEDALIGN-SCHEDULER\n"
_HEADER = struct.Struct("<IQ32s")  # version, payload length, sha256 of payload


def write_state(
    path: str | os.PathLike[str],
    meta: Mapping[str, Any],
    arrays: Mapping[str, Any],
    *,
    version: int,
) -> None:
    """Write ``meta`` (JSON-ready) and ``arrays`` (name -> numpy array) to ``path`` atomically.

    Temp file in the same directory, flush, fsync, rename, then fsync the directory where
    the platform allows it. On any error the temp file is removed and ``path`` is untouched.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w+b") as fh:
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
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_state(path: str | os.PathLike[str], *, newest: int) -> dict[str, Any]:
    """The metadata written by :func:`write_state`, with the arrays under ``"arrays"``.

    Raises
    ------
    InvalidStateError
        Not a state file, truncated or padded, checksum mismatch, a format version above
        ``newest`` (or below 1), or an unreadable payload.
    FileNotFoundError
        No file at ``path``.
    """
    with open(path, "rb") as fh:
        magic = fh.read(len(_MAGIC))
        if magic != _MAGIC:
            raise InvalidStateError(f"{path}: not a fedalign scheduler state file")
        head = fh.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise InvalidStateError(f"{path}: truncated header")
        version, length, digest = _HEADER.unpack(head)
        if version > newest:
            raise InvalidStateError(
                f"{path}: format version {version} is newer than this fedalign reads "
                f"({newest}); upgrade fedalign"
            )
        if version < 1:
            raise InvalidStateError(f"{path}: invalid format version {version}")
        start = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        if end - start != length:
            raise InvalidStateError(
                f"{path}: truncated or padded ({end - start} payload bytes, expected {length})"
            )
        if _sha256_range(fh, start, end) != digest:
            raise InvalidStateError(f"{path}: checksum mismatch (the file is corrupt)")
        fh.seek(start)
        try:
            with np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
        except (ValueError, OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise InvalidStateError(f"{path}: unreadable payload ({exc})") from None
    if not isinstance(meta, dict):
        raise InvalidStateError(f"{path}: unreadable payload (header is not an object)")
    meta["arrays"] = arrays
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
