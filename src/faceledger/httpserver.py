"""Serving the API with bounded resources: connections, timeouts, descriptors, and a log that cannot flood.

uvicorn alone leaves a connection that sends nothing open forever (its keep-alive timer starts only
after a first response, and any byte received stops it), reads a request head one byte a second for
ever, and answers a connection over ``limit_concurrency`` only once it has sent a request. Here:

* **a request head must be complete within** ``header_timeout`` seconds of the connection opening
  (or ``keep_alive_timeout + header_timeout`` after the previous response), else the connection is
  closed: this cuts idle connections and slow-header clients alike;
* **at most** ``max_connections`` **connections**: a new connection beyond it closes the connection
  that has waited longest for its next request (idle, or still sending its head); when every
  connection is in the middle of a request, requests are answered 503 (botocore retries it) until one
  ends. The limit is lowered at start so that connections, database files and worker threads fit in
  the process's descriptor limit (``ulimit -n``, raised to its hard limit first);
* request heads larger than ``max_header_bytes`` are refused (400, h11's limit);
* the request body must arrive within ``body_timeout`` seconds (enforced by the app, see
  :mod:`faceledger.api`: 408 ``RequestTimeoutException`` and the connection closed); a request answered
  before its body was read (too large, too slow) closes its connection; a client that stops reading
  its response for ``body_timeout`` seconds is disconnected;
* image analyses run at most ``analysis_workers`` at a time with at most ``analysis_queue`` waiting;
  beyond that ``ProvisionedThroughputExceededException`` (HTTP 400) (also :mod:`faceledger.api`);
* a warning or error repeated with the same text is logged once per ``log_interval`` seconds, with
  the count of those left out (:class:`RepeatFilter`).

The defaults are in :class:`ServerLimits` and in docs/operations.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["RepeatFilter", "ServerLimits", "bind", "descriptor_budget", "log_config", "serve", "server"]

log = logging.getLogger("faceledger.server")

#: Listen backlog: also how many connections asyncio may accept in one burst before any is checked.
BACKLOG = 128


def _default_workers() -> int:
    from .vision.engine import usable_cpus

    return max(1, min(4, usable_cpus()))


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts at once, and how long it waits (seconds)."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    body_timeout: float = 60.0
    max_header_bytes: int = 16 * 1024
    #: image analyses run at once (default: the CPUs this process may use, at most 4) ...
    analysis_workers: int = 0
    #: ... and waiting for one of them (default: 4 per worker); the next gets ProvisionedThroughputExceeded
    analysis_queue: int = -1
    log_interval: float = 60.0

    def resolved(self) -> "ServerLimits":
        """These limits with the CPU-dependent defaults filled in."""
        workers = self.analysis_workers or _default_workers()
        queue = self.analysis_queue if self.analysis_queue >= 0 else 4 * workers
        return replace(self, analysis_workers=workers, analysis_queue=queue)


# -------------------------------------------------------------------------------------------- sockets


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` but not yet listening: the port is claimed (OSError when it is
    in use) before anything else happens, and connections are refused until :func:`serve` listens."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # "localhost": 127.0.0.1, where clients look first
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def descriptor_budget(limits: ServerLimits, threads: int) -> tuple[ServerLimits, str | None]:
    """Raise the soft descriptor limit to the hard one and fit ``max_connections`` under it: each worker thread
    may hold a database connection (3 files: database, WAL, shared memory), an accept burst may take
    BACKLOG more, and 64 are kept for everything else. Returns the limits and a warning when lowered."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    except ImportError:  # pragma: no cover (not POSIX)
        return limits, None
    reserve = _open_descriptors() + 3 * threads + BACKLOG + 64
    room = soft - reserve
    if limits.max_connections <= room:
        return limits, None
    fitted = max(8, room)
    return replace(limits, max_connections=fitted), (
        f"--max-connections {limits.max_connections} lowered to {fitted}: this process may open {soft} files "
        f"(ulimit -n) and keeps {reserve} for its database, threads and accept bursts")


# -------------------------------------------------------------------------------------------- protocol


def _protocol_class(limits: ServerLimits) -> type:
    """uvicorn's h11 protocol with a request-head deadline and the connection limit (see the module)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    live: "OrderedDict[Any, None]" = OrderedDict()  # this server's connections, oldest first
    evicted = {"count": 0}

    class GuardedH11Protocol(H11Protocol):
        _head_timer: Any = None
        _write_timer: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_deadline(limits.header_timeout)
            live[self] = None
            if len(live) > limits.max_connections:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            live.pop(self, None)
            self._cancel_head_deadline()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a whole request head arrived
                self._cancel_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.SEND_BODY and self.cycle is not None and self.cycle.response_complete:
                self._close()  # answered without reading the whole body (too large, too slow): do not read on
            elif self.conn.their_state is h11.IDLE:
                self._arm_head_deadline(limits.keep_alive_timeout + limits.header_timeout)

        # -- a client that stops reading its response: abandoned after body_timeout
        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(limits.body_timeout, self._write_deadline_passed)

        def resume_writing(self) -> None:
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().resume_writing()

        def _write_deadline_passed(self) -> None:
            self._write_timer = None
            self.transport.abort()  # connection_lost() then ends the response's task

        # -- the head deadline
        def _arm_head_deadline(self, seconds: float) -> None:
            self._cancel_head_deadline()
            self._head_timer = self.loop.call_later(seconds, self._head_deadline_passed)

        def _cancel_head_deadline(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_deadline_passed(self) -> None:
            self._head_timer = None
            if self._waiting():
                self._close()

        def _waiting(self) -> bool:
            """Between requests: no request in progress (nothing received yet, or only part of a head)."""
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _close(self) -> None:
            if self.transport.get_write_buffer_size():  # a reader that stopped: close() would wait for it
                self.transport.abort()
            elif not self.transport.is_closing():
                try:
                    self.conn.send(h11.ConnectionClosed())
                except h11.LocalProtocolError:
                    pass
                self.transport.close()

        def _make_room(self) -> None:
            excess = len(live) - limits.max_connections
            victims = [p for p in live if p._waiting()][:excess]
            for p in victims:
                live.pop(p, None)
                p._close()
            evicted["count"] += len(victims)
            if victims:
                log.warning("connection limit (%d) reached: closing the connections that waited longest for "
                            "a request", limits.max_connections)

    return GuardedH11Protocol


# -------------------------------------------------------------------------------------------- logging


class RepeatFilter(logging.Filter):
    """Lets a warning or error through once per ``interval`` seconds per (logger, level, first line of its
    message, exception type); the next one let through says how many were left out. Records below WARNING
    pass untouched. At most ``max_keys`` different messages are remembered (the oldest forgotten)."""

    def __init__(self, interval: float = 60.0, max_keys: int = 1024) -> None:
        super().__init__()
        self.interval, self.max_keys = float(interval), int(max_keys)
        self._seen: "OrderedDict[tuple, list]" = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or self.interval <= 0:
            return True
        first = str(record.msg).split("\n", 1)[0][:200]
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        key = (record.name, record.levelno, first, exc)
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return False
            left_out = entry[1] if entry is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        if left_out:  # no "%" in the added text: the record's own %-formatting is unchanged
            record.msg = f"{record.msg} [{left_out} more like this in the last {self.interval:g} s not logged]"
        return True


def log_config(level: str = "info", interval: float = 60.0) -> dict:
    """A :func:`logging.config.dictConfig` for ``serve``: uvicorn's handlers and faceledger's loggers on stderr,
    every handler behind one :class:`RepeatFilter`."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"repeat": {"()": RepeatFilter, "interval": interval}}
    config["formatters"]["faceledger"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    config["handlers"]["faceledger"] = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                        "formatter": "faceledger"}
    for handler in config["handlers"].values():
        handler["filters"] = ["repeat"]
    config["loggers"]["faceledger"] = {"handlers": ["faceledger"], "level": level.upper(), "propagate": False}
    config["root"] = {"handlers": ["faceledger"], "level": "WARNING"}  # asyncio's "accept() out of resources"
    return config


# -------------------------------------------------------------------------------------------- serving


def serve(app: Any, sock: socket.socket, limits: ServerLimits, *, log_level: str = "info") -> None:
    """Run ``app`` on the bound socket ``sock`` (see :func:`bind`) with ``limits`` until a signal stops it."""
    server(app, limits, log_level=log_level).run(sockets=[sock])


def server(app: Any, limits: ServerLimits, *, log_level: str = "info") -> Any:
    """The ``uvicorn.Server`` of :func:`serve` (``.run(sockets=[sock])``; ``.should_exit = True`` stops it)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http=_protocol_class(limits),
        log_config=None,  # serve configured logging (log_config()) before anything was logged
        log_level=log_level,
        limit_concurrency=limits.max_connections + 1,  # over it (every connection busy): 503
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]  (a float works)
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=BACKLOG,
        server_header=False,
        # the ledger's source and the per-source limit on refusals use the peer's address: never a client's
        # X-Forwarded-For (uvicorn trusts it from loopback by default, so any local process could forge it)
        proxy_headers=False,
    )
    return uvicorn.Server(config)
