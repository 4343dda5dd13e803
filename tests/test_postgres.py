"""faceledger on PostgreSQL (docs/distributed.md): two servers sharing one database, one ledger chain, and a
database that stops under them. The API suites that run on both stores are the modules with ``BACKENDS``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import Server, image_bytes, private_pg_cluster, shared_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """This module's own PostgreSQL cluster: a test stops it."""
    yield from private_pg_cluster()


@pytest.fixture(scope="module")
def nodes(cluster, tmp_path_factory):
    """Two servers (separate data folders) on one PostgreSQL database."""
    database = cluster.url()
    root = tmp_path_factory.mktemp("two-nodes")
    a = Server(root / "a" / "data", root / "a" / "buckets", database=database)
    try:
        b = Server(root / "b" / "data", root / "b" / "buckets", database=database)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def faceledger_cli(database: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACELEDGER_DATABASE": database}
    return subprocess.run([sys.executable, "-m", "faceledger", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_face_indexed_on_one_node_is_found_from_the_other_within_a_second(nodes):
    a, b = nodes
    ra, rb = a.client(), b.client()
    person = sorted(shared_data("lfw_dev", "Aaron_Peirsol").glob("*.jpg"))
    cid = f"two-{uuid.uuid4().hex[:8]}"
    ra.create_collection(CollectionId=cid)
    assert rb.describe_collection(CollectionId=cid)["FaceCount"] == 0
    # B has built (and cached) its index of the empty collection before A writes to it
    assert rb.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(person[1])})["FaceMatches"] == []
    face_id = ra.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(person[0])}, MaxFaces=1,
                             ExternalImageId="aaron-0")["FaceRecords"][0]["Face"]["FaceId"]
    indexed = time.monotonic()
    found = None
    while time.monotonic() - indexed < 1.0:
        hits = rb.search_faces(CollectionId=cid, FaceId=face_id, FaceMatchThreshold=0)["FaceMatches"]
        matches = rb.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(person[1])})["FaceMatches"]
        if [m["Face"]["FaceId"] for m in matches] == [face_id]:
            found = time.monotonic() - indexed
            break
    assert found is not None, "node B did not find node A's face within a second"
    print(f"two-node: found on B {found * 1000:.0f} ms after A's IndexFaces answered (search by image included)")
    assert hits == []  # the only face: no other to match
    # a delete on B is seen by A at once: the face never comes back
    assert rb.delete_faces(CollectionId=cid, FaceIds=[face_id])["DeletedFaces"] == [face_id]
    assert ra.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(person[1])})["FaceMatches"] == []
    assert ra.list_faces(CollectionId=cid)["Faces"] == []
    ra.delete_collection(CollectionId=cid)
    with pytest.raises(ClientError) as e:
        rb.describe_collection(CollectionId=cid)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_concurrent_calls_on_both_nodes_keep_one_ledger_chain(nodes, cluster):
    a, b = nodes
    errors: list[BaseException] = []
    made: list[str] = []

    def work(server: Server, n: int) -> None:
        client = server.client()
        try:
            for i in range(n):
                cid = f"chain-{uuid.uuid4().hex[:8]}"
                client.create_collection(CollectionId=cid, Tags={"i": str(i)})
                client.tag_resource(ResourceArn=client.describe_collection(CollectionId=cid)["CollectionARN"],
                                    Tags={"node": server.url})
                made.append(cid)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, 6)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == 24
    rows = a.query("SELECT seq, prev_hash, hash FROM ledger ORDER BY seq")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
    verified = faceledger_cli(a.database, "audit", "verify", "--data", str(a.data_dir))
    assert verified.returncode == 0, verified.stderr
    assert f"ledger intact: {len(rows)} entries" in verified.stdout
    # both nodes list the same collections
    listed = {c for c in a.client().list_collections(MaxResults=1000)["CollectionIds"]}
    assert set(made) <= listed
    assert listed == set(b.client().list_collections(MaxResults=1000)["CollectionIds"])


def test_a_stopped_database_is_a_503_that_says_so_and_the_service_recovers(nodes, cluster):
    a, b = nodes
    ra = a.client()
    cid = f"down-{uuid.uuid4().hex[:8]}"
    ra.create_collection(CollectionId=cid)
    person = sorted(shared_data("lfw_dev", "Aaron_Peirsol").glob("*.jpg"))
    face_id = ra.index_faces(CollectionId=cid, Image={"Bytes": image_bytes(person[0])},
                             MaxFaces=1)["FaceRecords"][0]["Face"]["FaceId"]
    cluster.stop()
    try:
        for client in (ra, b.client()):
            for call in (lambda: client.describe_collection(CollectionId=cid),
                         lambda: client.search_faces(CollectionId=cid, FaceId=face_id),
                         lambda: client.create_collection(CollectionId=cid + "-new")):
                with pytest.raises(ClientError) as e:
                    call()
                error = e.value.response
                assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
                assert error["Error"]["Code"] == "InternalServerError"
                assert "PostgreSQL" in error["Error"]["Message"], error["Error"]["Message"]
        health = httpx.get(a.url + "/health", timeout=10)
        assert health.status_code == 503 and "PostgreSQL" in json.dumps(health.json()["reasons"])
    finally:
        cluster.start()
    # back: the same answers as before, nothing half-done (the refused CreateCollection did not happen)
    deadline = time.monotonic() + 30
    while True:
        try:
            described = ra.describe_collection(CollectionId=cid)
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert described["FaceCount"] == 1
    rb = b.client()
    assert [m["Face"]["FaceId"] for m in rb.search_faces_by_image(
        CollectionId=cid, Image={"Bytes": image_bytes(person[1])})["FaceMatches"]] == [face_id]
    with pytest.raises(ClientError) as e:
        rb.describe_collection(CollectionId=cid + "-new")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert httpx.get(b.url + "/health", timeout=10).status_code == 200
    verified = faceledger_cli(a.database, "audit", "verify", "--data", str(a.data_dir))
    assert verified.returncode == 0, verified.stdout + verified.stderr
