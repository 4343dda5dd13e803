"""Hostile collection imports (``Faceledger.ImportCollection``): every crafted export is refused with an
InvalidParameterException naming the file and the problem, nothing is written, nothing is unpickled, and no
field reaches the store that IndexFaces could not have stored. The exports are built here (synthetic vectors)."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest

MODEL = "faceledger-sface-v1"  # the default model: its length (128) is known only from its engine


def _face(**changes) -> dict:
    row = {"FaceId": str(uuid.uuid4()), "ImageId": str(uuid.uuid4()), "ExternalImageId": "x", "UserId": None,
           "BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.1, "Top": 0.1}, "Confidence": 99.0,
           "IndexFacesModelVersion": MODEL, "CreationTimestamp": "2026-01-01T00:00:00Z"}
    row.update(changes)
    return row


def _unit(n: int, d: int) -> np.ndarray:
    v = np.random.default_rng(1).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _export(folder: Path, *, faces=None, vectors=None, npy: bytes | None = None, meta=None) -> Path:
    folder.mkdir()
    faces = faces if faces is not None else [_face() for _ in range(3)]
    (folder / "collection.json").write_text(json.dumps({"CollectionId": folder.name, "FaceModelVersion": MODEL,
                                                        "Tags": {}, "Policy": None, "Users": [], **(meta or {})}))
    (folder / "faces.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faces))
    if npy is not None:
        (folder / "vectors.npy").write_bytes(npy)
    else:
        np.save(folder / "vectors.npy", vectors if vectors is not None else _unit(len(faces), 128), allow_pickle=True)
    return folder


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    """A .npy version 1 header claiming ``shape`` (no data follows unless added)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (118 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


class Bomb:
    """Unpickling this runs code: the import must never do it."""

    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "UNPICKLED",))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from faceledger.client import Client

    with Client(tmp_path_factory.mktemp("attack-import") / "data") as c:
        yield c


def test_crafted_exports_are_refused_and_leave_nothing(client, tmp_path):
    big_side = _face(BoundingBox={"Width": 1e20, "Height": 0.1, "Left": -1e9, "Top": 0.1})
    cases = {
        # vectors of another length than the model's, for a model the old table of lengths did not list
        "vectors.npy has 64-d vectors; faceledger-sface-v1 vectors have 128": dict(vectors=_unit(3, 64)),
        "NaN or infinite": dict(vectors=np.full((3, 128), np.nan, np.float32)),
        "must be float32": dict(vectors=_unit(3, 128).astype(np.float64)),
        # a header claiming 10**12 rows over 512 bytes: refused from the file's size, before any mapping
        "is 641 bytes where its header's shape .1000000000000, 128. needs 512000000000129: truncated":
            dict(npy=_npy_header((10 ** 12, 128)) + b"\0" * 512),
        "Python objects": dict(vectors=np.array([Bomb()] * 3, dtype=object)),
        "appears twice": dict(faces=[_face(FaceId="11111111-1111-4111-8111-111111111111")] * 3),
        "ExternalImageId' failed to satisfy constraint: Member must have length less than or equal to 255":
            dict(faces=[_face(ExternalImageId="a" * 100_000)]),
        "ExternalImageId' failed to satisfy constraint: Member must satisfy regular expression":
            dict(faces=[_face(ExternalImageId="../x y")]),
        "ImageId' failed to satisfy constraint": dict(faces=[_face(ImageId="a\0b")]),
        "UserId' failed to satisfy constraint: Member must have length less than or equal to 128":
            dict(faces=[_face(UserId="u" * 5000)]),
        "Confidence' failed to satisfy constraint": dict(faces=[_face(Confidence=1e30)]),
        "BoundingBox Width and Height must be ratios": dict(faces=[big_side]),
        "is in the future": dict(faces=[_face(CreationTimestamp="9999-12-31T23:59:59Z")]),
        "Tags' failed to satisfy constraint": dict(meta={"Tags": {"k" * 1000: "v"}}),
        "Users' failed to satisfy constraint": dict(meta={"Users": ["a b"]}),
    }
    for n, (message, spec) in enumerate(cases.items()):
        folder = _export(tmp_path / f"c{n}", **spec)
        with pytest.raises(client.exceptions.InvalidParameterException, match=message.replace("(", r"\(")):
            client.import_collection(Directory=str(folder))
    # a file that is a folder, or unreadable: the same error, naming the file
    folder = _export(tmp_path / "dir", npy=b"")
    (folder / "vectors.npy").unlink()
    (folder / "vectors.npy").mkdir()
    with pytest.raises(client.exceptions.InvalidParameterException, match="vectors.npy cannot be read"):
        client.import_collection(Directory=str(folder))
    (folder / "vectors.npy").rmdir()
    (folder / "faces.jsonl").unlink()
    (folder / "faces.jsonl").mkdir()
    np.save(folder / "vectors.npy", _unit(3, 128))
    with pytest.raises(client.exceptions.InvalidParameterException, match="faces.jsonl cannot be read"):
        client.import_collection(Directory=str(folder))
    assert not (Path(__file__).parent / "UNPICKLED").exists()
    assert client.list_collections()["CollectionIds"] == []
    # and a clean export of the same shape goes in
    good = _export(tmp_path / "good")
    assert client.import_collection(Directory=str(good))["FaceCount"] == 3
    faces = client.list_faces(CollectionId="good")["Faces"]
    assert len(faces) == 3 and {f["ExternalImageId"] for f in faces} == {"x"}


def _refused(client, folder: Path, message: str) -> None:
    with pytest.raises(client.exceptions.InvalidParameterException, match=message) as caught:
        client.import_collection(Directory=str(folder))
    return str(caught.value)


def test_vectors_files_of_every_other_kind_are_refused_from_their_header(client, tmp_path):
    """vectors.npy is parsed here, never by np.load: an archive, an empty file, a negative or lying shape, another
    dtype or order, bytes after the last row, a device, a FIFO or a link to a secret file are each refused with
    InvalidParameterException (no EOFError/OverflowError/AttributeError 500), at once, without quoting its bytes."""
    import io
    import os

    before = client.list_collections()["CollectionIds"]
    archive = io.BytesIO()
    np.savez(archive, vectors=_unit(3, 128))
    rows = io.BytesIO()
    np.save(rows, _unit(3, 128))
    cases = {
        "does not start with the .npy magic string": dict(npy=archive.getvalue()),  # np.load: an NpzFile
        "not a NumPy array file: it does not start": dict(npy=b""),  # np.load: EOFError
        "must be float32 rows .N x D.; it is float32 .-1, 128.": dict(npy=_npy_header((-1, 128)) + b"\0" * 512),
        "must be float32 rows .N x D.; it is float32 .-3, -128.": dict(npy=_npy_header((-3, -128)) + b"\0" * 1536),
        "it is >f4": dict(vectors=_unit(3, 128).astype(">f4")),
        "it is float16": dict(vectors=_unit(3, 128).astype(np.float16)),
        "it is int64": dict(vectors=np.ones((3, 128), np.int64)),
        "it is \\[\\('a', '<f4', \\(128,\\)\\)\\]": dict(vectors=np.zeros(3, dtype=[("a", "<f4", (128,))])),
        "it is float32 .3, 1, 128.": dict(vectors=_unit(3, 128).reshape(3, 1, 128)),
        "Fortran": dict(vectors=np.asfortranarray(_unit(3, 128))),
        "bytes after its last row": dict(npy=rows.getvalue() + b"\0" * 4),
        "needs 1664: truncated": dict(npy=rows.getvalue()[:-4]),
        "needs 85070591730234615865843651857942052993: truncated": dict(npy=_npy_header((2 ** 62, 2 ** 62))),
    }
    for n, (message, spec) in enumerate(cases.items()):
        _refused(client, _export(tmp_path / f"v{n}", **spec), message)
    for n, target in enumerate(("/dev/zero", "/dev/null")):
        folder = _export(tmp_path / f"dev{n}")
        (folder / "vectors.npy").unlink()
        (folder / "vectors.npy").symlink_to(target)
        _refused(client, folder, "vectors.npy cannot be read: it is not a regular file")
    folder = _export(tmp_path / "fifo")
    (folder / "vectors.npy").unlink()
    os.mkfifo(folder / "vectors.npy")  # no writer: opening it to read would wait forever
    _refused(client, folder, "vectors.npy cannot be read: it is not a regular file")
    secret = tmp_path / "secret"
    secret.write_text("hunter2-password\n")
    folder = _export(tmp_path / "link")
    (folder / "vectors.npy").unlink()
    (folder / "vectors.npy").symlink_to(secret)
    assert "hunter" not in _refused(client, folder, "not a NumPy array file")
    assert client.list_collections()["CollectionIds"] == before


def test_faces_and_collection_files_of_every_other_kind_are_refused(client, tmp_path, monkeypatch):
    """faces.jsonl and collection.json: undecodable bytes, a line longer than any face (read no further than the
    limit), devices and FIFOs, fields this format lacks, JSON values of the wrong type that float() would take,
    dates UTC cannot hold, ids with a final newline ("$" matches before it), a 101st face of one user, and counts,
    dimension or format that collection.json states wrongly: each an InvalidParameterException, nothing stored."""
    import os

    from faceledger.service import transfer

    before = client.list_collections()["CollectionIds"]
    monkeypatch.setattr(transfer, "MAX_LINE", 4096)
    user = [_face(UserId="u") for _ in range(101)]
    cases = {
        "line 2: not a JSON object .'utf-8' codec": dict(raw=json.dumps(_face()).encode() + b'\n{"FaceId": "\xff"}\n'),
        "line 1: longer than 4096 bytes": dict(raw=b"[" + b" " * 10_000),
        "unknown field 'Extra'": dict(faces=[_face(Extra=1)]),
        "BoundingBox .Width, Height, Left, Top., Confidence .numbers.": dict(
            faces=[_face(BoundingBox={"Width": 0.1, "Height": 0.1, "Left": 0.1, "Top": 0.1, "Depth": 1})]),
        "Confidence .numbers.": dict(faces=[_face(Confidence=True)]),
        "and CreationTimestamp": dict(faces=[_face(Confidence="99")]),
        "CreationTimestamp .ISO 8601. are required": dict(faces=[_face(CreationTimestamp="0001-01-01T00:00:00+05:00")]),
        "is before 1970": dict(faces=[_face(CreationTimestamp="1969-12-31T23:59:59Z")]),
        "ExternalImageId' failed to satisfy constraint": dict(faces=[_face(ExternalImageId="x\n")]),
        "FaceId must be a lower-case UUID": dict(faces=[_face(FaceId=str(uuid.uuid4()) + "\n")]),
        "CollectionId must be": dict(meta={"CollectionId": "c\n"}),
        "line 101: user u has more than 100 faces": dict(faces=user, vectors=_unit(101, 128)),
        "Format 'faceledger-collection-export-2' is not": dict(meta={"Format": "faceledger-collection-export-2"}),
        "unknown member 'Faces'": dict(meta={"Faces": []}),
        "states FaceCount 4; the files hold 3": dict(meta={"FaceCount": 4}),
        "states Dimension 64; vectors.npy's rows have 128": dict(meta={"Dimension": 64}),
        "collection.json, Policy: .*policy.maxFaces": dict(meta={"Policy": {"MaxFaces": 0}}),
        "collection.json, Policy: Policy must be an object": dict(meta={"Policy": "everything"}),
    }
    for n, (message, spec) in enumerate(cases.items()):
        raw = spec.pop("raw", None)
        folder = _export(tmp_path / f"f{n}", **spec)
        if raw is not None:
            (folder / "faces.jsonl").write_bytes(raw)
        _refused(client, folder, message)
    for name in ("faces.jsonl", "collection.json"):
        folder = _export(tmp_path / f"zero-{name}")
        (folder / name).unlink()
        (folder / name).symlink_to("/dev/zero")  # endless, and no newline: never read
        _refused(client, folder, f"{name} cannot be read: it is not a regular file")
        (folder / name).unlink()
        os.mkfifo(folder / name)
        _refused(client, folder, f"{name} cannot be read: it is not a regular file")
    assert client.list_collections()["CollectionIds"] == before
    # the limits are the shapes': 100 faces of one user, an export's own counts, go in
    good = _export(tmp_path / "hundred", faces=user[:100], vectors=_unit(100, 128),
                   meta={"FaceCount": 100, "Dimension": 128, "Format": transfer.FORMAT})
    assert client.import_collection(Directory=str(good))["FaceCount"] == 100


def test_an_export_that_cannot_be_written_says_why_and_leaves_the_folder_as_it_was(client, tmp_path):
    """ExportCollection into a dangling link, under a file, or onto a full disk: InvalidParameterException naming
    the folder and the reason (not a FileExistsError/OSError 500), and a failure half-way removes what it wrote,
    so the same command can run again into the same folder once there is room."""
    import os
    import subprocess

    folder = _export(tmp_path / "many", faces=[_face() for _ in range(300)], vectors=_unit(300, 128))
    client.import_collection(Directory=str(folder))
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    for target, message in ((tmp_path / "link", "is a symbolic link to nothing"),
                            (tmp_path / "file" / "sub", "cannot write the export to .*file/sub: Not a directory"),
                            (tmp_path / "file", "is not an empty folder")):
        with pytest.raises(client.exceptions.InvalidParameterException, match=message):
            client.export_collection(CollectionId="many", Directory=str(target))
    assert not (tmp_path / "nowhere").exists()
    from conftest import small_tmpfs

    with small_tmpfs(tmp_path / "small", "64k") as small:  # 64 KB: the 300 vectors need 150 KB
        for target in (small, small / "new"):
            with pytest.raises(client.exceptions.InvalidParameterException,
                               match=f"cannot write the export to {target}: No space left on device"):
                client.export_collection(CollectionId="many", Directory=str(target))
            assert os.listdir(small) == []  # its files, and the folder it made, removed
        subprocess.run(["mount", "-o", "remount,size=1m", str(small)], check=True)
        assert client.export_collection(CollectionId="many", Directory=str(small))["FaceCount"] == 300
        assert np.load(small / "vectors.npy").shape == (300, 128)


def test_migrate_refuses_a_source_that_holds_no_faceledger_store(tmp_path):
    """`faceledger migrate --from` a folder whose faceledger.db is empty, a link to /dev/zero, a folder or not a
    database says so before reaching the target (its Migrate entry would have made the target refuse the right
    source afterwards); the target here is unreachable, so reaching it would say 'cannot open'."""
    import os
    import sqlite3

    from test_cli import run

    cases = {"empty": b"", "garbage": b"not a database, but long enough to have a header" * 4}
    for name, content in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "faceledger.db").write_bytes(content)
    (tmp_path / "foreign").mkdir()
    sqlite3.connect(tmp_path / "foreign" / "faceledger.db").execute("CREATE TABLE t (x)").connection.close()
    (tmp_path / "zero").mkdir()
    os.symlink("/dev/zero", tmp_path / "zero" / "faceledger.db")
    (tmp_path / "folder" / "faceledger.db").mkdir(parents=True)
    expected = {"empty": "has no faceledger tables", "foreign": "has no faceledger tables",
                "garbage": "is not a faceledger database", "zero": "is not a regular file",
                "folder": "is not a regular file"}
    for name, message in expected.items():
        result = run("migrate", "--from", tmp_path / name, "--to", "postgresql://u@127.0.0.1:9/db", code=2)
        assert message in result.stderr and "cannot open" not in result.stderr, (name, result.stderr)
