"""File names as ExternalImageIds: injective and reversible (faceledger.external_ids), a run that would give
two files one id is refused before anything is indexed, and `erase` shows what it erases and asks first."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

import faceledger
from faceledger.cli import external_image_id, main
from faceledger.external_ids import describe, path_of

from conftest import REPO, image_bytes, shared_data

PATTERN = re.compile(r"[a-zA-Z0-9_.\-:]{1,255}")
# names of the same length in scripts the old mapping turned into "_" each, and near-ASCII twins
SAME_LENGTH = ["李娜.jpg", "王芳.jpg", "Иван.jpg", "Олег.jpg", "Νίκη.jpg", "Ηλία.jpg", "علي.jpg", "منى.jpg"]
TWINS = ["Zoë Li.jpg", "Zoe_Li.jpg", "Zoe Li.jpg", "Zoe:Li.jpg", "Zoe::20Li.jpg", "Zoe%20Li.jpg"]


def run(*args: object, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, input=input)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


# ------------------------------------------------------------------------------------------ the mapping


def test_names_in_any_script_get_their_own_id_and_decode_back() -> None:
    paths = SAME_LENGTH + TWINS + ["a/b.jpg", "a:b.jpg", "a/ b.jpg", "a /b.jpg", "x/李娜.jpg", "x:/y.jpg"]
    ids = [external_image_id(p) for p in paths]
    assert len(set(ids)) == len(paths)
    for path, ext_id in zip(paths, ids):
        assert PATTERN.fullmatch(ext_id), ext_id
        assert path_of(ext_id) == path and describe(ext_id) == path
    # safe names keep their old id; folders are ':' as before
    assert external_image_id("obama/obama2.jpg") == "obama:obama2.jpg"
    assert external_image_id("IMG_0001.JPG") == "IMG_0001.JPG"
    assert external_image_id("李娜.jpg") == "::E6::9D::8E::E5::A8::9C.jpg"


def test_a_name_is_read_in_nfc() -> None:
    """macOS stores names decomposed: the same name from two systems is one id, decoded to NFC."""
    composed, decomposed = "Zoë.jpg", unicodedata.normalize("NFD", "Zoë.jpg")
    assert composed != decomposed and external_image_id(composed) == external_image_id(decomposed)
    assert path_of(external_image_id(decomposed)) == composed


def test_random_paths_round_trip() -> None:
    rng = random.Random(9)
    alphabet = "ab_.-: /%Zé李Иλع\U0001F600" + "\udcff"  # the last: a byte of a name that is not UTF-8
    seen: dict[str, str] = {}
    for _ in range(5000):
        parts = ["".join(rng.choice(alphabet.replace("/", "")) for _ in range(rng.randint(1, 6)))
                 for _ in range(rng.randint(1, 3))]
        path = "/".join(parts)
        ext_id = external_image_id(path)
        assert PATTERN.fullmatch(ext_id) and path_of(ext_id) == path, (path, ext_id)
        assert seen.setdefault(ext_id, path) == path  # injective
    assert path_of(external_image_id("bad\udcff.jpg")) == "bad\udcff.jpg"
    assert describe(external_image_id("bad\udcff.jpg")) == "bad\ufffd.jpg"  # printable


def test_long_paths_get_a_hash_not_a_collision() -> None:
    deep = "/".join(["新しいフォルダ"] * 12) + "/写真.jpg"
    a, b = external_image_id("1/" + deep), external_image_id("2/" + deep)
    assert a != b and a.split("::-")[1] == b.split("::-")[1]  # the same end, not the same id
    assert 255 - 12 < len(a) <= 255 and PATTERN.fullmatch(a)  # whole characters (12 for one CJK) of the end
    assert path_of(a) is None  # a shortened id names no path by itself ...
    assert describe(a).startswith("…") and describe(a).endswith("新しいフォルダ/写真.jpg")  # ... its end does
    assert external_image_id("x" * 255) == "x" * 255 and "::-" in external_image_id("x" * 256)
    assert len({external_image_id("x" * n) for n in range(250, 300)}) == 50


def test_ids_from_elsewhere_are_shown_as_they_are() -> None:
    assert path_of("alice") == "alice" and describe("subject-1") == "subject-1"
    for foreign in ("::zz", "a::e6", "bad id!", "", ":a", "a:", "a::b"):  # not produced by the mapping
        assert path_of(foreign) is None
    assert describe("::zz") == "::zz"


# ------------------------------------------------------------------------------------------ index


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six different people's photos under colliding-prone names."""
    lfw = shared_data("lfw_dev")
    folder = tmp_path_factory.mktemp("names") / "people"
    (folder / "新しいフォルダ").mkdir(parents=True)
    sources = ["Aaron_Peirsol", "Aaron_Guiel", "AJ_Lamas", "George_W_Bush", "Colin_Powell", "Adam_Sandler"]
    names = ["李娜.jpg", "王芳.jpg", "Zoë Li.jpg", "Zoe_Li.jpg", "Иван.jpg", "新しいフォルダ/Олег.jpg"]
    for person, name in zip(sources, names):
        shutil.copy(sorted((lfw / person).glob("*.jpg"))[0], folder / name)
    return folder


def test_index_gives_each_file_its_own_id(tmp_path: Path, photos: Path) -> None:
    d = ["--data", tmp_path / "data"]
    run("collections", "create", "c", *d)
    run("index", "c", photos, *d, "--no-progress")
    import json

    faces = json.loads(run("faces", "list", "c", *d, "--json").stdout)["Faces"]
    files = sorted(path_of(f["ExternalImageId"]) for f in faces)
    assert files == sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    table = run("faces", "list", "c", *d).stdout
    assert "李娜.jpg" in table and "新しいフォルダ/Олег.jpg" in table and "File" in table
    # erasing one of them erases one person
    r = run("erase", "--external-image-id", external_image_id("李娜.jpg"), *d, "--yes")
    assert "(file 李娜.jpg)" in r.stdout and "erased 1 face" in r.stdout
    assert len(json.loads(run("faces", "list", "c", *d, "--json").stdout)["Faces"]) == 5


def test_a_run_that_would_give_two_files_one_id_indexes_nothing(tmp_path: Path, photos: Path) -> None:
    d = ["--data", tmp_path / "data"]
    run("collections", "create", "c", *d)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(photos / "王芳.jpg", other / "李娜.jpg")  # another person, the same relative name
    r = run("index", "c", photos, other, *d, "--no-progress", code=2)
    assert "would share 1 ExternalImageId" in r.stderr and "nothing was indexed" in r.stderr
    assert str(photos / "李娜.jpg") in r.stderr and str(other / "李娜.jpg") in r.stderr
    # the same name in two spellings (NFC, NFD) in one folder: one id
    nfd = tmp_path / "nfd"
    nfd.mkdir()
    shutil.copy(photos / "Zoë Li.jpg", nfd / "Zoë Li.jpg")
    shutil.copy(photos / "Zoe_Li.jpg", nfd / unicodedata.normalize("NFD", "Zoë Li.jpg"))
    if len(os.listdir(nfd)) == 2:  # the file system keeps both spellings apart
        assert "would share" in run("index", "c", nfd, *d, "--no-progress", code=2).stderr
    with faceledger.Client(data_dir=tmp_path / "data") as client:
        assert client.describe_collection(CollectionId="c")["FaceCount"] == 0
    # their common parent folder: distinct ids
    parent = tmp_path / "both"
    shutil.copytree(photos, parent / "a")
    shutil.copytree(other, parent / "b")
    run("index", "c", parent, *d, "--no-progress")


# ------------------------------------------------------------------------------------------ erase


@pytest.fixture
def two_collections(tmp_path: Path) -> Path:
    face = image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))
    data = tmp_path / "data"
    with faceledger.Client(data_dir=data) as client:
        for cid in ("staff", "visitors"):
            client.create_collection(CollectionId=cid)
            client.index_faces(CollectionId=cid, Image={"Bytes": face}, ExternalImageId="alice")
    return data


def face_count(data: Path) -> int:
    with faceledger.Client(data_dir=data) as client:
        return sum(client.describe_collection(CollectionId=c)["FaceCount"] for c in ("staff", "visitors"))


def test_erase_shows_what_it_erases_and_needs_yes_without_a_terminal(two_collections: Path) -> None:
    d = ["--data", two_collections]
    r = run("erase", "--external-image-id", "alice", *d, code=2)  # CliRunner's stdin is not a terminal
    assert "will erase 2 faces of ExternalImageId alice in 2 collections (staff, visitors)" in r.stdout
    assert "run it again with --yes" in r.stderr
    assert face_count(two_collections) == 2
    r = run("erase", "--external-image-id", "alice", *d, "--dry-run")
    assert "would erase 2 faces" in r.stdout and face_count(two_collections) == 2
    r = run("erase", "--external-image-id", "alice", *d, "--yes")
    assert "erased 2 faces of alice" in r.stdout and face_count(two_collections) == 0
    assert "no face has ExternalImageId alice" in run("erase", "--external-image-id", "alice", *d).stdout


def test_erase_erases_only_the_faces_it_showed(two_collections: Path) -> None:
    with faceledger.Client(data_dir=two_collections) as client:
        preview = client.erase_faces(ExternalImageId="alice", DryRun=True)
        assert preview["DryRun"] is True and len(preview["Faces"]) == 2 and "ErasureId" not in preview
        shown = [f["FaceId"] for f in preview["Faces"] if f["CollectionId"] == "staff"]
        receipt = client.erase_faces(ExternalImageId="alice", FaceIds=shown)
        assert [f["FaceId"] for f in receipt["ErasedFaces"]] == shown
        assert [f["ExternalImageId"] for f in client.list_faces(CollectionId="visitors")["Faces"]] == ["alice"]
        for bad in ({"FaceIds": ["not a face id"]}, {"FaceIds": "x"}, {"DryRun": "yes"}):
            with pytest.raises(ClientError) as info:
                client.erase_faces(ExternalImageId="alice", **bad)
            assert info.value.response["Error"]["Code"] == "ValidationException"
        assert client.describe_collection(CollectionId="visitors")["FaceCount"] == 1


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("answer, erased", [("n", False), ("y", True)])
def test_erase_asks_on_a_terminal(two_collections: Path, answer: str, erased: bool) -> None:
    try:
        master, slave = os.openpty()
    except OSError as exc:  # a container without /dev/ptmx
        pytest.skip(f"no pseudo-terminal here: {exc}")
    try:
        os.write(master, f"{answer}\n".encode())
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.run([sys.executable, "-m", "faceledger", "erase", "--external-image-id", "alice",
                               "--data", str(two_collections)], stdin=slave, capture_output=True, text=True,
                              env=env, timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert "will erase 2 faces" in proc.stdout and "Erase these 2 faces? This cannot be undone" in proc.stderr
    assert proc.returncode == (0 if erased else 1), proc.stderr
    assert face_count(two_collections) == (0 if erased else 2)
    if not erased:
        assert "nothing erased" in proc.stderr
