"""What the ledger records of one call: who, from where, why, what was touched or returned.

Never an image: its SHA-256 (or the S3 location it was read from). Faces are recorded with
their ids, ExternalImageId and, for matches, their Similarity; users with their ids.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ..store.ledger import LedgerEntry
from .context import RequestContext

_SKIP = {"FaceDetail", "FaceDetails", "BoundingBox", "Landmarks", "Pose", "Quality", "SearchedFaceBoundingBox",
         "SourceImageFace", "UnmatchedFaces", "Tags"}
_THRESHOLDS = ("FaceMatchThreshold", "UserMatchThreshold", "SimilarityThreshold")
_IMAGES = ("Image", "SourceImage", "TargetImage")


def _walk(value: Any, similarity: float | None, faces: list, users: list) -> None:
    if isinstance(value, dict):
        similarity = value.get("Similarity", similarity)
        face_id = value.get("FaceId")
        if isinstance(face_id, str):
            face = {"FaceId": face_id}
            for key in ("CollectionId", "ExternalImageId", "UserId", "Reasons"):
                if key in value:
                    face[key] = value[key]
            if similarity is not None:
                face["Similarity"] = round(float(similarity), 4)
            faces.append(face)
        elif isinstance(value.get("UserId"), str):
            user = {"UserId": value["UserId"]}
            if similarity is not None:
                user["Similarity"] = round(float(similarity), 4)
            users.append(user)
        for key, item in value.items():
            if key not in _SKIP and isinstance(item, (dict, list)):
                _walk(item, similarity if key in ("Face", "User") else None, faces, users)
    elif isinstance(value, list):
        for item in value:
            _walk(item, similarity, faces, users)


def _images(request: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for member in _IMAGES:
        image = request.get(member)
        if not isinstance(image, dict):
            continue
        if isinstance(image.get("Bytes"), (bytes, bytearray)):
            out.append({"Member": member, "SHA256": hashlib.sha256(image["Bytes"]).hexdigest()})
        elif isinstance(image.get("S3Object"), dict):
            s3 = image["S3Object"]
            out.append({"Member": member, "S3Object": f"s3://{s3.get('Bucket')}/{s3.get('Name')}"})
    return out


def collection_of(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    cid = request.get("CollectionId")
    if isinstance(cid, str):
        return cid
    arn = request.get("ResourceArn")
    if isinstance(arn, str) and ":collection/" in arn:
        return arn.split(":collection/", 1)[1]
    return None


def build_entry(
    *,
    when: datetime,
    operation: str,
    context: RequestContext,
    request: Any,
    response: dict[str, Any] | None,
    result: str = "OK",
    message: str | None = None,
    notes: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> LedgerEntry:
    detail: dict[str, Any] = {"RequestId": context.request_id}
    req = request if isinstance(request, dict) else {}
    images = _images(req)
    if images:
        detail["Images"] = images
    for key in _THRESHOLDS:
        if key in req:
            detail["Threshold"] = {key: req[key]}
    asked: dict[str, Any] = {}
    for key in ("FaceId", "FaceIds", "UserId", "ExternalImageId", "MaxFaces", "MaxUsers", "QualityFilter"):
        if key in req:
            asked[key] = req[key]
    if asked:
        detail["Request"] = asked
    if response is not None:
        faces: list = []
        users: list = []
        _walk(response, None, faces, users)
        for key in ("DeletedFaces",):
            for face_id in response.get(key, []) or []:
                if isinstance(face_id, str):
                    faces.append({"FaceId": face_id, "Deleted": True})
        if faces:
            detail["Faces"] = faces
        if users:
            detail["Users"] = users
    if message is not None:
        detail["Message"] = message
    if notes:
        detail["Notes"] = notes
    meta = dict(meta or {})
    if meta.pop("IdempotentReplay", False):  # a retried call answered from its ClientRequestToken
        detail["IdempotentReplay"] = True
    repeat = meta.pop("Repeat", None)
    if repeat:  # IndexFaces of an image already indexed: which faces were there, which were added
        detail["Repeat"] = repeat
    if meta:  # the operation's side channel: ExpectedFalseMatches, ThresholdUsed, FacesSearched, ...
        detail["Search"] = meta
    return LedgerEntry(
        time=when.isoformat(timespec="microseconds"),
        principal=context.who(),
        source=context.source_ip,
        transport=context.transport,
        operation=operation,
        collection_id=collection_of(req),
        purpose=context.purpose,
        case_ref=context.case_reference,
        result=result,
        detail=detail,
    )
