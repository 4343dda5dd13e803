"""Per-collection policies, retention, erasure and embedding encryption: real SQLite, real photos."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

import faceledger
from faceledger.cli import main
from faceledger.service import Service, ServiceConfig

from conftest import create_key, image_bytes, shared_data
from test_auth import signed_post
from test_ledger import add_purpose, entries


@pytest.fixture(scope="module")
def aaron():
    person = shared_data("lfw_dev", "Aaron_Peirsol")
    return [image_bytes(p) for p in sorted(person.glob("*.jpg"))[:3]]


def error_of(info):
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def put_policy(server, cid: str, policy: dict, key=None):
    response = signed_post(server, "Faceledger.PutCollectionPolicy",
                           json.dumps({"CollectionId": cid, "Policy": policy}).encode(),
                           *(key or (server.key_id, server.secret)))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def indexed(rekognition, collection_id, aaron):
    rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": aaron[0]}, ExternalImageId="aaron")
    return collection_id


# ---------------------------------------------------------------------------- collection policies


def test_threshold_floor_refuses_a_lower_threshold(server, rekognition, indexed, aaron):
    put_policy(server, indexed, {"MinFaceMatchThreshold": 90})
    with pytest.raises(ClientError) as info:
        rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]}, FaceMatchThreshold=70)
    code, message = error_of(info)
    assert code == "InvalidParameterException" and "below the floor of 90" in message
    ok = rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]}, FaceMatchThreshold=95)
    assert all(m["Similarity"] >= 95 for m in ok["FaceMatches"])
    last = entries(server.data_dir, "--collection", indexed, "--operation", "SearchFacesByImage")
    assert [e["result"] for e in last] == ["InvalidParameterException", "OK"]


def test_threshold_floor_can_raise_instead(server, rekognition, indexed, aaron):
    put_policy(server, indexed, {"MinFaceMatchThreshold": 99.5, "BelowMinimum": "RAISE"})
    low = rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]}, FaceMatchThreshold=0)
    assert all(m["Similarity"] >= 99.5 for m in low["FaceMatches"])
    (entry,) = entries(server.data_dir, "--collection", indexed, "--operation", "SearchFacesByImage")
    assert entry["detail"]["Threshold"] == {"FaceMatchThreshold": 99.5}
    assert "raised to the collection's floor" in entry["detail"]["Notes"][0]
    # no threshold given: the floor, not Rekognition's default 80
    rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]})
    last = entries(server.data_dir, "--collection", indexed, "--operation", "SearchFacesByImage")[-1]
    assert last["detail"]["Threshold"] == {"FaceMatchThreshold": 99.5}


def test_max_faces_limit(server, rekognition, indexed, aaron):
    put_policy(server, indexed, {"MaxFaces": 5})
    with pytest.raises(ClientError) as info:
        rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]}, MaxFaces=50)
    assert error_of(info)[0] == "InvalidParameterException" and "limit of 5" in error_of(info)[1]
    rekognition.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]}, MaxFaces=5)


def test_purpose_required_for_searches(server, indexed, aaron):
    put_policy(server, indexed, {"RequirePurpose": True})
    plain = server.client()
    with pytest.raises(ClientError) as info:
        plain.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]})
    code, message = error_of(info)
    assert code == "AccessDeniedException" and "X-Faceledger-Purpose" in message
    plain.list_faces(CollectionId=indexed)  # not a search: allowed
    with_purpose = server.client()
    add_purpose(with_purpose, "fraud investigation", "INC-7")
    assert with_purpose.search_faces_by_image(CollectionId=indexed, Image={"Bytes": aaron[1]})["FaceMatches"]
    last = entries(server.data_dir, "--collection", indexed, "--operation", "SearchFacesByImage")[-1]
    assert (last["purpose"], last["case_ref"], last["result"]) == ("fraud investigation", "INC-7", "OK")


def test_policy_api_validation_permissions_and_ledger(server, rekognition, collection_id):
    bad = signed_post(server, "Faceledger.PutCollectionPolicy",
                      json.dumps({"CollectionId": collection_id, "Policy": {"MinFaceMatchThreshold": 120}}).encode(),
                      server.key_id, server.secret)
    assert bad.status_code == 400 and bad.json()["__type"] == "ValidationException"
    assert "minFaceMatchThreshold" in bad.json()["message"]
    unknown = signed_post(server, "Faceledger.PutCollectionPolicy",
                          json.dumps({"CollectionId": collection_id, "Policy": {"Retention": 3}}).encode(),
                          server.key_id, server.secret)
    assert unknown.status_code == 400 and "Retention" in unknown.json()["message"]
    missing = signed_post(server, "Faceledger.GetCollectionPolicy", b'{"CollectionId": "no-such-collection"}',
                          server.key_id, server.secret)
    assert missing.status_code == 400 and missing.json()["__type"] == "ResourceNotFoundException"
    reader = create_key(server.data_dir, "search-only",
                        {"Statement": [{"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"}]})
    denied = signed_post(server, "Faceledger.PutCollectionPolicy",
                         json.dumps({"CollectionId": collection_id, "Policy": {"MaxFaces": 1}}).encode(), *reader)
    assert denied.status_code == 400 and denied.json()["__type"] == "AccessDeniedException"
    assert "faceledger:PutCollectionPolicy" in denied.json()["message"]
    put_policy(server, collection_id, {"RetentionDays": 30, "RequirePurpose": True})
    got = signed_post(server, "Faceledger.GetCollectionPolicy", json.dumps({"CollectionId": collection_id}).encode(),
                      server.key_id, server.secret).json()
    assert got["Policy"] == {"RetentionDays": 30, "RequirePurpose": True}
    changes = entries(server.data_dir, "--collection", collection_id, "--operation", "PutCollectionPolicy")
    assert [c["result"] for c in changes] == ["ValidationException", "ValidationException", "AccessDeniedException",
                                              "OK"]


def test_policy_cli_local_and_endpoint(server, tmp_path, monkeypatch):
    run = lambda *a, code=0: _run(code, *a)  # noqa: E731
    d = ["--data", tmp_path / "d"]
    run("collections", "create", "c", *d)
    assert '"MaxFaces": 3' in run("policy", "set", "c", "--max-faces", "3", "--retention-days", "7", *d).stdout
    assert '"RetentionDays": 7' in run("policy", "show", "c", *d).stdout
    run("policy", "delete", "c", *d)
    assert "{}" in run("policy", "show", "c", *d).stdout
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    e = ["--endpoint", server.url]
    cid = f"clipol-{uuid.uuid4().hex[:6]}"
    run("collections", "create", cid, *e)
    assert '"MinFaceMatchThreshold": 90.0' in run("policy", "set", cid, "--min-threshold", "90", *e).stdout
    assert "ResourceNotFoundException" in run("policy", "show", "nope", *e, code=2).stderr
    run("collections", "delete", cid, *e)


def _run(code: int, *args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


# ---------------------------------------------------------------------------- retention


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_retention_sweep_with_an_injected_clock(tmp_path, aaron):
    clock = Clock()
    service = Service(ServiceConfig(tmp_path / "d"), clock=clock)
    with faceledger.Client(service=service) as client:
        client.create_collection(CollectionId="kept-30d")
        client.create_collection(CollectionId="forever")
        old = client.index_faces(CollectionId="kept-30d", Image={"Bytes": aaron[0]}, ExternalImageId="old")
        client.index_faces(CollectionId="forever", Image={"Bytes": aaron[0]}, ExternalImageId="old")
        clock.now += timedelta(days=20)
        newer = client.index_faces(CollectionId="kept-30d", Image={"Bytes": aaron[1]}, ExternalImageId="newer")
        client.put_collection_policy(CollectionId="kept-30d", Policy={"RetentionDays": 30})
        clock.now += timedelta(days=9, hours=23)  # 29 d 23 h after the first face
        assert client.apply_retention()["DeletedFaces"] == []
        clock.now += timedelta(hours=2)
        swept = client.apply_retention()["DeletedFaces"]
        old_id = old["FaceRecords"][0]["Face"]["FaceId"]
        assert [f["FaceId"] for f in swept] == [old_id]
        left = [f["FaceId"] for f in client.list_faces(CollectionId="kept-30d")["Faces"]]
        assert left == [newer["FaceRecords"][0]["Face"]["FaceId"]]
        assert len(client.list_faces(CollectionId="forever")["Faces"]) == 1  # no retention there
        # the deleted face is gone from search too
        hits = client.search_faces_by_image(CollectionId="kept-30d", Image={"Bytes": aaron[0]}, FaceMatchThreshold=0)
        assert old_id not in {m["Face"]["FaceId"] for m in hits["FaceMatches"]}
    sweeps = entries(tmp_path / "d", "--operation", "ApplyRetention")
    assert [len(e["detail"].get("Faces", [])) for e in sweeps] == [0, 1]
    assert sweeps[1]["detail"]["Faces"][0]["FaceId"] == old_id
    assert sweeps[1]["time"].startswith("2024-01-31")


# ---------------------------------------------------------------------------- erasure


def raw_files(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data.glob("faceledger.db*")))


def share_found(blob: bytes, raw: bytes, size: int = 48, step: int = 256) -> float:
    """The share of ``blob``'s 48-byte pieces (every 256 bytes) that occur in ``raw``. A stored blob longer
    than a database page (a 1152-d vector is 4,608 bytes) is split across overflow pages, so it is never
    contiguous in the file as a whole; its pieces are, but for the few a page boundary cuts."""
    pieces = [blob[i:i + size] for i in range(0, len(blob) - size + 1, step)]
    return sum(p in raw for p in pieces) / len(pieces)


def stored_embeddings(data: Path, external_id: str) -> list[bytes]:
    db = sqlite3.connect(data / "faceledger.db")
    try:
        return [r[0] for r in db.execute("SELECT embedding FROM faces WHERE external_image_id = ?", (external_id,))]
    finally:
        db.close()


def test_erasure_overwrites_the_embedding_and_leaves_a_receipt(tmp_path, aaron):
    data = tmp_path / "d"
    with faceledger.Client(data_dir=data) as client:
        for cid in ("a", "b"):
            client.create_collection(CollectionId=cid)
            client.index_faces(CollectionId=cid, Image={"Bytes": aaron[0]}, ExternalImageId="subject-1")
        keep = client.index_faces(CollectionId="a", Image={"Bytes": aaron[2]}, ExternalImageId="subject-2")
        embeddings = stored_embeddings(data, "subject-1")
        assert len(embeddings) == 2 and all(share_found(e, raw_files(data)) >= 0.8 for e in embeddings)  # control
        client.search_faces_by_image(CollectionId="a", Image={"Bytes": aaron[1]})  # loads the in-memory index
        receipt = client.erase_faces(ExternalImageId="subject-1")
        assert receipt["ExternalImageId"] == "subject-1" and receipt["SecureDelete"] is True
        assert sorted(f["CollectionId"] for f in receipt["ErasedFaces"]) == ["a", "b"]
        assert receipt["WalCheckpointed"] is True
        for embedding in embeddings:
            assert share_found(embedding, raw_files(data)) == 0.0
        left = client.list_faces(CollectionId="a")["Faces"]
        assert [f["ExternalImageId"] for f in left] == ["subject-2"]
        assert share_found(stored_embeddings(data, "subject-2")[0], raw_files(data)) >= 0.8
        hits = client.search_faces_by_image(CollectionId="a", Image={"Bytes": aaron[1]}, FaceMatchThreshold=0)
        assert {m["Face"]["ExternalImageId"] for m in hits["FaceMatches"]} == {"subject-2"}
        assert client.erase_faces(ExternalImageId="subject-1")["ErasedFaces"] == []
        del keep
    (entry, again) = entries(data, "--operation", "EraseFaces")
    assert entry["detail"]["Request"] == {"ExternalImageId": "subject-1"}
    assert {f["FaceId"] for f in entry["detail"]["Faces"]} == {f["FaceId"] for f in receipt["ErasedFaces"]}
    assert "ledger intact" in _run(0, "audit", "verify", "--data", data).stdout


def test_erase_cli(tmp_path, aaron):
    data = tmp_path / "d"
    with faceledger.Client(data_dir=data) as client:
        client.create_collection(CollectionId="a")
        client.index_faces(CollectionId="a", Image={"Bytes": aaron[0]}, ExternalImageId="gone")
    out = _run(0, "erase", "--external-image-id", "gone", "--data", data, "--yes").stdout
    assert "erased 1 face of gone" in out
    assert "ValidationException" in _run(2, "erase", "--external-image-id", "bad id!", "--data", data,
                                         "--yes").stderr


# ---------------------------------------------------------------------------- encryption


def test_encrypted_embeddings_never_reach_the_file(tmp_path, aaron, monkeypatch):
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("FACELEDGER_EMBEDDING_KEY", key)
    data = tmp_path / "d"
    with faceledger.Client(data_dir=data) as client:
        client.create_collection(CollectionId="enc")
        face_id = client.index_faces(CollectionId="enc", Image={"Bytes": aaron[0]},
                                     ExternalImageId="x")["FaceRecords"][0]["Face"]["FaceId"]
        hits = client.search_faces_by_image(CollectionId="enc", Image={"Bytes": aaron[1]})["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in hits] == [face_id]
        plain = client._service.store.get_faces("enc", [face_id], with_embeddings=True)[face_id].embedding
    plain_bytes = np.ascontiguousarray(plain, dtype=np.float32).tobytes()
    assert len(plain_bytes) >= 512
    raw = raw_files(data)
    assert share_found(plain_bytes, raw) == 0.0 and plain_bytes[:64] not in raw
    assert stored_embeddings(data, "x")[0][:4] == b"FLE1"
    # without the key the embeddings cannot be read; with another key neither
    monkeypatch.delenv("FACELEDGER_EMBEDDING_KEY")
    with faceledger.Client(data_dir=data) as client:
        with pytest.raises(Exception, match="encrypted"):
            client.search_faces(CollectionId="enc", FaceId=face_id)
    monkeypatch.setenv("FACELEDGER_EMBEDDING_KEY", base64.b64encode(os.urandom(32)).decode())
    with faceledger.Client(data_dir=data) as client:
        with pytest.raises(Exception, match="does not decrypt"):
            client.search_faces(CollectionId="enc", FaceId=face_id)


def test_bad_embedding_key_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("FACELEDGER_EMBEDDING_KEY", "too-short")
    with pytest.raises(ValueError, match="32 bytes"):
        ServiceConfig(tmp_path)
