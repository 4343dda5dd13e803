"""The ledger: an entry for every operation (denied ones too), hash-chained, verified by `audit verify`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

import faceledger
from faceledger.cli import main

from conftest import create_key, image_bytes, shared_data


def cli(*args: object, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr if hasattr(result, "stderr") else "")
    return result


def entries(data_dir: Path, *filters: str) -> list[dict]:
    out = cli("audit", "list", "--data", data_dir, "--json", *filters).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def add_purpose(client, purpose: str, case: str) -> None:
    """The documented boto3 event hook (docs/accountability.md)."""

    def add_headers(request, **kwargs):
        request.headers["X-Faceledger-Purpose"] = purpose
        request.headers["X-Faceledger-Case"] = case

    client.meta.events.register("before-sign.rekognition.*", add_headers)


@pytest.fixture(scope="module")
def faces():
    person = shared_data("lfw_dev", "Aaron_Peirsol")
    return [image_bytes(p) for p in sorted(person.glob("*.jpg"))[:3]]


def test_every_operation_is_recorded_with_who_why_and_what(server, faces):
    key = create_key(server.data_dir, "ledger-test")
    client = server.client(key=key)
    add_purpose(client, "missing person report", "CASE-42")
    cid = f"ledger-{uuid.uuid4().hex[:8]}"
    client.create_collection(CollectionId=cid)
    indexed = client.index_faces(CollectionId=cid, Image={"Bytes": faces[0]}, ExternalImageId="aaron-1")
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    found = client.search_faces_by_image(CollectionId=cid, Image={"Bytes": faces[1]}, FaceMatchThreshold=50)
    client.list_faces(CollectionId=cid)
    client.describe_collection(CollectionId=cid)
    with pytest.raises(ClientError):
        client.describe_collection(CollectionId=cid + "-missing")
    client.delete_faces(CollectionId=cid, FaceIds=[face_id])
    client.delete_collection(CollectionId=cid)

    rows = entries(server.data_dir, "--key", key[0])
    assert [r["operation"] for r in rows] == [
        "CreateCollection", "IndexFaces", "SearchFacesByImage", "ListFaces", "DescribeCollection",
        "DescribeCollection", "DeleteFaces", "DeleteCollection"]
    assert [r["result"] for r in rows] == ["OK"] * 5 + ["ResourceNotFoundException", "OK", "OK"]
    for r in rows:
        assert r["principal"] == key[0] and r["source"] == "127.0.0.1" and r["transport"] == "http"
        assert (r["purpose"], r["case_ref"]) == ("missing person report", "CASE-42")
        assert len(r["hash"]) == 64
    index, search = rows[1], rows[2]
    assert index["detail"]["Images"] == [{"Member": "Image", "SHA256": hashlib.sha256(faces[0]).hexdigest()}]
    assert {"FaceId": face_id, "ExternalImageId": "aaron-1"}.items() <= index["detail"]["Faces"][0].items()
    assert search["detail"]["Threshold"] == {"FaceMatchThreshold": 50}
    match = search["detail"]["Faces"][0]
    assert match["FaceId"] == face_id
    assert match["Similarity"] == pytest.approx(found["FaceMatches"][0]["Similarity"], abs=1e-3)
    assert rows[6]["detail"]["Faces"] == [{"FaceId": face_id, "Deleted": True}]
    # never the image
    raw = b"".join(p.read_bytes() for p in server.data_dir.glob("faceledger.db*"))
    assert faces[1][1000:1064] not in raw
    # filters: by face id, by external image id, by operation, by collection
    assert {r["operation"] for r in entries(server.data_dir, "--face-id", face_id)} == {
        "IndexFaces", "SearchFacesByImage", "ListFaces", "DeleteFaces"}
    assert [r["operation"] for r in entries(server.data_dir, "--external-image-id", "aaron-1", "--key", key[0])] == [
        "IndexFaces", "SearchFacesByImage", "ListFaces"]
    assert len(entries(server.data_dir, "--collection", cid)) == 7
    assert len(entries(server.data_dir, "--operation", "SearchFacesByImage", "--key", key[0])) == 1


def test_denied_and_unauthenticated_attempts_are_recorded(server):
    reader = create_key(server.data_dir, "denied", {"Statement": []})
    with pytest.raises(ClientError):
        server.client(key=reader).delete_collection(CollectionId="someone-elses")
    with pytest.raises(ClientError):
        server.client(key=(server.key_id, "wrong-secret")).list_collections()
    denied = entries(server.data_dir, "--key", reader[0])
    assert [(r["operation"], r["result"], r["collection_id"]) for r in denied] == [
        ("DeleteCollection", "AccessDeniedException", "someone-elses")]
    bad = entries(server.data_dir, "--key", f"unauthenticated:{server.key_id}")
    assert bad and bad[-1]["operation"] == "ListCollections" and bad[-1]["result"] == "InvalidSignatureException"


def test_export_is_json_lines_and_verify_passes_on_a_live_server(server, tmp_path):
    out = tmp_path / "ledger.jsonl"
    cli("audit", "export", "--data", server.data_dir, "--output", out)
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(line)["hash"] for line in lines)
    result = cli("audit", "verify", "--data", server.data_dir)
    assert "ledger intact" in result.stdout


def test_local_calls_are_recorded_with_the_os_user(tmp_path):
    import getpass

    with faceledger.Client(data_dir=tmp_path / "d") as client:
        client.create_collection(CollectionId="local-one")
    (row,) = entries(tmp_path / "d")
    assert row["principal"] == f"local:{getpass.getuser()}" and row["transport"] == "python"
    assert row["operation"] == "CreateCollection" and row["collection_id"] == "local-one"


def test_the_change_and_its_entry_commit_together(tmp_path):
    """A ledger that refuses the entry refuses the change: they are one transaction."""
    data = tmp_path / "d"
    with faceledger.Client(data_dir=data) as client:
        client.create_collection(CollectionId="before")
    db = sqlite3.connect(data / "faceledger.db")
    db.execute("CREATE TRIGGER no_more BEFORE INSERT ON ledger BEGIN SELECT RAISE(ABORT, 'ledger full'); END")
    db.commit()
    db.close()
    with faceledger.Client(data_dir=data) as client:
        with pytest.raises(sqlite3.DatabaseError):
            client.create_collection(CollectionId="after")
    db = sqlite3.connect(data / "faceledger.db")
    assert [r[0] for r in db.execute("SELECT collection_id FROM collections")] == ["before"]


# --------------------------------------------------------------------------- tampering


@pytest.fixture
def ledger_copy(tmp_path) -> Path:
    """A data folder with 6 ledger entries (no inference: collection operations)."""
    data = tmp_path / "d"
    with faceledger.Client(data_dir=data) as client:
        for n in range(3):
            client.create_collection(CollectionId=f"c{n}")
        client.describe_collection(CollectionId="c1")
        client.delete_collection(CollectionId="c0")
        client.list_collections()
    assert "6 entries" in cli("audit", "verify", "--data", data).stdout
    return data


def tamper(data: Path, *sql: str) -> None:
    db = sqlite3.connect(data / "faceledger.db")
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


@pytest.mark.parametrize("how, sql, bad, says", [
    ("edited", ["UPDATE ledger SET result = 'AccessDeniedException' WHERE seq = 3"], 3, "altered"),
    ("edited-principal", ["UPDATE ledger SET principal = 'someone-else' WHERE seq = 2"], 2, "altered"),
    ("deleted", ["DELETE FROM ledger WHERE seq = 4"], 4, "missing"),
    ("swapped", ["UPDATE ledger SET seq = -1 WHERE seq = 3", "UPDATE ledger SET seq = 3 WHERE seq = 4",
                 "UPDATE ledger SET seq = 4 WHERE seq = -1"], 3, "does not follow"),
    ("edited-operation", ["UPDATE ledger SET operation = 'ListCollections' WHERE seq = 5"], 5, "altered"),
])
def test_audit_verify_names_the_first_broken_entry(ledger_copy, how, sql, bad, says):
    tamper(ledger_copy, *sql)
    result = CliRunner().invoke(main, ["audit", "verify", "--data", str(ledger_copy)])
    assert result.exit_code == 1
    assert f"entry #{bad}" in result.output and says in result.output, result.output


def test_audit_verify_catches_a_recomputed_hash_of_an_edited_entry(ledger_copy):
    """Editing an entry and recomputing its own hash still breaks the next entry's link."""
    from faceledger.store.ledger import entry_hash

    db = sqlite3.connect(ledger_copy / "faceledger.db")
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM ledger WHERE seq = 2").fetchone())
    row["principal"] = "someone-else"
    db.execute("UPDATE ledger SET principal = ?, hash = ? WHERE seq = 2", (row["principal"], entry_hash(row)))
    db.commit()
    db.close()
    result = CliRunner().invoke(main, ["audit", "verify", "--data", str(ledger_copy)])
    assert result.exit_code == 1 and "entry #3 does not follow" in result.output
