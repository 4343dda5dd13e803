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


def test_collection_is_searched_with_its_own_model(tmp_path):
    people = _people(3)
    data, buckets = tmp_path / "data", tmp_path / "buckets"
    old = Server(data, buckets, ["--face-model", "dlib-resnet-v1"])
    try:
        c = old.client()
        assert c.create_collection(CollectionId="old")["FaceModelVersion"] == "dlib-resnet-v1"
        for imgs in people:
            r = c.index_faces(CollectionId="old", Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
            assert r["FaceModelVersion"] == "dlib-resnet-v1"
    finally:
        old.stop()
    new = Server(data, buckets)  # the default model for new collections: the fusion
    try:
        c = new.client()
        assert c.create_collection(CollectionId="new")["FaceModelVersion"] == "faceledger-fusion-v1"
        assert c.describe_collection(CollectionId="old")["FaceModelVersion"] == "dlib-resnet-v1"
        for imgs in people:
            c.index_faces(CollectionId="new", Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
        # a second photo of person 0 finds person 0 in both collections, each searched with its own model
        probe = {"Bytes": image_bytes(people[0][1])}
        for cid, model in (("old", "dlib-resnet-v1"), ("new", "faceledger-fusion-v1")):
            r = c.search_faces_by_image(CollectionId=cid, Image=probe)
            assert r["FaceModelVersion"] == model
            assert [m["Face"]["FaceId"] for m in r["FaceMatches"]][:1] == [
                c.list_faces(CollectionId=cid)["Faces"][[f["ImageId"] for f in c.list_faces(
                    CollectionId=cid)["Faces"]].index(r["FaceMatches"][0]["Face"]["ImageId"])]["FaceId"]]
            assert len(r["FaceMatches"]) == 1
        # indexing into the old collection still computes dlib-resnet-v1 vectors
        r = c.index_faces(CollectionId="old", Image={"Bytes": image_bytes(people[1][1])}, MaxFaces=1)
        assert r["FaceModelVersion"] == "dlib-resnet-v1"
        r = c.search_faces(CollectionId="old", FaceId=r["FaceRecords"][0]["Face"]["FaceId"])
        assert len(r["FaceMatches"]) == 1 and r["FaceModelVersion"] == "dlib-resnet-v1"
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
