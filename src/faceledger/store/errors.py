"""Failures of the storage itself (a full disk, an I/O error), as opposed to a request's fault.

A store raises :class:`StorageError` when the database cannot be written or read because of the
machine: the transaction was rolled back (nothing the call did is stored, and nothing acknowledged
before is lost), ``reason`` says what happened in a sentence and ``__cause__`` is SQLite's or the
OS's own error. The transports answer it as a 503 (faceledger.service.errors.StorageUnavailable).
"""

from __future__ import annotations

import errno
import sqlite3
import sys

__all__ = ["StorageError", "storage_failure"]

# SQLite primary result codes (the low byte of an extended code)
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

_DISK_FULL = "the disk holding the data folder is full"


class StorageError(RuntimeError):
    """The data folder's storage failed (full disk, I/O error, out of file descriptors).

    ``reason``: one sentence for people (``"the disk holding the data folder is full"``);
    ``disk_full``: True when the cause is a lack of space or quota.
    """

    def __init__(self, reason: str, detail: str, *, disk_full: bool) -> None:
        super().__init__(f"{reason} ({detail})")
        self.reason, self.detail, self.disk_full = reason, detail, disk_full


def storage_failure(exc: BaseException) -> StorageError | None:
    """The :class:`StorageError` that ``exc`` (an sqlite3 or OS error) stands for, or None when ``exc`` is
    not the storage's failure (a bug, a constraint, a busy database...)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        detail = f"SQLite: {exc}"
        if code == _SQLITE_FULL:
            return StorageError(_DISK_FULL, detail, disk_full=True)
        if code == _SQLITE_IOERR:
            return StorageError("the data folder's storage failed (I/O error)", detail, disk_full=False)
        if code == _SQLITE_CANTOPEN:
            return StorageError("the database file cannot be opened (out of file descriptors, or permissions)",
                                detail, disk_full=False)
        if code == _SQLITE_READONLY:
            return StorageError("the database is read-only (permissions, or a read-only file system)", detail,
                                disk_full=False)
        return None
    remote = _remote_failure(exc)
    if remote is not None:
        return remote
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(_DISK_FULL, f"OS: {exc}", disk_full=True)
        if exc.errno in (errno.EIO, errno.EROFS):
            return StorageError("the data folder's storage failed", f"OS: {exc}", disk_full=False)
    return None


def _remote_failure(exc: BaseException) -> StorageError | None:
    """A PostgreSQL server or a Milvus vector store that cannot be reached (stopped, restarting, the network
    down), or that refuses writes for lack of space. Only modules already imported are consulted."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate == "53100":  # disk_full
            return StorageError("the PostgreSQL server's disk is full", f"PostgreSQL: {exc}", disk_full=True)
        if sqlstate.startswith("53") or sqlstate.startswith("57") or sqlstate.startswith("08") or not sqlstate:
            return StorageError("the PostgreSQL database cannot be reached (stopped, restarting or unreachable)",
                                f"PostgreSQL: {str(exc).strip()}", disk_full=False)
    from .vectors import VectorStoreUnavailable  # the Milvus vector store (faceledger.store.vectors)

    if isinstance(exc, VectorStoreUnavailable):
        return StorageError(exc.reason, exc.detail, disk_full=False)
    return None
