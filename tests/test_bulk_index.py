"""`faceledger index` over folders: a streamed walk in path order, worker processes, resume after Ctrl-C or
SIGKILL without a duplicate face or a ghost, bad files reported and skipped (real lfw_dev photos)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import faceledger
from faceledger.cli import image_files, main
from faceledger.cli.bulk import survey
from faceledger.store.sqlite import SQLiteStore

from conftest import shared_data

N_PEOPLE = 22  # one photo each: about 3 s of IndexFaces a worker


def cli(*args: object, code: int | None = 0, env: dict | None = None) -> dict:
    """`faceledger ... --json` in a subprocess (worker processes are real processes); the parsed report."""
    proc = subprocess.run([sys.executable, "-m", "faceledger", *map(str, args), "--json"], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.stdout, proc.stderr)
    return {"report": json.loads(proc.stdout) if proc.stdout.strip() else None, "stderr": proc.stderr,
            "code": proc.returncode}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_PEOPLE real photos in two levels of folders, and files that are not images under image names."""
    lfw = shared_data("lfw_dev")
    folder = tmp_path_factory.mktemp("bulk") / "photos"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:N_PEOPLE]
    for i, person in enumerate(people):
        target = folder / f"batch{i % 3}" / person.name
        target.mkdir(parents=True)
        shutil.copy(sorted(person.glob("*.jpg"))[0], target / "1.jpg")
    first = sorted(folder.rglob("*.jpg"))[0].read_bytes()
    (folder / "broken").mkdir()
    (folder / "broken" / "text.jpg").write_text("not a photo")
    (folder / "broken" / "empty.png").write_bytes(b"")
    (folder / "broken" / "half.jpg").write_bytes(first[: len(first) // 3])  # a JPEG cut off
    (folder / "broken" / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    return folder


def faces_of(data: Path, cid: str) -> Counter:
    """(ExternalImageId, box) of every face stored, with their counts (a duplicate counts 2)."""
    with faceledger.Client(data_dir=data) as client:
        found, token = [], None
        while True:
            page = client.list_faces(CollectionId=cid, MaxResults=1000, **({"NextToken": token} if token else {}))
            found += page["Faces"]
            token = page.get("NextToken")
            if not token:
                break
    return Counter((f["ExternalImageId"], tuple(round(f["BoundingBox"][k], 6) for k in sorted(f["BoundingBox"])))
                   for f in found)


def no_ghost(data: Path, cid: str) -> int:
    """The faces stored; asserts the vector index holds exactly them, each found as its own nearest face."""
    store = SQLiteStore(data / "faceledger.db")
    try:
        stored = store.get_collection(cid).face_count
        assert len(store.indexes.current(cid).index) == stored
        ids = [f.face_id for f in store.list_faces(cid, after=None, limit=4096).items]
        assert len(ids) == stored
        for face_id, record in store.get_faces(cid, ids, with_embeddings=True).items():
            assert store.nearest(cid, record.embedding, limit=1, max_distance=0.5)[0].face.face_id == face_id
    finally:
        store.close()
    return stored


def test_the_walk_is_streamed_in_sorted_path_order(tmp_path: Path) -> None:
    for rel in ("a.jpg", "a/x.jpg", "a b/y.png", "ab.jpg", "b/c/d.JPEG", "b/c.jpg", ".hidden/z.jpg", "n.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")  # the same file twice: indexed once
    names = [rel for _, rel in image_files((tmp_path,))]
    assert names == ["a b/y.png", "a.jpg", "a/x.jpg", "ab.jpg", "b/c.jpg", "b/c/d.JPEG"]
    # the folder given twice, or a sub-folder of it: each file once, counted once
    assert len(image_files((tmp_path, tmp_path / "b"))) == 6
    assert survey((tmp_path, tmp_path / "b")).total == 6
    assert survey((tmp_path / "a", tmp_path / "b")).clashes == {}


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_faces_of_an_uninterrupted_run(tmp_path: Path, photos: Path) -> None:
    data = tmp_path / "data"
    d = ["--data", data]
    runner = CliRunner()
    for cid in ("whole", "killed"):
        assert runner.invoke(main, ["collections", "create", cid, *map(str, d)]).exit_code == 0

    # the reference: one worker, in this process, uninterrupted; the bad files are reported, the run goes on
    whole = cli("index", "whole", photos, *d, "--workers", 1, code=1)
    summary = whole["report"]["Summary"]
    assert summary["Images"] == N_PEOPLE + 4 and summary["ImagesFailed"] == 4
    assert summary["ImagesFailedByReason"] == {"InvalidImageFormatException": 3, "FileError": 1}
    for name in ("text.jpg", "half.jpg", "noise.png"):
        assert f"broken/{name}: InvalidImageFormatException" in whole["stderr"]
    assert "broken/empty.png: empty file (0 bytes)" in whole["stderr"]
    assert not whole["report"]["Run"]["WorkerProcesses"]
    reference = faces_of(data, "whole")
    assert sum(reference.values()) == summary["FacesIndexed"] >= N_PEOPLE - 2
    assert max(reference.values()) == 1

    # Ctrl-C (two threads in one process: fewer images than FACELEDGER_INDEX_PROCESSES_FROM): the run
    # starts nothing new, counts what was running, says how to go on
    proc = start_index(photos, d, {}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_faces(proc, data, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "the same command goes on where this one stopped" in err, err
    interrupted = json.loads(out)["Summary"]
    assert interrupted["Interrupted"] and interrupted["FacesIndexed"] == no_ghost(data, "killed") >= 3

    # two worker processes, SIGKILLed once more faces are stored (the workers die with it)
    env = {**os.environ, "FACELEDGER_INDEX_PROCESSES_FROM": "1", "FACELEDGER_PURPOSE": "archive import"}
    proc = start_index(photos, d, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_faces(proc, data, interrupted["FacesIndexed"] + 3)
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == proc.pid
               and b"spawn_main" in _cmdline(int(p))]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(workers) == 2  # killed mid-run, with its two workers
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)  # no worker goes on writing after the run was killed
    assert interrupted["FacesIndexed"] + 3 <= no_ghost(data, "killed") < sum(reference.values())

    # the same command again: skips what the journal recorded, redoes the rest, stores no face twice
    again = cli("index", "killed", photos, *d, "--workers", 2, code=1, env=env)
    assert again["report"]["Run"]["WorkerProcesses"]
    assert faces_of(data, "killed") == reference  # --workers 2 (processes) gives the faces of --workers 1
    assert no_ghost(data, "killed") == sum(reference.values())
    # the ledger stays one intact chain through two writing processes, and says who indexed each face, why
    verified = runner.invoke(main, ["audit", "verify", "--data", str(data)])
    assert verified.exit_code == 0 and "ledger intact" in verified.output
    listed = runner.invoke(main, ["audit", "list", "--data", str(data), "--collection", "killed", "--operation",
                                  "IndexFaces", "--json"]).output
    entries = [json.loads(line) for line in listed.splitlines()]
    in_ledger = {f["FaceId"] for e in entries if e["purpose"] == "archive import" for f in e["detail"].get("Faces", [])}
    with faceledger.Client(data_dir=data) as client:
        stored = {f["FaceId"] for f in client.list_faces(CollectionId="killed", MaxResults=100)["Faces"]}
    assert stored - {f["FaceId"] for e in entries for f in e["detail"].get("Faces", [])} == set()
    assert in_ledger  # the worker processes' entries carry the command's purpose

    # once more: nothing new; a file changed since is indexed again, its face not stored twice
    touched = sorted(photos.rglob("1.jpg"))[0]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    third = cli("index", "killed", photos, *d, code=1)["report"]["Summary"]
    assert third["ImagesSkipped"] == N_PEOPLE - 1 and third["ImagesProcessed"] == 1
    assert third["FacesSkipped"] + third["FacesIndexed"] == sum(reference.values())
    assert faces_of(data, "killed") == reference
    # the journal keeps no file name in the clear (an erased person's name does not stay behind in it)
    journal = (data / "index-journal.db").read_bytes()
    assert journal and not any(name.encode() in journal for name, _ in reference)
    assert oct((data / "index-journal.db").stat().st_mode & 0o777) == "0o600"
    # --no-resume reads every image again: still no duplicate
    cli("index", "killed", photos, *d, "--no-resume", code=1)
    assert faces_of(data, "killed") == reference


def start_index(photos: Path, d: list, env: dict, **streams: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "faceledger", "index", "killed", str(photos), *map(str, d),
                             "--workers", "2", "--no-progress", "--json"], env={**os.environ, **env}, text=True,
                            # SIGINT as a terminal's child has it (a test run started in the background inherits it
                            # ignored, and the Ctrl-C below could not arrive)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **streams)


def wait_for_faces(proc: subprocess.Popen, data: Path, n: int) -> None:
    """Until the run being watched has stored ``n`` faces in "killed" (it must still be running)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            with faceledger.Client(data_dir=data) as client:
                if client.describe_collection(CollectionId="killed")["FaceCount"] >= n:
                    return
        except Exception:
            continue
    raise AssertionError(f"the run ended (or hung) before {n} faces were stored")


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
