"""What the ledger records of one call: who, from where, why, what was touched or returned.

Never an image: its SHA-256 (or the S3 location it was read from). Faces are recorded with
their ids, ExternalImageId and, for matches, their Similarity; users with their ids.

Every field is bounded whatever the request held: a request that failed validation has each value it
quotes cut to MAX_INVALID_CHARS characters and MAX_INVALID_ITEMS items (saying how long it was), a valid
one is within the model's limits; text columns are cut to MAX_COLUMN_CHARS, the error message to
errors.MAX_MESSAGE_CHARS; the store caps the whole entry (store.ledger.MAX_DETAIL_CHARS).
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime
from typing import Any

from ..store.ledger import LedgerEntry
from .context import RequestContext
from .errors import MAX_MESSAGE_CHARS, clip

#: Longest text column (principal, purpose, case, operation, collection id, source), in characters.
MAX_COLUMN_CHARS = 1024
#: How much of a value of a request that failed validation the entry quotes: characters of a string, items of
#: a list or object, levels of nesting.
MAX_INVALID_CHARS, MAX_INVALID_ITEMS, MAX_INVALID_DEPTH = 256, 16, 4
#: The same for a valid request: within the model's limits already (FaceIds: 4096 ids), a backstop.
MAX_VALID_CHARS, MAX_VALID_ITEMS, MAX_VALID_DEPTH = 2048, 4096, 8
MAX_NOTES = 32

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


def bounded(value: Any, chars: int, items: int, depth: int) -> Any:
    """``value`` (JSON-like) with strings cut to ``chars`` characters, lists and objects to ``items`` items and
    nesting to ``depth`` levels, each cut saying what it left out; O(what is kept)."""
    if isinstance(value, str):
        return clip(value, chars)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        if depth <= 0:
            return f"<a list of {len(value)} items>"
        kept = [bounded(v, chars, items, depth - 1) for v in value[:items]]
        return kept + ([f"...({len(value)} items)"] if len(value) > items else [])
    if isinstance(value, dict):
        if depth <= 0:
            return f"<an object of {len(value)} members>"
        out = {}
        for i, (k, v) in enumerate(value.items()):
            if i == items:
                out["..."] = f"({len(value)} members)"
                break
            out[clip(str(k), chars)] = bounded(v, chars, items, depth - 1)
        return out
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # the ledger's JSON has no NaN or Infinity
    return value


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
            location = f"s3://{clip(str(s3.get('Bucket')), 256)}/{clip(str(s3.get('Name')), MAX_COLUMN_CHARS)}"
            out.append({"Member": member, "S3Object": location})
    return out


#: What an image-analysis answer returned, as the ledger keeps it: (response member, name member, kind).
_FOUND = (("Labels", "Name", "Labels"), ("ModerationLabels", "Name", "ModerationLabels"))


def _analysis(response: dict[str, Any]) -> dict[str, Any]:
    """The labels (name and confidence) and lines of text an analysis returned, bounded (MAX_VALID_ITEMS)."""
    found: dict[str, Any] = {}
    for member, name, kind in _FOUND:
        items = response.get(member)
        if isinstance(items, list) and items:
            found[kind] = [{"Name": clip(str(i.get(name)), 256), "Confidence": round(float(i.get("Confidence", 0)), 2)}
                           for i in items[:MAX_VALID_ITEMS] if isinstance(i, dict)]
    text = response.get("TextDetections")
    if isinstance(text, list) and text:
        found["Text"] = [clip(str(t.get("DetectedText")), 256) for t in text[:MAX_VALID_ITEMS]
                         if isinstance(t, dict) and t.get("Type") == "LINE"]
    return found


def collection_of(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    cid = request.get("CollectionId")
    if isinstance(cid, str):
        return cid
    arn = request.get("ResourceArn")
    if isinstance(arn, str) and ":collection/" in arn:
        return arn.split(":collection/", 1)[1]
    search = (request.get("Settings") or {}).get("FaceSearch") if isinstance(request.get("Settings"), dict) else None
    if isinstance(search, dict) and isinstance(search.get("CollectionId"), str):  # CreateStreamProcessor
        return search["CollectionId"]
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
    validated: bool = True,
    collection_id: str | None = None,
) -> LedgerEntry:
    """The entry of one call. ``request``: the call's parameters, ``validated`` when they passed the model's
    validation (else each value quoted is cut harder: MAX_INVALID_*). ``collection_id``: the collection the call
    acted on when the request does not name it (a video Get* by JobId, a stream processor by Name)."""
    limits = (MAX_VALID_CHARS, MAX_VALID_ITEMS, MAX_VALID_DEPTH) if validated else (
        MAX_INVALID_CHARS, MAX_INVALID_ITEMS, MAX_INVALID_DEPTH)
    detail: dict[str, Any] = {"RequestId": clip(str(context.request_id), 64)}
    req = request if isinstance(request, dict) else {}
    images = _images(req)
    if images:
        detail["Images"] = images
    for key in _THRESHOLDS:
        if key in req:
            detail["Threshold"] = {key: bounded(req[key], *limits)}
    asked: dict[str, Any] = {}
    for key in ("FaceId", "FaceIds", "UserId", "ExternalImageId", "MaxFaces", "MaxUsers", "QualityFilter", "Name"):
        if key in req:
            asked[key] = bounded(req[key], *limits)
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
        found = _analysis(response)
        if found:
            detail["Found"] = found
    if message is not None:
        detail["Message"] = clip(str(message), MAX_MESSAGE_CHARS)
    if notes:
        detail["Notes"] = [clip(str(n), MAX_COLUMN_CHARS) for n in notes[:MAX_NOTES]] + (
            [f"...({len(notes)} notes)"] if len(notes) > MAX_NOTES else [])
    meta = dict(meta or {})
    if meta.pop("IdempotentReplay", False):  # a retried call answered from its ClientRequestToken
        detail["IdempotentReplay"] = True
    meta.pop("Undetectable", None)  # a constant of DetectModerationLabels' answer (a header), not of the call
    repeat = meta.pop("Repeat", None)
    if repeat:  # IndexFaces of an image already indexed: which faces were there, which were added
        detail["Repeat"] = repeat
    if meta:  # the operation's side channel: ExpectedFalseMatches, ThresholdUsed, FacesSearched, ...
        detail["Search"] = meta
    return LedgerEntry(
        time=when.isoformat(timespec="microseconds"),
        principal=_column(context.who()),
        source=_column(context.source_ip),
        transport=_column(context.transport),
        operation=_column(operation),
        collection_id=_column(collection_of(req) if collection_id is None else collection_id),
        purpose=_column(context.purpose),
        case_ref=_column(context.case_reference),
        result=_column(result),
        detail=detail,
    )


#: Characters a ledger column never holds as such: control characters (a NUL, which PostgreSQL's text cannot
#: store, and terminal escapes, which `audit list` would print to an auditor's terminal) and lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _column(value: str | None) -> str | None:
    """A column's text: at most MAX_COLUMN_CHARS, with _UNPRINTABLE characters written as ``\\uXXXX`` (a refused
    call's CollectionId is recorded as it came, so a client chooses these characters)."""
    if value is None:
        return None
    text = str(value)
    head = _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text[:MAX_COLUMN_CHARS])
    if len(text) <= MAX_COLUMN_CHARS and len(head) <= MAX_COLUMN_CHARS:
        return head
    return f"{head[:MAX_COLUMN_CHARS]}...({len(text)} characters)"  # as clip() cuts, after the escaping
