"""Expected false matches per 1:N search and the size-aware threshold, through boto3 against a live server."""

from __future__ import annotations

import math

import pytest

from conftest import Server, image_bytes, shared_data

EFM = "x-faceledger-expected-false-matches"
USED = "x-faceledger-threshold-used"


def _faces(lfw, n):
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:n]
    return [sorted(p.glob("*.jpg")) for p in people]


def _limit_header(client, value):
    def add(request, **_):
        request.headers["X-Faceledger-Max-Expected-False-Matches"] = value

    client.meta.events.register("before-sign.rekognition.*", add)


def test_every_search_reports_expected_false_matches(rekognition, collection_id, server):
    lfw = shared_data("lfw_dev")
    people = _faces(lfw, 3)
    ids = []
    for imgs in people:
        r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
        ids.append(r["FaceRecords"][0]["Face"]["FaceId"])
    rekognition.create_user(CollectionId=collection_id, UserId="u0")
    rekognition.associate_faces(CollectionId=collection_id, UserId="u0", FaceIds=[ids[0]])
    probe = {"Bytes": image_bytes(people[0][1])}
    calls = [
        rekognition.search_faces_by_image(CollectionId=collection_id, Image=probe, FaceMatchThreshold=80),
        rekognition.search_faces(CollectionId=collection_id, FaceId=ids[1], FaceMatchThreshold=90),
        rekognition.search_users(CollectionId=collection_id, FaceId=ids[1]),
        rekognition.search_users_by_image(CollectionId=collection_id, Image=probe),
    ]
    expected = [1e-4 * 3, 1e-5 * 2, 1e-4 * 3, 1e-4 * 3]
    for r, want in zip(calls, expected):
        h = r["ResponseMetadata"]["HTTPHeaders"]
        assert float(h[EFM]) == pytest.approx(want, rel=1e-4)
        assert "ExpectedFalseMatches" not in r  # never in the Rekognition body
    assert float(calls[1]["ResponseMetadata"]["HTTPHeaders"][USED]) == 90
    # and in the ledger
    import json
    import sqlite3

    con = sqlite3.connect(server.data_dir / "faceledger.db")
    rows = [json.loads(d) for (d,) in con.execute(
        "SELECT detail FROM ledger WHERE operation = 'SearchFacesByImage' AND collection_id = ?", (collection_id,))]
    con.close()
    assert rows and rows[-1]["Search"]["ExpectedFalseMatches"] == pytest.approx(3e-4)
    assert rows[-1]["Search"]["ThresholdUsed"] == 80


def test_request_limit_raises_the_threshold_for_the_collection_size(server, collection_id):
    lfw = shared_data("lfw_dev")
    client = server.client()
    people = _faces(lfw, 4)
    for imgs in people:
        client.index_faces(CollectionId=collection_id, Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
    _limit_header(client, "0.0001")  # 4 faces: FMR <= 2.5e-5 -> Similarity 40 - 10 log10(2.5e-5) = 86.02
    r = client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": image_bytes(people[0][1])},
                                     FaceMatchThreshold=80)
    h = r["ResponseMetadata"]["HTTPHeaders"]
    used = float(h[USED])
    assert used == pytest.approx(40 - 10 * math.log10(1e-4 / 4), abs=1e-3)
    assert float(h[EFM]) == pytest.approx(1e-4, rel=1e-3)
    assert all(m["Similarity"] >= used for m in r["FaceMatches"])
    r = client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": image_bytes(people[0][1])},
                                     FaceMatchThreshold=95)  # never lower than asked
    assert float(r["ResponseMetadata"]["HTTPHeaders"][USED]) == 95


def test_server_default_limit(tmp_path):
    lfw = shared_data("lfw_dev")
    srv = Server(tmp_path / "data", tmp_path / "buckets", ["--max-expected-false-matches", "0.001"])
    try:
        client = srv.client()
        client.create_collection(CollectionId="c")
        people = _faces(lfw, 2)
        for imgs in people:
            client.index_faces(CollectionId="c", Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
        r = client.search_faces_by_image(CollectionId="c", Image={"Bytes": image_bytes(people[0][1])})
        # 2 faces, 1e-3 -> FMR 5e-4 -> Similarity 73 < 80: the requested 80 stays
        assert float(r["ResponseMetadata"]["HTTPHeaders"][USED]) == 80
        _limit_header(client, "0.00001")  # the request's limit wins: FMR 5e-6 -> 93.01
        r = client.search_faces_by_image(CollectionId="c", Image={"Bytes": image_bytes(people[0][1])})
        assert float(r["ResponseMetadata"]["HTTPHeaders"][USED]) == pytest.approx(93.0103, abs=1e-3)
        import httpx

        assert httpx.get(srv.url + "/health").json()["max_expected_false_matches"] == 0.001
    finally:
        srv.stop()
