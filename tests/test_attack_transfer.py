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
        "mmap length is greater than file size": dict(npy=_npy_header((10 ** 12, 128)) + b"\0" * 512),
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
