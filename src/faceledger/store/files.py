"""The data folder's files are private to the account that runs faceledger.

The data folder holds every embedding, ExternalImageId, the ledger and the key material
(``faceledger.db`` with its ``-wal``/``-shm``, ``server.key``, ``credentials``). It is created
mode 0700 and each of these files mode 0600, whatever the process's umask; a folder or file
found with group or other permissions is tightened when a store opens it, with a warning
(logger ``faceledger.store``). Files faceledger does not know are left alone.

SQLite creates ``-wal`` and ``-shm`` with the database file's mode, so creating
``faceledger.db`` 0600 before SQLite opens it is enough for all three.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "KNOWN_FILES", "create_private_file", "private_umask", "secure_data_dir"]

log = logging.getLogger("faceledger.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The files of a data folder whose modes are checked on start (others are not faceledger's).
KNOWN_FILES = ("faceledger.db", "faceledger.db-wal", "faceledger.db-shm", "faceledger.db-journal",
               "server.key", "credentials")
#: The umask of every faceledger process that writes a data folder (``serve``, the CLI's local commands).
PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Set the process umask to 0o077 (files 0600, folders 0700); returns the previous umask.

    For processes faceledger owns (``serve``, the CLI). The in-process Client does not change its host
    process's umask: the store sets explicit modes instead (see :func:`secure_data_dir`)."""
    return os.umask(PRIVATE_UMASK)


def _tighten(path: Path, mode: int, *, is_dir: bool) -> str | None:
    """chmod ``path`` to drop group/other bits; a description of the change, or None when none was needed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) or (is_dir and not stat.S_ISDIR(st.st_mode)) or \
            (not is_dir and not stat.S_ISREG(st.st_mode)):
        return None
    old = stat.S_IMODE(st.st_mode)
    if not old & 0o077:
        return None
    new = mode if is_dir else (old & 0o700) | 0o600
    try:
        os.chmod(path, new)
    except OSError as exc:  # not ours (e.g. another owner): say so, do not stop
        return f"{path} has mode {old:04o}, readable by other local users, and could not be changed: {exc}"
    return f"{path} had mode {old:04o}: changed to {new:04o}"


def secure_data_dir(path: str | Path) -> list[str]:
    """Create the data folder (0700), or tighten its mode and its known files' (0600).

    Returns what was changed (each also logged as a warning on ``faceledger.store``).
    """
    folder = Path(path)
    if not folder.exists():
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; the parents are not ours to change
        return []
    changes = [c for c in [_tighten(folder, DIR_MODE, is_dir=True)]
               + [_tighten(folder / name, FILE_MODE, is_dir=False) for name in KNOWN_FILES] if c]
    for change in changes:
        log.warning("data folder: %s (it holds embeddings, the ledger and key material)", change)
    return changes


def create_private_file(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (never truncates)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is filtered by the umask
    finally:
        os.close(fd)
