"""A full disk (issue 9, point 9), on a real small file system: a 3 MB tmpfs holding the data folder.

While the disk is full every answer is either a success or a 503 InternalServerError that says the disk
is full (never a bare 500), /health says so, the log keeps SQLite's own error (never "cannot rollback");
once space is freed the server recovers by itself, and nothing acknowledged is lost. Skips when this
machine does not allow mounting a tmpfs (it needs root).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import Server, image_bytes, shared_data, small_tmpfs


@pytest.fixture
def tiny_disk(tmp_path: Path):
    with small_tmpfs(tmp_path / "tiny", "3m") as mount:
        yield mount


def _fill(folder: Path) -> Path:
    """Write a file until the file system has no byte left; returns it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler


def _is_disk_full_answer(exc: ClientError) -> bool:
    error, meta = exc.response["Error"], exc.response["ResponseMetadata"]
    return (error["Code"] == "InternalServerError" and meta["HTTPStatusCode"] == 503
            and "disk" in error["Message"] and "full" in error["Message"] and "nothing was changed" in error["Message"])


def test_full_disk_clear_answers_health_log_recovery_and_no_loss(tiny_disk: Path, tmp_path: Path):
    srv = Server(tiny_disk, tmp_path / "buckets")  # the data folder is the tmpfs; the log is outside it
    client = srv.client()
    face = image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))
    acknowledged: list[str] = []
    indexed: list[str] = []
    try:
        client.create_collection(CollectionId="people")
        for _ in range(2):
            indexed += [r["Face"]["FaceId"] for r in client.index_faces(
                CollectionId="people", Image={"Bytes": face}, ExternalImageId="aaron")["FaceRecords"]]
        filler = _fill(tiny_disk)
        refused: list[ClientError] = []
        for i in range(300):  # SQLite reuses its WAL for a while: write until the disk refuses
            cid = f"c{i}-{uuid.uuid4().hex}"
            try:
                client.create_collection(CollectionId=cid, Tags={"pad": "x" * 200})
                acknowledged.append(cid)
            except ClientError as exc:
                refused.append(exc)
                if len(refused) >= 3:
                    break
        assert refused, "the full disk never refused a write"
        for exc in refused:
            assert _is_disk_full_answer(exc), exc.response
        try:  # an image call while full: the same answer (its ledger entry cannot be written either)
            indexed += [r["Face"]["FaceId"] for r in client.index_faces(
                CollectionId="people", Image={"Bytes": face}, ExternalImageId="aaron")["FaceRecords"]]
        except ClientError as exc:
            assert _is_disk_full_answer(exc), exc.response
        health = httpx.get(srv.url + "/health", timeout=30)
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "unavailable" and body["storage"]["ok"] is False
        assert any("full" in reason for reason in body["reasons"]), body

        filler.unlink()  # the operator frees space: the server recovers by itself
        health = httpx.get(srv.url + "/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        client.create_collection(CollectionId="after-recovery")
        names = set()
        for page in client.get_paginator("list_collections").paginate():
            names.update(page["CollectionIds"])
        assert set(acknowledged) | {"people", "after-recovery"} <= names
        listed = {f["FaceId"] for f in client.list_faces(CollectionId="people", MaxResults=100)["Faces"]}
        assert set(indexed) == listed
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert "database or disk is full" in log
    assert "cannot rollback" not in log
    assert "storage of" in log and "recovered" in log
    verify = subprocess.run([sys.executable, "-m", "faceledger", "audit", "verify", "--data", str(tiny_disk)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_full_disk_in_process_client_raises_the_clear_error(tiny_disk: Path):
    """The in-process Client: the same 503 InternalServerError as over HTTP, SQLite's error chained."""
    import sqlite3

    from faceledger import Client

    client = Client(data_dir=tiny_disk)
    try:
        client.create_collection(CollectionId="kept")
        _fill(tiny_disk)
        error = None
        for i in range(300):
            try:
                client.create_collection(CollectionId=f"c{i}", Tags={"pad": "x" * 200})
            except client.exceptions.InternalServerError as exc:
                error = exc
                break
        assert error is not None and _is_disk_full_answer(error)
        cause = error.__cause__
        assert cause is not None and isinstance(cause.__cause__, sqlite3.OperationalError)
        assert "database or disk is full" in str(cause.__cause__)
    finally:
        client.close()
    os.unlink(tiny_disk / "filler")
    with Client(data_dir=tiny_disk) as again:
        assert "kept" in again.list_collections()["CollectionIds"]
