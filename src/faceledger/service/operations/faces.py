"""IndexFaces, ListFaces, DeleteFaces."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Sequence

import numpy as np

from ...store import FaceRecord
from ...vision import FaceAnalysis
from .. import shapes, tokens
from ..dispatch import Invocation, operation
from ..errors import ResourceNotFoundException
from ..images import load_image
from ..quality import face_band, failing_reasons
from ._common import MAX_FACES_PER_IMAGE, embed_faces, face_details, require_collection

DEFAULT_LIST_SIZE = 1000
#: A face found again in an image indexed before is that stored face when their boxes overlap this much
#: (intersection over union; the same pixels give the same boxes, this only absorbs rounding).
SAME_FACE_IOU = 0.5


def image_digest(pixels: np.ndarray) -> str:
    """What makes two IndexFaces calls "the same image": SHA-256 (hex) of the decoded pixels (upright after
    EXIF orientation, 8-bit RGB, as the detector sees them) and their shape. Bytes that decode to the same
    pixels are the same image (a copy with its metadata stripped or changed, a PNG re-saved, the same file
    sent as Bytes or read from an S3Object); a lossy re-encoding or a resize is another image."""
    pixels = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(memoryview(pixels).cast("B"))
    return digest.hexdigest()


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (Width, Height, Left, Top) boxes."""
    w = min(a[2] + a[0], b[2] + b[0]) - max(a[2], b[2])
    h = min(a[3] + a[1], b[3] + b[1]) - max(a[3], b[3])
    inter = max(0.0, w) * max(0.0, h)
    union = a[0] * a[1] + b[0] * b[1] - inter
    return inter / union if union > 0 else 0.0


def _stored_match(boxes: Sequence[tuple[float, float, float, float]], stored: Sequence[FaceRecord]) -> dict[int, FaceRecord]:
    """Which of ``boxes`` (index) are faces already in ``stored``: each stored face matches at most one box,
    the one it overlaps most (at least SAME_FACE_IOU)."""
    pairs = sorted(((_iou(box, f.bounding_box), i, j) for i, box in enumerate(boxes) for j, f in enumerate(stored)),
                   reverse=True)
    out: dict[int, FaceRecord] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < SAME_FACE_IOU:
            break
        if i not in out and j not in used:
            out[i] = stored[j]
            used.add(j)
    return out


@operation("IndexFaces")
def index_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """Index the faces of an image; Rekognition's rules, and these documented choices:

    * At most MAX_FACES_PER_IMAGE (100) faces: the largest; faces beyond them are in UnindexedFaces with
      EXCEEDS_MAX_FACES. Of those, the ones failing QualityFilter are left out first, then the smallest
      beyond MaxFaces (EXCEEDS_MAX_FACES), as botocore's MaxFaces documentation says.
    * The same image (:func:`image_digest`) indexed again into the same collection with the same
      ExternalImageId stores no duplicate: each face this call selects that an earlier call stored is
      returned as that stored face (its FaceId, ImageId and creation); a face it selects that no earlier
      call stored (a larger MaxFaces, a looser QualityFilter) is stored, under the image's ImageId. The
      ledger entry says so (``Repeat``). Without an ExternalImageId, every call stores its faces, as
      before and as Rekognition's documentation conditions it on "the same external ID".
    """
    collection = require_collection(inv, req["CollectionId"], counts=False)
    cid = collection.collection_id
    inv = inv.for_model(collection.face_model_version)
    image = load_image(req["Image"], inv.config)
    w, h = image.width, image.height
    pixels = image.image.pixels
    faces = inv.engine.analyze(pixels, embed=False)  # largest first; embedded below, only those indexed
    quality_filter = req.get("QualityFilter", "AUTO")
    limit = min(req.get("MaxFaces", MAX_FACES_PER_IMAGE), MAX_FACES_PER_IMAGE)
    external_id = req.get("ExternalImageId")

    detail = face_details(pixels, faces, w, h, req.get("DetectionAttributes"))
    selected: list[FaceAnalysis] = []
    unindexed: list[dict[str, Any]] = []
    for n, face in enumerate(faces):
        reasons = ["EXCEEDS_MAX_FACES"] if n >= MAX_FACES_PER_IMAGE else failing_reasons(face, quality_filter)
        if not reasons and len(selected) >= limit:
            reasons = ["EXCEEDS_MAX_FACES"]
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": detail(face)})
        else:
            selected.append(face)
    boxes = [shapes.box_ratios(f, w, h) for f in selected]

    digest = image_digest(pixels) if external_id is not None else None
    stored: list[FaceRecord] = []
    if digest is not None:
        # read first, to embed only the faces not stored yet; read again below, under the write lock
        stored = inv.store.image_faces(cid, external_id, digest)
    known = _stored_match(boxes, stored)
    embed_faces(inv, pixels, [f for i, f in enumerate(selected) if i not in known])
    if digest is not None:
        stored = inv.store.image_faces(cid, external_id, digest, lock=True)  # a concurrent repeat waits here
        known = _stored_match(boxes, stored)
    image_id = stored[0].image_id if stored else str(uuid.uuid4())
    now = inv.now()

    records: list[dict[str, Any]] = []
    to_store: list[FaceRecord] = []
    for i, face in enumerate(selected):
        record = known.get(i)
        if record is None:
            if face.embedding is None:  # matched a face that was deleted meanwhile
                embed_faces(inv, pixels, [face])
            record = FaceRecord(
                face_id=str(uuid.uuid4()),
                collection_id=cid,
                image_id=image_id,
                external_image_id=external_id,
                bounding_box=boxes[i],
                confidence=float(face.detection.confidence),
                face_model_version=collection.face_model_version,
                created_at=now,
                embedding=face.embedding,
                image_digest=digest,
                quality_band=face_band(face),
            )
            to_store.append(record)
        records.append({"Face": shapes.stored_face(record), "FaceDetail": detail(face)})
    if not inv.store.add_faces(to_store):  # the collection was deleted while the image was analysed
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    if stored:
        inv.meta["Repeat"] = {
            "ImageId": image_id,
            "FacesAlreadyIndexed": [known[i].face_id for i in sorted(known)],
            "FacesAdded": [r.face_id for r in to_store],
        }
    return {
        "FaceRecords": records,
        "FaceModelVersion": collection.face_model_version,
        "UnindexedFaces": unindexed,
    }


@operation("ListFaces")
def list_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"], counts=False)
    after = tokens.decode(inv.service.pagination_key, "ListFaces", collection.collection_id, req.get("NextToken"))
    page = inv.store.list_faces(
        collection.collection_id,
        after=after,
        limit=req.get("MaxResults", DEFAULT_LIST_SIZE),
        face_ids=req.get("FaceIds"),
        user_id=req.get("UserId"),
    )
    out: dict[str, Any] = {
        "Faces": [shapes.stored_face(f) for f in page.items],
        "FaceModelVersion": collection.face_model_version,
    }
    return tokens.with_next_token(inv.service.pagination_key, out, "ListFaces", collection.collection_id, page.cursor)


@operation("DeleteFaces")
def delete_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"], counts=False)
    cid = collection.collection_id
    requested = list(dict.fromkeys(req["FaceIds"]))
    found = inv.store.get_faces(cid, requested)
    unsuccessful: list[dict[str, Any]] = []
    deletable: list[str] = []
    for face_id in requested:
        face = found.get(face_id)
        if face is None:
            unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
        elif face.user_id is not None:
            unsuccessful.append(
                {"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
            )
        else:
            deletable.append(face_id)
    deleted = set(inv.store.delete_faces(cid, deletable))
    unsuccessful += [{"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]} for f in deletable if f not in deleted]
    return {
        "DeletedFaces": [f for f in deletable if f in deleted],
        "UnsuccessfulFaceDeletions": unsuccessful,
    }
