"""Users: CreateUser ... SearchUsersByImage, DeleteUser; boto3 against a live server, real photographs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from faceledger.service.model import check_response

from conftest import image_bytes, shared_data

BACKENDS = ("sqlite", "postgresql")  # tests/conftest.py: these tests run on both stores


def people(lfw: Path, n: int, min_images: int) -> list[list[Path]]:
    """Photographs of the first ``n`` LFW people (by name) with at least ``min_images`` of them."""
    out = []
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        files = sorted(person.glob("*.jpg"))
        if len(files) >= min_images:
            out.append(files)
            if len(out) == n:
                break
    return out


def index(rekognition, cid: str, photo: Path) -> str:
    response = rekognition.index_faces(
        CollectionId=cid, Image={"Bytes": image_bytes(photo)}, ExternalImageId=photo.stem, MaxFaces=1
    )
    assert len(response["FaceRecords"]) == 1, photo
    return response["FaceRecords"][0]["Face"]["FaceId"]


def conforms(operation: str, response: dict) -> dict:
    assert check_response(operation, response) == [], operation
    return response


@pytest.fixture
def faces(rekognition, collection_id, lfw):
    """Faces of two LFW people in ``collection_id``: a[0..3] of one person, b[0..1] of another."""
    a_photos, b_photos = people(lfw, 2, 4)
    return {
        "a": [index(rekognition, collection_id, p) for p in a_photos[:3]],
        "b": [index(rekognition, collection_id, p) for p in b_photos[:2]],
        "a_probe": a_photos[3],
    }


def user_ids(rekognition, cid: str) -> dict[str, str]:
    response = conforms("ListUsers", rekognition.list_users(CollectionId=cid))
    return {u["UserId"]: u["UserStatus"] for u in response["Users"]}


def test_create_duplicate_and_list_users(rekognition, collection_id):
    conforms("CreateUser", rekognition.create_user(CollectionId=collection_id, UserId="alice"))
    rekognition.create_user(CollectionId=collection_id, UserId="bob")
    with pytest.raises(rekognition.exceptions.ConflictException):
        rekognition.create_user(CollectionId=collection_id, UserId="alice")
    assert user_ids(rekognition, collection_id) == {"alice": "CREATED", "bob": "CREATED"}
    page = rekognition.list_users(CollectionId=collection_id, MaxResults=1)
    assert len(page["Users"]) == 1 and page["NextToken"]
    rest = rekognition.list_users(CollectionId=collection_id, NextToken=page["NextToken"])
    assert {u["UserId"] for u in page["Users"] + rest["Users"]} == {"alice", "bob"}


def test_create_user_in_missing_collection(rekognition):
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.create_user(CollectionId=f"missing-{uuid.uuid4().hex[:8]}", UserId="alice")


def test_associate_faces_reasons(rekognition, collection_id, faces):
    a, b = faces["a"], faces["b"]
    rekognition.create_user(CollectionId=collection_id, UserId="alice")
    rekognition.create_user(CollectionId=collection_id, UserId="bob")

    response = conforms(
        "AssociateFaces", rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=a[:2])
    )
    assert {f["FaceId"] for f in response["AssociatedFaces"]} == set(a[:2])
    assert response["UnsuccessfulFaceAssociations"] == []
    assert response["UserStatus"] == "ACTIVE"
    assert user_ids(rekognition, collection_id) == {"alice": "ACTIVE", "bob": "CREATED"}

    # Another person's face is refused at the default UserMatchThreshold (75).
    response = rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=[b[0]])
    assert response["AssociatedFaces"] == []
    [refused] = response["UnsuccessfulFaceAssociations"]
    assert refused["FaceId"] == b[0] and refused["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    assert 0 <= refused["Confidence"] < 75

    # ... and accepted when the threshold allows it (then taken back).
    response = rekognition.associate_faces(
        CollectionId=collection_id, UserId="alice", FaceIds=[b[0]], UserMatchThreshold=0
    )
    assert [f["FaceId"] for f in response["AssociatedFaces"]] == [b[0]]
    rekognition.disassociate_faces(CollectionId=collection_id, UserId="alice", FaceIds=[b[0]])

    # A face of alice's cannot go to bob; unknown ids are reported.
    rekognition.associate_faces(CollectionId=collection_id, UserId="bob", FaceIds=[b[0]])
    unknown = str(uuid.uuid4())
    response = rekognition.associate_faces(CollectionId=collection_id, UserId="bob", FaceIds=[a[0], unknown, b[1]])
    assert [f["FaceId"] for f in response["AssociatedFaces"]] == [b[1]]
    reasons = {u["FaceId"]: u for u in response["UnsuccessfulFaceAssociations"]}
    assert reasons[a[0]]["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert reasons[a[0]]["UserId"] == "alice"
    assert reasons[unknown]["Reasons"] == ["FACE_NOT_FOUND"]

    # A third photo of the same person joins alice (it matches her faces).
    response = rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=[a[2]])
    assert [f["FaceId"] for f in response["AssociatedFaces"]] == [a[2]]

    listed = rekognition.list_faces(CollectionId=collection_id, UserId="alice")
    assert {f["FaceId"] for f in listed["Faces"]} == set(a)
    assert all(f["UserId"] == "alice" for f in listed["Faces"])

    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.associate_faces(CollectionId=collection_id, UserId="nobody", FaceIds=[a[0]])


def test_disassociate_faces(rekognition, collection_id, faces):
    a, b = faces["a"], faces["b"]
    rekognition.create_user(CollectionId=collection_id, UserId="alice")
    rekognition.create_user(CollectionId=collection_id, UserId="bob")
    rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=a[:2])
    rekognition.associate_faces(CollectionId=collection_id, UserId="bob", FaceIds=b[:1])

    unknown = str(uuid.uuid4())
    response = conforms(
        "DisassociateFaces",
        rekognition.disassociate_faces(CollectionId=collection_id, UserId="alice", FaceIds=[a[1], b[0], unknown]),
    )
    assert [f["FaceId"] for f in response["DisassociatedFaces"]] == [a[1]]
    reasons = {u["FaceId"]: u["Reasons"] for u in response["UnsuccessfulFaceDisassociations"]}
    assert reasons == {b[0]: ["ASSOCIATED_TO_A_DIFFERENT_USER"], unknown: ["FACE_NOT_FOUND"]}
    assert response["UserStatus"] == "ACTIVE"
    listed = rekognition.list_faces(CollectionId=collection_id, UserId="alice")
    assert [f["FaceId"] for f in listed["Faces"]] == [a[0]]

    response = rekognition.disassociate_faces(CollectionId=collection_id, UserId="alice", FaceIds=[a[0]])
    assert response["UserStatus"] == "CREATED"
    assert rekognition.list_faces(CollectionId=collection_id, UserId="alice")["Faces"] == []


def test_search_users_by_face_id_and_by_user_id(rekognition, plain_rekognition, collection_id, faces):
    a, b = faces["a"], faces["b"]
    for user, face_ids in (("alice", a[:2]), ("alice-again", a[2:3]), ("bob", b[:1])):
        rekognition.create_user(CollectionId=collection_id, UserId=user)
        rekognition.associate_faces(CollectionId=collection_id, UserId=user, FaceIds=face_ids)

    # An unassociated face of bob's finds bob.
    response = conforms("SearchUsers", rekognition.search_users(CollectionId=collection_id, FaceId=b[1]))
    assert [m["User"]["UserId"] for m in response["UserMatches"]] == ["bob"]
    assert response["SearchedFace"] == {"FaceId": b[1]}
    assert 80 <= response["UserMatches"][0]["Similarity"] <= 100
    assert response["UserMatches"][0]["User"]["UserStatus"] == "ACTIVE"
    assert response["FaceModelVersion"]

    # A face of alice's finds the other user made of her photos, never alice herself.
    response = rekognition.search_users(CollectionId=collection_id, FaceId=a[0])
    assert [m["User"]["UserId"] for m in response["UserMatches"]] == ["alice-again"]

    response = rekognition.search_users(CollectionId=collection_id, UserId="alice")
    assert response["SearchedUser"] == {"UserId": "alice"}
    assert [m["User"]["UserId"] for m in response["UserMatches"]] == ["alice-again"]

    # threshold 0, with faceledger's search policy off (the default would raise it for the collection's size)
    response = plain_rekognition.search_users(CollectionId=collection_id, UserId="alice", UserMatchThreshold=0)
    ranked = [m["User"]["UserId"] for m in response["UserMatches"]]
    assert ranked == ["alice-again", "bob"]
    similarities = [m["Similarity"] for m in response["UserMatches"]]
    assert similarities == sorted(similarities, reverse=True) and similarities[1] < 80

    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.search_users(CollectionId=collection_id, UserId="nobody")
    with pytest.raises(rekognition.exceptions.ClientError):
        rekognition.search_users(CollectionId=collection_id, FaceId=str(uuid.uuid4()))


def test_search_users_by_image(rekognition, collection_id, faces):
    rekognition.create_user(CollectionId=collection_id, UserId="alice")
    rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=faces["a"])
    rekognition.create_user(CollectionId=collection_id, UserId="bob")
    rekognition.associate_faces(CollectionId=collection_id, UserId="bob", FaceIds=faces["b"])

    response = conforms(
        "SearchUsersByImage",
        rekognition.search_users_by_image(CollectionId=collection_id, Image={"Bytes": image_bytes(faces["a_probe"])}),
    )
    assert [m["User"]["UserId"] for m in response["UserMatches"]] == ["alice"]
    assert 80 <= response["UserMatches"][0]["Similarity"] <= 100
    assert response["SearchedFace"]["FaceDetail"]["Confidence"] > 0
    assert response["UnsearchedFaces"] == []
    assert response["FaceModelVersion"]


def test_search_users_by_image_group_photo_searches_the_largest_face(rekognition, collection_id):
    knn = shared_data("small_identities", "face_recognition_knn_examples")
    for name in ("obama", "biden"):
        rekognition.create_user(CollectionId=collection_id, UserId=name)
        ids = [index(rekognition, collection_id, p) for p in sorted((knn / "train" / name).glob("*.jp*g"))]
        response = rekognition.associate_faces(CollectionId=collection_id, UserId=name, FaceIds=ids)
        assert len(response["AssociatedFaces"]) == len(ids)

    response = rekognition.search_users_by_image(
        CollectionId=collection_id, Image={"Bytes": image_bytes(knn / "test" / "obama_and_biden.jpg")}
    )
    searched = response["SearchedFace"]["FaceDetail"]["BoundingBox"]
    unsearched = response["UnsearchedFaces"]
    assert len(unsearched) >= 1
    for face in unsearched:
        assert face["Reasons"] == ["FACE_NOT_LARGEST"]
        box = face["FaceDetails"]["BoundingBox"]
        assert box["Width"] * box["Height"] <= searched["Width"] * searched["Height"]
    # Biden stands on the left, Obama on the right: the user found is whoever's face was searched.
    expected = "biden" if searched["Left"] + searched["Width"] / 2 < 0.5 else "obama"
    assert response["UserMatches"][0]["User"]["UserId"] == expected


def test_delete_user_unassociates_faces(rekognition, collection_id, faces):
    a = faces["a"]
    rekognition.create_user(CollectionId=collection_id, UserId="alice")
    rekognition.associate_faces(CollectionId=collection_id, UserId="alice", FaceIds=a)

    response = conforms("DeleteFaces", rekognition.delete_faces(CollectionId=collection_id, FaceIds=[a[0]]))
    assert response["DeletedFaces"] == []
    [refused] = response["UnsuccessfulFaceDeletions"]
    assert refused["FaceId"] == a[0] and refused["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    assert refused["UserId"] == "alice"

    conforms("DeleteUser", rekognition.delete_user(CollectionId=collection_id, UserId="alice"))
    assert "alice" not in user_ids(rekognition, collection_id)
    assert rekognition.list_faces(CollectionId=collection_id, UserId="alice")["Faces"] == []
    listed = rekognition.list_faces(CollectionId=collection_id, FaceIds=a)["Faces"]
    assert {f["FaceId"] for f in listed} == set(a)
    assert all("UserId" not in f for f in listed)
    assert rekognition.delete_faces(CollectionId=collection_id, FaceIds=[a[0]])["DeletedFaces"] == [a[0]]

    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_user(CollectionId=collection_id, UserId="alice")


def test_client_request_token_makes_user_operations_idempotent(rekognition, server, collection_id, faces):
    """A retried call with the same ClientRequestToken returns the first call's response and changes nothing;
    the same token with other parameters is refused; boto3 fills in a fresh token when none is given."""
    cid = collection_id
    first = rekognition.create_user(CollectionId=cid, UserId="carol", ClientRequestToken="create-carol-1")
    again = rekognition.create_user(CollectionId=cid, UserId="carol", ClientRequestToken="create-carol-1")
    strip = lambda r: {k: v for k, v in r.items() if k != "ResponseMetadata"}  # noqa: E731
    assert strip(conforms("CreateUser", again)) == strip(conforms("CreateUser", first)) == {}
    with pytest.raises(rekognition.exceptions.ConflictException):  # a new token: a new request
        rekognition.create_user(CollectionId=cid, UserId="carol")
    with pytest.raises(rekognition.exceptions.IdempotentParameterMismatchException) as e:
        rekognition.create_user(CollectionId=cid, UserId="dave", ClientRequestToken="create-carol-1")
    assert "create-carol-1" in e.value.response["Error"]["Message"]
    assert "dave" not in user_ids(rekognition, cid)

    assoc = dict(CollectionId=cid, UserId="carol", FaceIds=[faces["a"][0]], ClientRequestToken="assoc-1")
    r1 = conforms("AssociateFaces", rekognition.associate_faces(**assoc))
    r2 = conforms("AssociateFaces", rekognition.associate_faces(**assoc))
    assert r1["AssociatedFaces"] == r2["AssociatedFaces"] == [{"FaceId": faces["a"][0]}]
    assert r1["UserStatus"] == r2["UserStatus"]

    rekognition.delete_user(CollectionId=cid, UserId="carol", ClientRequestToken="delete-carol")
    rekognition.delete_user(CollectionId=cid, UserId="carol", ClientRequestToken="delete-carol")  # a retry: OK
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_user(CollectionId=cid, UserId="carol", ClientRequestToken="delete-carol-2")
    assert "carol" not in user_ids(rekognition, cid)

    # the ledger records the replays as such
    import json

    rows = [(r, json.loads(d)) for r, d in server.query(
        "SELECT result, detail FROM ledger WHERE operation = 'CreateUser' AND collection_id = ? ORDER BY seq", (cid,))]
    assert [r for r, _ in rows] == ["OK", "OK", "ConflictException", "IdempotentParameterMismatchException"]
    assert rows[1][1].get("IdempotentReplay") is True and "IdempotentReplay" not in rows[0][1]


def test_search_users_by_a_turned_face_reaches_as_far_as_the_main_table(tmp_path):
    """A turned face's pairs with faces inside the range are scored on the main table, which reaches further than
    the degraded-one table SearchUsers used to fetch with: a user whose face lies between the two tables'
    distances at 80 was scored 80 or more but never fetched."""
    from datetime import datetime, timezone

    import numpy as np

    from faceledger.client import Client
    from faceledger.store import CollectionRecord, FaceRecord
    from faceledger.vision.similarity import SimilarityScale

    model = "faceledger-sface-v2"
    main, degraded = SimilarityScale.load(model), SimilarityScale.load(model, "degraded-one")
    d = (main.max_distance(80) + degraded.max_distance(80)) / 2
    assert degraded.max_distance(80) < d < main.max_distance(80)
    a = np.zeros(128, np.float32)
    a[0] = 1
    b = np.zeros(128, np.float32)
    b[0], b[1] = 1 - d * d / 2, np.sqrt(1 - (1 - d * d / 2) ** 2)  # unit vectors d apart
    client = Client(tmp_path / "data")
    store, now = client._service.store, datetime(2026, 11, 30, tzinfo=timezone.utc)
    store.create_collection(CollectionRecord("turned", "arn:aws:rekognition:us-east-1:000000000000:collection/turned",
                                             model, now), {})
    ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in (1, 2)]
    store.add_faces([FaceRecord(fid, "turned", f"img-{i}", None, (0.5, 0.5, 0.1, 0.1), 99.0, model, now,
                                embedding=v, quality_band=band)
                     for i, (fid, v, band) in enumerate(zip(ids, (a, b), ("turned", "calibrated")))])
    client._service.call("CreateUser", {"CollectionId": "turned", "UserId": "bob"})
    client._service.call("AssociateFaces", {"CollectionId": "turned", "UserId": "bob", "FaceIds": [ids[1]]})
    # with the margin rule off, the fetch reaches exactly as far as the threshold (with it on, further: the
    # runner-up a turned probe's match would be judged against was then cut off at the shorter distance)
    from faceledger.service import RequestContext

    found = client._service.call("SearchUsers", {"CollectionId": "turned", "FaceId": ids[0]},
                                 RequestContext(min_margin=0))["UserMatches"]
    assert [m["User"]["UserId"] for m in found] == ["bob"] and found[0]["Similarity"] >= 80
