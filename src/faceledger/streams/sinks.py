"""Where a stream processor's frame records go: a JSON Lines file, a webhook, a folder of the buckets folder.

Each sink takes a record's bytes (:func:`faceledger.streams.records.encode_record`). A sink never blocks the
processor for long: the file sinks append and flush (the operating system's write cache; a crash loses at most
the last records, never corrupts earlier lines), the webhook posts from its own thread through a bounded queue
and counts what it could not deliver.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Protocol

import httpx

log = logging.getLogger("faceledger.streams")

#: Records waiting for a slow webhook; past this the oldest waiting one is dropped (and counted).
WEBHOOK_QUEUE = 256
#: Seconds a webhook has to answer one record.
WEBHOOK_TIMEOUT_S = 5.0
#: Seconds a closed webhook sink waits for its queued records (the request that stops a processor waits that
#: long at most for a webhook that does not answer; the records still go, from the sink's thread).
WEBHOOK_CLOSE_WAIT_S = 1.0


class Sink(Protocol):
    def write(self, record: bytes) -> None: ...
    def close(self) -> None: ...


class SinkError(Exception):
    """A sink cannot take records (its folder cannot be written): the processor fails with this message."""


class JsonLinesSink:
    """Append-only JSON Lines: one record a line, in ``path`` (its folder is created, mode 0700)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # O_NOFOLLOW: a symbolic link planted where the file goes is refused, never written through
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            self._file = os.fdopen(fd, "ab")
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._lock = threading.Lock()
        self.written = 0

    def write(self, record: bytes) -> None:
        with self._lock:
            try:
                self._file.write(record + b"\n")
                self._file.flush()
            except OSError as exc:
                raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
            self.written += 1

    def close(self) -> None:
        with self._lock:
            try:
                self._file.close()
            except OSError:
                log.warning("closing %s failed", self.path, exc_info=True)


def bucket_folder(buckets_dir: Path, bucket: str) -> Path:
    """The resolved folder of ``bucket``: a folder directly inside the (resolved) buckets folder, or SinkError
    (missing, not a folder, or a symbolic link that leads elsewhere)."""
    try:
        root = Path(buckets_dir).resolve(strict=True)
        folder = (root / bucket).resolve(strict=True)
    except (OSError, RuntimeError):
        raise SinkError(f"bucket {bucket!r} does not exist in the buckets folder") from None
    if folder.parent != root or not folder.is_dir() or "/" in bucket or bucket in (".", ".."):
        raise SinkError(f"bucket {bucket!r} does not exist in the buckets folder (or is a link out of it)")
    return folder


def contained_file(folder: Path, key: str) -> Path:
    """``folder``/``key`` with its parent folders created one by one, or SinkError when a part of the key is a
    symbolic link (or '..') that leads out of ``folder``, checked before anything is created through it: writes
    are held to the bucket as reads are (a link that stays inside the bucket is followed)."""
    *parts, name = key.split("/")
    current = folder
    for part in parts:
        if part in ("", "."):
            continue
        step = current / part
        try:
            if step.is_symlink() or step.exists():
                real = step.resolve(strict=True)
                if part == ".." or not real.is_relative_to(folder) or not real.is_dir():
                    raise SinkError(f"cannot write {key!r} in the bucket: a symbolic link leads out of the bucket")
                current = real
            else:
                step.mkdir(mode=0o700)
                current = step
        except SinkError:
            raise
        except (OSError, RuntimeError) as exc:
            raise SinkError(f"cannot write {step}: {getattr(exc, 'strerror', None) or exc}") from None
    return current / name


class S3Sink:
    """S3Destination in the buckets folder: objects ``<KeyPrefix><session>/<UTC minute>.jsonl`` in the bucket's
    folder (``session``: the processor's name and session id), one JSON Lines object a minute. Each object's
    path is checked when it is opened (the bucket, and every folder of the key, inside the buckets folder: a
    symbolic link planted later is refused too, SinkError)."""

    def __init__(self, buckets_dir: Path, bucket: str, prefix: str, session: str) -> None:
        self.bucket_dir = bucket_folder(buckets_dir, bucket)
        self.buckets_dir, self.bucket, self.key_base = Path(buckets_dir), bucket, f"{prefix}{session}"
        self._minute: str | None = None
        self._sink: JsonLinesSink | None = None
        self._lock = threading.Lock()
        self.written = 0

    def write(self, record: bytes) -> None:
        minute = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
        with self._lock:
            if minute != self._minute or self._sink is None:
                if self._sink is not None:
                    self._sink.close()
                folder = bucket_folder(self.buckets_dir, self.bucket)
                self._sink = JsonLinesSink(contained_file(folder, f"{self.key_base}/{minute}.jsonl"))
                self._minute = minute
            self._sink.write(record)
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.close()


class WebhookSink:
    """POSTs each record (``Content-Type: application/json``) to ``url`` from its own thread; never blocks the
    processor: a slow or failing webhook loses records (``dropped``, ``failed``), never delays analysis.
    Redirects are not followed: a 3xx answer counts as a failure (``last_error`` names it).
    :meth:`close` waits at most :data:`WEBHOOK_CLOSE_WAIT_S` for what is queued (a webhook that answers gets
    every record before a StopStreamProcessor answers; one that hangs delays it by that much, not by its
    timeout): the thread goes on delivering what is queued, the end-of-session notification last, and exits;
    :meth:`finish` waits for it longer, for a server that is stopping."""

    def __init__(self, url: str, *, timeout_s: float = WEBHOOK_TIMEOUT_S, capacity: int = WEBHOOK_QUEUE) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._queue: queue.Queue[bytes] = queue.Queue(capacity)
        self._closed = threading.Event()
        self.delivered = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self._client = httpx.Client(timeout=timeout_s)  # one connection pool per sink, closed by its thread
        self._thread = threading.Thread(target=self._run, name="faceledger-webhook", daemon=True)
        self._thread.start()

    def write(self, record: bytes) -> None:
        while True:
            try:
                self._queue.put_nowait(record)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            try:
                record = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closed.is_set():
                    self._client.close()
                    return  # closed, and everything queued was tried
                continue
            try:
                # redirects are not followed (httpx's default, said again): a 3xx would otherwise send the
                # record wherever the answer points (another host, a loopback or metadata address nobody named)
                response = self._client.post(self.url, content=record, follow_redirects=False,
                                             headers={"Content-Type": "application/json"})
                if response.status_code >= 300:
                    self.failed += 1
                    self.last_error = f"the webhook answered HTTP {response.status_code}"
                else:
                    self.delivered += 1
            except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
                self.failed += 1
                self.last_error = str(exc)[:200] or type(exc).__name__

    def close(self) -> None:
        """No more records; waits at most :data:`WEBHOOK_CLOSE_WAIT_S` for those queued (the thread delivers
        the rest, then exits)."""
        self._closed.set()
        self._thread.join(WEBHOOK_CLOSE_WAIT_S)

    def finish(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` seconds for the queued records to be delivered (or fail)."""
        self._thread.join(timeout_s)
