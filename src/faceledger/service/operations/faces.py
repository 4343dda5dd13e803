"""IndexFaces, ListFaces, DeleteFaces."""

from __future__ import annotations

import uuid
from typing import Any

from ...store import FaceRecord
from .. import shapes, tokens
from ..dispatch import Invocation, operation
from ..errors import ResourceNotFoundException
from ..images import load_image
from ..quality import failing_reasons
from ._common import require_collection

DEFAULT_LIST_SIZE = 1000


@operation("IndexFaces")
def index_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
    inv = inv.for_model(collection.face_model_version)
    image = load_image(req["Image"], inv.config)
    w, h = image.width, image.height
    faces = inv.engine.analyze(image.image.pixels, embed=True)  # largest first
    quality_filter = req.get("QualityFilter", "AUTO")
    max_faces = req.get("MaxFaces")

    image_id, now = str(uuid.uuid4()), inv.now()
    records: list[dict[str, Any]] = []
    unindexed: list[dict[str, Any]] = []
    to_store: list[FaceRecord] = []
    for face in faces:
        detail = shapes.face_detail(face, w, h)
        reasons = failing_reasons(face, quality_filter)
        if not reasons and max_faces is not None and len(to_store) >= max_faces:
            reasons = ["EXCEEDS_MAX_FACES"]
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": detail})
            continue
        record = FaceRecord(
            face_id=str(uuid.uuid4()),
            collection_id=collection.collection_id,
            image_id=image_id,
            external_image_id=req.get("ExternalImageId"),
            bounding_box=shapes.box_ratios(face, w, h),
            confidence=float(face.detection.confidence),
            face_model_version=collection.face_model_version,
            created_at=now,
            embedding=face.embedding,
        )
        to_store.append(record)
        records.append({"Face": shapes.stored_face(record), "FaceDetail": detail})
    if not inv.store.add_faces(to_store):  # the collection was deleted while the image was analysed
        raise ResourceNotFoundException(f"The collection id: {collection.collection_id} does not exist")
    return {
        "FaceRecords": records,
        "FaceModelVersion": collection.face_model_version,
        "UnindexedFaces": unindexed,
    }


@operation("ListFaces")
def list_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
    after = tokens.decode("ListFaces", collection.collection_id, req.get("NextToken"))
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
    return tokens.with_next_token(out, "ListFaces", collection.collection_id, page.cursor)


@operation("DeleteFaces")
def delete_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
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
