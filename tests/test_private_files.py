"""The data folder is private (issue 9, point 4): 0700, and faceledger.db, its -wal/-shm, server.key and
credentials 0600, whatever the umask, for serve, the CLI and the in-process Client; folders and files
found readable by others are tightened on start, with a warning."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx

from conftest import free_port

SECRET_FILES = ("faceledger.db", "faceledger.db-wal", "faceledger.db-shm", "server.key", "credentials")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(data: Path, expected: tuple[str, ...]) -> None:
    assert _mode(data) == 0o700, oct(_mode(data))
    present = {p.name for p in data.iterdir()}
    assert set(expected) <= present, present
    for p in data.iterdir():
        assert _mode(p) & 0o077 == 0, f"{p.name} is {oct(_mode(p))}"
    for name in expected:
        assert _mode(data / name) == 0o600, f"{name} is {oct(_mode(data / name))}"


def _open_umask():
    os.umask(0o022)


def test_in_process_client_makes_private_files_under_any_umask(tmp_path):
    from faceledger import Client

    data = tmp_path / "data"
    old = os.umask(0o022)
    try:
        with Client(data_dir=data) as client:
            client.create_collection(CollectionId="staff")
            assert os.umask(0o022) == 0o022, "the Client changed its host process's umask"
            _assert_private(data, ("faceledger.db", "faceledger.db-wal", "faceledger.db-shm"))
    finally:
        os.umask(old)


def test_cli_makes_private_files_and_prints_no_warning_for_a_new_folder(tmp_path):
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "faceledger", "keys", "create", "--data", str(data), "--name", "k"],
                       capture_output=True, text=True, preexec_fn=_open_umask, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "mode" not in r.stderr
    _assert_private(data, ("faceledger.db", "server.key"))  # -wal and -shm go when the last connection closes


def test_serve_makes_private_files_under_an_open_umask(tmp_path):
    """A first start (admin key, credentials file) under umask 022, then a write."""
    data = tmp_path / "data"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--port", str(port), "--data", str(data),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_open_umask)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "serve exited"
            time.sleep(0.2)
        key_id = (data / "credentials").read_text().split("aws_access_key_id = ", 1)[1].split()[0]
        secret = (data / "credentials").read_text().split("aws_secret_access_key = ", 1)[1].split()[0]
        client = boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id=key_id, aws_secret_access_key=secret)
        client.create_collection(CollectionId="staff")
        _assert_private(data, SECRET_FILES)
    finally:
        proc.terminate()
        proc.wait(10)


def test_existing_open_folder_and_files_are_tightened_with_a_warning(tmp_path):
    from faceledger import Client

    data = tmp_path / "data"
    with Client(data_dir=data) as client:
        client.create_collection(CollectionId="staff")
    os.chmod(data, 0o755)
    for p in data.iterdir():
        os.chmod(p, 0o644)
    (data / "notes.txt").write_text("not faceledger's")
    os.chmod(data / "notes.txt", 0o644)
    r = subprocess.run([sys.executable, "-m", "faceledger", "collections", "list", "--data", str(data)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "staff" in r.stdout
    assert f"{data} had mode 0755: changed to 0700" in r.stderr
    assert f"{data / 'faceledger.db'} had mode 0644: changed to 0600" in r.stderr
    assert _mode(data) == 0o700
    for name in ("faceledger.db", "faceledger.db-wal", "faceledger.db-shm"):
        if (data / name).exists():
            assert _mode(data / name) == 0o600, name
    assert _mode(data / "notes.txt") == 0o644, "a file that is not faceledger's was changed"
