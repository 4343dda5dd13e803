"""A newcomer's first hour with the CLI: docs/cli.md's --endpoint example runs as printed, a refused key says how
to give one, tables stay whole when output is not a terminal, an unreadable image is named."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from faceledger.cli import main

from conftest import free_port, shared_data

KNN = ("small_identities", "face_recognition_knn_examples")


def run(*args: object, code: int = 0, env: dict | None = None) -> Result:
    result = CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def no_aws_configuration(tmp_path: Path) -> dict:
    """An environment where boto3 finds no credentials at all (CliRunner restores the real one afterwards)."""
    return {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"), "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None, "AWS_EC2_METADATA_DISABLED": "true"}


def test_a_refused_key_says_how_to_give_one(server, tmp_path):
    env = no_aws_configuration(tmp_path)
    r = run("collections", "list", "--endpoint", server.url, code=2, env=env)
    assert r.stderr.startswith("error: UnrecognizedClientException:")
    assert "no credentials were configured, so 'local'/'local' was sent" in r.stderr
    assert "AWS_SHARED_CREDENTIALS_FILE=DATA/credentials AWS_PROFILE=faceledger" in r.stderr
    assert "faceledger keys create" in r.stderr
    # faceledger's own operations (Faceledger.<Op>) say the same
    r = run("policy", "show", "nope", "--endpoint", server.url, code=2, env=env)
    assert "did not accept the key" in r.stderr
    # a wrong key from a profile: the hint names where it came from
    (tmp_path / "credentials").write_text("[faceledger]\naws_access_key_id = FLAKNOTAKEY\n"
                                          "aws_secret_access_key = wrong\n")
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_PROFILE="faceledger")
    r = run("collections", "list", "--endpoint", server.url, code=2, env=env)
    assert "came from shared-credentials-file (AWS_PROFILE=faceledger)" in r.stderr
    # the server's key, given the documented way: works
    (tmp_path / "credentials").write_text(f"[faceledger]\naws_access_key_id = {server.key_id}\n"
                                          f"aws_secret_access_key = {server.secret}\n")
    run("collections", "list", "--endpoint", server.url, env=env)


def test_docs_cli_endpoint_example_runs_as_printed(tmp_path):
    """docs/cli.md, "Against a running server": a fresh server's first start saves the admin key, and the two
    exported variables are all the CLI needs."""
    knn = shared_data(*KNN)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "server-data"
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--data", str(data), "--port", str(port)],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        env = {**no_aws_configuration(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(data / "credentials"),
               "AWS_PROFILE": "faceledger"}
        run("collections", "create", "visitors", "--endpoint", url, env=env)
        r = run("index", "visitors", knn / "train", "--endpoint", url, "--no-progress", env=env)
        assert "9 of 9 images processed" in r.stdout
        r = run("search", "visitors", knn / "test" / "obama1.jpg", "--endpoint", url, env=env)
        assert "obama:obama" in r.stdout
    finally:
        serve.terminate()
        serve.wait(30)
        log.close()


def test_tables_do_not_wrap_when_output_is_not_a_terminal(tmp_path):
    """CliRunner's stdout is not a terminal: every row on one line, ids whole, however long."""
    photo = shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    folder = tmp_path / ("a-folder-with-a-long-name-" * 4)
    folder.mkdir()
    name = "a-photo-with-a-long-name-" * 5 + ".jpg"
    (folder / name).write_bytes(photo.read_bytes())
    d = ["--data", tmp_path / "data"]
    run("collections", "create", "c", *d)
    run("index", "c", tmp_path, *d, "--no-progress")
    face = json.loads(run("faces", "list", "c", *d, "--json").stdout)["Faces"][0]
    assert len(face["ExternalImageId"]) > 200
    lines = run("faces", "list", "c", *d, env={"COLUMNS": "80"}).stdout.splitlines()
    row = next(line for line in lines if face["FaceId"] in line)
    assert face["ExternalImageId"] in row
    lines = run("erase", "--external-image-id", face["ExternalImageId"], *d, "--dry-run").stdout.splitlines()
    assert any(line.startswith("c ") and face["FaceId"] in line and face["ImageId"] in line for line in lines)


def test_an_unreadable_image_is_named_with_what_is_wrong(tmp_path):
    (tmp_path / "notes.jpg").write_bytes(b"these are not the pixels you are looking for")
    r = run("detect", tmp_path / "notes.jpg", code=2)
    assert "Image.Bytes: not a decodable image (44 bytes): no image format recognised in its first bytes" in r.stderr
    assert "the data" not in r.stderr and "BytesIO" not in r.stderr


@pytest.mark.parametrize("member", ["SourceImage", "TargetImage"])
def test_compare_names_the_member(tmp_path, member):
    good = shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    args = (tmp_path / "bad.png", good) if member == "SourceImage" else (good, tmp_path / "bad.png")
    r = run("compare", *args, code=2)
    assert f"InvalidImageFormatException: {member}.Bytes:" in r.stderr

