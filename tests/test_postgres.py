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
    found, attempts = None, 0
    while time.monotonic() - indexed < 1.0:
        attempts += 1
        hits = rb.search_faces(CollectionId=cid, FaceId=face_id, FaceMatchThreshold=0)["FaceMatches"]
        matches = rb.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(person[1])})["FaceMatches"]
        if [m["Face"]["FaceId"] for m in matches] == [face_id]:
            found = time.monotonic() - indexed
            break
    assert found is not None, "node B did not find node A's face within a second"
    print(f"two-node: found on B by its search #{attempts}, answered {found * 1000:.0f} ms after A's IndexFaces "
          "answered (SearchFaces + SearchFacesByImage on B, image analysis included)")
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


# ---- the store itself: every table on PostgreSQL, two stores (two nodes) on one database ----------------------

def _face(cid: str, vector, *, face_id: str | None = None, external: str | None = None):
    from datetime import datetime, timezone

    import numpy as np

    from faceledger.store import FaceRecord

    return FaceRecord(face_id=face_id or str(uuid.uuid4()), collection_id=cid, image_id=str(uuid.uuid4()),
                      external_image_id=external, bounding_box=(0.5, 0.5, 0.1, 0.1), confidence=99.0,
                      face_model_version="test", created_at=datetime.now(timezone.utc),
                      embedding=np.asarray(vector, np.float32))


@pytest.fixture
def stores(pg_cluster):
    from faceledger.store.postgres import PostgresStore

    url = pg_cluster.url()
    one, two = PostgresStore(url), PostgresStore(url)
    yield one, two
    one.close()
    two.close()


def test_faces_users_tags_and_ledger_are_shared_by_two_stores(stores):
    from datetime import datetime, timezone

    import numpy as np

    from faceledger.store import CollectionRecord, UserRecord
    from faceledger.store.ledger import LedgerEntry

    one, two = stores
    now = datetime.now(timezone.utc)
    assert one.create_collection(CollectionRecord("c", "arn:c", "test", now), {"k": "v"})
    assert not two.create_collection(CollectionRecord("c", "arn:c", "test", now), {})
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    faces = [_face("c", v, external="img") for v in vectors]
    assert one.add_faces(faces[:20])
    assert [n.face.face_id for n in two.nearest("c", vectors[3], limit=1, max_distance=2.0)] == [faces[3].face_id]
    assert one.add_faces(faces[20:])  # two's index catches up from the database
    hit = two.nearest("c", vectors[33], limit=2, max_distance=2.0)
    assert hit[0].face.face_id == faces[33].face_id and hit[0].distance == pytest.approx(0.0, abs=1e-5)
    got = two.get_faces("c", [faces[5].face_id], with_embeddings=True)[faces[5].face_id]
    assert np.array_equal(got.embedding, vectors[5])
    assert two.delete_faces("c", [faces[33].face_id, "nope"]) == [faces[33].face_id]
    assert faces[33].face_id not in [n.face.face_id for n in one.nearest("c", vectors[33], limit=5, max_distance=2.0)]
    assert one.get_collection("c").face_count == 39
    assert two.create_user(UserRecord("c", "u1", now)) and not one.create_user(UserRecord("c", "u1", now))
    one.set_face_user("c", [faces[0].face_id], "u1")
    assert two.get_user("c", "u1").face_count == 1
    two.put_tags("c", {"k": "w", "x": "y"})
    assert one.get_tags("c") == {"k": "w", "x": "y"}
    assert one.put_collection_policy("c", {"Statement": []}) and two.get_collection_policy("c") == {"Statement": []}
    page = one.list_faces("c", after=None, limit=10)
    assert len(page.items) == 10 and [f.face_id for f in page.items] == sorted(f.face_id for f in page.items)
    assert len(two.erase_external_image_id("img", dry_run=True)) == 39
    for i, store in enumerate((one, two, one)):
        store.append_ledger(LedgerEntry("2026-01-01T00:00:00.000000+00:00", f"p{i}", None, "test", "Op", "c",
                                        None, None, "OK", {"i": i}))
    assert two.verify_ledger().ok and two.verify_ledger().entries == 3
    assert [r["principal"] for r in one.ledger_rows(contains=['"i":1'])] == ["p1"]
    assert one.delete_collection("c") and two.get_collection("c") is None
    assert two.nearest("c", vectors[0], limit=1, max_distance=2.0) == []


def test_a_threads_connection_is_closed_when_the_thread_ends(stores):
    """Worker threads come and go (anyio retires one idle for 10 s): each one's PostgreSQL connection must go
    with it, or a long-running node holds more and more server connections until max_connections refuses."""
    one, _ = stores

    def backends() -> int:
        return one._conn().execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                                   ).fetchone()["n"]

    before = backends()
    for _ in range(30):
        worker = threading.Thread(target=lambda: one.get_collection("nope"))
        worker.start()
        worker.join()
    assert backends() <= before + 1  # (a thread's close can still be on its way)
    assert len(one._connections) == 1  # this thread's


def test_stream_tables_and_video_jobs_live_in_postgresql(stores):
    import time as clock

    from faceledger.store.streams import StreamTables
    from faceledger.store.video_jobs import VideoJob

    one, two = stores
    s1, s2 = StreamTables(one), StreamTables(two)
    assert s1.add_source("cam", "rtsp://127.0.0.1/x", "rtsp") and not s2.add_source("cam", "rtsp://y", "rtsp")
    assert [s.name for s in s2.list_sources()] == ["cam"]
    s1.put_sink("arn:k", "http://127.0.0.1/hook")
    assert s2.get_sink("arn:k") == "http://127.0.0.1/hook"
    assert s1.create_processor("p", "arn:p", {"SourceName": "cam"}, {"t": "1"})
    assert s2.update_processor("p", desired="RUNNING", stats={"frames": 3})
    assert s1.desired_running() == ["p"] and s1.get_processor("p").stats == {"frames": 3}
    assert s2.processors_using_source("cam") == ["p"]
    assert s1.delete_processor("p") and s2.remove_source("cam")

    now = clock.time()
    one.create_video_job(VideoJob("j1", "FaceSearch", "QUEUED", "me", {"r": 1}, {"v": 1}, now, now))
    assert two.count_active_video_jobs() == 1
    job, failed = two.claim_video_job("node-2", now, 60, 3, lambda owner: False)
    assert job.job_id == "j1" and failed == []
    assert one.claim_video_job("node-1", now, 60, 3, lambda owner: False) == (None, [])  # node 2 holds it
    assert two.save_video_checkpoint("j1", "node-2", {"t": 1.0}, now, [("track", {"a": 1}, b"\x00" * 8)])
    assert not one.save_video_checkpoint("j1", "node-1", {"t": 2.0}, now)
    assert one.video_job_items("j1", "track") == [({"a": 1}, b"\x00" * 8)]
    assert two.finish_video_job("j1", "node-2", "SUCCEEDED", None, now, now + 10,
                                [(0, 1, {"x": 0}), (1, 0, {"x": 1})])
    assert one.video_job_results("j1", -1, 1) == ([{"x": 0}], 0)
    assert one.video_job_results("j1", -1, 5, by_index=True) == ([{"x": 1}, {"x": 0}], None)
    assert two.delete_expired_video_jobs(now + 11) == 1 and one.get_video_job("j1") is None


# ---- faceledger migrate ----------------------------------------------------------------------------------------

def test_migrate_moves_a_whole_store_and_its_ledger_verifies_on_the_target(pg_cluster, tmp_path):
    from datetime import datetime, timezone

    import numpy as np
    from click.testing import CliRunner

    from faceledger.cli import main
    from faceledger.store import AccessKeyRecord, CollectionRecord, UserRecord
    from faceledger.store.ledger import LedgerEntry
    from faceledger.store.postgres import PostgresStore
    from faceledger.store.sqlite import SQLiteStore
    from faceledger.store.video_jobs import VideoJob

    data = tmp_path / "data"
    data.mkdir()
    src = SQLiteStore(data / "faceledger.db")
    now = datetime.now(timezone.utc)
    src.create_collection(CollectionRecord("c1", "arn:c1", "test", now), {"team": "a"})
    src.create_collection(CollectionRecord("c2", "arn:c2", "test", now), {})
    vectors = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    faces = [_face("c1", v, external=f"img-{i}") for i, v in enumerate(vectors)]
    src.add_faces(faces)
    src.delete_faces("c1", [faces[0].face_id])  # leaves a tombstone: derived state, not moved
    src.create_user(UserRecord("c1", "u", now))
    src.set_face_user("c1", [faces[1].face_id], "u")
    src.put_collection_policy("c2", {"Statement": []})
    src.add_access_key(AccessKeyRecord("AKID", "k", b"sealed", "{}", now))
    src.create_video_job(VideoJob("j", "FaceDetection", "QUEUED", "me", {}, {}, 1.0, 1.0))
    for i in range(5):
        src.append_ledger(LedgerEntry(now.isoformat(), "p", None, "test", f"Op{i}", "c1", None, None, "OK", {"i": i}))
    source_rows = list(src.ledger_rows())
    src.close()

    url = pg_cluster.url()
    result = CliRunner().invoke(main, ["migrate", "--from", str(data), "--to", url])
    assert result.exit_code == 0, result.output
    assert "ledger intact on the target: 6 entries" in result.output

    target = PostgresStore(url)
    try:
        moved = list(target.ledger_rows())
        assert moved[:5] == source_rows  # every entry as it was: same hashes, same chain
        assert moved[5]["operation"] == "Migrate" and moved[5]["prev_hash"] == source_rows[-1]["hash"]
        assert target.get_collection("c1").face_count == 29 and target.get_collection("c1").user_count == 1
        assert target.get_tags("c1") == {"team": "a"} and target.get_collection_policy("c2") == {"Statement": []}
        assert target.get_access_key("AKID").secret == b"sealed"
        assert target.get_video_job("j").status == "QUEUED"
        assert target.get_user("c1", "u").face_count == 1
        hit = target.nearest("c1", vectors[7], limit=1, max_distance=10.0)
        assert hit[0].face.face_id == faces[7].face_id and hit[0].distance == pytest.approx(0, abs=1e-5)
        assert target.nearest("c1", vectors[0], limit=1, max_distance=1e-3) == []  # the deleted face stays gone
        assert [c.collection_id for c in target.list_collections(None, 10).items] == ["c1", "c2"]
    finally:
        target.close()
    verified = faceledger_cli(url, "audit", "verify", "--data", str(tmp_path / "elsewhere"))
    assert verified.returncode == 0 and "ledger intact: 6 entries" in verified.stdout, verified.stderr

    again = CliRunner().invoke(main, ["migrate", "--from", str(data), "--to", url])
    assert again.exit_code != 0 and "already holds faceledger data" in again.output
    assert "ledger intact: 6 entries" in faceledger_cli(url, "audit", "verify").stdout  # nothing half-added


def test_control_characters_of_a_refused_call_reach_no_ledger_column_and_the_store_migrates(pg_cluster, tmp_path):
    """A client chooses the CollectionId a refused call is recorded under: a NUL (which PostgreSQL text cannot
    hold) or a terminal escape (which `audit list` would print) is written escaped, so the entry appends on
    PostgreSQL, the store migrates, and audit verify passes; an old entry holding a NUL is named by migrate."""
    from botocore.exceptions import ClientError
    from click.testing import CliRunner

    from faceledger.cli import main
    from faceledger.client import Client
    from faceledger.service import RequestContext, Service, ServiceConfig
    from faceledger.service.auth import Policy
    from faceledger.store.ledger import LedgerEntry
    from faceledger.store.sqlite import SQLiteStore

    hostile = "a\x00b\x1b[31mred\x7f"
    for where in ("sqlite", "postgresql"):
        data = tmp_path / where
        config = ServiceConfig(data, database=pg_cluster.url()) if where == "postgresql" else ServiceConfig(data)
        with Client(service=Service(config)) as client:
            with pytest.raises(ClientError, match="ValidationException"):
                client.describe_collection(CollectionId=hostile)
            with pytest.raises(ClientError, match="ValidationException"):
                client.start_face_search(CollectionId=hostile, Video={"S3Object": {"Bucket": "bkt", "Name": "v.mp4"}})
            # ids looked up before validation (for a key's policy) or never validated against a pattern (a
            # ResourceArn): a NUL matches nothing, as on SQLite, never a PostgreSQL DataError (a 5xx)
            limited = Client(service=client._service, context=RequestContext(
                transport="python", principal="limited", purpose="p", case_reference="c", policy=Policy.parse(
                    {"Statement": [{"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"}]})))
            for c in (client, limited):
                with pytest.raises(ClientError, match="ValidationException"):
                    c.get_face_detection(JobId="a\x00b")
                with pytest.raises(ClientError, match="ValidationException"):
                    c.get_face_detection(JobId="a\ud800b")  # a lone surrogate: not even encodable
                with pytest.raises(ClientError, match="ValidationException"):
                    c.describe_stream_processor(Name="a\x00b")
                with pytest.raises(ClientError, match="ResourceNotFoundException"):
                    c.list_tags_for_resource(ResourceArn="arn:aws:rekognition:us-east-1:000000000000:streamprocessor/a\x00")
            assert "InternalServerError" not in {r["result"] for r in client._service.store.ledger_rows()}
            rows = [r for r in client._service.store.ledger_rows() if r["operation"] in
                    ("DescribeCollection", "StartFaceSearch")]
        assert [r["collection_id"] for r in rows] == ["a\\u0000b\\u001b[31mred\\u007f"] * 2, where
        assert [r["result"] for r in rows] == ["ValidationException"] * 2
    url = pg_cluster.url()
    moved = CliRunner().invoke(main, ["migrate", "--from", str(tmp_path / "sqlite"), "--to", url])
    assert moved.exit_code == 0 and "ledger intact on the target: 9 entries" in moved.output, moved.output
    # a store written before the escaping (its entry's hash covers the NUL): migrate names the row instead of
    # failing inside PostgreSQL
    old = SQLiteStore(tmp_path / "old" / "faceledger.db")
    old.append_ledger(LedgerEntry("2026-01-01T00:00:00", "p", None, "http", "DescribeCollection", "ok", None, None,
                                  "OK", {}))
    old.append_ledger(LedgerEntry("2026-01-01T00:00:01", "p", None, "http", "DescribeCollection", "x\x00y", None,
                                  None, "ValidationException", {}))
    old.close()
    refused = CliRunner().invoke(main, ["migrate", "--from", str(tmp_path / "old"), "--to", pg_cluster.url()])
    assert refused.exit_code != 0 and "row 2 of table ledger has a NUL character in collection_id" in refused.output
