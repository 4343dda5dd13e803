"""Vectors in Milvus (store/milvus.py, docs/distributed.md), tested against Milvus Lite 2.5 (the C++ engine in a
local file, or served on a loopback port to be stopped and started)."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

from conftest import Server, image_bytes, shared_data

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from faceledger.store import CollectionRecord  # noqa: E402
from faceledger.store.errors import storage_failure  # noqa: E402
from faceledger.store.milvus import attach, milvus_name  # noqa: E402
from faceledger.store.sqlite import SQLiteStore  # noqa: E402

from test_postgres import _face  # noqa: E402


def _vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _labels_in_milvus(indexes, collection_id: str) -> set[int]:
    rows = indexes.vectors.call("query", milvus_name(collection_id), filter="label >= 0", output_fields=["label"],
                                limit=16384)
    return {int(r["label"]) for r in rows}


def _store_labels(store, collection_id: str) -> set[int]:
    return {r[0] for r in store._conn().execute("SELECT rowid FROM faces WHERE collection_id = ?", (collection_id,))}


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request, tmp_path):
    """The store keeping the records: SQLite, or PostgreSQL (the session's cluster)."""
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "faceledger.db")
    from faceledger.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_cluster").url())


def test_search_in_milvus_is_reranked_exactly_and_deleted_faces_never_come_back(records, tmp_path):
    store = records
    indexes = attach(store, str(tmp_path / "vectors.db"))
    try:
        store.create_collection(CollectionRecord("c", "arn:c", "t", datetime.now(timezone.utc)), {})
        vectors = _vectors(60)
        faces = [_face("c", v) for v in vectors]
        store.add_faces(faces[:30])
        query = vectors[7] + 0.05 * _vectors(1, seed=9)[0]
        hits = store.nearest("c", query, limit=5, max_distance=2.0)
        exact = np.sqrt(((vectors[:30] - query) ** 2).sum(axis=1))
        assert [h.face.face_id for h in hits] == [faces[i].face_id for i in np.argsort(exact)[:5]]
        assert [h.distance for h in hits] == pytest.approx(np.sort(exact)[:5].tolist(), abs=1e-6)
        store.add_faces(faces[30:])  # searchable as soon as stored
        assert store.nearest("c", vectors[45], limit=1, max_distance=2.0)[0].face.face_id == faces[45].face_id
        assert store.delete_faces("c", [faces[7].face_id]) == [faces[7].face_id]
        assert faces[7].face_id not in [h.face.face_id for h in store.nearest("c", vectors[7], limit=10,
                                                                                  max_distance=2.0)]
        assert _labels_in_milvus(indexes, "c") == _store_labels(store, "c")  # deleted in Milvus too
        assert store.rebuild_index("c")["kind"] == "milvus"
        assert _labels_in_milvus(indexes, "c") == _store_labels(store, "c")
        store.delete_collection("c")
        assert milvus_name("c") not in indexes.vectors.names()
    finally:
        store.close()


def test_a_crash_between_the_store_and_milvus_is_repaired_at_start(tmp_path):
    vectors = _vectors(40, seed=1)
    faces = [_face("c", v) for v in vectors]
    store = SQLiteStore(tmp_path / "faceledger.db")
    indexes = attach(store, str(tmp_path / "vectors.db"))
    now = datetime.now(timezone.utc)
    store.create_collection(CollectionRecord("c", "arn:c", "t", now), {})
    store.create_collection(CollectionRecord("gone", "arn:gone", "t", now), {})
    store.add_faces(faces[:20] + [_face("gone", vectors[0])])
    store.nearest("c", vectors[0], limit=1, max_distance=2.0)
    store.nearest("gone", vectors[0], limit=1, max_distance=2.0)
    assert {milvus_name("c"), milvus_name("gone")} <= set(indexes.vectors.names())
    store.close()
    # the store changes and Milvus does not hear of it (the process died between the two commits)
    bare = SQLiteStore(tmp_path / "faceledger.db")
    bare.add_faces(faces[20:])
    bare.delete_faces("c", [faces[3].face_id, faces[25].face_id])
    bare.delete_collection("gone")
    bare.close()

    store = SQLiteStore(tmp_path / "faceledger.db")
    try:
        indexes = attach(store, str(tmp_path / "vectors.db"))  # the start repairs
        assert milvus_name("gone") not in indexes.vectors.names()
        assert _labels_in_milvus(indexes, "c") == _store_labels(store, "c")
        assert len(_store_labels(store, "c")) == 38
        assert store.nearest("c", vectors[30], limit=1, max_distance=2.0)[0].face.face_id == faces[30].face_id
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_milvus_unreachable_is_a_storage_failure_that_says_so_and_recovers(tmp_path, monkeypatch):
    import faceledger.store.milvus as milvus
    from milvus_lite.server import Server as MilvusLite

    monkeypatch.setattr(milvus, "TIMEOUT", 3.0)
    port = _free_port()

    def start() -> MilvusLite:
        server = MilvusLite(str(tmp_path / "served.db"), address=f"127.0.0.1:{port}")
        assert server.init() and server.start()
        return server

    served = start()
    store = SQLiteStore(tmp_path / "faceledger.db")
    try:
        attach(store, f"milvus://127.0.0.1:{port}")
        store.create_collection(CollectionRecord("c", "arn:c", "t", datetime.now(timezone.utc)), {})
        vectors = _vectors(10, seed=2)
        faces = [_face("c", v) for v in vectors]
        store.add_faces(faces)
        assert store.nearest("c", vectors[4], limit=1, max_distance=2.0)[0].face.face_id == faces[4].face_id
        assert store.indexes.status()["ok"] is True
        served.stop()
        down = store.indexes.status()  # what GET /health reports: a 503 naming Milvus, not "ok"
        assert down["ok"] is False and "Milvus" in down["reason"] and str(port) in down["reason"]
        store.add_faces([_face("c", _vectors(1, seed=3)[0])])  # the store alone still takes writes
        with pytest.raises(Exception) as e:
            store.nearest("c", vectors[4], limit=1, max_distance=2.0)
        failure = storage_failure(e.value)
        assert failure is not None and "Milvus" in failure.reason and str(port) in failure.reason
        served = start()
        assert store.nearest("c", vectors[4], limit=1, max_distance=2.0)[0].face.face_id == faces[4].face_id
        assert store.indexes.status()["ok"] is True
    finally:
        store.close()
        served.stop()


@pytest.mark.slow
def test_serve_with_vector_store_milvus_lite(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "buckets", ["--vector-store", str(tmp_path / "vectors.db")])
    try:
        client = srv.client()
        health = json.loads(urllib.request.urlopen(f"{srv.url}/health").read())
        assert health["status"] == "ok" and health["vector_store"]["ok"] is True
        people = [sorted(shared_data("lfw_dev", name).glob("*.jpg")) for name in ("Aaron_Peirsol", "Colin_Powell")]
        cid = f"milvus-{uuid.uuid4().hex[:8]}"
        client.create_collection(CollectionId=cid)
        ids = [client.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(p[0])}, MaxFaces=1)
               ["FaceRecords"][0]["Face"]["FaceId"] for p in people]
        for person, face_id in zip(people, ids):
            matches = client.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(person[1])})
            assert [m["Face"]["FaceId"] for m in matches["FaceMatches"]] == [face_id]
        client.delete_faces(CollectionId=cid, FaceIds=[ids[0]])
        assert client.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(people[0][1])})[
            "FaceMatches"] == []
    finally:
        srv.stop()
