"""What a SigV4 signature binds (docs/accountability.md): Host, X-Amz-Date, X-Amz-Target, every X-Faceledger-*
header and the body as received. Requests are signed here by an independent implementation of AWS's documented
algorithm (so a test can choose exactly which headers a signature covers), by boto3, by faceledger's CLI and by
the AWS CLI, against a live server of its own (its refusals do not count against the shared server's)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import uuid
from datetime import datetime, timezone
from typing import Iterator

import httpx
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from faceledger.cli import main
from faceledger.cli.common import add_purpose_headers

from conftest import Server, create_key, serve_in

CONTENT_TYPE = "application/x-amz-json-1.1"
REQUIRED = ("host", "x-amz-date", "x-amz-target")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_in(tmp_path_factory.mktemp("binding"))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signed_headers(server: Server, target: str, body: bytes, *, key: tuple[str, str] | None = None,
                   signed: tuple[str, ...] = REQUIRED + ("content-type",), extra: dict[str, str] | None = None,
                   payload_hash: str | None = None) -> dict[str, str]:
    """The headers of ``POST /`` signed with AWS Signature Version 4 as AWS documents it, covering exactly the
    headers named in ``signed`` (lower case) among the request's; ``payload_hash``: what the signature states
    as the body's SHA-256 (default: the true one)."""
    key_id, secret = key or (server.key_id, server.secret)
    amz_date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": f"127.0.0.1:{server.port}", "Content-Type": CONTENT_TYPE, "X-Amz-Target": target,
               "X-Amz-Date": amz_date, **(extra or {})}
    lower = {k.lower(): v for k, v in headers.items()}
    names = sorted(signed)
    canonical_headers = "".join(f"{n}:{' '.join(lower[n].split())}\n" for n in names)
    payload = payload_hash or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(["POST", "/", "", canonical_headers, ";".join(names), payload])
    scope = f"{amz_date[:8]}/us-east-1/rekognition/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + secret).encode(), amz_date[:8])
    for part in ("us-east-1", "rekognition", "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={signature}")
    return headers


def send(server: Server, headers, body: bytes) -> httpx.Response:
    return httpx.post(server.url + "/", content=body, headers=headers, timeout=30)


def assert_refused(response: httpx.Response, code: str, *says: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == code, response.json()
    for fragment in says:
        assert fragment.lower() in response.json()["message"].lower(), response.json()["message"]


def ledger(server: Server, *filters: str) -> list[dict]:
    result = CliRunner().invoke(main, ["audit", "list", "--data", str(server.data_dir), "--json", *filters],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def collections(server: Server) -> list[str]:
    return server.client().list_collections()["CollectionIds"]


def test_a_complete_signature_is_accepted(srv):
    body = b"{}"
    response = send(srv, signed_headers(srv, "RekognitionService.ListCollections", body), body)
    assert response.status_code == 200, response.text
    # the least a signature may cover: the three required headers (SDKs sign Content-Type too)
    response = send(srv, signed_headers(srv, "RekognitionService.ListCollections", body, signed=REQUIRED), body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("left_out", REQUIRED)
def test_host_date_and_target_must_be_signed(srv, left_out):
    body = json.dumps({"CollectionId": f"unsigned-{left_out}"}).encode()
    signed = tuple(h for h in REQUIRED + ("content-type",) if h != left_out)
    response = send(srv, signed_headers(srv, "RekognitionService.CreateCollection", body, signed=signed), body)
    assert_refused(response, "InvalidSignatureException", f"must sign the {left_out} header")
    assert f"unsigned-{left_out}" not in collections(srv)


def test_a_retargeted_request_is_refused_and_the_collection_survives(srv):
    victim = create_key(srv.data_dir, "victim")
    cid = f"victim-{uuid.uuid4().hex[:8]}"
    srv.client(key=victim).create_collection(CollectionId=cid)
    body = json.dumps({"CollectionId": cid}).encode()
    describe, delete = "RekognitionService.DescribeCollection", "RekognitionService.DeleteCollection"

    # a signature that does not cover X-Amz-Target, captured and sent with another target
    captured = signed_headers(srv, describe, body, key=victim, signed=("host", "x-amz-date", "content-type"))
    assert_refused(send(srv, {**captured, "X-Amz-Target": delete}, body), "InvalidSignatureException",
                   "x-amz-target")
    # one that covers it, re-targeted
    captured = signed_headers(srv, describe, body, key=victim)
    assert send(srv, captured, body).status_code == 200  # the genuine request
    assert_refused(send(srv, {**captured, "X-Amz-Target": delete}, body), "InvalidSignatureException",
                   "signature we calculated does not match")
    # a second X-Amz-Target header, before or after the signed one
    for order in ((delete, describe), (describe, delete)):
        headers = [(k, v) for k, v in captured.items() if k != "X-Amz-Target"] + [("X-Amz-Target", t) for t in order]
        assert_refused(send(srv, headers, body), "InvalidSignatureException")

    assert cid in collections(srv)
    rows = ledger(srv, "--collection", cid)
    assert not [r for r in rows if r["operation"] == "DeleteCollection" and r["result"] == "OK"]
    refused = ledger(srv, "--key", f"unauthenticated:{victim[0]}")
    # recorded as refused (the operation named by the first X-Amz-Target), never as the victim's calls
    assert [(r["operation"], r["result"]) for r in refused] == [
        ("DeleteCollection", "InvalidSignatureException")] * 3 + [("DescribeCollection", "InvalidSignatureException")]
    assert {r["operation"] for r in ledger(srv, "--key", victim[0])} == {"CreateCollection", "DescribeCollection"}


def test_the_body_is_bound_by_its_hash_not_by_the_client_header(srv):
    target = "RekognitionService.CreateCollection"
    original = json.dumps({"CollectionId": "signed-body"}).encode()
    other = json.dumps({"CollectionId": "other-body"}).encode()
    true_hash, other_hash = hashlib.sha256(original).hexdigest(), hashlib.sha256(other).hexdigest()
    signed_with_hash = REQUIRED + ("content-type", "x-amz-content-sha256")

    # a signed X-Amz-Content-SHA256 of the original body, another body sent
    headers = signed_headers(srv, target, original, signed=signed_with_hash,
                             extra={"X-Amz-Content-SHA256": true_hash})
    assert_refused(send(srv, headers, other), "InvalidSignatureException",
                   "The provided 'x-amz-content-sha256' header does not match what was computed.")
    # the same signature, the header changed to the other body's hash (so it matches the body sent)
    assert_refused(send(srv, {**headers, "X-Amz-Content-SHA256": other_hash}, other), "InvalidSignatureException")
    # a signature over the original body (no header), another body with an unsigned header that matches it
    headers = signed_headers(srv, target, original)
    assert_refused(send(srv, {**headers, "X-Amz-Content-SHA256": other_hash}, other), "InvalidSignatureException",
                   "signature we calculated does not match")
    # UNSIGNED-PAYLOAD, signed, with any body
    for body in (original, other):
        headers = signed_headers(srv, target, body, signed=signed_with_hash, payload_hash="UNSIGNED-PAYLOAD",
                                 extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
        assert_refused(send(srv, headers, body), "InvalidSignatureException", "does not match what was computed",
                       "UNSIGNED-PAYLOAD")
    assert not {"signed-body", "other-body"} & set(collections(srv))

    # the true hash, signed (as the AWS SDK for JavaScript may send it): accepted
    headers = signed_headers(srv, target, original, signed=signed_with_hash, extra={"X-Amz-Content-SHA256": true_hash})
    assert send(srv, headers, original).status_code == 200
    assert "signed-body" in collections(srv)
    srv.client().delete_collection(CollectionId="signed-body")


@pytest.mark.parametrize("header, value", [
    ("X-Faceledger-Purpose", "added after signing"),
    ("X-Faceledger-Case", "CASE-AFTER"),
    ("X-Faceledger-Max-Expected-False-Matches", "1e12"),
    ("X-Faceledger-Min-Margin", "0"),
    ("X-Faceledger-Anything", "x"),
])
def test_faceledger_headers_must_be_signed(srv, header, value):
    body = b"{}"
    target = "RekognitionService.ListCollections"
    headers = signed_headers(srv, target, body)
    assert_refused(send(srv, {**headers, header: value}, body), "InvalidSignatureException", header.lower(),
                   "not signed")
    # the same header, signed: accepted
    headers = signed_headers(srv, target, body, signed=REQUIRED + ("content-type", header.lower()),
                             extra={header: value})
    assert send(srv, headers, body).status_code == 200
    if header == "X-Faceledger-Purpose":
        rows = [r for r in ledger(srv, "--key", srv.key_id, "--operation", "ListCollections")
                if r["purpose"] == value]
        assert len(rows) == 1 and rows[0]["result"] == "OK"  # the signed one only


def test_other_sdks_signing_more_headers_are_accepted(srv):
    """The AWS SDK for Java v1 signs User-Agent; others sign Content-Length: a signature over more headers than
    botocore's signer would choose still verifies."""
    body = b"{}"
    extra = {"User-Agent": "aws-sdk-java/1.12.700 Linux/6.1", "Content-Length": str(len(body)),
             "amz-sdk-invocation-id": str(uuid.uuid4())}
    headers = signed_headers(srv, "RekognitionService.ListCollections", body, extra=extra,
                             signed=REQUIRED + ("content-type", "user-agent", "content-length", "amz-sdk-invocation-id"))
    response = send(srv, headers, body)
    assert response.status_code == 200, response.text


def documented_hook(request, **kwargs):
    """docs/accountability.md's event hook, as printed there."""
    request.headers["X-Faceledger-Purpose"] = "missing person report"
    request.headers["X-Faceledger-Case"] = "CASE-2024-0042"


def test_boto3_hook_on_before_sign_is_signed_and_recorded(srv):
    key = create_key(srv.data_dir, "hooked")
    client = srv.client(key=key)
    client.meta.events.register("before-sign.rekognition.*", documented_hook)
    cid = f"hook-{uuid.uuid4().hex[:8]}"
    client.create_collection(CollectionId=cid)
    client.describe_collection(CollectionId=cid)
    client.delete_collection(CollectionId=cid)
    rows = ledger(srv, "--key", key[0])
    assert [r["operation"] for r in rows] == ["CreateCollection", "DescribeCollection", "DeleteCollection"]
    assert {(r["purpose"], r["case_ref"], r["result"]) for r in rows} == {
        ("missing person report", "CASE-2024-0042", "OK")}


def test_headers_added_after_signing_by_boto3_are_refused(srv):
    key = create_key(srv.data_dir, "late-hook")
    client = srv.client(key=key)
    client.meta.events.register("before-send.rekognition.*", documented_hook)  # after the signature
    with pytest.raises(ClientError) as info:
        client.list_collections()
    error = info.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException"
    assert "x-faceledger-case, x-faceledger-purpose" in error["Message"] and "before-sign" in error["Message"]
    assert ledger(srv, "--key", key[0]) == []  # nothing ran as this key
    refused = ledger(srv, "--key", f"unauthenticated:{key[0]}")
    assert [r["result"] for r in refused] == ["InvalidSignatureException"]


def test_cli_purpose_and_case_reach_the_server_signed(srv, tmp_path, monkeypatch):
    """faceledger's CLI with --endpoint: add_purpose_headers (boto3 operations) and its own signed requests
    (faceledger's operations) both sign the headers."""
    key = create_key(srv.data_dir, "cli")
    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key[1])
    cid = f"cli-{uuid.uuid4().hex[:8]}"
    common = ["--endpoint", srv.url, "--purpose", "audit drill", "--case", "CASE-CLI"]
    for args in (["collections", "create", cid], ["policy", "show", cid], ["collections", "delete", cid]):
        result = CliRunner().invoke(main, [*args, *common], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    rows = ledger(srv, "--key", key[0])
    assert [r["operation"] for r in rows] == ["CreateCollection", "GetCollectionPolicy", "DeleteCollection"]
    assert {(r["purpose"], r["case_ref"], r["result"]) for r in rows} == {("audit drill", "CASE-CLI", "OK")}
    # the helper itself, on a bare boto3 client
    client = srv.client(key=key)
    add_purpose_headers(client, "helper", "CASE-H")
    client.list_collections()
    assert ledger(srv, "--key", key[0])[-1]["purpose"] == "helper"


def _has_aws_cli() -> bool:
    try:
        return subprocess.run(["aws", "--version"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _has_aws_cli(), reason="the AWS CLI is not installed")
def test_the_aws_cli_is_accepted(srv, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": srv.key_id, "AWS_SECRET_ACCESS_KEY": srv.secret,
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    cid = f"awscli-{uuid.uuid4().hex[:8]}"
    for args in (["create-collection", "--collection-id", cid], ["describe-collection", "--collection-id", cid],
                 ["delete-collection", "--collection-id", cid]):
        r = subprocess.run(["aws", "rekognition", *args, "--endpoint-url", srv.url, "--region", "us-east-1",
                            "--output", "json"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    assert [r["result"] for r in ledger(srv, "--collection", cid)] == ["OK", "OK", "OK"]


def test_development_mode_takes_the_headers_as_sent(tmp_path):
    """--dev checks no signature, so X-Faceledger-* headers are taken as sent (documented)."""
    dev = Server(tmp_path / "data", tmp_path / "buckets", dev=True)
    try:
        client = dev.client()
        client.meta.events.register("before-send.rekognition.*", documented_hook)
        client.list_collections()
    finally:
        dev.stop()
    result = CliRunner().invoke(main, ["audit", "list", "--data", str(tmp_path / "data"), "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [(r["operation"], r["purpose"]) for r in rows if r["operation"] == "ListCollections"] == [
        ("ListCollections", "missing person report")]



@pytest.mark.parametrize("header", ["X-Faceledger-Purpose", "X-Faceledger-Case"])
def test_a_signed_value_with_a_comma_cannot_be_split_into_repeated_headers(srv, header):
    """A repeated header signs as its values joined by ',': a signed 'missing person,urgent' replayed as two
    headers would verify, and the ledger would record only 'missing person'. Repeats are refused."""
    body = b"{}"
    target = "RekognitionService.ListCollections"
    signed = signed_headers(srv, target, body, signed=REQUIRED + ("content-type", header.lower()),
                            extra={header: "missing person,urgent"})
    assert send(srv, signed, body).status_code == 200
    split = [(k, v) for k, v in signed.items() if k != header] + [(header, "missing person"), (header, "urgent")]
    response = httpx.post(srv.url + "/", content=body, headers=split, timeout=30)
    assert_refused(response, "InvalidSignatureException", "repeated", header.lower())


def test_the_recorded_source_is_the_peer_never_x_forwarded_for(srv):
    """uvicorn trusts X-Forwarded-For from loopback by default: the ledger's source (and the per-source limit on
    refusals) would be whatever a local client says."""
    body = b"{}"
    headers = signed_headers(srv, "RekognitionService.ListCollections", body)
    marker = f"xff-{uuid.uuid4().hex[:8]}"
    extra = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8", "Forwarded": "for=203.0.113.9",
             "User-Agent": marker}
    response = send(srv, {**headers, **extra}, body)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-amzn-RequestId"]
    rows = [r for r in ledger(srv, "--key", srv.key_id, "--operation", "ListCollections")
            if r["detail"].get("RequestId") == request_id]
    assert len(rows) == 1 and rows[0]["source"] == "127.0.0.1", rows
