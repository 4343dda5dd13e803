"""``faceledger collections export`` / ``import``: the round trip (CLI, then boto3 on a server over the
imported folder), and every refusal leaves nothing behind (synthetic 128-d vectors, real SQLite)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from conftest import Server
from test_cli import run, run_json
from faceledger.store.sqlite import SQLiteStore
from test_vector_search import MODEL, face, identities, make_store

N_IDS = 600


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A data folder with collection "src" (1,200 faces, some with users, tags and a policy), and its export."""
    root = tmp_path_factory.mktemp("transfer")
    vectors = identities(np.random.default_rng(7), N_IDS, 2, 128, spread=0.1)  # mates match at the default policy
    store = make_store(root / "data" / "faceledger.db", "src", vectors, batch=400)
    store.put_tags("src", {"team": "scale"})
    store.put_collection_policy("src", {"MaxFaces": 10})
    store.close()
    with sqlite3.connect(root / "data" / "faceledger.db") as db:  # face 5 was indexed outside the calibrated range
        db.execute("UPDATE faces SET quality_band = 'degraded' WHERE face_id = ?", (face("src", 5, vectors[5]).face_id,))
    data = root / "data"
    run("users", "create", "src", "alice", "--data", data)
    run("users", "associate", "src", "alice", face("src", 0, vectors[0]).face_id, "--data", data)
    result = run("collections", "export", "src", root / "export", "--data", data)
    assert "exported 1200 faces of src" in result.stdout and "biometric" in result.stdout
    return data, root / "export", vectors


def test_export_writes_the_three_files_as_specified(exported):
    data, out, vectors = exported
    meta = json.loads((out / "collection.json").read_text())
    assert meta["CollectionId"] == "src" and meta["FaceModelVersion"] == MODEL
    assert meta["Tags"] == {"team": "scale"} and meta["Policy"] == {"MaxFaces": 10}
    faces = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    assert len(faces) == 1200 and [f["FaceId"] for f in faces] == sorted(f["FaceId"] for f in faces)
    assert set(faces[0]) == {"FaceId", "ImageId", "ExternalImageId", "UserId", "BoundingBox", "Confidence",
                             "IndexFacesModelVersion", "CreationTimestamp", "QualityBand"}
    assert [f["QualityBand"] for f in faces[:7]] == [None] * 5 + ["degraded", None]
    assert faces[0]["UserId"] == "alice" and faces[0]["CreationTimestamp"] == "2026-11-30T00:00:00Z"
    matrix = np.load(out / "vectors.npy")
    assert matrix.dtype == np.float32 and matrix.shape == (1200, 128)
    rows = [int(f["FaceId"][:8]) for f in faces]
    np.testing.assert_array_equal(matrix, vectors[rows])
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    entries = ledger(data, "ExportCollection")
    assert len(entries) == 1 and entries[0]["collection_id"] == "src" and entries[0]["result"] == "OK"
    recorded = entries[0]["detail"]["Search"]
    assert recorded["FaceCount"] == 1200 and recorded["BiometricData"] is True
    assert recorded["Directory"] == str(out.resolve())
    again = run("collections", "export", "src", out, "--data", data, code=2)
    assert "not an empty folder" in again.stderr


def ledger(data: Path, operation: str) -> list[dict]:
    out = run("audit", "export", "--operation", operation, "--data", data).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_folder_operations_are_refused_over_http_and_need_their_permission(exported, tmp_path):
    from faceledger.client import Client
    from faceledger.service import RequestContext

    data, out, _ = exported
    remote = Client(data, context=RequestContext(transport="http"))
    with pytest.raises(remote.exceptions.AccessDeniedException, match="folders of the server"):
        remote.export_collection(CollectionId="src", Directory=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    result = run("collections", "export", "src", tmp_path / "y", "--endpoint", "http://127.0.0.1:9", code=2)
    assert "local data folder" in result.stderr


def test_import_round_trip_through_the_cli_and_boto3(exported, tmp_path):
    _, out, vectors = exported
    data = tmp_path / "data"
    result = run("collections", "import", out, "--collection-id", "copy", "--data", data)
    assert "imported 1200 faces into copy" in result.stdout
    assert "write: 1200/1200" in result.stderr  # progress
    again = run("collections", "import", out, "--collection-id", "copy", "--data", data, code=2)
    assert "ResourceAlreadyExistsException" in again.stderr
    # a server that searches "copy" with the approximate index (it is above 1,000 faces)
    server = Server(data, tmp_path / "buckets", env=dict(os.environ, FACELEDGER_EXACT_BELOW="1000"))
    try:
        client = server.client()
        assert client.describe_collection(CollectionId="copy")["FaceCount"] == 1200
        assert client.list_users(CollectionId="copy")["Users"][0]["UserId"] == "alice"
        probe = face("copy", 2, vectors[2]).face_id
        hits = client.search_faces(CollectionId="copy", FaceId=probe, FaceMatchThreshold=0,
                                   MaxFaces=3)["FaceMatches"]
        assert hits[0]["Face"]["FaceId"] == face("copy", 3, vectors[3]).face_id  # its identity's other face
        client.delete_faces(CollectionId="copy", FaceIds=[face("copy", 3, vectors[3]).face_id])
        hits = client.search_faces(CollectionId="copy", FaceId=probe, FaceMatchThreshold=0,
                                   MaxFaces=3)["FaceMatches"]
        assert face("copy", 3, vectors[3]).face_id not in [h["Face"]["FaceId"] for h in hits]
    finally:
        server.stop()
    saved = [json.loads(p.read_text()) for p in (data / "faceledger.db.index").glob("*.json")]
    assert [(m["collection_id"], m["kind"]) for m in saved] == [("copy", "faiss-ivf")]
    generation = sqlite3.connect(data / "faceledger.db").execute(
        "SELECT generation FROM collections WHERE collection_id = 'copy'").fetchone()[0]
    assert saved[0]["generation"] == generation  # the clean stop saved the delete: a restart re-reads nothing
    assert [e["result"] for e in ledger(data, "ImportCollection")] == ["OK", "ResourceAlreadyExistsException"]
    bands = dict(sqlite3.connect(data / "faceledger.db").execute(
        "SELECT face_id, quality_band FROM faces WHERE collection_id = 'copy' AND quality_band IS NOT NULL"))
    assert bands == {face("copy", 5, vectors[5]).face_id: "degraded"}  # still scored on its band's table


def _corrupt(src: Path, dst: Path, *, vectors=None, faces=None, meta=None) -> Path:
    shutil.copytree(src, dst)
    if vectors is not None:
        np.save(dst / "vectors.npy", vectors)
    if faces is not None:
        (dst / "faces.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faces))
    if meta is not None:
        (dst / "collection.json").write_text(json.dumps(meta))
    return dst


def test_import_refusals_leave_nothing_behind(exported, tmp_path):
    _, out, _ = exported
    data = tmp_path / "data"
    matrix = np.load(out / "vectors.npy")
    faces = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    meta = json.loads((out / "collection.json").read_text())
    nan = matrix.copy()
    nan[1100, 5] = np.nan
    dup = [dict(f) for f in faces]
    dup[900]["FaceId"] = dup[3]["FaceId"]
    cases = {
        "NaN": _corrupt(out, tmp_path / "nan", vectors=nan),
        "have 128 dimensions": _corrupt(out, tmp_path / "dim", vectors=np.ones((1200, 64), np.float32) / 8),
        "faceledger-sface-v1 vectors have 128": _corrupt(out, tmp_path / "sface", vectors=np.ones((1200, 64), np.float32) / 8,
                                                         meta=dict(meta, FaceModelVersion="faceledger-sface-v1")),
        "QualityBand must be one of": _corrupt(out, tmp_path / "band",
                                               faces=faces[:10] + [dict(faces[10], QualityBand="sharp")] + faces[11:]),
        "appears twice": _corrupt(out, tmp_path / "dup", faces=dup),
        "not a unit vector": _corrupt(out, tmp_path / "norm", vectors=matrix * 2),
        "must match": _corrupt(out, tmp_path / "count", faces=faces[:-1]),
        "unknown to this server": _corrupt(out, tmp_path / "model", meta=dict(meta, FaceModelVersion="nope-v9")),
        "faceledger-fusion-v1 vectors have 1152": _corrupt(out, tmp_path / "fusion",
                                                           meta=dict(meta, FaceModelVersion="faceledger-fusion-v1")),
        "not the collection's FaceModelVersion": _corrupt(
            out, tmp_path / "facemodel", faces=faces[:700] + [dict(faces[700], IndexFacesModelVersion="x")] + faces[701:]),
    }
    for message, folder in cases.items():
        result = run("collections", "import", folder, "--data", data, code=2)
        assert message in result.stderr, (message, result.stderr)
    run("collections", "import", out, "--data", data)
    taken = run("collections", "import", out, "--collection-id", "other", "--data", data, code=2)
    assert "already in this store" in taken.stderr  # FaceIds are unique across the store: nothing written
    listed = run_json("collections", "list", "--data", data)["CollectionIds"]
    assert listed == ["src"]
    assert [e["result"] for e in ledger(data, "ImportCollection")] == (
        ["InvalidParameterException"] * len(cases) + ["OK", "InvalidParameterException"])


def test_a_refusal_in_a_later_batch_rolls_back_the_batches_written_before_it(exported, tmp_path, monkeypatch):
    """Import is one pass, batch by batch, in one transaction: a FaceId repeated across batches, a NaN row or a
    missing row found after batches were written leaves nothing behind, and the refusal names the line/row."""
    from faceledger.service import transfer

    monkeypatch.setattr(transfer, "BATCH", 100)
    _, out, _ = exported
    data = tmp_path / "data"
    matrix = np.load(out / "vectors.npy")
    faces = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    dup = [dict(f) for f in faces]
    dup[1050]["FaceId"] = dup[3]["FaceId"]
    nan = matrix.copy()
    nan[1150, 0] = np.nan
    cases = {
        "line 1051: FaceId " + faces[3]["FaceId"] + " appears twice": _corrupt(out, tmp_path / "dup", faces=dup),
        "vectors.npy, row 1150: NaN": _corrupt(out, tmp_path / "nan", vectors=nan),
        "faces.jsonl has 1199 faces and vectors.npy 1200 rows": _corrupt(out, tmp_path / "short", faces=faces[:-1]),
        "more faces than vectors.npy's 1199 rows": _corrupt(out, tmp_path / "long", vectors=matrix[:-1]),
    }
    for message, folder in cases.items():
        result = run("collections", "import", folder, "--data", data, code=2)
        assert message in result.stderr, (message, result.stderr)
        assert run_json("collections", "list", "--data", data)["CollectionIds"] == []
    with sqlite3.connect(data / "faceledger.db") as db:
        assert db.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 0
        # the per-row counting trigger, dropped during an import's writes, is back after each rollback
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'faces_counted'").fetchone()[0] == 1
    run("collections", "import", out, "--data", data)
    assert run_json("collections", "describe", "src", "--data", data)["FaceCount"] == 1200
    store = SQLiteStore(data / "faceledger.db")  # and after a commit: a face added later is counted
    store.add_faces([face("src", 5000, matrix[0])])
    assert store.get_collection("src").face_count == 1201
    store.close()


def test_an_import_builds_its_index_from_the_exported_vectors_under_the_right_row_numbers(exported, tmp_path,
                                                                                         monkeypatch):
    """ImportCollection builds the approximate index from vectors.npy (not read back from the store): every
    face is found as its own nearest, the saved index serves a restart without a rebuild, and it answers as
    an index built from the store does."""
    from faceledger.client import Client

    _, out, _ = exported
    matrix = np.load(out / "vectors.npy")
    ids = [json.loads(line)["FaceId"] for line in (out / "faces.jsonl").read_text().splitlines()]
    client = Client(tmp_path / "data")
    store = client._service.store
    store.indexes.exact_below = 500
    with monkeypatch.context() as m:  # a build reading the store back would fail the import's build
        m.setattr(store.indexes, "_build", lambda *a, **k: pytest.fail("the import read its vectors back"))
        client._service.call("ImportCollection", {"Directory": str(out), "CollectionId": "copy"})
    assert store.indexes.builds == 1
    state = store.indexes.current("copy")
    assert state.index.kind == "faiss-ivf" and len(state.index) == 1200 and store.indexes.builds == 1
    probes = np.random.default_rng(3).choice(1200, 60, replace=False)

    def top(s) -> list[str]:
        return [s.nearest("copy", matrix[i], limit=1, max_distance=4.0)[0].face.face_id for i in probes]

    assert top(store) == [ids[i] for i in probes]
    store.rebuild_index("copy")  # from the store's rows: the same answers
    assert top(store) == [ids[i] for i in probes]
    store.close()
    again = Client(tmp_path / "data")._service.store
    assert top(again) == [ids[i] for i in probes] and again.indexes.builds == 0  # the saved one, loaded
    again.close()
