"""Hostile folders and data folders for `faceledger index` (cli/bulk.py): what is not an image file is reported
and skipped (never a hang, never memory filled), the journal is never written through a link nor stops a run
when it is damaged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from faceledger.cli.bulk import read_image_file

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")


def cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "faceledger", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # a FIFO that blocked the run would fail here, not hang the suite
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("attack-bulk") / "data"
    assert cli("collections", "create", "c", "--data", folder).returncode == 0
    return folder


def hostile_folder(root: Path) -> tuple[Path, list[Path]]:
    """A folder with a FIFO, a socket, a link to /dev/zero and a 64 MB (sparse) file under image names; the
    special files given directly too."""
    photos = root / "photos"
    photos.mkdir()
    os.mkfifo(photos / "fifo.jpg")
    os.symlink("/dev/zero", photos / "zero.jpg")
    with open(photos / "huge.jpg", "wb") as f:
        f.write(b"\xff\xd8\xff")
        f.truncate(64 * 1024 * 1024)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(photos / "sock.jpg"))
    sock.close()
    return photos, [photos / "fifo.jpg", photos / "zero.jpg", photos / "sock.jpg", photos / "huge.jpg"]


def test_fifos_devices_sockets_and_huge_files_are_reported_not_read(tmp_path: Path, data: Path) -> None:
    photos, direct = hostile_folder(tmp_path)
    walked = cli("index", "c", photos, "--data", data, "--json")
    report = json.loads(walked.stdout)
    assert report["Summary"]["ImagesFailedByReason"] == {"ImageTooLargeException": 1}  # the walk skips the rest
    given = cli("index", "c", *direct, "--data", data, "--json")
    report = json.loads(given.stdout)
    errors = {Path(r["Path"]).name: r["Error"] for r in report["Images"]}
    assert "FIFO" in errors["fifo.jpg"]["Message"] and "device" in errors["zero.jpg"]["Message"]
    assert errors["sock.jpg"]["Code"] == "FileError"
    assert errors["huge.jpg"]["Code"] == "ImageTooLargeException"
    assert report["Summary"]["FacesIndexed"] == 0


def test_read_image_file_never_blocks_and_reads_at_most_the_limit(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f")  # a file replaced by a FIFO between the walk and the read
    with pytest.raises(ValueError, match="FIFO"):
        read_image_file(str(tmp_path / "f"), 10)
    with pytest.raises(ValueError, match="device"):
        read_image_file("/dev/zero", 10)
    (tmp_path / "big").write_bytes(b"x" * 100)
    assert len(read_image_file(str(tmp_path / "big"), 10)) == 11


@pytest.mark.parametrize("suffix", ["", "-wal"])
def test_a_journal_link_is_never_written_through(tmp_path: Path, data: Path, suffix: str) -> None:
    outside = tmp_path / "outside.db"
    journal = data / f"index-journal.db{suffix}"
    journal.unlink(missing_ok=True)
    journal.symlink_to(outside)
    try:
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "x.jpg").write_text("not a photo")
        run = cli("index", "c", tmp_path / "p", "--data", data)
        assert run.returncode != 0 and "symbolic link" in run.stderr
        assert not outside.exists() and not Path(f"{outside}-wal").exists()
    finally:
        journal.unlink()


def test_a_damaged_journal_is_set_aside_and_the_run_goes_on(tmp_path: Path, data: Path) -> None:
    journal = data / "index-journal.db"
    for garbage in (b"garbage, not SQLite" * 100, None):
        if garbage is None:  # a SQLite file with another table of that name
            import sqlite3

            with sqlite3.connect(journal) as conn:
                conn.execute("CREATE TABLE indexed (x)")
        else:
            journal.write_bytes(garbage)
        (tmp_path / "p").mkdir(exist_ok=True)
        (tmp_path / "p" / "x.jpg").write_text("not a photo")
        run = cli("index", "c", tmp_path / "p", "--data", data, "--json")
        assert "set aside" in run.stderr
        assert json.loads(run.stdout)["Summary"]["ImagesFailedByReason"] == {"InvalidImageFormatException": 1}
        assert (data / "index-journal.db.damaged").is_file()
        journal.unlink()
        for side in data.glob("index-journal.db*"):
            side.unlink()


def test_workers_beyond_reason_are_bounded(tmp_path: Path, data: Path) -> None:
    from rich.console import Console

    from faceledger.cli.bulk import MAX_THREADS, bounded_workers
    from faceledger.vision.engine import usable_cpus

    quiet = Console(file=open(os.devnull, "w"))
    assert bounded_workers(10**6, True, quiet) == usable_cpus()  # never a million processes loading models
    assert bounded_workers(1, True, quiet) == 1
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "x.jpg").write_text("not a photo")
    run = cli("index", "c", tmp_path / "p", "--data", data, "--workers", 100000, "--no-resume", "--json")
    assert json.loads(run.stdout)["Run"]["Workers"] == MAX_THREADS and "--workers 100000" in run.stderr


def test_a_folder_that_cannot_be_read_is_reported_not_silently_left_out(tmp_path: Path, data: Path) -> None:
    """A folder deeper than PATH_MAX (root reads chmod 000 folders, so the test uses what root cannot read)."""
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "x.jpg").write_text("not a photo")
    fd = os.open(photos, os.O_RDONLY)
    try:
        for _ in range(25):  # 25 x 201 bytes: past Linux's 4096-byte PATH_MAX
            os.mkdir("d" * 200, dir_fd=fd)
            fd, parent = os.open("d" * 200, os.O_RDONLY, dir_fd=fd), fd
            os.close(parent)
        os.close(os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    run = cli("index", "c", photos, "--data", data, "--no-resume", "--json")
    assert "cannot read this folder" in run.stderr and "its images are not indexed" in run.stderr
    assert json.loads(run.stdout)["Summary"]["Images"] == 1


def test_two_runs_share_the_journal_without_waiting_for_each_other(tmp_path: Path) -> None:
    """Two `faceledger index` runs on one data folder: a run's unwritten rows hold no lock (before, the first
    run's open transaction made the second wait 30 s, then fail with "database is locked")."""
    from faceledger.cli.bulk import ImageFile, Journal

    first = Journal(tmp_path / "index-journal.db", "c", "{}")
    second = Journal(tmp_path / "index-journal.db", "c", "{}", every=1)
    a, b = ImageFile("a.jpg", "a.jpg", 10, 1, "/a.jpg"), ImageFile("b.jpg", "b.jpg", 20, 2, "/b.jpg")
    first.record("a.jpg", a, 1)  # noted, not yet written (every 64)
    second.record("b.jpg", b, 2)  # written now
    assert first.done("b.jpg", b) == 2 and second.done("a.jpg", a) is None
    first.close()
    assert second.done("a.jpg", a) == 1
    second.close()


def test_ctrl_c_while_counting_the_images_says_so_and_exits_130(tmp_path: Path, data: Path) -> None:
    import signal
    import time

    tree = tmp_path / "tree"
    for d in range(200):  # the survey lists 200 folders: Ctrl-C comes while it holds one of them open
        (tree / f"{d:03}").mkdir(parents=True)
        for i in range(100):
            (tree / f"{d:03}" / f"{i}.jpg").touch()
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see the survey walking")
    proc = subprocess.Popen([sys.executable, "-m", "faceledger", "index", "c", str(tree), "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's child
                            # (a test run started in the background inherits SIGINT ignored: Ctrl-C could not arrive)
    deadline = time.monotonic() + 60
    walking = False
    while not walking and time.monotonic() < deadline and proc.poll() is None:
        try:
            walking = any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith(str(tree))
                          for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        except OSError:
            pass
    if not walking:
        proc.kill()
        pytest.skip("the survey ended before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "interrupted while counting the images" in err, err
    assert proc.returncode == 130


def test_file_names_with_newlines_or_bytes_that_are_not_utf8_are_escaped_in_the_report(tmp_path: Path,
                                                                                        data: Path) -> None:
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "forged\nerror: other.jpg").write_text("not a photo")
    with open(os.path.join(os.fsencode(photos), b"bad\xff\xfe.jpg"), "wb") as f:
        f.write(b"not a photo")
    run = cli("index", "c", photos, "--data", data, "--no-resume", "--json")
    assert "forged\\nerror: other.jpg" in run.stderr and "bad\\xff\\xfe.jpg" in run.stderr
    assert not any(line.startswith("error: other.jpg") for line in run.stderr.splitlines())
    report = json.loads(run.stdout)
    assert report["Summary"]["ImagesFailed"] == 2
    assert sorted(r["ExternalImageId"] for r in report["Images"]) == ["bad::FF::FE.jpg", "forged::0Aerror::3A::20other.jpg"]
    assert {Path(r["Path"]).name for r in report["Images"]} == {"bad\\xff\\xfe.jpg", "forged\nerror: other.jpg"}


def test_the_summary_lists_the_first_failures_and_counts_them_all(tmp_path: Path, data: Path) -> None:
    from faceledger.cli.faces import FAILED_LISTED

    photos = tmp_path / "p"
    photos.mkdir()
    for i in range(FAILED_LISTED + 5):
        (photos / f"{i:05}.jpg").touch()  # empty: a FileError each, without a call
    run = cli("index", "c", photos, "--data", data, "--no-resume", "--workers", 1)
    assert run.returncode == 1 and f"{FAILED_LISTED + 5} of {FAILED_LISTED + 5} images failed" in run.stderr
    assert f"images with errors: {FAILED_LISTED + 5} (FileError {FAILED_LISTED + 5})" in run.stdout
    assert "and 5 more (their error lines above)" in run.stdout
    assert run.stderr.count("error: ") == FAILED_LISTED + 5 + 1  # each as it failed, and the last line
