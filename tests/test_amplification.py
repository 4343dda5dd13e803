"""A request's answer, ledger entry and error message are bounded whatever it holds; a key's policy is checked
before any work in proportion to the request (issue 9, point 2). Figures: bench/amplification.py."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from faceledger.cli import main
from faceledger.service import RequestContext, model
from faceledger.service.errors import MAX_MESSAGE_CHARS, ValidationException, preview
from faceledger.service.ledger import build_entry
from faceledger.store.ledger import MAX_DETAIL_CHARS, LedgerEntry, canonical, row_for

from conftest import create_key
from test_signature_binding import send, signed_headers

BIG = 7_800_000
UUID = str(uuid.uuid4())


def compact(params: dict) -> bytes:
    return json.dumps(params, separators=(",", ":")).encode()


def hostile(n: int) -> list[tuple[str, dict]]:
    """(operation, params) with about ``n`` bytes of hostile content in each kind of field (``compact``: at
    most n + 1 KB)."""
    nested: object = "x"
    for _ in range(300):
        nested = {"a": nested}
    return [
        ("DescribeCollection", {"CollectionId": "a" * n}),  # a string with a pattern and a length limit
        ("DescribeCollection", {"CollectionId": "!" * n}),
        ("IndexFaces", {"CollectionId": "c", "ExternalImageId": "e" * n, "Image": {"Bytes": "AAAA"}}),
        ("SearchFaces", {"CollectionId": "c", "FaceId": "f" * n}),
        ("DescribeCollection", {"CollectionId": "c", "U" * n: 1}),  # an unknown member's name
        ("DescribeCollection", {"CollectionId": "c", **{f"u{i}": 1 for i in range(n // 13)}}),  # many of them
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": ["bad"] * (n // 6)}),  # a long list of bad items
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": [1] * (n // 2)}),
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": [UUID] * (n // 39)}),  # good items, too many
        ("DetectFaces", {"Image": {"Bytes": "AAAA"}, "Attributes": ["x"] * (n // 4)}),  # a list without max
        ("CreateCollection", {"CollectionId": "c", "Tags": {"k" * (n // 2): "v" * (n // 2)}}),
        ("CreateCollection", {"CollectionId": "c", "Tags": {f"k{i}": "v" for i in range(n // 15)}}),
        ("DetectFaces", {"Image": {"S3Object": {"Bucket": "b", "Name": "n" * n}}}),
        ("SearchFaces", {"CollectionId": "c", "FaceId": UUID, "FaceMatchThreshold": "9" * n}),
        ("SearchFaces", {"CollectionId": "c", "FaceId": UUID, "MaxFaces": int("9" * 4000)}),
        ("DescribeCollection", {"CollectionId": "c", "Deep": [nested] * (n // 2000)}),
        ("CreateCollection", {"CollectionId": "\ud800" * (n // 6)}),  # lone surrogates: 6 characters each in JSON
    ]


# ------------------------------------------------------------------------------------- messages, entries


def test_preview_is_short_whatever_the_value():
    assert preview("abc") == "abc"
    assert preview("x" * 10**6) == "x" * 256 + "...(1000000 characters)"
    assert preview(list(range(10**6))).endswith("...(1000000 items)")
    assert len(preview(list(range(10**6)))) < 300
    assert len(preview({f"k{i}": "v" * 1000 for i in range(1000)})) < 300
    deep: list = []
    for _ in range(10**5):
        deep = [deep]
    assert len(preview(deep)) < 300
    assert preview(10**5000) == "<an integer of 16610 bits>"
    assert len(ValidationException("m" * 10**6).message) <= MAX_MESSAGE_CHARS + 30


@pytest.mark.parametrize("operation, params", hostile(1_000_000), ids=lambda v: v if isinstance(v, str) else "")
def test_validation_messages_are_bounded(operation, params):
    with pytest.raises(ValidationException) as info:
        model.parse_request(operation, params, wire=True)
    message = info.value.message
    assert len(message) < 6000, len(message)
    assert "validation error" in message or "Unknown" in message


def test_messages_say_how_long_a_cut_value_was():
    with pytest.raises(ValidationException) as info:
        model.parse_request("DescribeCollection", {"CollectionId": "a" * 10**6}, wire=True)
    assert "...(1000000 characters)' at 'collectionId'" in info.value.message
    with pytest.raises(ValidationException) as info:
        model.parse_request("DeleteFaces", {"CollectionId": "c", "FaceIds": ["bad"] * 10**5}, wire=True)
    message = info.value.message
    assert message.startswith("4097 validation errors detected: ")  # the length, then the first 4096 items
    assert message.endswith("; and 4087 more") and message.count("failed to satisfy constraint") == 10


@pytest.mark.parametrize("operation, params", hostile(1_000_000), ids=lambda v: v if isinstance(v, str) else "")
def test_ledger_entry_of_a_refused_request_is_bounded(operation, params):
    entry = build_entry(when=datetime.now(timezone.utc), operation=operation,
                        context=RequestContext(transport="http", purpose="p" * 10**6, case_reference="c" * 10**6),
                        request=params, response=None, result="ValidationException", message="m" * 10**6,
                        validated=False)
    size = len(canonical(entry.detail)) + sum(len(v or "") for v in (entry.principal, entry.purpose,
                                                                      entry.case_ref, entry.collection_id))
    assert size < 16_000, size
    assert "(1000000 characters)" in entry.purpose


def test_the_store_caps_an_entry_whatever_the_service_put_in_it():
    entry = LedgerEntry(time="t", principal="p" * 10**6, source=None, transport="http", operation="X",
                        collection_id=None, purpose=None, case_ref=None, result="OK",
                        detail={"RequestId": "r", "Faces": [{"FaceId": "f" * 100}] * 60_000})
    row = row_for(entry, 1, "0" * 64)
    assert len(row["principal"]) < 4200 and row["principal"].endswith("(1000000 characters)")
    detail = json.loads(row["detail"])
    assert detail["RequestId"] == "r" and detail["Oversized"]["Characters"] > MAX_DETAIL_CHARS
    assert detail["Oversized"]["Members"] == ["Faces", "RequestId"] and len(detail["Oversized"]["SHA256"]) == 64


# ------------------------------------------------------------------------------------- a live server


def ledger_rows(server, key_id: str) -> list[dict]:
    result = CliRunner().invoke(main, ["audit", "list", "--data", str(server.data_dir), "--json", "--key", key_id])
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def row_size(row: dict) -> int:
    return len(json.dumps(row, ensure_ascii=False))


@pytest.mark.slow
def test_a_denied_key_is_refused_before_any_work_with_small_answer_and_entry(server):
    """A key whose policy allows nothing sends 7.8 MB hostile bodies: AccessDeniedException (not a validation
    error: the policy is checked first), an answer and a ledger entry of at most a few KB."""
    denied = create_key(server.data_dir, "denied-amplification", {"Statement": []})
    shapes = hostile(BIG)
    for operation, params in shapes:
        body = compact(params)
        response = send(server, signed_headers(server, f"RekognitionService.{operation}", body, key=denied), body)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["__type"] == "AccessDeniedException", response.text[:300]
        assert len(response.content) < 1024
    rows = ledger_rows(server, denied[0])
    assert len(rows) == len(shapes)
    assert all(r["result"] == "AccessDeniedException" for r in rows)
    assert max(row_size(r) for r in rows) < 4096, max(row_size(r) for r in rows)
    # an allowed key's image call is not decoded either when its policy denies the collection
    policy = {"Statement": [{"Effect": "Allow", "Action": "rekognition:*",
                             "Resource": "arn:aws:rekognition:us-east-1:000000000000:collection/mine"}]}
    other = create_key(server.data_dir, "other-collection", policy)
    body = json.dumps({"CollectionId": "theirs", "Image": {"Bytes": "!" * BIG}}).encode()
    response = send(server, signed_headers(server, "RekognitionService.IndexFaces", body, key=other), body)
    assert response.json()["__type"] == "AccessDeniedException"  # not SerializationException: never decoded


@pytest.mark.slow
def test_an_allowed_key_gets_bounded_validation_errors_and_entries(server):
    key = create_key(server.data_dir, "allowed-amplification")
    for operation, params in hostile(BIG):
        body = compact(params)
        response = send(server, signed_headers(server, f"RekognitionService.{operation}", body, key=key), body)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["__type"] in ("ValidationException", "SerializationException"), response.text[:300]
        assert len(response.content) < 8192, (operation, len(response.content))
    rows = ledger_rows(server, key[0])
    assert max(row_size(r) for r in rows) < 16_384, max(row_size(r) for r in rows)
    assert "CollectionIds" in server.client().list_collections()  # and the server still answers


def peak_rss_mb(server) -> float:
    for line in open(f"/proc/{server.process.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_concurrent_expensive_bodies_are_parsed_one_at_a_time(tmp_path):
    """Six 7.8 MB bodies of a million tiny JSON objects at once, from a key allowed on another collection (so the
    body must be parsed to know its collection): parsed one at a time (the rest wait, or are refused with
    ProvisionedThroughputExceededException), so the server's memory peak is about one parse, not six."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import Server

    server = Server(tmp_path / "data", tmp_path / "buckets")
    try:
        arn = "arn:aws:rekognition:us-east-1:000000000000:collection/staff"
        key = create_key(server.data_dir, "staff-only", {"Statement": [
            {"Effect": "Allow", "Action": "rekognition:DescribeCollection", "Resource": arn}]})
        body = b'{"CollectionId":"other","X":[' + b",".join([b"{}"] * 2_600_000) + b"]}"
        before = peak_rss_mb(server)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: send(server, signed_headers(
                server, "RekognitionService.DescribeCollection", body, key=key), body), range(6)))
        codes = [a.json()["__type"] for a in answers]
        assert all(a.status_code == 400 for a in answers), codes
        assert set(codes) <= {"AccessDeniedException", "ProvisionedThroughputExceededException"}, codes
        assert "AccessDeniedException" in codes
        rise = peak_rss_mb(server) - before
        assert rise < 700, f"peak RSS rose {rise:.0f} MB for six concurrent expensive bodies"
        assert "CollectionIds" in server.client().list_collections()
    finally:
        server.stop()
