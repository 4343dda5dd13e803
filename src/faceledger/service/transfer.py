"""Export and import of a whole collection: ``Faceledger.ExportCollection`` and ``Faceledger.ImportCollection``.

An export is a folder of three files (docs/scale.md, "Export and import")::

    collection.json   {"CollectionId", "FaceModelVersion", "Dimension", "FaceCount", "Tags", "Policy", "Users",
                       "ExportedAt", "Format": "faceledger-collection-export-1"}
    faces.jsonl       one JSON object a face, FaceId order: FaceId, ImageId, ExternalImageId, UserId,
                      BoundingBox {Width, Height, Left, Top}, Confidence, IndexFacesModelVersion,
                      CreationTimestamp (ISO 8601, UTC), and faceledger's QualityBand ("calibrated",
                      "degraded", "covered" or "turned": which Similarity table the face is scored with, vision.face_quality; null
                      for a face stored before bands were recorded)
    vectors.npy       float32 (FaceCount, Dimension), row i is the face on line i of faces.jsonl, unit length
                      as the model produced it

An export holds biometric data (every face's vector): calling it needs the ``faceledger:ExportCollection``
permission, it is recorded in the ledger (who, which collection, how many faces, where), and its files are
readable by their owner only. Both operations work on folders of the machine that runs the service, so they
are refused over HTTP (``faceledger collections export|import`` run them on the local data folder).

An import is all or nothing: every file is checked first (model known to this server, vectors of its
dimension, finite and unit length, FaceIds well-formed and unique in the file and in the store, one row a
face, every other field within the botocore shape a request would have had to meet), then the collection, its tags, policy, users and faces are written in one transaction with the
ledger entry; the collection's vector index is built after the commit.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..store import CollectionRecord, FaceRecord, UserRecord
from ..vision.face_quality import FACE_BANDS
from .errors import (
    AccessDeniedException,
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from .governance import _COLLECTION_ID, _EXTERNAL_ID, _FACE_ID, validate_policy
from .model import shape_problems

log = logging.getLogger("faceledger.transfer")

FORMAT = "faceledger-collection-export-1"
#: vectors whose length is further than this from 1 are refused (a model's vectors are unit length)
UNIT_TOLERANCE = 1e-3
#: faces written per batch (one transaction for all of them)
BATCH = 10000

#: Set by a caller that wants progress: called with (phase, done, total) ("check" or "write" or "export").
PROGRESS: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar(
    "faceledger_transfer_progress", default=None)


def _progress(phase: str, done: int, total: int) -> None:
    report = PROGRESS.get()
    if report is not None:
        report(phase, done, total)


def _local_only(inv, operation: str) -> None:
    if inv.context.transport == "http":
        raise AccessDeniedException(f"{operation} reads and writes folders of the server's machine: run "
                                    "`faceledger collections export|import` there, on its data folder")


def _directory(params: dict[str, Any]) -> Path:
    value = params.get("Directory")
    if not isinstance(value, str) or not value or "\0" in value:
        raise InvalidParameterException("Directory must be a folder path")
    return Path(value)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _face_json(face: FaceRecord) -> dict[str, Any]:
    w, h, left, top = face.bounding_box
    return {"FaceId": face.face_id, "ImageId": face.image_id, "ExternalImageId": face.external_image_id,
            "UserId": face.user_id, "BoundingBox": {"Width": w, "Height": h, "Left": left, "Top": top},
            "Confidence": face.confidence, "IndexFacesModelVersion": face.face_model_version,
            "CreationTimestamp": _iso(face.created_at), "QualityBand": face.quality_band}


def export_collection(inv, params: dict[str, Any]) -> dict[str, Any]:
    """Write one collection to ``Directory`` (a new or empty folder); {CollectionId, FaceCount, Directory,
    Dimension}. ResourceNotFoundException: no such collection; InvalidParameterException: the folder
    already holds files."""
    _local_only(inv, "ExportCollection")
    cid = params.get("CollectionId")
    if not isinstance(cid, str) or not _COLLECTION_ID.match(cid):
        raise InvalidParameterException("CollectionId must be 1-255 characters of [a-zA-Z0-9_.-]")
    out = _directory(params)
    collection = inv.store.get_collection(cid)
    if collection is None:
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidParameterException(f"{out} is not an empty folder: an export never overwrites files")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    total = collection.face_count
    done, dimension = 0, None
    vectors_tmp = out / "vectors.npy.partial"
    matrix = None
    with open(out / "faces.jsonl.partial", "w", opener=_private) as faces:
        for records, vectors in inv.store.iter_faces(cid):
            if matrix is None:
                dimension = vectors.shape[1]
                matrix = np.lib.format.open_memmap(vectors_tmp, mode="w+", dtype=np.float32,
                                                   shape=(total, dimension))
            if done + len(records) > total:  # grown since it was counted: iter_faces is one snapshot
                raise InvalidParameterException(f"collection {cid} changed during the export: run it again")
            matrix[done:done + len(records)] = vectors
            for record in records:
                faces.write(json.dumps(_face_json(record), sort_keys=True) + "\n")
            done += len(records)
            _progress("export", done, total)
    if matrix is None:
        matrix = np.lib.format.open_memmap(vectors_tmp, mode="w+", dtype=np.float32, shape=(0, 0))
    elif done != total:
        raise InvalidParameterException(f"collection {cid} changed during the export: run it again")
    matrix.flush()
    del matrix
    os.chmod(vectors_tmp, 0o600)
    users = sorted({u.user_id for u in _all_users(inv, cid)})
    meta = {"Format": FORMAT, "CollectionId": cid, "FaceModelVersion": collection.face_model_version,
            "Dimension": dimension or 0, "FaceCount": done, "Tags": inv.store.get_tags(cid),
            "Policy": inv.store.get_collection_policy(cid), "Users": users,
            "CreationTimestamp": _iso(collection.created_at), "ExportedAt": _iso(inv.now())}
    os.replace(out / "faces.jsonl.partial", out / "faces.jsonl")
    os.replace(vectors_tmp, out / "vectors.npy")
    with open(out / "collection.json", "w", opener=_private) as f:  # last: its presence marks a whole export
        json.dump(meta, f, indent=2, sort_keys=True)
    inv.meta.update(BiometricData=True, FaceCount=done, Directory=str(out.resolve()))
    return {"CollectionId": cid, "FaceCount": done, "Dimension": dimension or 0, "Directory": str(out)}


def _private(path, flags):
    return os.open(path, flags, 0o600)


def _all_users(inv, cid: str) -> Iterator[UserRecord]:
    after = None
    while True:
        page = inv.store.list_users(cid, after, 1000)
        yield from page.items
        if page.cursor is None:
            return
        after = page.cursor


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidParameterException(f"{path} is missing: not a faceledger collection export") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterException(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None


def _faces(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise InvalidParameterException(f"{path} is missing: not a faceledger collection export") from None
    except OSError as exc:
        raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None
    with f:
        for n, line in enumerate(f, 1):
            try:
                yield n, json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidParameterException(f"{path}, line {n}: not a JSON object ({exc})") from None


def _record(n: int, row: Any, cid: str, model: str, embedding: np.ndarray | None = None) -> FaceRecord:
    where = f"faces.jsonl, line {n}"
    if not isinstance(row, dict):
        raise InvalidParameterException(f"{where}: not a JSON object")
    face_id = row.get("FaceId")
    if not isinstance(face_id, str) or not _FACE_ID.match(face_id):
        raise InvalidParameterException(f"{where}: FaceId must be a lower-case UUID")
    if row.get("IndexFacesModelVersion", model) != model:
        raise InvalidParameterException(f"{where}: IndexFacesModelVersion {row.get('IndexFacesModelVersion')!r} is "
                                        f"not the collection's FaceModelVersion {model}")
    box = row.get("BoundingBox")
    try:
        values = [float(box[k]) for k in ("Width", "Height", "Left", "Top")]
        confidence = float(row.get("Confidence"))
        created = datetime.fromisoformat(str(row["CreationTimestamp"]).replace("Z", "+00:00"))
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
    except (TypeError, KeyError, ValueError):
        raise InvalidParameterException(f"{where}: BoundingBox (Width, Height, Left, Top), Confidence and "
                                        "CreationTimestamp (ISO 8601) are required") from None
    if not all(math.isfinite(v) for v in values + [confidence]):
        raise InvalidParameterException(f"{where}: BoundingBox and Confidence must be finite numbers")
    if not isinstance(row.get("ImageId"), str) or not row["ImageId"]:
        raise InvalidParameterException(f"{where}: ImageId is required")
    band = row.get("QualityBand")
    if band is not None and band not in FACE_BANDS:
        raise InvalidParameterException(f"{where}: QualityBand must be one of {', '.join(FACE_BANDS)} or null")
    # every stored field as IndexFaces would have accepted it (botocore's shapes: length, pattern, range), so
    # that an import cannot store what no request could: an overlong or malformed id, a Confidence of 1e30
    # (ImageId: the ExternalImageId alphabet and length; faceledger's own ImageIds are UUIDs, a store filled by
    # other means may hold others)
    for key, shape, limit in (("ImageId", "ExternalImageId", 255), ("ExternalImageId", "ExternalImageId", 255),
                              ("UserId", "UserId", 128)):
        value = row.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= limit and _EXTERNAL_ID.match(value)):
            _refuse_shape(shape, value, f"{where}, {key}")  # (the common case above costs no model walk)
    if not 0 <= confidence <= 100:
        _refuse_shape("Percent", confidence, f"{where}, Confidence")
    if not all(-1.0 <= v <= 2.0 for v in values) or values[0] <= 0 or values[1] <= 0:
        raise InvalidParameterException(f"{where}: BoundingBox Width and Height must be ratios of the image above "
                                        "0, and Left and Top within -1 to 2")
    if created > datetime.now(timezone.utc) + _CLOCK_SKEW:  # a face from the future would outlive retention
        raise InvalidParameterException(f"{where}: CreationTimestamp {row['CreationTimestamp']} is in the future")
    return FaceRecord(face_id=face_id, collection_id=cid, image_id=row["ImageId"],
                      external_image_id=row.get("ExternalImageId"), bounding_box=tuple(values),
                      confidence=confidence, face_model_version=model, created_at=created,
                      user_id=row.get("UserId"), embedding=embedding, quality_band=band)


#: How far in the future an imported face's CreationTimestamp may be (clocks of two machines differ).
_CLOCK_SKEW = timedelta(days=1)


def _refuse_shape(shape: str, value: Any, where: str) -> None:
    """InvalidParameterException when ``value`` breaks botocore's shape ``shape`` (what a request could not store)."""
    problems = shape_problems(shape, value, where)
    if problems:
        raise InvalidParameterException(problems[0])


def _check_vectors(vectors: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise InvalidParameterException(f"vectors.npy, row {start + int(np.flatnonzero(bad)[0])}: NaN or infinite "
                                        "values")
    norms = np.linalg.norm(vectors, axis=1)
    off = np.abs(norms - 1) > UNIT_TOLERANCE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InvalidParameterException(f"vectors.npy, row {start + i}: length {norms[i]:.4f}, not a unit vector "
                                        "as the model produces")


def _expected_dimension(inv, model: str) -> int:
    """The vector length of ``model`` as this server computes it (its engine's, not a table that could miss a
    model added later); ServiceUnavailable when the model cannot be loaded."""
    return int(inv.service.engine_for(model).dim)


def import_collection(inv, params: dict[str, Any]) -> dict[str, Any]:
    """Read an export (``Directory``) into a new collection (``CollectionId``: the export's by default);
    {CollectionId, CollectionArn, FaceCount, FaceModelVersion}. Refused with nothing written:
    ResourceAlreadyExistsException (the collection exists), InvalidParameterException (a missing or
    malformed file, an unknown model, vectors of another dimension, NaN or non-unit rows, a FaceId
    repeated or already in this store, counts that disagree)."""
    _local_only(inv, "ImportCollection")
    src = _directory(params)
    meta = _read_json(src / "collection.json")
    if not isinstance(meta, dict):
        raise InvalidParameterException("collection.json must be a JSON object")
    cid = params.get("CollectionId") or meta.get("CollectionId")
    if not isinstance(cid, str) or not _COLLECTION_ID.match(cid):
        raise InvalidParameterException("CollectionId must be 1-255 characters of [a-zA-Z0-9_.-]")
    model = meta.get("FaceModelVersion")
    if not isinstance(model, str):
        raise InvalidParameterException("collection.json: FaceModelVersion is required")
    inv.service.check_model(model)  # InvalidParameterException: a model this server cannot compute
    tags = meta.get("Tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidParameterException("collection.json: Tags must map strings to strings")
    _refuse_shape("TagMap", tags, "collection.json, Tags")
    policy = validate_policy(meta["Policy"]) if meta.get("Policy") else None
    users = meta.get("Users") or []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise InvalidParameterException("collection.json: Users must be a list of UserIds")
    for user in users:
        _refuse_shape("UserId", user, "collection.json, Users")
    if inv.store.get_collection(cid) is not None:
        raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
    try:
        vectors = np.load(src / "vectors.npy", mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InvalidParameterException(f"{src / 'vectors.npy'} is missing: not a faceledger collection export") from None
    except ValueError as exc:
        raise InvalidParameterException(f"vectors.npy is not a NumPy array file: {exc}") from None
    except OSError as exc:
        raise InvalidParameterException(f"{src / 'vectors.npy'} cannot be read: {exc.strerror or exc}") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise InvalidParameterException(f"vectors.npy must be float32 rows (N x D); it is {vectors.dtype} "
                                        f"{vectors.shape}")
    expected = _expected_dimension(inv, model)
    if vectors.shape[1] != expected and (len(vectors) or vectors.shape[1]):
        raise InvalidParameterException(f"vectors.npy has {vectors.shape[1]}-d vectors; {model} vectors have "
                                        f"{expected} dimensions")
    total = len(vectors)
    # One pass, in the call's one transaction (its ledger entry in it): each batch of faces is checked, then
    # written; a refusal anywhere raises and the whole transaction rolls back, so nothing is half-imported
    # and a SIGKILL leaves nothing either. (Reading faces.jsonl once, not once to check and once to write,
    # and letting the FaceId's unique index find a repeated id instead of a lookup a face: docs/scale.md.)
    record = CollectionRecord(collection_id=cid, arn=inv.config.collection_arn(cid), face_model_version=model,
                              created_at=inv.now())
    if not inv.store.create_collection(record, tags):
        raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
    if policy:
        inv.store.put_collection_policy(cid, policy)
    wanted_users = set(users)
    batch: list[FaceRecord] = []
    lines: list[int] = []
    numbered: list = []  # each batch's first row number (or None), for the index build from vectors.npy
    done = 0

    def flush() -> None:
        nonlocal done
        try:
            inv.store.add_faces(batch, numbered=numbered)
        except Exception as exc:
            _refuse_taken(inv, cid, batch, lines, exc)  # a FaceId repeated or already stored: say which
            raise
        done += len(batch)
        batch.clear()
        lines.clear()
        _progress("write", done, total)

    with inv.store.counted_at_end(cid):  # one COUNT at the end, not an UPDATE a face (docs/scale.md)
        rows = vectors[:0]
        count = 0
        for n, row in _faces(src / "faces.jsonl"):
            if n > total:
                raise InvalidParameterException(f"faces.jsonl has more faces than vectors.npy's {total} rows: "
                                                "they must match line for row")
            if (n - 1) % BATCH == 0:
                rows = np.asarray(vectors[n - 1:n - 1 + BATCH], dtype=np.float32)
                _check_vectors(rows, n - 1)
            face = _record(n, row, cid, model, rows[(n - 1) % BATCH])
            if face.user_id is not None:
                wanted_users.add(face.user_id)
            batch.append(face)
            lines.append(n)
            count = n
            if len(batch) >= BATCH:
                flush()
        if count != total:
            raise InvalidParameterException(f"faces.jsonl has {count} faces and vectors.npy {total} rows: they "
                                            "must match line for row")
        if batch:
            flush()
    for uid in sorted(wanted_users):
        inv.store.create_user(UserRecord(cid, uid, inv.now()))
    if numbered and all(numbered):  # the index is built from vectors.npy, not read back from the store
        labels = np.concatenate([np.arange(first, first + min(BATCH, done - i * BATCH), dtype=np.int64)
                                 for i, (first, _) in enumerate(numbered)])
        head = numbered[-1][1]
        inv.after_commit(lambda: _build_index(inv.store, cid, (head, labels, vectors)))
    else:
        inv.after_commit(lambda: _build_index(inv.store, cid))
    inv.meta.update(BiometricData=True, FaceCount=done, Directory=str(src.resolve()))
    return {"CollectionId": cid, "CollectionArn": record.arn, "FaceModelVersion": model, "FaceCount": done,
            "Users": len(wanted_users)}


def _refuse_taken(inv, cid: str, batch: list[FaceRecord], lines: list[int], exc: Exception) -> None:
    """InvalidParameterException naming the first FaceId of ``batch`` (lines ``lines`` of faces.jsonl) that
    is repeated in the file or already in the store, after ``exc`` stopped its write; returns when there is
    none (another failure, raised as it is)."""
    first: dict[str, int] = {}
    for face, n in zip(batch, lines):
        if face.face_id in first:
            raise InvalidParameterException(f"faces.jsonl, line {n}: FaceId {face.face_id} appears twice (first "
                                            f"on line {first[face.face_id]})")
        first[face.face_id] = n
    try:
        taken = inv.store.existing_face_ids([f.face_id for f in batch])
        ours = inv.store.get_faces(cid, taken) if taken else {}  # stored by an earlier batch of this import
    except Exception:  # PostgreSQL: the failed INSERT aborted the transaction, nothing more can be read in it
        if "unique" in str(exc).lower():
            raise InvalidParameterException(
                f"faces.jsonl, lines {lines[0]}-{lines[-1]}: a FaceId appears twice in the file or is already in "
                "this store (FaceIds are unique across collections): nothing was imported") from None
        return
    if ours:
        face_id = next(iter(ours))
        raise InvalidParameterException(f"faces.jsonl, line {first[face_id]}: FaceId {face_id} appears twice")
    if taken:
        raise InvalidParameterException(f"FaceId {taken[0]} is already in this store (FaceIds are unique "
                                        "across collections): nothing was imported")


def _build_index(store, cid: str, held: tuple | None = None) -> None:
    """Build the imported collection's index now (else the first search would); a failure loses nothing.
    ``held``: (head, row numbers, vectors) to build it from the export's vectors instead of the store's."""
    try:
        if held is not None:
            store.indexes.build_from(cid, *held)
        else:
            store.rebuild_index(cid)
    except Exception:
        log.warning("could not build the vector index of imported collection %s: the first search will", cid,
                    exc_info=True)
