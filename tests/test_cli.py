"""The ``faceledger`` command line: local data folder (in-process) and ``--endpoint`` (a live server)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from faceledger.cli import App, external_image_id, image_files, main

from conftest import shared_data

KNN = ("small_identities", "face_recognition_knn_examples")


def run(*args: object, code: int = 0) -> Result:
    """Invoke the CLI; assert the exit status and that nothing printed a traceback."""
    result = CliRunner(env={"COLUMNS": "120"}).invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def run_json(*args: object) -> dict:
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def train() -> Path:
    return shared_data(*KNN, "train")


@pytest.fixture(scope="module")
def test_images() -> Path:
    return shared_data(*KNN, "test")


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory, train: Path) -> tuple[Path, Result]:
    """A local data folder with collection "people": the 9 training photos of 5 people indexed."""
    data = tmp_path_factory.mktemp("cli") / "data"
    run("collections", "create", "people", "--data", data)
    result = run("index", "people", train, "--data", data, "--no-progress")
    return data, result


# ---- collections ----------------------------------------------------------------------------------


def test_collections_lifecycle(tmp_path: Path) -> None:
    d = ["--data", tmp_path / "data"]
    assert "no collections" in run("collections", "list", *d).stdout
    out = run("collections", "create", "staff", *d).stdout
    assert "created collection staff" in out and "faceledger-sface-v2" in out

    dup = run("collections", "create", "staff", *d, code=2)
    assert dup.stderr.strip() == "error: ResourceAlreadyExistsException: The collection id: staff already exists"
    assert dup.stdout == ""

    run("collections", "create", "visitors", *d)
    assert "staff" in run("collections", "list", *d).stdout
    listed = run_json("collections", "list", *d)
    assert listed["CollectionIds"] == ["staff", "visitors"] and "ResponseMetadata" not in listed

    described = run_json("collections", "describe", "staff", *d)
    assert described["FaceCount"] == 0 and described["CollectionARN"].endswith(":collection/staff")
    datetime.fromisoformat(described["CreationTimestamp"])  # ISO-8601
    assert "FaceCount:" in run("collections", "describe", "staff", *d).stdout

    assert "deleted collection staff" in run("collections", "delete", "staff", *d).stdout
    for command in ("delete", "describe"):
        missing = run("collections", command, "staff", *d, code=2)
        assert missing.stderr.startswith("error: ResourceNotFoundException: ")
    assert run_json("collections", "list", *d)["CollectionIds"] == ["visitors"]


def test_list_follows_next_token() -> None:
    class Paged:
        def list_collections(self, NextToken=None):
            page = {None: (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": ([], None)}[NextToken]
            out = {"CollectionIds": page[0], "FaceModelVersions": ["m"] * len(page[0]), "ResponseMetadata": {}}
            if page[1]:
                out["NextToken"] = page[1]
            return out

    app = App(Path("unused"), None, None, None, True)
    app._client = Paged()
    assert app.pages("list_collections", ("CollectionIds", "FaceModelVersions")) == {
        "CollectionIds": ["a", "b", "c"], "FaceModelVersions": ["m", "m", "m"]}


# ---- index ----------------------------------------------------------------------------------------


def test_index_folder_summary_and_external_ids(people: tuple[Path, Result], train: Path) -> None:
    data, result = people
    assert "9 of 9 images processed" in result.stdout
    assert "faces indexed:      9" in result.stdout
    assert "images with errors: 0" in result.stdout
    expected = sorted(p.relative_to(train).as_posix().replace("/", ":") for p in train.rglob("*.jp*g"))
    faces = run_json("faces", "list", "people", "--data", data)["Faces"]
    assert sorted(f["ExternalImageId"] for f in faces) == expected
    assert "obama:obama2.jpg" in expected
    assert "obama:obama2.jpg" in run("faces", "list", "people", "--data", data).stdout


def test_index_workers_keep_file_order_and_results(tmp_path: Path, train: Path) -> None:
    """--workers N runs N IndexFaces calls at once; the report is in file order and the same."""
    d = ["--data", tmp_path / "data"]
    reports = []
    for workers in ("1", "3"):
        run("collections", "create", f"c{workers}", *d)
        report = run_json("index", f"c{workers}", train, *d, "--workers", workers)
        reports.append(report)

    def digest(report: dict) -> list:
        return [(img["ExternalImageId"], [(f["Face"]["BoundingBox"], f["Face"]["Confidence"])
                                          for f in img["FaceRecords"]]) for img in report["Images"]]

    assert [img["ExternalImageId"] for img in reports[1]["Images"]] == [
        external_image_id(rel) for _, rel in image_files((train,))]
    assert digest(reports[0]) == digest(reports[1])
    assert reports[0]["Summary"] == reports[1]["Summary"]


def test_external_image_id_fits_the_pattern_and_loses_nothing() -> None:
    # the mapping used to drop accents and turn other characters into "_" (two names, one id): now every
    # character outside the safe set is escaped (tests/test_cli_external_ids.py has the whole contract)
    assert external_image_id("obama/obama 2.jpg") == "obama:obama::202.jpg"
    assert external_image_id("José María/ø+x.png") == "Jos::C3::A9::20Mar::C3::ADa:::C3::B8::2Bx.png"
    long = external_image_id("a" * 300 + ".jpg")
    assert len(long) == 255 and long.endswith("a.jpg") and "::-" in long


def test_index_reports_bad_file_and_goes_on(tmp_path: Path, train: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "new hires").mkdir(parents=True)
    shutil.copy(train / "biden" / "biden.jpg", folder / "new hires" / "joe b.jpg")
    shutil.copy(train / "rose_leslie" / "img1.jpg", folder / "rose.JPG")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image: skipped")
    (folder / ".hidden.jpg").write_bytes(b"skipped too")
    assert [rel for _, rel in image_files((folder,))] == ["broken.jpg", "new hires/joe b.jpg", "rose.JPG"]

    d = ["--data", tmp_path / "data"]
    run("collections", "create", "c", *d)
    result = run("index", "c", folder, *d, "--no-progress", code=1)
    assert "2 of 3 images processed" in result.stdout
    assert "faces indexed:      2" in result.stdout
    assert "images with errors: 1" in result.stdout
    assert "broken.jpg: InvalidImageFormatException" in result.stderr
    assert "error: 1 of 3 images failed" in result.stderr
    ids = {f["ExternalImageId"] for f in run_json("faces", "list", "c", *d)["Faces"]}
    assert ids == {"new::20hires:joe::20b.jpg", "rose.JPG"}

    # a file given directly: its name; --json: one entry per image and the summary
    report = run_json("index", "c", folder / "rose.JPG", *d, "--max-faces", "1")
    assert report["Images"][0]["ExternalImageId"] == "rose.JPG"
    assert report["Summary"]["FacesIndexed"] == 1 and report["Summary"]["ImagesFailed"] == 0


def test_index_missing_collection_or_file(tmp_path: Path, train: Path) -> None:
    d = ["--data", tmp_path / "data"]
    r = run("index", "nope", train / "obama", *d, "--no-progress", code=2)
    assert r.stderr.startswith("error: ResourceNotFoundException")
    r = run("index", "nope", tmp_path / "missing.jpg", *d, code=2)
    assert "does not exist" in r.stderr


# ---- search, compare, detect ----------------------------------------------------------------------


def test_search_finds_the_right_person(people: tuple[Path, Result], test_images: Path) -> None:
    data, _ = people
    text = run("search", "people", test_images / "obama1.jpg", "--data", data).stdout
    assert "obama:obama" in text and "biden" not in text
    # the search policy's report: the threshold used and the search's expected false matches
    assert "threshold used 80; expected false matches for this search" in text and "ambiguous" not in text

    r = run_json("search", "people", test_images / "obama1.jpg", "--data", data, "--threshold", "70")
    assert r["FaceMatches"], r
    assert all(m["Face"]["ExternalImageId"].startswith("obama:") for m in r["FaceMatches"])
    assert r["FaceMatches"][0]["Similarity"] >= 80

    # SearchFaces by FaceId: the other photo of the same person
    faces = run_json("faces", "list", "people", "--data", data)["Faces"]
    biden = next(f["FaceId"] for f in faces if f["ExternalImageId"] == "biden:biden.jpg")
    r = run_json("search", "people", "--face-id", biden, "--data", data)
    assert [m["Face"]["ExternalImageId"] for m in r["FaceMatches"]] == ["biden:biden2.jpg"]


def test_unknown_person_gives_no_match(people: tuple[Path, Result]) -> None:
    data, _ = people
    stranger = shared_data("lfw_dev", "AJ_Lamas", "AJ_Lamas_0001.jpg")
    result = run("search", "people", stranger, "--data", data)
    assert "no match in people at threshold 80" in result.stdout


def test_search_usage_errors(people: tuple[Path, Result], tmp_path: Path) -> None:
    data, _ = people
    assert "exactly one of IMAGE or --face-id" in run("search", "people", "--data", data, code=2).stderr
    r = run("search", "people", tmp_path / "missing.jpg", "--data", data, code=2)
    assert "does not exist" in r.stderr


def test_detect_group_photo(tmp_path: Path) -> None:
    group = shared_data("groups", "facenet_pytorch_multiface.jpg")
    r = run_json("detect", group, "--data", tmp_path / "data")
    faces = r["FaceDetails"]
    assert len(faces) >= 4
    assert {"Landmarks", "Pose", "Quality", "BoundingBox", "Confidence"} <= set(faces[0])
    text = run("detect", group, "--data", tmp_path / "data").stdout
    assert f"{len(faces)} faces in" in text
    assert text.count("x=") == len(faces)
    assert not (tmp_path / "data").exists()  # detect needs no data folder and leaves none


def test_detect_attributes_all_adds_gender(tmp_path: Path) -> None:
    # Afifi & Abdelhamed's LFW labels: Aaron_Peirsol is in male_names.txt
    face = shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    assert "Gender" not in run_json("detect", face, "--data", tmp_path / "data")["FaceDetails"][0]
    r = run_json("detect", face, "--attributes", "ALL", "--data", tmp_path / "data")
    assert r["FaceDetails"][0]["Gender"]["Value"] == "Male"
    smile = r["FaceDetails"][0]["Smile"]
    table = run("detect", face, "--attributes", "all", "--data", tmp_path / "data").stdout
    assert "Male " in table and "Smile" in table
    assert f"{'yes' if smile['Value'] else 'no'} {smile['Confidence']:.0f}%" in table


def test_compare(test_images: Path, train: Path, tmp_path: Path) -> None:
    d = ["--data", tmp_path / "data"]
    r = run_json("compare", train / "obama" / "obama.jpg", test_images / "obama_and_biden.jpg", *d)
    assert len(r["FaceMatches"]) == 1 and r["FaceMatches"][0]["Similarity"] >= 80
    assert len(r["UnmatchedFaces"]) >= 1
    text = run("compare", train / "obama" / "obama.jpg", test_images / "obama_and_biden.jpg", *d).stdout
    assert "match" in text and "source face in" in text
    text = run("compare", train / "rose_leslie" / "img1.jpg", test_images / "obama_and_biden.jpg", *d).stdout
    assert "no match in" in text
    assert not (tmp_path / "data").exists()


# ---- faces, users ---------------------------------------------------------------------------------


def test_users_create_associate_search(people: tuple[Path, Result], test_images: Path) -> None:
    data, _ = people
    d = ["--data", data]
    faces = run_json("faces", "list", "people", *d)["Faces"]
    obama = [f["FaceId"] for f in faces if f["ExternalImageId"].startswith("obama:")]
    biden = [f["FaceId"] for f in faces if f["ExternalImageId"].startswith("biden:")]

    assert "created user obama" in run("users", "create", "people", "obama", *d).stdout
    assert run("users", "create", "people", "obama", *d, code=2).stderr.startswith("error: ConflictException")
    out = run("users", "associate", "people", "obama", *obama, *d).stdout
    assert all(f"associated {f}" in out for f in obama) and "ACTIVE" in out
    # a different person's face is refused (LOW_MATCH_CONFIDENCE): a partial failure, exit 1
    partial = run("users", "associate", "people", "obama", biden[0], *d, code=1)
    assert "LOW_MATCH_CONFIDENCE" in partial.stdout
    assert run_json("users", "list", "people", *d)["Users"] == [{"UserId": "obama", "UserStatus": "ACTIVE"}]
    assert {f["FaceId"] for f in run_json("faces", "list", "people", "--user-id", "obama", *d)["Faces"]} == set(obama)

    text = run("users", "search", "people", "--image", test_images / "obama1.jpg", *d).stdout
    assert "obama" in text
    r = run_json("users", "search", "people", "--image", test_images / "obama1.jpg", *d)
    assert r["UserMatches"][0]["User"]["UserId"] == "obama"
    r = run_json("users", "search", "people", "--face-id", biden[0], *d)
    assert r["UserMatches"] == []
    assert "no match" in run("users", "search", "people", "--face-id", biden[0], *d).stdout
    assert "exactly one of" in run("users", "search", "people", *d, code=2).stderr

    # associated faces cannot be deleted until disassociated; the user then goes away
    assert "ASSOCIATED_TO_AN_EXISTING_USER" in run("faces", "delete", "people", obama[0], *d, code=1).stdout
    run("users", "disassociate", "people", "obama", *obama, *d)
    run("users", "delete", "people", "obama", *d)
    assert "no users in people" in run("users", "list", "people", *d).stdout


def test_faces_delete(tmp_path: Path, train: Path) -> None:
    d = ["--data", tmp_path / "data"]
    run("collections", "create", "c", *d)
    run("index", "c", train / "obama", *d, "--no-progress")
    ids = [f["FaceId"] for f in run_json("faces", "list", "c", *d)["Faces"]]
    assert len(ids) == 2
    out = run("faces", "delete", "c", ids[0], *d).stdout
    assert f"deleted {ids[0]}" in out
    unknown = "00000000-0000-0000-0000-000000000000"
    r = run("faces", "delete", "c", ids[1], unknown, *d, code=1)
    assert f"not deleted {unknown}: FACE_NOT_FOUND" in r.stdout
    assert "no faces in c" in run("faces", "list", "c", *d).stdout


# ---- --endpoint: the same commands against a live server -----------------------------------------


def test_endpoint_gives_the_same_output(server, tmp_path: Path, train: Path, test_images: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.key_id)  # the server's key, as a user would set it
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret)
    e = ["--endpoint", server.url]

    two = shared_data("groups", "two_people.jpg")
    local = run("detect", two, "--data", tmp_path / "data").stdout
    assert run("detect", two, *e).stdout == local

    run("collections", "create", "cli-endpoint", *e)
    assert "ResourceAlreadyExistsException" in run("collections", "create", "cli-endpoint", *e, code=2).stderr
    result = run("index", "cli-endpoint", train / "obama", train / "biden", *e, "--no-progress")
    assert "4 of 4 images processed" in result.stdout
    r = run_json("search", "cli-endpoint", test_images / "obama1.jpg", *e)
    assert r["FaceMatches"] and all(m["Face"]["ExternalImageId"].startswith("obama") for m in r["FaceMatches"])
    assert run_json("collections", "describe", "cli-endpoint", *e)["FaceCount"] == 4
    run("collections", "delete", "cli-endpoint", *e)
    missing = run("collections", "describe", "cli-endpoint", *e, code=2)
    assert missing.stderr.startswith("error: ResourceNotFoundException: ")

    conflict = run("collections", "list", *e, "--data", tmp_path / "data", code=2)
    assert "--data is for the local data folder" in conflict.stderr


def test_endpoint_unreachable() -> None:
    r = run("collections", "list", "--endpoint", "http://127.0.0.1:9", code=2)
    assert r.stderr.startswith("error: Could not connect")


def test_search_says_when_the_margin_rule_finds_it_ambiguous(tmp_path: Path, train: Path,
                                                              test_images: Path) -> None:
    """One photo filed as two users: the best and the runner-up identity tie, so the search answers nothing
    and the CLI says why; --json shows the same empty answer."""
    d = ["--data", tmp_path / "data"]
    run("collections", "create", "twice", *d)
    ids = []
    for user in ("u1", "u2"):
        # the same photo under two names (the same ExternalImageId twice would store one face: Rekognition's rule)
        photo = tmp_path / f"obama-{user}.jpg"
        shutil.copy(train / "obama" / "obama.jpg", photo)
        face = run_json("index", "twice", photo, *d)["Images"][0]["FaceRecords"][0]["Face"]["FaceId"]
        run("users", "create", "twice", user, *d)
        run("users", "associate", "twice", user, face, *d)
        ids.append(face)
    text = run("search", "twice", test_images / "obama1.jpg", *d).stdout
    assert "ambiguous: the best match does not stand out from the runner-up" in text
    assert run_json("search", "twice", test_images / "obama1.jpg", *d)["FaceMatches"] == []


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`faceledger audit list | head -1`: the reader closes the pipe; the command ends as one killed by SIGPIPE
    would (status 141) with nothing on stderr, not with `error: BrokenPipeError`."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    run("collections", "create", "staff", "--data", data)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "faceledger", "audit", "list", "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert stderr == ""


def test_video_commands_poll_less_often_as_a_job_runs():
    """Every GetFace*/GetSegment* poll is a ledger entry: the CLI polls every 0.5 s at first, then every tenth of
    the time elapsed, at most every 5 s, so a 10-minute job costs about 150 entries instead of 1,200."""
    from faceledger.cli.video import poll_interval

    assert poll_interval(0) == poll_interval(4) == 0.5 and poll_interval(20) == 2.0 and poll_interval(3600) == 5.0
    waited, polls = 0.0, 0
    while waited < 600:
        waited += poll_interval(waited)
        polls += 1
    assert polls < 160
