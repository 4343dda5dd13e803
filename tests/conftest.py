"""Shared fixtures: real data, a live faceledger server on a loopback port, boto3 against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACELEDGER_TEST_DATA", REPO.parent / "shared" / "data"))

# Tests touch nothing outside loopback: no SDK (boto3 here, the AWS CLI in a subprocess, which inherits this)
# may look for credentials or a region on an instance-metadata or container endpoint, whatever a test's
# credentials are.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _var in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
    os.environ.pop(_var, None)

#: The test photos: real photographs from public research datasets, never copied into the repository. They are
#: read from $FACELEDGER_TEST_DATA, else from ../shared/data next to the repository. A test that needs a part
#: that is missing is skipped (the others run). The parts, and where each comes from:
TEST_DATA_PARTS = {
    "lfw_dev": "Labeled Faces in the Wild, deep-funneled colour JPEGs (vis-www.cs.umass.edu/lfw; all of it or "
               "a subset), one folder a person (Name/Name_0001.jpg), and pairs_dev.txt: verification pairs over "
               "them in LFW's pairs.txt format",
    "groups": "group photos: two_people.jpg (face_recognition's examples), facenet_pytorch_multiface.jpg "
              "(facenet-pytorch's examples), linzaer_imgs/ (Ultra-Light-Fast-Generic-Face-Detector-1MB's imgs/), "
              "dlib_faces/ (dlib's examples/faces)",
    "small_identities": "face_recognition_knn_examples/ (face_recognition's examples/knn_examples: train/<person>/, "
                        "test/)",
}


def shared_data(*parts: str) -> Path:
    """A path under the test data folder (TEST_DATA_PARTS), or skip the test when it is not there."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        what = TEST_DATA_PARTS.get(parts[0], "") if parts else ""
        pytest.skip(f"test data {path} is missing: set FACELEDGER_TEST_DATA to a folder with the test photos "
                    f"(default ../shared/data next to the repository){'; ' + parts[0] + ': ' + what if what else ''}"
                    " (tests/conftest.py, TEST_DATA_PARTS, lists every part)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_key(data_dir: Path, name: str = "test", policy: dict | None = None, *,
               database: str | None = None) -> tuple[str, str]:
    """`faceledger keys create --json` on a data folder (``database``: on that PostgreSQL database):
    (AccessKeyId, SecretAccessKey)."""
    cmd = [sys.executable, "-m", "faceledger", "keys", "create", "--data", str(data_dir), "--name", name, "--json"]
    if policy is not None:
        policy_file = data_dir.parent / f"policy-{uuid.uuid4().hex[:8]}.json"
        policy_file.write_text(json.dumps(policy))
        cmd += ["--policy", str(policy_file)]
    env = None if database is None else {**os.environ, "FACELEDGER_DATABASE": database}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    key = json.loads(out)
    return key["AccessKeyId"], key["SecretAccessKey"]


class Server:
    """A `faceledger serve` subprocess on a free loopback port.

    Authentication is on: before starting, a key is created with `faceledger keys create --json`
    and :meth:`client` signs with it. ``dev=True`` serves in development mode instead. ``database``: a
    postgresql:// URL the server keeps its records in (``serve --database``; None: the data folder's SQLite).
    """

    def __init__(self, data_dir: Path, buckets_dir: Path, extra: list[str] | None = None, *,
                 dev: bool = False, env: dict[str, str] | None = None, preexec_fn=None,
                 database: str | None = None) -> None:
        self.database = database
        self.data_dir, self.buckets_dir = data_dir, buckets_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        buckets_dir.mkdir(parents=True, exist_ok=True)
        if dev:
            self.key_id, self.secret = "local", "local"
            extra = ["--dev", *(extra or [])]
        else:
            self.key_id, self.secret = create_key(data_dir, database=database)
        if database is not None:
            extra = ["--database", database, *(extra or [])]
        cmd = [sys.executable, "-m", "faceledger", "serve", "--port", str(self.port),
               "--data", str(data_dir), "--buckets", str(buckets_dir), "--log-level", "warning", *(extra or [])]
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=preexec_fn)
        deadline = time.monotonic() + 600  # a fresh machine fetches and converts the models before listening
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def client(self, key: tuple[str, str] | None = None, **config: object):
        key_id, secret = key or (self.key_id, self.secret)
        return boto3.client(
            "rekognition",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=300, **config),
        )

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one SELECT (SQLite's ``?`` parameters) run directly on the server's store, whichever it is."""
        if self.database is None:
            import sqlite3

            con = sqlite3.connect(self.data_dir / "faceledger.db")
            try:
                return [tuple(r) for r in con.execute(sql, args)]
            finally:
                con.close()
        import psycopg

        with psycopg.connect(self.database) as con:
            return [tuple(r) for r in con.execute(sql.replace("?", "%s"), args)]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log_file.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


def serve_in(root: Path, database: str | None = None) -> Iterator[Server]:
    """A live server on ``root``/data and ``root``/buckets for a fixture's lifetime (``yield from``);
    ``database``: its records in that PostgreSQL database."""
    srv = Server(root / "data", root / "buckets", database=database)
    yield srv
    srv.stop()


# ---- backends ---------------------------------------------------------------------------------------------
# A test module that sets ``BACKENDS = ("sqlite", "postgresql")`` runs each of its tests that use the live
# ``server`` (through ``rekognition`` and the like) once per backend: the embedded SQLite store, and a private
# PostgreSQL cluster (tests/pgcluster.py; skipped, saying why, where no PostgreSQL server is installed).
# `pytest --backend sqlite` (or postgresql) runs one backend only.

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="append", default=None, choices=("sqlite", "postgresql"),
                     help="run the multi-backend API tests on this backend only (repeatable)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends = getattr(metafunc.module, "BACKENDS", None)
    if backends and "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend")
        metafunc.parametrize("backend", [b for b in backends if not chosen or b in chosen], indirect=True,
                             scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The store the live ``server`` runs on: "sqlite" unless the module asks for several (BACKENDS)."""
    return getattr(request, "param", "sqlite")


def private_pg_cluster() -> Iterator[object]:
    """A private PostgreSQL cluster (tests/pgcluster.py) for a fixture's lifetime (``yield from``), or skip."""
    import pgcluster

    if pgcluster.find_bin() is None:
        pytest.skip("no PostgreSQL server installed (Debian: apt-get install postgresql-15; .ci/run does it)")
    cluster = pgcluster.Cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """The session's PostgreSQL cluster (each user takes a fresh database of it: ``pg_cluster.url()``)."""
    yield from private_pg_cluster()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's live server on the embedded store."""
    yield from serve_in(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory, pg_cluster) -> Iterator[Server]:
    """The session's live server on PostgreSQL (a fresh database of the session's cluster)."""
    yield from serve_in(tmp_path_factory.mktemp("server-postgresql"), pg_cluster.url())


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, backend: str) -> Server:
    """The live server of the test's backend (the servers themselves live for the whole session, so moving
    between modules with and without BACKENDS starts none again)."""
    return request.getfixturevalue("pg_server" if backend == "postgresql" else "sqlite_server")


#: Request headers that turn faceledger's default search policy off (no limit on expected false matches, no
#: margin rule): Rekognition's own behaviour, for tests of what a threshold alone does.
REKOGNITION_LIKE = {"X-Faceledger-Max-Expected-False-Matches": "1e12", "X-Faceledger-Min-Margin": "0"}


def rekognition_like(client):
    """``client`` sending REKOGNITION_LIKE with every request."""
    def add(request, **_):
        for k, v in REKOGNITION_LIKE.items():
            request.headers[k] = v

    client.meta.events.register("before-sign.rekognition.*", add)
    return client


@pytest.fixture(scope="session")
def plain_rekognition(server: Server):
    """boto3 against the server with faceledger's search policy off (REKOGNITION_LIKE)."""
    return rekognition_like(server.client())


@pytest.fixture(scope="session")
def rekognition(server: Server):
    """boto3's Rekognition client against the live server."""
    return server.client()


@pytest.fixture
def collection_id(rekognition) -> Iterator[str]:
    """A fresh collection on the live server, deleted afterwards."""
    cid = f"test-{uuid.uuid4().hex[:12]}"
    rekognition.create_collection(CollectionId=cid)
    yield cid
    try:
        rekognition.delete_collection(CollectionId=cid)
    except rekognition.exceptions.ResourceNotFoundException:
        pass


@pytest.fixture(scope="session")
def lfw() -> Path:
    return shared_data("lfw_dev")


def image_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


@contextmanager
def small_tmpfs(mount: Path, size: str):
    """A tmpfs of ``size`` (mount's syntax: "64k", "3m") mounted on the new folder ``mount`` for the block, mode 0700;
    the test is skipped where it cannot be mounted (not root)."""
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
