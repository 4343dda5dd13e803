"""Acknowledged writes survive SIGKILL; concurrent clients neither lose writes nor see "database is locked".

Each test starts its own `faceledger serve` subprocess(es) on its own data folder.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from conftest import Server, image_bytes, shared_data

LFW_FACES = [
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Aaron_Guiel/Aaron_Guiel_0001.jpg",
    "AJ_Lamas/AJ_Lamas_0001.jpg",
    "George_W_Bush/George_W_Bush_0001.jpg",
    "Colin_Powell/Colin_Powell_0001.jpg",
    "Arnold_Schwarzenegger/Arnold_Schwarzenegger_0001.jpg",
]


@pytest.fixture(scope="module")
def faces() -> list[bytes]:
    return [image_bytes(shared_data("lfw_dev", rel)) for rel in LFW_FACES]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers a test starts go here and are stopped afterwards, whatever happened."""
    started: list[Server] = []
    yield started
    for srv in started:
        if srv.process.poll() is None:
            srv.stop()


def start(servers: list[Server], root: Path) -> Server:
    srv = Server(root / "data", root / "buckets")
    servers.append(srv)
    return srv


def all_face_ids(client, cid: str) -> list[str]:
    ids, token = [], None
    while True:
        page = client.list_faces(CollectionId=cid, MaxResults=50, **({"NextToken": token} if token else {}))
        ids += [f["FaceId"] for f in page["Faces"]]
        token = page.get("NextToken")
        if not token:
            return ids


def log_problems(srv: Server) -> list[str]:
    text = srv.log.read_text(errors="replace")
    return [line for line in text.splitlines() if "locked" in line or "Traceback" in line or "ERROR" in line]


def test_indexed_face_survives_sigkill(servers, tmp_path, faces):
    first = start(servers, tmp_path)
    client = first.client()
    client.create_collection(CollectionId="durable", Tags={"keep": "me"})
    response = client.index_faces(CollectionId="durable", Image={"Bytes": faces[0]}, ExternalImageId="first")
    first.kill()  # straight after the acknowledgement: no chance to flush anything more
    (face,) = [r["Face"] for r in response["FaceRecords"]]

    second = start(servers, tmp_path)
    client = second.client()
    assert client.list_collections()["CollectionIds"] == ["durable"]
    listed = client.list_faces(CollectionId="durable")["Faces"]
    assert listed == [face]
    assert client.describe_collection(CollectionId="durable")["FaceCount"] == 1
    arn = client.describe_collection(CollectionId="durable")["CollectionARN"]
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"keep": "me"}
    assert log_problems(second) == []


def test_every_kind_of_write_survives_sigkill(servers, tmp_path, faces):
    first = start(servers, tmp_path)
    client = first.client()
    client.create_collection(CollectionId="gone")
    client.create_collection(CollectionId="kept")
    ids = []
    for image in faces[:3]:
        ids += [r["Face"]["FaceId"] for r in client.index_faces(CollectionId="kept", Image={"Bytes": image})["FaceRecords"]]
    assert len(ids) == 3
    client.create_user(CollectionId="kept", UserId="aaron")
    client.associate_faces(CollectionId="kept", UserId="aaron", FaceIds=[ids[0]])
    assert client.delete_faces(CollectionId="kept", FaceIds=[ids[2]])["DeletedFaces"] == [ids[2]]
    client.delete_collection(CollectionId="gone")
    first.kill()

    second = start(servers, tmp_path)
    client = second.client()
    assert client.list_collections()["CollectionIds"] == ["kept"]
    described = client.describe_collection(CollectionId="kept")
    assert (described["FaceCount"], described["UserCount"]) == (2, 1)
    assert sorted(all_face_ids(client, "kept")) == sorted(ids[:2])
    assert [f["FaceId"] for f in client.list_faces(CollectionId="kept", UserId="aaron")["Faces"]] == [ids[0]]
    assert client.list_users(CollectionId="kept")["Users"] == [{"UserId": "aaron", "UserStatus": "ACTIVE"}]
    # and the restarted server takes new writes on top
    more = client.index_faces(CollectionId="kept", Image={"Bytes": faces[3]})["FaceRecords"]
    assert client.describe_collection(CollectionId="kept")["FaceCount"] == 2 + len(more)


def test_acknowledged_faces_survive_sigkill_during_concurrent_writes(servers, tmp_path, faces):
    first = start(servers, tmp_path)
    first.client().create_collection(CollectionId="busy")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    killing = threading.Event()  # set before the kill: Popen.poll() from a thread races the kill's wait()
    unexpected: list[BaseException] = []

    def writer(n: int) -> None:
        client = first.client()
        i = n
        while not stop.is_set():
            try:
                response = client.index_faces(CollectionId="busy", Image={"Bytes": faces[i % len(faces)]})
            except (EndpointConnectionError, Urllib3Error, ConnectionError, OSError):
                return  # the server was killed mid-request: that write was never acknowledged
            except ClientError as exc:
                unexpected.append(exc)
                return
            except Exception as exc:  # botocore wraps a dropped connection in several ways
                if not killing.is_set():
                    unexpected.append(exc)
                return
            with lock:
                acknowledged.extend(r["Face"]["FaceId"] for r in response["FaceRecords"])
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    killing.set()
    first.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert not unexpected, unexpected
    assert len(acknowledged) >= 6
    with lock:
        acked = set(acknowledged)

    second = start(servers, tmp_path)
    client = second.client()
    stored = all_face_ids(client, "busy")
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged faces were lost"
    # whatever made it in is consistent: the count matches the listing
    assert client.describe_collection(CollectionId="busy")["FaceCount"] == len(stored) == len(set(stored))


def test_concurrent_clients_lose_nothing(servers, tmp_path, faces):
    srv = start(servers, tmp_path)
    srv.client().create_collection(CollectionId="shared")
    results: dict[int, dict[str, list[str]]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        try:
            client = srv.client()
            mine: dict[str, list[str]] = {"shared": []}
            barrier.wait(30)
            for k in range(2):
                cid = f"t{n}-c{k}-{uuid.uuid4().hex[:6]}"
                client.create_collection(CollectionId=cid)
                mine[cid] = []
                for j in range(3):
                    image = faces[(n + k + j) % len(faces)]
                    for target in (cid, "shared"):
                        response = client.index_faces(CollectionId=target, Image={"Bytes": image},
                                                      ExternalImageId=f"t{n}-{k}-{j}")
                        mine[target] += [r["Face"]["FaceId"] for r in response["FaceRecords"]]
                client.create_user(CollectionId=cid, UserId=f"user-{n}")
            results[n] = mine
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3]

    client = srv.client()
    expected_shared: list[str] = []
    for n, mine in results.items():
        expected_shared += mine.pop("shared")
        assert len(mine) == 2
        for cid, ids in mine.items():
            assert len(ids) == 3, (cid, ids)  # one face per LFW image
            assert sorted(all_face_ids(client, cid)) == sorted(ids)
            described = client.describe_collection(CollectionId=cid)
            assert (described["FaceCount"], described["UserCount"]) == (3, 1)
    assert len(expected_shared) == 24 == len(set(expected_shared))
    assert sorted(all_face_ids(client, "shared")) == sorted(expected_shared)
    assert client.describe_collection(CollectionId="shared")["FaceCount"] == 24
    assert len(client.list_collections()["CollectionIds"]) == 1 + 4 * 2
    assert log_problems(srv) == []


def no_retry_client(srv: Server):
    """boto3 that never retries: a 500 must show as a 500, not as whatever a retry then meets."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "rekognition", endpoint_url=srv.url, region_name="us-east-1", aws_access_key_id=srv.key_id,
        aws_secret_access_key=srv.secret, config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
    )


def test_index_faces_racing_delete_collection_is_not_found_not_a_500(servers, tmp_path):
    srv = start(servers, tmp_path)
    crowd = image_bytes(shared_data("groups", "linzaer_imgs", "16.jpg"))  # ~1 s of analysis on one core
    client = no_retry_client(srv)
    outcomes = []
    for attempt in range(2):
        client.create_collection(CollectionId="racing")
        result: dict = {}

        def index() -> None:
            try:
                response = client.index_faces(CollectionId="racing", Image={"Bytes": crowd}, QualityFilter="NONE")
                result["faces"] = len(response["FaceRecords"])
            except ClientError as exc:
                result["error"] = exc.response["Error"]["Code"]

        thread = threading.Thread(target=index)
        thread.start()
        time.sleep(0.3)  # IndexFaces has found the collection and is analysing the image
        no_retry_client(srv).delete_collection(CollectionId="racing")
        thread.join(120)
        outcomes.append(result)
        # no face outlives its collection: a new collection of the same id starts empty
        client.create_collection(CollectionId="racing")
        assert client.describe_collection(CollectionId="racing")["FaceCount"] == 0
        assert client.list_faces(CollectionId="racing")["Faces"] == []
        client.delete_collection(CollectionId="racing")
    for result in outcomes:
        assert result.get("error") in (None, "ResourceNotFoundException"), outcomes
    assert log_problems(srv) == []


def test_concurrent_create_of_one_collection_succeeds_once(servers, tmp_path):
    srv = start(servers, tmp_path)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def create() -> None:
        client = no_retry_client(srv)
        barrier.wait(30)
        try:
            client.create_collection(CollectionId="contested")
            outcomes.append("created")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["ResourceAlreadyExistsException"] * 5 + ["created"]
    assert no_retry_client(srv).list_collections()["CollectionIds"] == ["contested"]
    assert log_problems(srv) == []
