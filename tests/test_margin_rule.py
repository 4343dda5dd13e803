"""The margin rule (service/risk.py): a search answers only when its best identity stands out from the
runner-up identity; through boto3 against the live server (default --min-margin 1)."""

from __future__ import annotations

from conftest import image_bytes, shared_data

AMBIGUOUS = "x-faceledger-ambiguous"


def _photos(n_people: int, per: int = 2):
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= per)[:n_people]
    return [sorted(p.glob("*.jpg")) for p in people]


def _headers(client, values: dict[str, str]):
    def add(request, **_):
        for k, v in values.items():
            request.headers[k] = v

    client.meta.events.register("before-sign.rekognition.*", add)


def test_two_identities_with_one_face_are_ambiguous(server, collection_id):
    """The same photo filed as two users: the best and the runner-up identity are equally likely."""
    client = server.client()
    (a0, a1), (b0, _) = [p[:2] for p in _photos(2)]
    ids = {}
    for user in ("a", "a-again"):
        r = client.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(a0)}, MaxFaces=1)
        ids[user] = r["FaceRecords"][0]["Face"]["FaceId"]
        client.create_user(CollectionId=collection_id, UserId=user)
        client.associate_faces(CollectionId=collection_id, UserId=user, FaceIds=[ids[user]])
    client.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(b0)}, MaxFaces=1)
    probe = {"Bytes": image_bytes(a1)}
    r = client.search_faces_by_image(CollectionId=collection_id, Image=probe)
    assert r["FaceMatches"] == []
    assert r["ResponseMetadata"]["HTTPHeaders"][AMBIGUOUS] == "true"
    r = client.search_users_by_image(CollectionId=collection_id, Image=probe)
    assert r["UserMatches"] == [] and r["ResponseMetadata"]["HTTPHeaders"][AMBIGUOUS] == "true"
    # searching with user a's face itself: a-again's copy stands out from the other person by far
    r = client.search_faces(CollectionId=collection_id, FaceId=ids["a"])
    assert [m["Face"]["FaceId"] for m in r["FaceMatches"]] == [ids["a-again"]]
    assert r["ResponseMetadata"]["HTTPHeaders"][AMBIGUOUS] == "false"
    # with the rule off for this request, Rekognition's answer: both faces
    plain = server.client()
    _headers(plain, {"X-Faceledger-Min-Margin": "0"})
    r = plain.search_faces_by_image(CollectionId=collection_id, Image=probe)
    assert {m["Face"]["FaceId"] for m in r["FaceMatches"]} == set(ids.values())
    assert AMBIGUOUS not in r["ResponseMetadata"]["HTTPHeaders"]
    r = plain.search_users_by_image(CollectionId=collection_id, Image=probe)
    assert {m["User"]["UserId"] for m in r["UserMatches"]} == {"a", "a-again"}
    # and the ledger records the decision
    import json
    import sqlite3

    con = sqlite3.connect(server.data_dir / "faceledger.db")
    rows = [json.loads(d)["Search"] for (d,) in con.execute(
        "SELECT detail FROM ledger WHERE operation = 'SearchFacesByImage' AND collection_id = ? ORDER BY seq",
        (collection_id,))]
    con.close()
    assert rows[0]["Ambiguous"] is True and rows[0]["MinMargin"] == 1.0 and rows[0]["MarginDecades"] < 1.0


def test_several_photos_of_one_person_are_one_identity(server, collection_id):
    """Two photos of the searched person, no users: they match each other, so they are one identity and the
    search is not ambiguous; another person's face is far behind."""
    client = server.client()
    (a0, a1, a2), (b0, _, _) = [p[:3] for p in _photos(2, per=3)]
    for img in (a0, a1, b0):
        client.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(img)}, MaxFaces=1,
                           ExternalImageId=img.parent.name)
    r = client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": image_bytes(a2)})
    assert r["ResponseMetadata"]["HTTPHeaders"][AMBIGUOUS] == "false"
    assert [m["Face"]["ExternalImageId"] for m in r["FaceMatches"]] == [a0.parent.name] * 2


def test_bad_margin_header_is_refused(server, collection_id):
    import botocore.exceptions
    import pytest

    client = server.client()
    (a0, a1), = [p[:2] for p in _photos(1)]
    client.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(a0)}, MaxFaces=1)
    _headers(client, {"X-Faceledger-Min-Margin": "-1"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": image_bytes(a1)})
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "Min-Margin" in e.value.response["Error"]["Message"]
