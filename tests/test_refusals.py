"""Refused, unauthenticated requests are recorded, but their ledger growth is bounded per source (issue 9,
point 3; faceledger.service.refusals, docs/accountability.md). Figures: bench/amplification.py."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner

from faceledger.cli import main
from faceledger.service import RequestContext, Service, ServiceConfig
from faceledger.service.auth import HttpRequest
from faceledger.service.errors import AccessDeniedException
from faceledger.service.refusals import AGGREGATE_OPERATION, AGGREGATE_RESULT, RefusalLimiter, source_key

from conftest import Server

CONTENT_TYPE = "application/x-amz-json-1.1"
#: The documented bound on one refusal row and one aggregate row (docs/accountability.md), in bytes of JSON.
MAX_ROW_BYTES = 4096


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(tmp_path: Path):
    clock = Clock()
    svc = Service(ServiceConfig(data_dir=tmp_path / "data"), clock=clock)
    svc.test_clock = clock  # type: ignore[attr-defined]
    yield svc
    svc.close()


def refuse(service: Service, ip: str, claimed: str | None = "FLAKCLAIMED000000000", target: str = "ListCollections"):
    """One badly signed request through Service.authenticate (as the HTTP transport sends it)."""
    headers = {"host": "127.0.0.1:8373", "x-amz-target": f"RekognitionService.{target}"}
    if claimed:
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={claimed}/20260101/us-east-1/rekognition/"
                                    "aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00")
    http = HttpRequest("POST", "/", "", headers, b"{}")
    with pytest.raises(Exception) as info:
        service.authenticate(http, RequestContext(transport="http", source_ip=ip), target)
    return info.value


def rows(service: Service) -> list[dict]:
    return [r for r in service.ledger() if r["operation"] != "CreateAccessKey"]


def by_source(entries: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in entries:
        out.setdefault(r["source"], []).append(r)
    return out


def counted(entries: list[dict]) -> int:
    """Refusals an ledger extract accounts for: full rows, plus the counts of aggregate rows."""
    return sum(r["detail"]["Aggregate"]["Count"] if r["operation"] == AGGREGATE_OPERATION else 1 for r in entries)


def test_a_flood_from_one_source_gives_a_few_full_rows_and_one_aggregate(service):
    limits: RefusalLimiter = service.refusals
    for _ in range(2000):
        refuse(service, "203.0.113.5")
    assert len(rows(service)) == limits.per_key  # while the window lasts: the first rows only
    service.test_clock.now += timedelta(seconds=limits.window_s)
    refuse(service, "198.51.100.7")  # the next refusal after the window writes the aggregate first
    entries = rows(service)
    flood = by_source(entries)["203.0.113.5"]
    full = [r for r in flood if r["operation"] == "ListCollections"]
    (aggregate,) = [r for r in flood if r["operation"] == AGGREGATE_OPERATION]
    assert len(full) == limits.per_key and {r["result"] for r in full} == {"IncompleteSignatureException"}
    assert all(r["principal"] == "unauthenticated:FLAKCLAIMED000000000" for r in full)
    assert aggregate["result"] == AGGREGATE_RESULT and aggregate["principal"] == "unauthenticated"
    detail = aggregate["detail"]["Aggregate"]
    assert detail["Count"] == 2000 - limits.per_key
    assert detail["ByReason"] == [{"Principal": "unauthenticated:FLAKCLAIMED000000000",
                                   "Result": "IncompleteSignatureException", "Operation": "ListCollections",
                                   "Count": 2000 - limits.per_key}]
    assert detail["WindowSeconds"] == limits.window_s and detail["OtherCount"] == 0
    assert counted(flood) == 2000
    assert by_source(entries)["198.51.100.7"][0]["operation"] == "ListCollections"  # a new window, a new source
    assert service.verify_ledger().ok
    assert max(len(json.dumps(r)) for r in entries) < MAX_ROW_BYTES


def test_varying_the_claimed_key_or_the_error_does_not_escape_the_per_source_bound(service):
    limits: RefusalLimiter = service.refusals
    for i in range(500):
        refuse(service, "203.0.113.9", claimed=f"FLAK{i:016d}" if i % 3 else None, target=f"Op{i % 7}")
    service.flush_refusals(force=True)
    entries = rows(service)
    assert len(entries) == limits.per_source + 1
    (aggregate,) = [r for r in entries if r["operation"] == AGGREGATE_OPERATION]
    detail = aggregate["detail"]["Aggregate"]
    assert detail["Count"] == 500 - limits.per_source
    assert len(detail["ByReason"]) == limits.max_reasons
    assert sum(r["Count"] for r in detail["ByReason"]) + detail["OtherCount"] == detail["Count"]
    assert max(len(json.dumps(r)) for r in entries) < MAX_ROW_BYTES
    assert service.verify_ledger().ok


def test_many_sources_share_an_overflow_row_and_the_total_is_bounded(service):
    service.refusals = RefusalLimiter(window_s=60, per_key=2, per_source=3, overall=10, max_sources=4)
    for i in range(50):
        for _ in range(5):
            refuse(service, f"192.0.2.{i}")
    service.flush_refusals(force=True)
    entries = rows(service)
    full = [r for r in entries if r["operation"] != AGGREGATE_OPERATION]
    aggregates = [r for r in entries if r["operation"] == AGGREGATE_OPERATION]
    assert len(full) == 10  # overall
    assert len(aggregates) == 5 and aggregates[-1]["source"] == "*"  # 4 sources, then the overflow row
    assert counted(entries) == 250


def test_an_ipv6_host_counts_as_its_64(service):
    for i in range(100):
        refuse(service, f"2001:db8:5:6::{i:x}")
    service.flush_refusals(force=True)
    entries = rows(service)
    assert {r["source"] for r in entries if r["operation"] == AGGREGATE_OPERATION} == {"2001:db8:5:6::/64"}
    assert len(entries) == service.refusals.per_key + 1 and counted(entries) == 100
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1" and source_key("::1") == "::1"


def test_refusal_and_aggregate_rows_stay_under_the_documented_size(service):
    """The largest values a refused request can bring: a long claimed key, operation name, purpose, case."""
    for i in range(40):
        headers = {"host": "h", "x-amz-target": "RekognitionService." + "O" * 200,
                   "x-faceledger-purpose": "p" * 16_000, "x-faceledger-case": "c" * 16_000,
                   "authorization": f"AWS4-HMAC-SHA256 Credential={i}{'K' * 300}/20260101/us-east-1/rekognition/"
                                    "aws4_request, SignedHeaders=host, Signature=00"}
        context = RequestContext(transport="http", source_ip="203.0.113.5", purpose=headers["x-faceledger-purpose"],
                                 case_reference=headers["x-faceledger-case"])
        with pytest.raises(Exception):
            service.authenticate(HttpRequest("POST", "/", "", headers, b"{}"), context, ("O" * 200)[:128])
    service.flush_refusals(force=True)
    entries = rows(service)
    assert {r["operation"] for r in entries} == {"O" * 128, AGGREGATE_OPERATION}
    assert max(len(json.dumps(r)) for r in entries) < MAX_ROW_BYTES


def test_refusals_of_authenticated_callers_are_never_aggregated(service):
    context = RequestContext(transport="http", source_ip="203.0.113.5", principal="FLAKVERIFIED00000000")
    for _ in range(100):
        service.record_refusal("Bogus", context, AccessDeniedException("no"))
    assert len(rows(service)) == 100


def test_close_writes_the_window_in_progress(tmp_path):
    service = Service(ServiceConfig(data_dir=tmp_path / "data"))
    for _ in range(50):
        refuse(service, "203.0.113.5")
    service.close()
    reopened = Service(ServiceConfig(data_dir=tmp_path / "data"))
    try:
        assert counted(rows(reopened)) == 50 and reopened.verify_ledger().ok
    finally:
        reopened.close()


# ------------------------------------------------------------------------------------- a live server


@pytest.mark.slow
def test_two_thousand_badly_signed_requests_grow_the_ledger_by_a_bounded_amount(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "buckets")
    limiter = RefusalLimiter()  # the server's defaults
    n = 2000
    try:
        body = b"{}"
        started = time.time()
        with httpx.Client(timeout=30) as http:
            for i in range(n):
                request = AWSRequest(method="POST", url=srv.url + "/", data=body,
                                     headers={"X-Amz-Target": "RekognitionService.ListCollections",
                                              "Content-Type": CONTENT_TYPE})
                SigV4Auth(Credentials(srv.key_id, "not-the-secret"), "rekognition", "us-east-1").add_auth(request)
                response = http.post(srv.url + "/", content=body, headers=dict(request.headers.items()))
                assert response.status_code == 400 and response.json()["__type"] == "InvalidSignatureException"
        ended = time.time()
        assert "CollectionIds" in srv.client().list_collections()  # the key itself still works
    finally:
        srv.stop()  # shutdown writes the aggregate row of the window in progress
    windows = math.floor(ended / limiter.window_s) - math.floor(started / limiter.window_s) + 1
    result = CliRunner().invoke(main, ["audit", "list", "--data", str(srv.data_dir), "--json"])
    entries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    refused = [r for r in entries if r["principal"].startswith("unauthenticated")]
    assert len(refused) <= (limiter.per_key + 1) * windows  # one (source, key, error): per_key full rows a window
    assert counted(refused) == n
    assert max(len(json.dumps(r)) for r in refused) < MAX_ROW_BYTES
    verify = CliRunner().invoke(main, ["audit", "verify", "--data", str(srv.data_dir)])
    assert verify.exit_code == 0 and "ledger intact" in verify.stdout
