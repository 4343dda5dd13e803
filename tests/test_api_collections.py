"""Collections and tags through boto3 against a live `faceledger serve` (no mocks).

Collection operations never touch the face engine, so this file needs no images
except where a face must be counted.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import image_bytes, shared_data

BACKENDS = ("sqlite", "postgresql")  # tests/conftest.py: these tests run on both stores

ARN_PREFIX = "arn:aws:rekognition:us-east-1:000000000000:collection/"


def new_id(prefix: str = "coll") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.fixture
def made(rekognition):
    """Create collections through this and they are deleted after the test."""
    created: list[str] = []

    def make(cid: str | None = None, **kwargs) -> tuple[str, dict]:
        cid = cid or new_id()
        response = rekognition.create_collection(CollectionId=cid, **kwargs)
        created.append(cid)
        return cid, response

    yield make
    for cid in created:
        try:
            rekognition.delete_collection(CollectionId=cid)
        except rekognition.exceptions.ResourceNotFoundException:
            pass


# --------------------------------------------------------------------------- create / describe


def test_create_collection_returns_arn_model_version_and_status(made):
    cid, response = made()
    assert response["StatusCode"] == 200
    assert response["CollectionArn"] == ARN_PREFIX + cid
    assert response["FaceModelVersion"] == "faceledger-sface-v2"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_create_duplicate_collection_is_resource_already_exists(rekognition, made):
    cid, first = made()
    with pytest.raises(rekognition.exceptions.ResourceAlreadyExistsException) as info:
        rekognition.create_collection(CollectionId=cid)
    code, status, message = error_of(info)
    assert (code, status) == ("ResourceAlreadyExistsException", 400)
    assert cid in message
    # the original is untouched
    described = rekognition.describe_collection(CollectionId=cid)
    assert described["CollectionARN"] == first["CollectionArn"]


def test_describe_new_collection(rekognition, made):
    before = dt.datetime.now(dt.timezone.utc)
    cid, created = made()
    after = dt.datetime.now(dt.timezone.utc)
    described = rekognition.describe_collection(CollectionId=cid)
    assert described["FaceCount"] == 0
    assert described["UserCount"] == 0
    assert described["CollectionARN"] == ARN_PREFIX + cid == created["CollectionArn"]
    assert described["FaceModelVersion"] == created["FaceModelVersion"]
    stamp = described["CreationTimestamp"]
    assert isinstance(stamp, dt.datetime) and stamp.tzinfo is not None
    # the wire carries epoch seconds with millisecond precision; allow a little slack either side
    assert before - dt.timedelta(seconds=2) <= stamp <= after + dt.timedelta(seconds=2)


def test_describe_counts_faces_and_users(rekognition, made):
    cid, _ = made()
    face = shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    indexed = rekognition.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(face)})
    assert len(indexed["FaceRecords"]) == 1
    rekognition.create_user(CollectionId=cid, UserId="user-a")
    rekognition.create_user(CollectionId=cid, UserId="user-b")
    described = rekognition.describe_collection(CollectionId=cid)
    assert (described["FaceCount"], described["UserCount"]) == (1, 2)


# --------------------------------------------------------------------------- list / paging


def test_list_collections_pages_through_every_collection_once(rekognition, made):
    ours = {made(new_id("page"))[0] for _ in range(7)}
    seen: list[str] = []
    versions: list[str] = []
    pages = 0
    kwargs: dict = {"MaxResults": 2}
    while True:
        page = rekognition.list_collections(**kwargs)
        pages += 1
        assert len(page["CollectionIds"]) <= 2
        assert len(page["FaceModelVersions"]) == len(page["CollectionIds"])
        seen += page["CollectionIds"]
        versions += page["FaceModelVersions"]
        if "NextToken" not in page:
            break
        kwargs = {"MaxResults": 2, "NextToken": page["NextToken"]}
        assert pages < 1000, "paging does not end"
    assert len(seen) == len(set(seen)), "a collection was listed twice"
    assert ours <= set(seen)
    assert pages >= 4  # 7+ collections, 2 a page
    # the unpaged listing agrees with the paged one
    assert sorted(rekognition.list_collections()["CollectionIds"]) == sorted(seen)
    assert set(versions) == {"faceledger-sface-v2"}


def test_list_collections_rejects_forged_token(rekognition, made):
    made()
    for forged in ("garbage", "eyJhIjoxfQ", "W10", "WyJkZWFkYmVlZiIsImEiXQ"):  # last: a well-formed, foreign scope
        with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException) as info:
            rekognition.list_collections(NextToken=forged)
        code, status, message = error_of(info)
        assert (code, status) == ("InvalidPaginationTokenException", 400)
        assert "token" in message.lower()


def test_list_collections_rejects_token_of_another_operation(rekognition, made):
    cid, _ = made()
    for n in range(3):
        rekognition.create_user(CollectionId=cid, UserId=f"u{n}")
    users = rekognition.list_users(CollectionId=cid, MaxResults=1)
    assert "NextToken" in users
    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException) as info:
        rekognition.list_collections(NextToken=users["NextToken"])
    assert error_of(info)[:2] == ("InvalidPaginationTokenException", 400)
    # and the token still works where it was issued
    rest = rekognition.list_users(CollectionId=cid, MaxResults=5, NextToken=users["NextToken"])
    assert [u["UserId"] for u in users["Users"] + rest["Users"]] == ["u0", "u1", "u2"]


def test_list_collections_token_survives_a_deleted_collection(rekognition, made):
    ids = [made(new_id("gap"))[0] for _ in range(4)]  # creation order: the order ListCollections pages in
    first = rekognition.list_collections(MaxResults=1)
    token = first["NextToken"]
    rekognition.delete_collection(CollectionId=ids[1])
    seen = list(first["CollectionIds"])
    while token:
        page = rekognition.list_collections(MaxResults=1, NextToken=token)
        seen += page["CollectionIds"]
        token = page.get("NextToken")
    assert ids[1] not in seen
    assert {ids[0], ids[2], ids[3]} <= set(seen)
    assert len(seen) == len(set(seen))


# --------------------------------------------------------------------------- delete


def test_delete_then_describe_is_not_found(rekognition, made):
    cid, _ = made()
    assert rekognition.delete_collection(CollectionId=cid)["StatusCode"] == 200
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as info:
        rekognition.describe_collection(CollectionId=cid)
    code, status, message = error_of(info)
    assert (code, status) == ("ResourceNotFoundException", 400)
    assert cid in message
    assert cid not in rekognition.list_collections()["CollectionIds"]


def test_delete_missing_collection_is_not_found(rekognition):
    cid = new_id("never")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as info:
        rekognition.delete_collection(CollectionId=cid)
    code, status, message = error_of(info)
    assert (code, status) == ("ResourceNotFoundException", 400)
    assert cid in message


def test_deleted_collection_id_can_be_reused_empty(rekognition, made):
    cid, _ = made()
    rekognition.create_user(CollectionId=cid, UserId="someone")
    rekognition.tag_resource(ResourceArn=ARN_PREFIX + cid, Tags={"k": "v"})
    rekognition.delete_collection(CollectionId=cid)
    made(cid)
    described = rekognition.describe_collection(CollectionId=cid)
    assert (described["FaceCount"], described["UserCount"]) == (0, 0)
    assert rekognition.list_tags_for_resource(ResourceArn=ARN_PREFIX + cid)["Tags"] == {}


# --------------------------------------------------------------------------- tags


def test_create_collection_with_tags(rekognition, made):
    tags = {"team": "faces", "env": "test", "empty": ""}
    cid, created = made(Tags=tags)
    assert rekognition.list_tags_for_resource(ResourceArn=created["CollectionArn"])["Tags"] == tags


def test_tag_and_untag_resource(rekognition, made):
    cid, created = made(Tags={"a": "1"})
    arn = created["CollectionArn"]
    rekognition.tag_resource(ResourceArn=arn, Tags={"b": "2", "a": "one"})  # adds b, overwrites a
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"a": "one", "b": "2"}
    rekognition.untag_resource(ResourceArn=arn, TagKeys=["a", "not-there"])
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"b": "2"}
    rekognition.untag_resource(ResourceArn=arn, TagKeys=["b"])
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {}


def test_tags_are_per_collection(rekognition, made):
    _, one = made(Tags={"owner": "one"})
    _, two = made(Tags={"owner": "two"})
    rekognition.tag_resource(ResourceArn=one["CollectionArn"], Tags={"x": "y"})
    assert rekognition.list_tags_for_resource(ResourceArn=two["CollectionArn"])["Tags"] == {"owner": "two"}


@pytest.mark.parametrize("operation", ["list", "tag", "untag"])
def test_tags_on_unknown_arn_are_not_found(rekognition, operation):
    arn = ARN_PREFIX + new_id("ghost")
    call = {
        "list": lambda: rekognition.list_tags_for_resource(ResourceArn=arn),
        "tag": lambda: rekognition.tag_resource(ResourceArn=arn, Tags={"k": "v"}),
        "untag": lambda: rekognition.untag_resource(ResourceArn=arn, TagKeys=["k"]),
    }[operation]
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as info:
        call()
    code, status, message = error_of(info)
    assert (code, status) == ("ResourceNotFoundException", 400)
    assert arn in message


def test_tag_resource_over_50_tags_is_refused(rekognition, made):
    cid, created = made(Tags={f"k{i}": "v" for i in range(45)})
    arn = created["CollectionArn"]
    with pytest.raises(ClientError) as info:
        rekognition.tag_resource(ResourceArn=arn, Tags={f"n{i}": "v" for i in range(6)})  # 51 in all
    code, status, message = error_of(info)
    assert code == "ServiceQuotaExceededException" and status == 400
    assert "50" in message
    tags = rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"]
    assert len(tags) == 45 and not any(k.startswith("n") for k in tags)
    # exactly 50 is allowed, and re-setting existing keys does not count twice
    rekognition.tag_resource(ResourceArn=arn, Tags={f"n{i}": "v" for i in range(5)})
    rekognition.tag_resource(ResourceArn=arn, Tags={"k0": "changed"})
    tags = rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"]
    assert len(tags) == 50 and tags["k0"] == "changed"


def test_create_collection_with_over_50_tags_is_refused(rekognition):
    cid = new_id("toomany")
    with pytest.raises(ClientError) as info:
        rekognition.create_collection(CollectionId=cid, Tags={f"k{i}": "v" for i in range(51)})
    code, status, message = error_of(info)
    assert code == "ServiceQuotaExceededException" and status == 400
    assert "50" in message
    assert cid not in rekognition.list_collections()["CollectionIds"]
