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


def _stored_vector(data, cid, image_id):
    """The vector the server stored for the face of ``image_id`` in collection ``cid`` (plain SQLite store)."""
    import sqlite3

    import numpy as np

    con = sqlite3.connect(data / "faceledger.db")
    try:
        (blob,) = con.execute("SELECT embedding FROM faces WHERE collection_id = ? AND image_id = ?",
                              (cid, image_id)).fetchone()
    finally:
        con.close()
    return np.frombuffer(blob, np.float32)


BEFORE = (("old", "dlib-resnet-v1"), ("fusion", "faceledger-fusion-v1"), ("sface1", "faceledger-sface-v1"))


def test_collection_is_searched_with_its_own_model(tmp_path):
    """Collections made by servers whose default was dlib-resnet-v1, then faceledger-fusion-v1, then
    faceledger-sface-v1, keep working on a server whose default is faceledger-sface-v2: each is searched and
    extended with its own model, computed by its own pipeline (v1: YuNet's points, v2: dlib's)."""
    people = _people(3)
    data, buckets = tmp_path / "data", tmp_path / "buckets"
    first_images = {}
    for cid, model in BEFORE:
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
    new = Server(data, buckets)  # the default model for new collections: faceledger-sface-v2
    try:
        c = new.client()
        assert c.create_collection(CollectionId="new")["FaceModelVersion"] == "faceledger-sface-v2"
        versions = dict(zip(*(c.list_collections()[k] for k in ("CollectionIds", "FaceModelVersions"))))
        assert versions == {**dict(BEFORE), "new": "faceledger-sface-v2"}
        for imgs in people:
            r = c.index_faces(CollectionId="new", Image={"Bytes": image_bytes(imgs[0])}, MaxFaces=1)
            assert r["FaceModelVersion"] == "faceledger-sface-v2"
            assert r["FaceRecords"][0]["Face"]["Confidence"] > 90
            first_images.setdefault("new", []).append(r["FaceRecords"][0]["Face"]["ImageId"])
        # a second photo of person 0 finds person 0 in every collection, each searched with its own model
        probe = {"Bytes": image_bytes(people[0][1])}
        for cid, model in (*BEFORE, ("new", "faceledger-sface-v2")):
            r = c.search_faces_by_image(CollectionId=cid, Image=probe)
            assert r["FaceModelVersion"] == model
            assert _first_match_is(c, cid, r, first_images[cid][0]) and len(r["FaceMatches"]) == 1
        # indexing into the old collections still computes their models' vectors
        extended = {}
        for cid, model in BEFORE:
            r = c.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(people[1][1])}, MaxFaces=1)
            assert r["FaceModelVersion"] == model
            extended[cid] = r["FaceRecords"][0]["Face"]["ImageId"]
            r = c.search_faces(CollectionId=cid, FaceId=r["FaceRecords"][0]["Face"]["FaceId"])
            assert len(r["FaceMatches"]) == 1 and r["FaceModelVersion"] == model
            assert _first_match_is(c, cid, r, first_images[cid][1])
    finally:
        new.stop()
    # the vectors stored for the same photo are each model's own pipeline's: the v1 collection's (made by the
    # earlier server, and extended by the new one) are YuNet-aligned, the new collection's dlib-aligned
    from faceledger.vision import decode_image, default_engine

    def vector(model, path):
        return default_engine(face_model=model).analyze(decode_image(image_bytes(path)).pixels, max_faces=1)[0].embedding

    v1, v2 = "faceledger-sface-v1", "faceledger-sface-v2"
    for cid, model, path, image_id in (("sface1", v1, people[1][0], first_images["sface1"][1]),
                                       ("new", v2, people[1][0], first_images["new"][1]),
                                       ("sface1", v1, people[1][1], extended["sface1"])):
        assert float(_stored_vector(data, cid, image_id) @ vector(model, path)) > 0.9999, (cid, path)
    assert float(vector(v1, people[1][0]) @ vector(v2, people[1][0])) < 0.9999  # two pipelines, two vectors


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
