"""faceledger.Client (in-process) answers like boto3 against a live faceledger server."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import faceledger
from faceledger.service.model import check_response

from conftest import image_bytes


def structure(value: Any) -> Any:
    """A response's shape: dict keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: structure(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [structure(value[0])] if value else []
    if isinstance(value, dt.datetime):
        return "datetime"
    return type(value).__name__


def scenario(client, lfw: Path) -> dict[str, dict]:
    """Create, index, search, list, describe, delete: one response of each, keyed by operation."""
    people = [p for p in sorted(lfw.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2][:2]
    first, second = (sorted(p.glob("*.jpg")) for p in people)
    cid = f"client-{uuid.uuid4().hex[:8]}"
    out = {"CreateCollection": client.create_collection(CollectionId=cid)}
    out["IndexFaces"] = client.index_faces(
        CollectionId=cid, Image={"Bytes": image_bytes(first[0])}, ExternalImageId=people[0].name
    )
    client.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(second[0])}, ExternalImageId=people[1].name)
    out["SearchFacesByImage"] = client.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(first[1])})
    face_id = out["IndexFaces"]["FaceRecords"][0]["Face"]["FaceId"]
    out["SearchFaces"] = client.search_faces(CollectionId=cid, FaceId=face_id, FaceMatchThreshold=0)
    out["ListFaces"] = client.list_faces(CollectionId=cid)
    out["ListCollections"] = client.list_collections()
    out["DescribeCollection"] = client.describe_collection(CollectionId=cid)
    out["DeleteCollection"] = client.delete_collection(CollectionId=cid)
    return out


@pytest.fixture(scope="module")
def both(rekognition, lfw, tmp_path_factory):
    client = faceledger.Client(data_dir=tmp_path_factory.mktemp("client-data"))
    try:
        yield scenario(client, lfw), scenario(rekognition, lfw), client
    finally:
        client.close()


@pytest.mark.parametrize(
    "operation",
    ["CreateCollection", "IndexFaces", "SearchFacesByImage", "SearchFaces", "ListFaces", "ListCollections",
     "DescribeCollection", "DeleteCollection"],
)
def test_client_response_has_boto3s_shape(both, operation):
    local, remote, _ = both
    assert check_response(operation, local[operation]) == []
    assert check_response(operation, remote[operation]) == []
    strip = lambda r: {k: v for k, v in r.items() if k != "ResponseMetadata"}  # noqa: E731
    assert structure(strip(local[operation])) == structure(strip(remote[operation]))
    assert set(local[operation]["ResponseMetadata"]) >= {"RequestId", "HTTPStatusCode"}
    assert local[operation]["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_client_and_server_compute_the_same_values(both):
    local, remote, _ = both
    for operation in ("SearchFacesByImage", "SearchFaces"):
        a, b = local[operation], remote[operation]
        assert [m["Face"]["ExternalImageId"] for m in a["FaceMatches"]] == [
            m["Face"]["ExternalImageId"] for m in b["FaceMatches"]
        ]
        assert [m["Similarity"] for m in a["FaceMatches"]] == pytest.approx([m["Similarity"] for m in b["FaceMatches"]])
    top = local["SearchFacesByImage"]["FaceMatches"][0]
    assert top["Similarity"] >= 80
    assert local["IndexFaces"]["FaceRecords"][0]["FaceDetail"] == remote["IndexFaces"]["FaceRecords"][0]["FaceDetail"]
    assert local["SearchFacesByImage"]["SearchedFaceBoundingBox"] == remote["SearchFacesByImage"]["SearchedFaceBoundingBox"]


def test_client_raises_boto3s_exceptions(both, rekognition):
    _, _, client = both
    with pytest.raises(client.exceptions.ResourceNotFoundException) as local:
        client.describe_collection(CollectionId="no-such-collection")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as remote:
        rekognition.describe_collection(CollectionId="no-such-collection")
    assert isinstance(local.value, ClientError)
    assert local.value.response["Error"]["Code"] == remote.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert local.value.operation_name == "DescribeCollection"
    assert local.value.response["ResponseMetadata"]["HTTPStatusCode"] == remote.value.response["ResponseMetadata"][
        "HTTPStatusCode"
    ]

    client.create_collection(CollectionId="dup")
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_collection(CollectionId="dup")
    with pytest.raises(client.exceptions.InvalidParameterException) as bad:
        client.search_faces(CollectionId="dup", FaceId=str(uuid.uuid4()))
    assert bad.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(AttributeError):
        client.no_such_method()
