"""A collection keeps the face model it was created with: a server whose model for new collections changed
still searches an old collection with that collection's model (through boto3 against live servers)."""

from __future__ import annotations

import httpx
import pytest

from conftest import Server, image_bytes, shared_data

USED = "x-faceledger-threshold-used"


def _people(n):
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:n]
    return [sorted(p.glob("*.jpg")) for p in people]


def _first_match_is(c, cid, r, image_id):
    """The best match of search response ``r`` in ``cid`` is the face indexed from ``image_id``."""
    faces = {f["FaceId"]: f["ImageId"] for f in c.list_faces(CollectionId=cid)["Faces"]}
    return bool(r["FaceMatches"]) and faces[r["FaceMatches"][0]["Face"]["FaceId"]] == image_id


def test_collection_is_searched_with_its_own_model(tmp_path):
    """Collections made by servers whose default was dlib-resnet-v1, then faceledger-fusion-v1, keep working on a
    server whose default is faceledger-sface-v1: each is searched and extended with its own model."""
    people = _people(3)
    data, buckets = tmp_path / "data", tmp_path / "buckets"
    first_images = {}
    for cid, model in (("old", "dlib-resnet-v1"), ("fusion", "faceledger-fusion-v1")):
        srv = Server(data, buckets, ["--face-model", model])
        try:
            c = srv.client()
            assert c.create_collection(CollectionId=cid)["FaceModelVersion"] == model
            for imgs in people:
                r = c.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
                assert r["FaceModelVersion"] == model
                first_images.setdefault(cid, []).append(r["FaceRecords"][0]["Face"]["ImageId"])
        finally:
            srv.stop()
    new = Server(data, buckets)  # the default model for new collections: faceledger-sface-v1
    try:
        c = new.client()
        assert c.create_collection(CollectionId="new")["FaceModelVersion"] == "faceledger-sface-v1"
        versions = dict(zip(*(c.list_collections()[k] for k in ("CollectionIds", "FaceModelVersions"))))
        assert versions == {"old": "dlib-resnet-v1", "fusion": "faceledger-fusion-v1", "new": "faceledger-sface-v1"}
        for imgs in people:
            r = c.index_faces(CollectionId="new", Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
            assert r["FaceModelVersion"] == "faceledger-sface-v1"
            assert r["FaceRecords"][0]["Face"]["Confidence"] > 90
            first_images.setdefault("new", []).append(r["FaceRecords"][0]["Face"]["ImageId"])
        # a second photo of person 0 finds person 0 in every collection, each searched with its own model
        probe = {"Bytes": image_bytes(people[0][1])}
        for cid, model in (("old", "dlib-resnet-v1"), ("fusion", "faceledger-fusion-v1"),
                           ("new", "faceledger-sface-v1")):
            r = c.search_faces_by_image(CollectionId=cid, Image=probe)
            assert r["FaceModelVersion"] == model
            assert _first_match_is(c, cid, r, first_images[cid][0]) and len(r["FaceMatches"]) == 1
        # indexing into the old collections still computes their models' vectors
        for cid, model in (("old", "dlib-resnet-v1"), ("fusion", "faceledger-fusion-v1")):
            r = c.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(people[1][1])}, MaxFaces=1)
            assert r["FaceModelVersion"] == model
            r = c.search_faces(CollectionId=cid, FaceId=r["FaceRecords"][0]["Face"]["FaceId"])
            assert len(r["FaceMatches"]) == 1 and r["FaceModelVersion"] == model
            assert _first_match_is(c, cid, r, first_images[cid][1])
    finally:
        new.stop()


def test_default_limit_and_none(tmp_path):
    srv = Server(tmp_path / "d1", tmp_path / "b1")
    try:
        assert httpx.get(srv.url + "/health").json()["max_expected_false_matches"] == 0.001
    finally:
        srv.stop()
    srv = Server(tmp_path / "d2", tmp_path / "b2", ["--max-expected-false-matches", "none"])
    try:
        assert httpx.get(srv.url + "/health").json()["max_expected_false_matches"] is None
    finally:
        srv.stop()
    with pytest.raises(RuntimeError, match="max-expected-false-matches"):
        Server(tmp_path / "d3", tmp_path / "b3", ["--max-expected-false-matches", "lots"])
