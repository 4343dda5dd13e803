"""Failures of the storage itself (a full disk, an I/O error), as opposed to a request's fault.

A store raises :class:`StorageError` when the database cannot be written or read because of the
machine: the transaction was rolled back (nothing the call did is stored, and nothing acknowledged
before is lost), ``reason`` says what happened in a sentence and ``__cause__`` is SQLite's or the
OS's own error. The transports answer it as a 503 (faceledger.service.errors.StorageUnavailable).
"""

from __future__ import annotations

import errno
import sqlite3

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
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(_DISK_FULL, f"OS: {exc}", disk_full=True)
        if exc.errno in (errno.EIO, errno.EROFS):
            return StorageError("the data folder's storage failed", f"OS: {exc}", disk_full=False)
    return None
