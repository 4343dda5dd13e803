"""What ``faceledger index`` needs to index folders of millions of photos (docs/cli.md, "index"):

* :func:`iter_image_files` walks folders as a stream (one folder's listing in memory at a time), in the
  order of the sorted relative paths; :func:`survey` walks them once first to count the images and to
  find, before anything is indexed, two files that would share one ExternalImageId, keeping 16 bytes an
  image (two 64-bit hashes), never the paths;
* :class:`Journal`: what earlier runs indexed (``<data>/index-journal.db``), so that a run started again
  after Ctrl-C, a SIGKILL or a power cut skips those images without reading them. It is a cache: an image
  IndexFaces committed but the journal did not record is indexed again, and IndexFaces' own rule (the
  same image with the same ExternalImageId stores no duplicate) keeps the faces as they were;
* :class:`ProcessPool`: worker processes, each with its own service on the data folder (models loaded
  once a worker), each image one IndexFaces call through ``Service.call`` (policy, validation, quality
  filter, one ledger entry an image, one committed transaction an image: an answered image is stored).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..external_ids import external_image_id
from .common import IMAGE_SUFFIXES  # what a folder walk picks (a file given directly: whatever its name)

#: below this many images to index, worker threads in this process (starting a worker process and loading
#: its models costs about 5 s, tens of images' worth); from it on, worker processes. ``$FACELEDGER_INDEX_
#: PROCESSES_FROM`` sets it (0 or 1: always processes when --workers > 1).
PROCESSES_FROM = 200
#: At most this many worker threads (each holds up to one 5 MB image; more only queue on the server's limits).
MAX_THREADS = 64


@dataclass(frozen=True)
class ImageFile:
    """One image a walk found: its path, its path relative to the folder given (a file given directly: its
    name), and its size and modification time (bytes, ns) from the walk's own stat."""

    path: str  # as the walk made it (a str: no pathlib object an image)
    relative: str
    size: int
    mtime_ns: int
    real: str  # its canonical path: a file reached twice (overlapping folders, links) is indexed once


OnError = Callable[[str, OSError], None]


def _listing(folder: str, on_error: OnError | None = None) -> list[tuple[str, bool, os.DirEntry]]:
    """A folder's entries, hidden ones left out, sorted by name with a folder's name as ``name/``: then
    visiting them in this order, depth first, gives the order of the whole sorted relative paths. A folder
    that cannot be read (no permission, a path too long for the system) has none, and ``on_error`` is told."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        if on_error is not None:
            on_error(folder, exc)
        return []
    keyed = []
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            continue
        keyed.append((e.name + "/" if is_dir else e.name, is_dir, e))
    keyed.sort(key=lambda k: k[0])
    return keyed


def _walk(root: Path, real_root: str, on_error: OnError | None = None) -> Iterator[ImageFile]:
    """The images under ``root`` in the order of their sorted relative paths, hidden ones left out; one
    listing an open folder in memory (the folders from the root to the one being read)."""
    stack: list[tuple[str, Iterator[tuple[str, bool, os.DirEntry]]]] = [("", iter(_listing(str(root), on_error)))]
    while stack:
        rel_dir, entries = stack[-1]
        item = next(entries, None)
        if item is None:
            stack.pop()
            continue
        _, is_dir, e = item
        rel = f"{rel_dir}{e.name}"
        if is_dir:
            stack.append((rel + "/", iter(_listing(e.path, on_error))))
            continue
        if not e.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            st = e.stat()  # follows a link to the file it names
        except OSError:
            st = None  # still yielded: its read fails and is reported
        if st is not None and not stat.S_ISREG(st.st_mode):
            continue
        real = os.path.realpath(e.path) if e.is_symlink() else os.path.join(real_root, rel)
        yield ImageFile(e.path, rel, st.st_size if st else -1, st.st_mtime_ns if st else -1, real)


def _walk_roots(paths: tuple[Path, ...], on_error: OnError | None = None) -> Iterator[ImageFile]:
    for root in paths:
        if root.is_dir():
            yield from _walk(root, os.path.realpath(root), on_error)
        else:
            try:
                st = root.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size = mtime = -1
            yield ImageFile(str(root), root.name, size, mtime, os.path.realpath(root))


@dataclass
class Survey:
    """What the first walk found: the number of images (each file once), the canonical paths reached more
    than once (their hashes), and the ExternalImageIds two different files would share (with the files)."""

    total: int
    repeated: set[int]
    clashes: dict[str, list[str]]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, why): the first UNREADABLE_KEPT
    unreadable_count: int = 0


#: Unreadable folders a survey names (it counts them all).
UNREADABLE_KEPT = 100


def survey(paths: tuple[Path, ...]) -> Survey:
    """Walk ``paths`` once, keeping two 64-bit hashes an image (16 MB a million images, no paths)."""
    import numpy as np
    from array import array

    ids, reals = array("q"), array("q")
    unreadable: list[tuple[str, str]] = []
    count = 0

    def on_error(folder: str, exc: OSError) -> None:
        nonlocal count
        count += 1
        if len(unreadable) < UNREADABLE_KEPT:
            unreadable.append((folder, exc.strerror or str(exc)))

    for f in _walk_roots(paths, on_error):
        ids.append(hash(external_image_id(f.relative)))
        reals.append(hash(f.real))
    if not ids:
        return Survey(0, set(), {}, unreadable, count)
    pairs = np.unique(np.stack([np.frombuffer(ids, np.int64), np.frombuffer(reals, np.int64)], axis=1), axis=0)
    real_values, real_counts = np.unique(np.frombuffer(reals, np.int64), return_counts=True)
    repeated = {int(v) for v in real_values[real_counts > 1]}
    id_values, id_counts = np.unique(pairs[:, 0], return_counts=True)
    shared = {int(v) for v in id_values[id_counts > 1]}  # one id, more than one file (by hash)
    clashes: dict[str, list[str]] = {}
    if shared:  # rare: walk again for the files, and compare the ids themselves
        by_id: dict[str, dict[str, str]] = {}
        for f in _walk_roots(paths):
            ext_id = external_image_id(f.relative)
            if hash(ext_id) in shared:
                by_id.setdefault(ext_id, {}).setdefault(f.real, f.path)
        clashes = {k: list(v.values()) for k, v in by_id.items() if len(v) > 1}
    return Survey(len(real_values), repeated, clashes, unreadable, count)


def iter_image_files(paths: tuple[Path, ...], repeated: set[int] | None = None) -> Iterator[ImageFile]:
    """Every image under ``paths`` once, streamed: folders recursively (JPEG and PNG by extension, hidden
    files and folders skipped, in the order of the sorted relative paths), files as given. ``repeated``:
    the hashes of canonical paths :func:`survey` saw more than once (None: remember every one)."""
    seen: set[str] = set()
    for f in _walk_roots(paths):
        if repeated is None or hash(f.real) in repeated:
            if f.real in seen:
                continue
            seen.add(f.real)
        yield f


# ---- the journal --------------------------------------------------------------------------------------


#: SQLite's result codes that say nothing of a journal's content (cannot open, busy, locked, read-only, I/O,
#: permission, disk full): a run stops with them rather than set a journal aside.
_NOT_DAMAGED = {14, 5, 6, 8, 10, 3, 13}


class Journal:
    """The images earlier runs indexed into a collection, in ``<data>/index-journal.db`` (SQLite).

    A row: a SHA-256 of the collection (its ARN and creation time, so a collection deleted and created
    again starts afresh) and the ExternalImageId (no file name is kept in the clear: an erased person's
    name does not stay behind here), the file's size and modification time, the run's options (MaxFaces,
    QualityFilter) and the faces it indexed. An image is skipped when all of these match; a changed file
    or other options index it again. Rows are committed every ``every`` images and at the end: a crash
    loses at most those, which are then indexed again without duplicates (IndexFaces' rule). The file is
    a cache: deleting it only makes the next run read every image again."""

    def __init__(self, path: Path, collection: str, options: str, every: int = 64,
                 warn: Callable[[str], None] | None = None) -> None:
        """Opens (or creates) the journal at ``path``. Something other than a regular file there (a symbolic
        link, a folder, a FIFO) is never written through: CliError naming it. A file that is not a journal
        (damaged, another database) is set aside as ``<name>.damaged`` (``warn`` says so) and a new journal
        begins: it is a cache, so the run only reads every image again."""
        from ..service.images import _KINDS
        from .common import CliError

        path.parent.mkdir(parents=True, exist_ok=True)
        for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):  # SQLite writes all three
            try:
                mode = os.lstat(side).st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else next(
                    (k for test, k in _KINDS if test(mode)), "not a regular file")
                raise CliError(f"{side} is {kind}, not part of an index journal: faceledger does not write "
                               "through it; remove it (the journal is a cache) or run with --no-resume")
        try:
            self.conn = self._open(path)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) in _NOT_DAMAGED:  # the journal may be fine: leave it be
                raise CliError(f"cannot open the index journal {path}: {exc}; run with --no-resume") from None
            damaged = path.with_name(path.name + ".damaged")
            for suffix in ("", "-wal", "-shm"):
                side = Path(f"{path}{suffix}")
                if side.is_file() and not side.is_symlink():
                    os.replace(side, f"{damaged}{suffix}")
            if warn is not None:
                warn(f"warning: {path} is not an index journal ({exc}): set aside as {damaged.name}; a new "
                     "journal begins (images indexed before are read again, their faces are not stored twice)")
            try:
                self.conn = self._open(path)
            except sqlite3.DatabaseError as again:
                raise CliError(f"cannot open the index journal {path}: {again}; run with --no-resume") from None
        self.collection, self.options, self.every, self.warn = collection, options, every, warn
        self.rows: list[tuple] = []
        self.pending = 0

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        """The journal's connection, its table checked (sqlite3.DatabaseError: not a journal). ``nofollow``:
        a symbolic link put there after the check above is refused by SQLite itself."""
        from urllib.parse import quote

        conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?nofollow=1", uri=True, isolation_level=None,
                               timeout=30)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS indexed (image TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                "mtime_ns INTEGER NOT NULL, options TEXT NOT NULL, faces INTEGER NOT NULL, indexed_at REAL NOT NULL)")
            conn.execute("SELECT image, size, mtime_ns, options, faces, indexed_at FROM indexed LIMIT 0")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _key(self, ext_id: str) -> str:
        return hashlib.sha256(f"{self.collection}\0{ext_id}".encode("utf-8", "surrogateescape")).hexdigest()

    def done(self, ext_id: str, f: ImageFile) -> int | None:
        """The faces an earlier run indexed from this file, or None when it must be indexed."""
        if f.size < 0:
            return None
        row = self.conn.execute("SELECT faces FROM indexed WHERE image = ? AND size = ? AND mtime_ns = ? AND "
                                "options = ?", (self._key(ext_id), f.size, f.mtime_ns, self.options)).fetchone()
        return None if row is None else int(row[0])

    def record(self, ext_id: str, f: ImageFile, faces: int) -> None:
        """Note an indexed image; written with the next :meth:`commit` (every ``every`` images)."""
        if f.size < 0:
            return
        self.rows.append((self._key(ext_id), f.size, f.mtime_ns, self.options, faces, time.time()))
        self.pending = len(self.rows)
        if self.pending >= self.every:
            self.commit()

    def commit(self) -> None:
        """Write the noted rows in one short transaction: no write lock is held while images are indexed, so a
        second run on the same data folder never waits for this one's images (it waited up to 64 images, then
        failed with "database is locked"). A journal still locked past the timeout loses these rows (``warn``
        says so): they are indexed again next time, without duplicates."""
        if not self.rows:
            return
        rows, self.rows, self.pending = self.rows, [], 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT OR REPLACE INTO indexed VALUES (?, ?, ?, ?, ?, ?)", rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if self.warn is not None:
                self.warn(f"warning: the index journal could not record {len(rows)} images ({exc}): a later run "
                          "reads them again")

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.conn.close()


# ---- worker processes ---------------------------------------------------------------------------------

_client: Any = None


def _die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when its parent dies (a SIGKILLed run leaves no worker behind)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_init(parent: int, threads: int, app_args: tuple) -> None:
    global _client
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the run; the image in hand finishes
    os.environ["FACELEDGER_ONNX_THREADS"] = str(threads)
    from .common import App

    _client = App(*app_args).client


def read_image_file(path: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file ``path`` (a link to one is followed): opened without
    blocking, so a FIFO, socket or device (given directly, or put where a walked file was) never hangs the run
    nor fills memory (/dev/zero); ValueError naming what it is instead of a file, OSError when it cannot be
    read. Costs at most ``limit + 1`` bytes whatever the file's size."""
    from ..service.images import _KINDS  # (test, what a file of that kind is, in words)

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise ValueError(f"not an image file (it is {kind})")
        return f.read(limit + 1)


def index_file(path: str, params: dict[str, Any], client: Any = None) -> tuple:
    """One IndexFaces call on a file with the worker's (or the caller's) client: ``("ok", response)``,
    ``("error", code, message)`` for what concerns this image, or ``("fatal", code, message, exception)``
    (the exception itself only in the caller's process: ``client`` given)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .common import PER_IMAGE_ERRORS, _error_parts

    from ..service.images import MAX_BYTES

    try:
        data = read_image_file(path, MAX_BYTES)
    except OSError as exc:
        return ("error", "FileError", f"cannot read: {exc.strerror or exc}")
    except ValueError as exc:  # not a regular file (any more)
        return ("error", "FileError", str(exc))
    if len(data) > MAX_BYTES:  # refused as IndexFaces refuses Image.Bytes over 5 MB, without reading the rest
        return ("error", "ImageTooLargeException", f"the file is over the {MAX_BYTES // (1024 * 1024)} MB limit of "
                "Image.Bytes")
    if not data:  # the request would be refused as a whole (ValidationException), not as this image's
        return ("error", "FileError", "empty file (0 bytes)")
    try:
        response = (client or _client).index_faces(**params, Image={"Bytes": data})
    except ClientError as exc:
        code, message = _error_parts(exc)
        if code in PER_IMAGE_ERRORS:
            return ("error", code, message)
        return ("fatal", code, message, exc if client is not None else None)
    except BotoCoreError as exc:  # the server went away
        return ("fatal", type(exc).__name__, str(exc), exc if client is not None else None)
    response.pop("ResponseMetadata", None)
    return ("ok", response)


class ProcessPool:
    """``workers`` processes, each with its own client on the data folder (``app_args``: App's arguments)."""

    def __init__(self, workers: int, app_args: tuple) -> None:
        import multiprocessing as mp

        from ..vision.engine import usable_cpus

        threads = max(1, usable_cpus() // workers)
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_worker_init, initargs=(os.getpid(), threads, app_args))

    def submit(self, path: str, params: dict[str, Any]) -> Future:
        return self.pool.submit(index_file, path, params)

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def processes_from() -> int:
    env = os.environ.get("FACELEDGER_INDEX_PROCESSES_FROM")
    return int(env) if env else PROCESSES_FROM


def bounded_workers(workers: int, processes: bool, err: Any) -> int:
    """``--workers`` as run: worker processes at most the CPUs this process may use (each loads the models,
    hundreds of MB: ``--workers 1000`` would start a thousand), threads at most :data:`MAX_THREADS`; ``err``
    (a rich Console) says so when it lowers the number."""
    from ..vision.engine import usable_cpus

    bound = usable_cpus() if processes else MAX_THREADS
    if workers > bound:
        what = (f"{bound} worker processes (the CPUs available: each loads the models, more would only share "
                "them)") if processes else f"{bound} threads (at most {MAX_THREADS})"
        err.print(f"warning: --workers {workers}: {what}", markup=False)
    return min(workers, bound)


def shown_path(path: str) -> str:
    """``path`` for a line of the report: a control character (a newline in a file name would forge a line) or
    a byte that is not UTF-8 (a lone surrogate) as a backslash escape, the rest as it is."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   if not 0xDC80 <= ord(c) <= 0xDCFF else f"\\x{ord(c) - 0xDC00:02x}" for c in path)


def json_path(path: str) -> str:
    """``path`` for the ``--json`` report, which must be UTF-8: as it is, unless it holds bytes that are not
    UTF-8 (lone surrogates: printed raw, they made the whole report invalid UTF-8), then :func:`shown_path`."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return shown_path(path)
