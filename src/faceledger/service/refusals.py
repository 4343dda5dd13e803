"""How the ledger keeps the record of refused, unauthenticated requests without letting anyone fill the disk.

Every request whose signature is missing or wrong (and every request refused before its signature could be
checked) is worth recording, but anyone who can reach the port can send them, hundreds a second. So these
rows are limited per *source* (the client's IP address; an IPv6 address counts as its /64, which one host
usually holds whole) in fixed windows of :attr:`RefusalLimiter.window_s` seconds (aligned on the clock):

* a refusal is recorded in full, one row, while its (source, claimed key, error code) has had fewer than
  :attr:`~RefusalLimiter.per_key` such rows in the window, its source fewer than
  :attr:`~RefusalLimiter.per_source`, and all sources together fewer than :attr:`~RefusalLimiter.overall`;
* the rest are counted, and when the window is over one aggregate row per source records how many there
  were, when, and the most frequent (claimed key, error code, operation) with their counts
  (``operation = "RefusedRequests"``, ``result = "Aggregated"``);
* past :attr:`~RefusalLimiter.max_sources` aggregated sources in one window, further sources share one
  aggregate row (``source = "*"``).

Rows per source per window: at most ``per_source + 1``; for all sources together at most ``overall +
max_sources + 1``. Aggregate rows go through the same ledger (hash chain, ``audit verify``). They are written
by the first refusal after the window closed, by :meth:`Service.flush_refusals` (the server calls it every
window) and at shutdown; a process killed with SIGKILL loses the counts of at most its last window. Memory
is bounded too: at most ``max_reasons_tracked`` distinct reasons are counted per aggregate (the others
together).

The limiter is in memory, per process; it never drops a row of an authenticated request.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import clip

#: The operation and result columns of an aggregate row.
AGGREGATE_OPERATION = "RefusedRequests"
AGGREGATE_RESULT = "Aggregated"
#: The source of the aggregate row shared by sources past ``max_sources`` in one window.
OVERFLOW_SOURCE = "*"


def source_key(ip: str | None) -> str:
    """What refusals are counted by: the IPv4 address, the /64 of an IPv6 address, ``unknown`` without one."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class Aggregate:
    """The refusals of one source in one window that were counted rather than recorded in full."""

    source: str
    window_start: float
    window_s: float
    count: int = 0
    first: float | None = None
    last: float | None = None
    reasons: Counter = field(default_factory=Counter)  # (principal, result, operation) -> count
    max_tracked: int = 1000

    def add(self, when: float, principal: str, result: str, operation: str) -> None:
        self.count += 1
        self.first = when if self.first is None else self.first
        self.last = when
        reason = (principal, result, operation)
        if reason in self.reasons or len(self.reasons) < self.max_tracked:
            self.reasons[reason] += 1

    def detail(self, max_reasons: int) -> dict:
        """The ``detail`` of the aggregate row: the window, the count, the most frequent reasons."""
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds")  # noqa: E731
        top = self.reasons.most_common(max_reasons)
        return {"Aggregate": {
            "WindowStart": iso(self.window_start),
            "WindowSeconds": self.window_s,
            "Count": self.count,
            "First": iso(self.first or self.window_start),
            "Last": iso(self.last or self.window_start),
            "ByReason": [{"Principal": clip(p, 64), "Result": clip(r, 64), "Operation": clip(o, 64), "Count": n}
                         for (p, r, o), n in top],
            "OtherCount": self.count - sum(n for _, n in top),
        }}


class RefusalLimiter:
    """Decides which refused, unauthenticated requests get a ledger row of their own (see the module).

    Thread-safe. Times are POSIX seconds from the service's clock."""

    def __init__(self, window_s: float = 600.0, per_key: int = 10, per_source: int = 30, overall: int = 1000,
                 max_sources: int = 100, max_reasons: int = 10, max_reasons_tracked: int = 1000) -> None:
        self.window_s, self.per_key, self.per_source, self.overall = window_s, per_key, per_source, overall
        self.max_sources, self.max_reasons, self.max_reasons_tracked = max_sources, max_reasons, max_reasons_tracked
        self._lock = threading.Lock()
        self._window: float | None = None  # start of the current window
        self._full_by_key: Counter = Counter()  # (source, principal, result) -> rows recorded in full this window
        self._full_by_source: Counter = Counter()  # source -> rows recorded in full this window
        self._full = 0  # rows recorded in full this window, all sources
        self._counted: dict[str, Aggregate] = {}  # source -> what was only counted this window

    def _start(self, when: float) -> float:
        return when - when % self.window_s

    def admit(self, when: float, source_ip: str | None, principal: str, result: str,
              operation: str) -> tuple[bool, list[Aggregate]]:
        """(record this refusal in full?, aggregates of windows now over, to be written first)."""
        source = source_key(source_ip)
        with self._lock:
            closed = self._roll(when)
            key = (source, principal, result)
            if (self._full_by_key[key] < self.per_key and self._full_by_source[source] < self.per_source
                    and self._full < self.overall):
                self._full_by_key[key] += 1
                self._full_by_source[source] += 1
                self._full += 1
                return True, closed
            if source not in self._counted and len(self._counted) >= self.max_sources:
                source = OVERFLOW_SOURCE
            aggregate = self._counted.get(source)
            if aggregate is None:
                aggregate = self._counted[source] = Aggregate(source, self._window or 0.0, self.window_s,
                                                              max_tracked=self.max_reasons_tracked)
            aggregate.add(when, principal, result, operation)
            return False, closed

    def flush(self, when: float, *, force: bool = False) -> list[Aggregate]:
        """The aggregates of a window that is over at ``when`` (``force``: of the current one too, e.g. at
        shutdown), each returned once."""
        with self._lock:
            closed = self._roll(when)
            if force:
                closed += list(self._counted.values())
                self._counted = {}
            return closed

    def _roll(self, when: float) -> list[Aggregate]:
        start = self._start(when)
        if self._window is not None and start == self._window:
            return []
        closed = list(self._counted.values())
        self._window, self._counted, self._full = start, {}, 0
        self._full_by_key, self._full_by_source = Counter(), Counter()
        return closed
