"""Signed requests and key policies: boto3 against a live server that checks SigV4 with its own keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import Server, create_key, free_port

CONTENT_TYPE = "application/x-amz-json-1.1"


def error_of(info: pytest.ExceptionInfo) -> tuple[str, int, str]:
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def signed_post(server: Server, target: str, body: bytes, key_id: str, secret: str,
                when: datetime | None = None, extra_headers: dict | None = None, send_body: bytes | None = None):
    """A request signed by botocore's SigV4 signer at time ``when`` (default: now)."""
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method="POST", url=server.url + "/", data=body,
                         headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target, "X-Amz-Date": stamp,
                                  **(extra_headers or {})})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1")
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{stamp[:8]}/us-east-1/rekognition/"
                                        f"aws4_request, SignedHeaders={signed}, Signature={signature}")
    return httpx.post(server.url + "/", content=body if send_body is None else send_body,
                      headers=dict(request.headers.items()), timeout=30)


def assert_refused(response: httpx.Response, code: str, *says: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["__type"] == code, body
    for fragment in says:
        assert fragment.lower() in body["message"].lower(), body["message"]


def test_valid_key_is_accepted(server):
    assert "CollectionIds" in server.client().list_collections()


def test_unknown_key_is_unrecognized_client(server):
    client = server.client(key=("FLAKNOSUCHKEY0000000", "whatever"))
    with pytest.raises(ClientError) as info:
        client.list_collections()
    code, status, message = error_of(info)
    assert (code, status) == ("UnrecognizedClientException", 400)
    assert "security token" in message


def test_wrong_secret_is_invalid_signature(server):
    client = server.client(key=(server.key_id, server.secret + "x"))
    with pytest.raises(ClientError) as info:
        client.list_collections()
    code, status, message = error_of(info)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert "signature we calculated does not match" in message


def test_stale_clock_is_refused_and_fresh_enough_is_accepted(server):
    body = b"{}"
    old = datetime.now(timezone.utc) - timedelta(minutes=20)
    assert_refused(signed_post(server, "RekognitionService.ListCollections", body, server.key_id, server.secret, old),
                   "InvalidSignatureException", "Signature expired")
    future = datetime.now(timezone.utc) + timedelta(minutes=20)
    assert_refused(signed_post(server, "RekognitionService.ListCollections", body, server.key_id, server.secret,
                               future), "InvalidSignatureException", "not yet current")
    ten_minutes_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    ok = signed_post(server, "RekognitionService.ListCollections", body, server.key_id, server.secret,
                     ten_minutes_ago)
    assert ok.status_code == 200, ok.text


def test_body_changed_after_signing_is_invalid_signature(server):
    body = json.dumps({"CollectionId": "signed-one"}).encode()
    tampered = json.dumps({"CollectionId": "other-one"}).encode()
    response = signed_post(server, "RekognitionService.CreateCollection", body, server.key_id, server.secret,
                           send_body=tampered)
    assert_refused(response, "InvalidSignatureException")
    names = server.client().list_collections()["CollectionIds"]
    assert "other-one" not in names and "signed-one" not in names


def test_unsigned_and_incomplete_requests(server):
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": "RekognitionService.ListCollections"}
    assert_refused(httpx.post(server.url + "/", content=b"{}", headers=headers), "MissingAuthenticationTokenException")
    bad = {**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=abc"}
    assert_refused(httpx.post(server.url + "/", content=b"{}", headers=bad), "IncompleteSignatureException",
                   "SignedHeaders")
    basic = {**headers, "Authorization": "Basic dXNlcjpwYXNz"}
    assert_refused(httpx.post(server.url + "/", content=b"{}", headers=basic), "IncompleteSignatureException")


def test_revoked_key_is_refused_at_once(server):
    key = create_key(server.data_dir, "short-lived")
    client = server.client(key=key)
    client.list_collections()
    subprocess.run([sys.executable, "-m", "faceledger", "keys", "revoke", key[0], "--data", str(server.data_dir)],
                   check=True, capture_output=True)
    with pytest.raises(ClientError) as info:
        client.list_collections()
    assert error_of(info)[0] == "UnrecognizedClientException"
    listed = subprocess.run([sys.executable, "-m", "faceledger", "keys", "list", "--data", str(server.data_dir),
                             "--json"], check=True, capture_output=True, text=True).stdout
    status = {k["AccessKeyId"]: k["Status"] for k in json.loads(listed)}
    assert status[key[0]] == "Revoked" and status[server.key_id] == "Active"
    assert key[1] not in listed  # secrets are never listed


def test_secrets_are_not_stored_in_clear(server):
    key_id, secret = create_key(server.data_dir, "sealed")
    raw = b"".join(p.read_bytes() for p in server.data_dir.glob("faceledger.db*"))
    assert key_id.encode() in raw
    assert secret.encode() not in raw


# ---------------------------------------------------------------------------- policies


def arn(cid: str) -> str:
    return f"arn:aws:rekognition:us-east-1:000000000000:collection/{cid}"


@pytest.fixture(scope="module")
def two_collections(rekognition):
    names = [f"pol-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        rekognition.create_collection(CollectionId=name)
    yield names
    for name in names:
        rekognition.delete_collection(CollectionId=name)


def test_policy_allows_per_action_and_collection(server, two_collections):
    mine, other = two_collections
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["rekognition:Describe*", "rekognition:ListFaces"], "Resource": arn(mine)},
    ]}
    client = server.client(key=create_key(server.data_dir, "reader", policy))
    assert client.describe_collection(CollectionId=mine)["FaceCount"] == 0
    assert client.list_faces(CollectionId=mine)["Faces"] == []
    for call in (lambda: client.describe_collection(CollectionId=other),  # other collection
                 lambda: client.delete_collection(CollectionId=mine),  # other action
                 lambda: client.list_collections()):  # Resource "*" is not the collection's ARN
        with pytest.raises(ClientError) as info:
            call()
        code, status, message = error_of(info)
        assert (code, status) == ("AccessDeniedException", 400)
        assert "not authorized to perform: rekognition:" in message and "on resource:" in message
    with pytest.raises(ClientError) as info:
        client.delete_collection(CollectionId=mine)
    assert f"rekognition:DeleteCollection on resource: {arn(mine)}" in error_of(info)[2]
    assert mine in server.client().list_collections()["CollectionIds"]  # nothing was deleted


def test_explicit_deny_wins(server, two_collections):
    mine, other = two_collections
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["rekognition:Search*", "rekognition:Delete*"], "Resource": arn(mine)},
    ]}
    client = server.client(key=create_key(server.data_dir, "no-search", policy))
    assert mine in client.list_collections()["CollectionIds"]
    client.describe_collection(CollectionId=mine)
    with pytest.raises(ClientError) as info:
        client.search_faces(CollectionId=mine, FaceId=str(uuid.uuid4()))
    code, _, message = error_of(info)
    assert code == "AccessDeniedException" and "explicit deny" in message
    with pytest.raises(ClientError):
        client.delete_collection(CollectionId=mine)
    client.describe_collection(CollectionId=other)


def test_no_statement_no_access(server):
    client = server.client(key=create_key(server.data_dir, "nothing", {"Statement": []}))
    with pytest.raises(ClientError) as info:
        client.list_collections()
    assert error_of(info)[0] == "AccessDeniedException"


def test_unsupported_policy_is_refused_at_key_creation(server, tmp_path):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"Statement": [{"Effect": "Allow", "NotAction": "x", "Resource": "*"}]}))
    r = subprocess.run([sys.executable, "-m", "faceledger", "keys", "create", "--data", str(server.data_dir),
                        "--name", "bad", "--policy", str(policy)], capture_output=True, text=True)
    assert r.returncode == 2 and "NotAction" in r.stderr


# ---------------------------------------------------------------------------- first start, dev mode


def test_first_start_creates_admin_key_and_credentials_file(tmp_path, monkeypatch):
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--port", str(port), "--data", str(data),
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first_line_block = []
        for line in proc.stdout:
            first_line_block.append(line)
            if "more keys:" in line:
                break
        printed = "".join(first_line_block)
        # stdout is a pipe, not a terminal: the key id and where the secret is, never the secret
        assert "created the admin key" in printed and "aws_secret_access_key" not in printed
        credentials = data / "credentials"
        assert str(credentials.resolve()) in printed
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        env = dict(os.environ)
        session = boto3.Session(profile_name="faceledger")
        client = session.client("rekognition", endpoint_url=url, region_name="us-east-1",
                                 config=Config(retries={"total_max_attempts": 1}))
        client.create_collection(CollectionId="admin-made")
        secret = credentials.read_text().split("aws_secret_access_key = ", 1)[1].split()[0]
        assert len(secret) >= 32 and secret not in printed
        aws = subprocess.run(["aws", "--profile", "faceledger", "rekognition", "list-collections", "--endpoint-url",
                              url, "--region", "us-east-1", "--output", "json"], env=env, capture_output=True,
                             text=True) if _has_aws_cli() else None
        if aws is not None:
            assert aws.returncode == 0, aws.stderr
            assert json.loads(aws.stdout)["CollectionIds"] == ["admin-made"]
    finally:
        proc.terminate()
        proc.wait(10)
    # a second start creates no new admin key
    out = subprocess.run([sys.executable, "-m", "faceledger", "keys", "list", "--data", str(data), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert [k["Name"] for k in json.loads(out)] == ["admin"]


def _has_aws_cli() -> bool:
    try:
        return subprocess.run(["aws", "--version"], capture_output=True).returncode == 0
    except OSError:
        return False


def test_dev_mode_is_refused_off_loopback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "faceledger", "serve", "--dev", "--host", "0.0.0.0", "--port",
                        str(free_port()), "--data", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "refused" in r.stderr and "loopback" in r.stderr


def test_dev_mode_on_loopback_accepts_any_signature(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "buckets", dev=True)
    try:
        assert "CollectionIds" in srv.client(key=("anything", "goes")).list_collections()
    finally:
        srv.stop()


def test_policy_decision_before_the_resource_is_known():
    """Policy.decide_anywhere: what can be refused before the body (and so the collection) is read."""
    from faceledger.service.auth import Policy

    arn = "arn:aws:rekognition:us-east-1:000000000000:collection/"
    only_staff = Policy.parse({"Statement": [
        {"Effect": "Allow", "Action": "rekognition:Search*", "Resource": arn + "staff"}]})
    assert only_staff.decide_anywhere("rekognition:SearchFacesByImage") == "Allow"  # maybe, on staff
    assert only_staff.decide_anywhere("rekognition:DeleteCollection") == "ImplicitDeny"
    assert only_staff.decide("rekognition:SearchFacesByImage", arn + "other") == "ImplicitDeny"
    deny_all = Policy.parse({"Statement": [
        {"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "rekognition:Delete*", "Resource": "*"},
        {"Effect": "Deny", "Action": "rekognition:IndexFaces", "Resource": arn + "staff"}]})
    assert deny_all.decide_anywhere("rekognition:DeleteFaces") == "Deny"
    assert deny_all.decide_anywhere("rekognition:IndexFaces") == "Allow"  # denied on staff only: the body decides
    assert Policy.parse({"Statement": []}).decide_anywhere("rekognition:ListCollections") == "ImplicitDeny"
