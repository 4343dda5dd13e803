"""Bad input through boto3 and raw HTTP against a live `faceledger serve`.

Every refusal must carry Rekognition's error code, HTTP 400, a message naming the
problem, and leave the stored data exactly as it was.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from conftest import image_bytes, shared_data

CONTENT_TYPE = "application/x-amz-json-1.1"
MB = 1024 * 1024


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))


@pytest.fixture(scope="module")
def seeded(rekognition, face_jpeg) -> Any:
    """A collection holding one face, a user and a tag: the data every refusal must leave alone."""
    cid = f"errors-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid, Tags={"purpose": "errors"})
    indexed = rekognition.index_faces(CollectionId=cid, Image={"Bytes": face_jpeg}, ExternalImageId="seed")
    assert len(indexed["FaceRecords"]) == 1
    rekognition.create_user(CollectionId=cid, UserId="seed-user")
    yield cid
    rekognition.delete_collection(CollectionId=cid)


def snapshot(rekognition, cid: str) -> dict[str, Any]:
    def strip(response: dict) -> dict:
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    return {
        "collections": sorted(rekognition.list_collections()["CollectionIds"]),
        "describe": strip(rekognition.describe_collection(CollectionId=cid)),
        "faces": sorted(rekognition.list_faces(CollectionId=cid)["Faces"], key=lambda f: f["FaceId"]),
        "users": rekognition.list_users(CollectionId=cid)["Users"],
        "tags": rekognition.list_tags_for_resource(
            ResourceArn=rekognition.describe_collection(CollectionId=cid)["CollectionARN"]
        )["Tags"],
    }


@dataclass
class Ctx:
    client: Any  # boto3 with parameter validation
    raw: Any  # boto3 without: the server sees the bad value
    cid: str
    face: bytes


@dataclass
class Case:
    id: str
    call: Callable[[Ctx], Any]
    code: str
    says: tuple[str, ...]  # lower-case fragments the message must contain


def bomb_png() -> bytes:
    """A 40000x40000 1-bit PNG: about 200 KB on the wire, 1.6 gigapixels (4.8 GB as RGB) decoded."""
    return encode(Image.new("1", (40000, 40000)), "PNG", optimize=True)


def over_limit_png() -> bytes:
    """8000x8000 palette PNG: under Pillow's own bomb limit, over the server's 36 MP limit."""
    return encode(Image.new("P", (8000, 8000)), "PNG", optimize=True)


def image_call(image: Callable[[Ctx], dict], operation: str = "index_faces") -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        return getattr(ctx.client, operation)(CollectionId=ctx.cid, Image=image(ctx))

    return call


def _astronaut(fmt: str) -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    return encode(Image.fromarray(skimage_data.astronaut()), fmt)


def _chelsea() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    return encode(Image.fromarray(skimage_data.chelsea()), "JPEG")


CASES = [
    Case("random-bytes", image_call(lambda c: {"Bytes": os.urandom(20_000)}), "InvalidImageFormatException",
         ("image", "not a decodable image")),
    Case("empty-ish", image_call(lambda c: {"Bytes": b"\x00"}), "InvalidImageFormatException", ("image",)),
    Case("truncated-jpeg", image_call(lambda c: {"Bytes": c.face[: len(c.face) // 2]}),
         "InvalidImageFormatException", ("truncated",)),
    Case("jpeg-header-only", image_call(lambda c: {"Bytes": c.face[:600]}), "InvalidImageFormatException",
         ("truncated",)),
    Case("gif", image_call(lambda c: {"Bytes": _astronaut("GIF")}), "InvalidImageFormatException", ("gif",)),
    Case("bmp", image_call(lambda c: {"Bytes": _astronaut("BMP")}), "InvalidImageFormatException", ("bmp",)),
    Case("gif-detect", lambda c: c.client.detect_faces(Image={"Bytes": _astronaut("GIF")}),
         "InvalidImageFormatException", ("gif",)),
    Case("over-5mb", image_call(lambda c: {"Bytes": c.face + os.urandom(5 * MB)}), "ImageTooLargeException",
         ("5 mb",)),
    Case("over-request-limit", image_call(lambda c: {"Bytes": os.urandom(7 * MB)}), "ImageTooLargeException",
         ("limit",)),
    Case("too-many-pixels", image_call(lambda c: {"Bytes": over_limit_png()}), "ImageTooLargeException",
         ("8000x8000", "limit")),
    Case("missing-collection",
         lambda c: c.client.index_faces(CollectionId="no-such-collection", Image={"Bytes": c.face}),
         "ResourceNotFoundException", ("no-such-collection",)),
    Case("missing-collection-search",
         lambda c: c.client.search_faces_by_image(CollectionId="no-such-collection", Image={"Bytes": c.face}),
         "ResourceNotFoundException", ("no-such-collection",)),
    Case("collection-id-bad-characters", lambda c: c.raw.create_collection(CollectionId="bad id/with spaces!"),
         "ValidationException", ("collectionid", "regular expression")),
    Case("collection-id-bad-characters-describe", lambda c: c.raw.describe_collection(CollectionId="a*b"),
         "ValidationException", ("collectionid",)),
    Case("collection-id-too-long", lambda c: c.raw.create_collection(CollectionId="x" * 300),
         "ValidationException", ("collectionid", "length")),
    Case("external-image-id-bad-characters",
         lambda c: c.raw.index_faces(CollectionId=c.cid, Image={"Bytes": c.face}, ExternalImageId="a b/c"),
         "ValidationException", ("externalimageid",)),
    Case("external-image-id-too-long",
         lambda c: c.raw.index_faces(CollectionId=c.cid, Image={"Bytes": c.face}, ExternalImageId="x" * 256),
         "ValidationException", ("externalimageid", "255")),
    Case("tag-key-aws-prefix",
         lambda c: c.raw.tag_resource(ResourceArn=c.client.describe_collection(CollectionId=c.cid)["CollectionARN"],
                                      Tags={"aws:owner": "me"}),
         "ValidationException", ("tags",)),
    Case("search-max-faces-0",
         lambda c: c.raw.search_faces_by_image(CollectionId=c.cid, Image={"Bytes": c.face}, MaxFaces=0),
         "ValidationException", ("maxfaces", "greater than or equal to 1")),
    Case("search-max-faces-5000",
         lambda c: c.raw.search_faces_by_image(CollectionId=c.cid, Image={"Bytes": c.face}, MaxFaces=5000),
         "ValidationException", ("maxfaces", "less than or equal to 4096")),
    Case("index-max-faces-0",
         lambda c: c.raw.index_faces(CollectionId=c.cid, Image={"Bytes": c.face}, MaxFaces=0),
         "ValidationException", ("maxfaces",)),
    Case("threshold-101",
         lambda c: c.raw.search_faces_by_image(CollectionId=c.cid, Image={"Bytes": c.face}, FaceMatchThreshold=101),
         "ValidationException", ("facematchthreshold", "100")),
    Case("quality-filter-best",
         lambda c: c.raw.search_faces_by_image(CollectionId=c.cid, Image={"Bytes": c.face}, QualityFilter="BEST"),
         "ValidationException", ("qualityfilter", "best")),
    Case("quality-filter-best-index",
         lambda c: c.raw.index_faces(CollectionId=c.cid, Image={"Bytes": c.face}, QualityFilter="BEST"),
         "ValidationException", ("qualityfilter",)),
    Case("two-problems-one-message",
         lambda c: c.raw.search_faces_by_image(CollectionId="bad id", Image={"Bytes": c.face}, MaxFaces=0),
         "ValidationException", ("2 validation errors", "collectionid", "maxfaces")),
    Case("bytes-and-s3object",
         lambda c: c.client.index_faces(
             CollectionId=c.cid,
             Image={"Bytes": c.face, "S3Object": {"Bucket": "faces-bucket", "Name": "a.jpg"}}),
         "InvalidParameterException", ("bytes", "s3object")),
    Case("neither-bytes-nor-s3object", lambda c: c.raw.index_faces(CollectionId=c.cid, Image={}),
         "InvalidParameterException", ("bytes", "s3object")),
    Case("search-image-without-face",
         lambda c: c.client.search_faces_by_image(CollectionId=c.cid, Image={"Bytes": _chelsea()}),
         "InvalidParameterException", ("no faces",)),
    Case("delete-faces-bad-face-id", lambda c: c.raw.delete_faces(CollectionId=c.cid, FaceIds=["not-a-uuid"]),
         "ValidationException", ("faceids",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refusal_has_code_status_message_and_changes_nothing(server, rekognition, seeded, face_jpeg, case):
    ctx = Ctx(rekognition, server.client(parameter_validation=False), seeded, face_jpeg)
    before = snapshot(rekognition, seeded)
    with pytest.raises(ClientError) as info:
        case.call(ctx)
    error = info.value.response["Error"]
    assert error["Code"] == case.code, error
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = error["Message"].lower()
    for fragment in case.says:
        assert fragment in message, error["Message"]
    assert "traceback" not in message
    assert snapshot(rekognition, seeded) == before


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read the server's memory")
def test_decompression_bomb_is_refused_quickly_and_server_stays_healthy(server, rekognition, seeded, face_jpeg):
    bomb = bomb_png()
    assert len(bomb) < 1 * MB
    before = snapshot(rekognition, seeded)
    for attempt in range(3):
        start = time.monotonic()
        with pytest.raises(rekognition.exceptions.ImageTooLargeException) as info:
            rekognition.index_faces(CollectionId=seeded, Image={"Bytes": bomb})
        assert time.monotonic() - start < 5
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "pixels" in info.value.response["Error"]["Message"].lower()
    with pytest.raises(rekognition.exceptions.ImageTooLargeException):
        rekognition.detect_faces(Image={"Bytes": bomb})
    assert server.process.poll() is None
    assert vm_hwm_kib(server.process.pid) < 1536 * 1024, "the bomb was (partly) decoded"
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    # and it still does real work
    assert len(rekognition.detect_faces(Image={"Bytes": face_jpeg})["FaceDetails"]) == 1
    assert snapshot(rekognition, seeded) == before


# --------------------------------------------------------------------------- raw HTTP


def post(server, target: str | None, body: bytes, content_type: str = CONTENT_TYPE) -> httpx.Response:
    """A raw POST, signed with the server's key (SigV4, botocore's signer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=server.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(server.key_id, server.secret), "rekognition", "us-east-1").add_auth(request)
    return httpx.post(server.url + "/", content=body, headers=dict(request.headers.items()), timeout=30)


def assert_aws_error(response: httpx.Response, code: str, *says: str) -> dict:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(CONTENT_TYPE)
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"__type", "message"}
    assert body["__type"] == code
    for fragment in says:
        assert fragment.lower() in body["message"].lower(), body["message"]
    assert response.headers.get("x-amzn-requestid")
    return body


RAW_CASES = [
    ("unknown-operation", "RekognitionService.MakeCoffee", b"{}", "UnknownOperationException", ("MakeCoffee",)),
    ("unknown-service-prefix", "Comprehend.DetectSentiment", b"{}", "UnknownOperationException", ("target",)),
    ("missing-target", None, b"{}", "UnknownOperationException", ("target",)),
    ("unimplemented-op", "RekognitionService.ListMediaAnalysisJobs", b'{}',
     "UnknownOperationException", ("ListMediaAnalysisJobs", "not implement")),
    ("unsupported-op", "RekognitionService.DetectProtectiveEquipment", b'{"Image":{"Bytes":"AAAA"}}',
     "UnsupportedOperationException", ("DetectProtectiveEquipment", "does not support", "model")),
    ("malformed-json", "RekognitionService.ListCollections", b'{"MaxResults": 2,', "SerializationException",
     ("json",)),
    ("json-array", "RekognitionService.ListCollections", b"[1, 2]", "SerializationException", ("object",)),
    ("not-utf8", "RekognitionService.ListCollections", b"\xff\xfe\x00{", "SerializationException", ("json",)),
    ("bad-base64", "RekognitionService.DetectFaces", b'{"Image":{"Bytes":"!!! not base64 !!!"}}',
     "SerializationException", ("base64",)),
    ("wrong-type", "RekognitionService.DescribeCollection", b'{"CollectionId": 42}', "ValidationException",
     ("collectionId",)),
    ("missing-required", "RekognitionService.DescribeCollection", b"{}", "ValidationException",
     ("collectionId",)),
]


@pytest.mark.parametrize("target, body, code, says", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_raw_http_errors_are_aws_json(server, rekognition, seeded, target, body, code, says):
    before = snapshot(rekognition, seeded)
    assert_aws_error(post(server, target, body), code, *says)
    assert snapshot(rekognition, seeded) == before


def test_raw_http_success_is_aws_json(server, seeded):
    response = post(server, "RekognitionService.DescribeCollection", json.dumps({"CollectionId": seeded}).encode())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(CONTENT_TYPE)
    body = response.json()
    assert body["FaceCount"] == 1 and body["UserCount"] == 1
    assert isinstance(body["CreationTimestamp"], (int, float))  # epoch seconds on the wire


def test_raw_http_empty_body_is_an_empty_request(server):
    response = post(server, "RekognitionService.ListCollections", b"")
    assert response.status_code == 200
    assert "CollectionIds" in response.json()


def test_server_logged_no_traceback(server):
    """Every refusal above is a client error: none of them may have reached the server's bug handler."""
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "InternalServerError" not in log, log[-4000:]
