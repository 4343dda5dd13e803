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

An import is all or nothing: every file is checked first (regular files only; model known to this server,
vectors.npy's header parsed here and its size matching it, vectors of its dimension, finite and unit length,
FaceIds well-formed and unique in the file and in the store, one row a face, no field the format lacks, the
counts collection.json states, every other field within the botocore shape a request would have had to
meet), then the collection, its tags, policy, users and faces are written in one transaction with the
ledger entry; the collection's vector index is built after the commit.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import stat
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
    ValidationException,
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
    try:
        if out.is_symlink() and not out.exists():
            raise InvalidParameterException(f"{out} is a symbolic link to nothing: name a folder")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InvalidParameterException(f"{out} is not an empty folder: an export never overwrites files")
    except OSError as exc:
        raise InvalidParameterException(f"cannot write the export to {out}: {exc.strerror or exc}") from None
    created: list[Path] = []  # what this call made, removed again when it fails (a rerun then finds it empty)
    made_folder = False
    try:
        if not out.is_dir():
            out.mkdir(mode=0o700, parents=True)
            made_folder = True
        done, dimension = _write_export(inv, cid, collection, out, created)
    except BaseException as exc:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.unlink()
        if made_folder:
            with contextlib.suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):  # the caller's folder: a missing parent, a dangling link, no room, no right
            raise InvalidParameterException(f"cannot write the export to {out}: {exc.strerror or exc}") from None
        raise
    inv.meta.update(BiometricData=True, FaceCount=done, Directory=str(out.resolve()))
    return {"CollectionId": cid, "FaceCount": done, "Dimension": dimension or 0, "Directory": str(out)}


def _write_export(inv, cid: str, collection: CollectionRecord, out: Path, created: list[Path]) -> tuple[int, int]:
    """Write the three files of an export into the empty folder ``out`` (each appended to ``created`` once it
    exists); (faces written, dimension)."""
    total = collection.face_count
    done, dimension = 0, None
    vectors_tmp = out / "vectors.npy.partial"
    with _create(out / "faces.jsonl.partial", created) as faces, _create(vectors_tmp, created, binary=True) as matrix:
        for records, vectors in inv.store.iter_faces(cid):
            if dimension is None:
                dimension = vectors.shape[1]
                _npy_header(matrix, (total, dimension))
            if done + len(records) > total:  # grown since it was counted: iter_faces is one snapshot
                raise InvalidParameterException(f"collection {cid} changed during the export: run it again")
            matrix.write(np.ascontiguousarray(vectors, dtype=_VECTOR_DTYPE).tobytes())
            for record in records:
                faces.write(json.dumps(_face_json(record), sort_keys=True) + "\n")
            done += len(records)
            _progress("export", done, total)
        if dimension is None:
            _npy_header(matrix, (0, 0))
        elif done != total:
            raise InvalidParameterException(f"collection {cid} changed during the export: run it again")
    users = sorted({u.user_id for u in _all_users(inv, cid)})
    meta = {"Format": FORMAT, "CollectionId": cid, "FaceModelVersion": collection.face_model_version,
            "Dimension": dimension or 0, "FaceCount": done, "Tags": inv.store.get_tags(cid),
            "Policy": inv.store.get_collection_policy(cid), "Users": users,
            "CreationTimestamp": _iso(collection.created_at), "ExportedAt": _iso(inv.now())}
    for name in ("faces.jsonl", "vectors.npy"):
        _claim(out / name, created)
        os.replace(out / f"{name}.partial", out / name)
    with _create(out / "collection.json", created) as f:  # last: its presence marks a whole export
        json.dump(meta, f, indent=2, sort_keys=True)
    return done, dimension or 0


def _create(path: Path, created: list[Path], binary: bool = False):
    """A new file (never an existing one, nor through a symbolic link planted in the folder), readable by its
    owner only, opened for writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0), 0o600)
    created.append(path)
    return os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")


def _claim(path: Path, created: list[Path]) -> None:
    """``path`` (a final name os.replace will give a .partial file) when nothing is there yet: a file or link
    put there meanwhile is not replaced."""
    with _create(path, created):
        pass


def _npy_header(f, shape: tuple[int, int]) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(_VECTOR_DTYPE),
                                             "fortran_order": False, "shape": shape})


def _all_users(inv, cid: str) -> Iterator[UserRecord]:
    after = None
    while True:
        page = inv.store.list_users(cid, after, 1000)
        yield from page.items
        if page.cursor is None:
            return
        after = page.cursor


def _open_regular(path: Path):
    """``path`` opened for reading in binary, when it is a regular file (a symbolic link is followed to it);
    InvalidParameterException naming it when it is missing, unreadable or anything else: a folder, a device
    (/dev/zero would be read forever), a FIFO (opened without blocking, so one with no writer cannot hang the
    call). What is read from it is then bounded by its size, the input."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidParameterException(f"{path} is missing: not a faceledger collection export") from None
    except OSError as exc:
        raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
            raise InvalidParameterException(f"{path} cannot be read: it is {kind}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_json(path: Path) -> Any:
    with _open_regular(path) as f:
        try:
            data = f.read()
        except OSError as exc:
            raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidParameterException(f"{path} is not valid JSON: {exc}") from None


#: The longest line faces.jsonl may have, bytes: a face's fields within their botocore shapes take under 1.5 KB,
#: so a far longer line is not a face, and reading it stops here (not at the next newline, which a crafted file
#: may never have: one line of gigabytes would be held whole). Below it, an overlong field is named as such.
MAX_LINE = 1024 * 1024


def _faces(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_regular(path) as f:
        n = 0
        while True:
            n += 1
            try:
                line = f.readline(MAX_LINE + 1)
            except OSError as exc:
                raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None
            if not line:
                return
            if len(line) > MAX_LINE:
                raise InvalidParameterException(f"{path}, line {n}: longer than {MAX_LINE} bytes, not a face")
            try:
                yield n, json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise InvalidParameterException(f"{path}, line {n}: not a JSON object ({exc})") from None


#: The .npy header an export writes: little-endian float32, C (row) order. Anything else is refused before a
#: byte of data is read (nothing is converted, nothing unpickled).
_VECTOR_DTYPE = np.dtype("<f4")


def _load_vectors(path: Path) -> np.ndarray:
    """vectors.npy as a read-only (N, D) float32 memory map, its header parsed here (np.load is not used: it
    returns an archive for a zip, raises EOFError for an empty file and OverflowError for a negative shape)
    and its size checked against the header's shape before mapping, so a header claiming 10**12 rows over a
    small file is refused at once. InvalidParameterException naming the problem."""
    fmt = np.lib.format
    with _open_regular(path) as f:
        try:
            head = f.read(len(fmt.MAGIC_PREFIX))
            if head != fmt.MAGIC_PREFIX:  # (numpy's own message would quote the file's first bytes: a link to
                raise InvalidParameterException(  # a secret file must not echo it into the error and ledger)
                    "vectors.npy is not a NumPy array file: it does not start with the .npy magic string")
            f.seek(0)
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy format version {version}")
        except (ValueError, TypeError, SyntaxError, OverflowError, EOFError, MemoryError, RecursionError) as exc:
            raise InvalidParameterException(f"vectors.npy is not a NumPy array file: {exc}") from None
        except OSError as exc:
            raise InvalidParameterException(f"{path} cannot be read: {exc.strerror or exc}") from None
        if dtype.hasobject:
            raise InvalidParameterException("vectors.npy holds Python objects (pickled data, never loaded): it must "
                                            "be float32 rows (N x D)")
        if dtype != _VECTOR_DTYPE or dtype.fields is not None or len(shape) != 2 or min(shape) < 0:
            raise InvalidParameterException(f"vectors.npy must be float32 rows (N x D); it is {dtype} {shape}")
        if fortran and min(shape) > 1:
            raise InvalidParameterException("vectors.npy is in Fortran (column) order: an export's rows are stored "
                                            "one after another (C order)")
        offset = f.tell()
        need = offset + shape[0] * shape[1] * _VECTOR_DTYPE.itemsize
        size = os.fstat(f.fileno()).st_size
        if size != need:
            raise InvalidParameterException(
                f"vectors.npy is {size} bytes where its header's shape {shape} needs {need}: "
                f"{'truncated' if size < need else 'bytes after its last row'}")
        if shape[0] * shape[1] == 0:
            return np.zeros(shape, np.float32)
        try:  # the file opened and checked above is the one mapped (a memory map outlives its file object)
            return np.memmap(f, dtype=_VECTOR_DTYPE, mode="r", offset=offset, shape=shape)
        except (ValueError, OSError) as exc:
            raise InvalidParameterException(f"{path} cannot be read: {exc}") from None


def _record(n: int, row: Any, cid: str, model: str, embedding: np.ndarray | None = None) -> FaceRecord:
    where = f"faces.jsonl, line {n}"
    if not isinstance(row, dict):
        raise InvalidParameterException(f"{where}: not a JSON object")
    unknown = sorted(set(row) - _FACE_FIELDS)
    if unknown:  # a field this format does not have would be dropped without a word (a typo, a newer export)
        raise InvalidParameterException(f"{where}: unknown field {unknown[0]!r} ({FORMAT} has "
                                        f"{', '.join(sorted(_FACE_FIELDS))})")
    face_id = row.get("FaceId")
    if not isinstance(face_id, str) or not _FACE_ID.match(face_id):
        raise InvalidParameterException(f"{where}: FaceId must be a lower-case UUID")
    if row.get("IndexFacesModelVersion", model) != model:
        raise InvalidParameterException(f"{where}: IndexFacesModelVersion {row.get('IndexFacesModelVersion')!r} is "
                                        f"not the collection's FaceModelVersion {model}")
    box = row.get("BoundingBox")
    try:
        if not isinstance(box, dict) or set(box) != set(_BOX) or not isinstance(row.get("CreationTimestamp"), str):
            raise TypeError
        values = [_number(box[k]) for k in _BOX]
        confidence = _number(row.get("Confidence"))
        created = datetime.fromisoformat(row["CreationTimestamp"].replace("Z", "+00:00"))
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        created.astimezone(timezone.utc)  # OverflowError: a date that is no date in UTC (0001-01-01T00:00+05:00)
    except (TypeError, KeyError, ValueError, OverflowError):
        raise InvalidParameterException(f"{where}: BoundingBox (Width, Height, Left, Top), Confidence (numbers) and "
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
    if created < _EPOCH:  # before any faceledger stored a face; year 0 in UTC could not even be read back
        raise InvalidParameterException(f"{where}: CreationTimestamp {row['CreationTimestamp']} is before 1970")
    return FaceRecord(face_id=face_id, collection_id=cid, image_id=row["ImageId"],
                      external_image_id=row.get("ExternalImageId"), bounding_box=tuple(values),
                      confidence=confidence, face_model_version=model, created_at=created,
                      user_id=row.get("UserId"), embedding=embedding, quality_band=band)


#: How far in the future an imported face's CreationTimestamp may be (clocks of two machines differ).
_CLOCK_SKEW = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The fields of a faces.jsonl line (the export writes all of them; UserId, ExternalImageId, QualityBand and
#: IndexFacesModelVersion may be missing or null).
_FACE_FIELDS = frozenset({"FaceId", "ImageId", "ExternalImageId", "UserId", "BoundingBox", "Confidence",
                          "IndexFacesModelVersion", "CreationTimestamp", "QualityBand"})
_BOX = ("Width", "Height", "Left", "Top")
#: collection.json's members (export_collection writes them all)
_META_FIELDS = frozenset({"Format", "CollectionId", "FaceModelVersion", "Dimension", "FaceCount", "Tags", "Policy",
                          "Users", "CreationTimestamp", "ExportedAt"})


def _number(value: Any) -> float:
    """A JSON number as a float; TypeError for anything else (a string "99", true: float() would take them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


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
    from .operations.users import MAX_FACES_PER_USER  # (not at the top: operations import dispatch, which imports us)

    _local_only(inv, "ImportCollection")
    src = _directory(params)
    meta = _read_json(src / "collection.json")
    if not isinstance(meta, dict):
        raise InvalidParameterException("collection.json must be a JSON object")
    if meta.get("Format", FORMAT) != FORMAT:  # another format's files would be read as if they were this one's
        raise InvalidParameterException(f"collection.json: Format {meta['Format']!r} is not {FORMAT}, the one this "
                                        "server reads")
    unknown = sorted(set(meta) - _META_FIELDS)
    if unknown:
        raise InvalidParameterException(f"collection.json: unknown member {unknown[0]!r} ({FORMAT} has "
                                        f"{', '.join(sorted(_META_FIELDS))})")
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
    try:
        policy = validate_policy(meta["Policy"]) if meta.get("Policy") is not None else None
    except ValidationException as exc:
        raise InvalidParameterException(f"collection.json, Policy: {exc}") from None
    users = meta.get("Users") or []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise InvalidParameterException("collection.json: Users must be a list of UserIds")
    for user in users:
        _refuse_shape("UserId", user, "collection.json, Users")
    if inv.store.get_collection(cid) is not None:
        raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
    vectors = _load_vectors(src / "vectors.npy")
    expected = _expected_dimension(inv, model)
    if vectors.shape[1] != expected and (len(vectors) or vectors.shape[1]):
        raise InvalidParameterException(f"vectors.npy has {vectors.shape[1]}-d vectors; {model} vectors have "
                                        f"{expected} dimensions")
    total = len(vectors)
    if total:
        _stated(meta, "Dimension", vectors.shape[1], "vectors.npy's rows have")
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
    per_user: dict[str, int] = {}
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
                per_user[face.user_id] = per_user.get(face.user_id, 0) + 1
                if per_user[face.user_id] > MAX_FACES_PER_USER:  # AssociateFaces would have refused the 101st
                    raise InvalidParameterException(f"faces.jsonl, line {n}: user {face.user_id} has more than "
                                                    f"{MAX_FACES_PER_USER} faces, the limit of a user")
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
        _stated(meta, "FaceCount", count, "the files hold")
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


def _stated(meta: dict[str, Any], key: str, actual: int, where: str) -> None:
    """InvalidParameterException when collection.json states ``key`` (an export writes it) as another number
    than the files' ``actual`` (a copy cut short, a file from another export)."""
    stated = meta.get(key)
    if stated is not None and (isinstance(stated, bool) or stated != actual):
        raise InvalidParameterException(f"collection.json states {key} {stated!r}; {where} {actual}")


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
