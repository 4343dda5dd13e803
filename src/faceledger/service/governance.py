"""Per-collection policies and faceledger's own operations (``X-Amz-Target: Faceledger.<Op>``).

A collection policy (every member optional)::

    {"MinFaceMatchThreshold": 90,      # floor for FaceMatchThreshold / UserMatchThreshold of 1:N searches
     "BelowMinimum": "REFUSE",         # or "RAISE": a lower threshold is raised to the floor
     "MaxFaces": 10,                   # largest MaxFaces (MaxUsers for user searches)
     "RequirePurpose": true,           # 1:N searches need X-Faceledger-Purpose and X-Faceledger-Case
     "RetentionDays": 30,              # faces older than this are deleted by the retention sweep
     "AllowLiveSearch": true}          # stream processors may search it live (default false: refused)

Operations: PutCollectionPolicy, GetCollectionPolicy, DeleteCollectionPolicy, EraseFaces
(every face of an ExternalImageId, in every collection), ApplyRetention (the sweep).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import timedelta
from typing import Any, Callable

from .context import RequestContext
from .errors import (
    AccessDeniedException,
    InvalidParameterException,
    ResourceNotFoundException,
    ValidationException,
    preview,
)

SEARCHES = {
    "SearchFaces": ("FaceMatchThreshold", "MaxFaces", 80.0, 80),
    "SearchFacesByImage": ("FaceMatchThreshold", "MaxFaces", 80.0, 80),
    "SearchUsers": ("UserMatchThreshold", "MaxUsers", 80.0, 10),
    "SearchUsersByImage": ("UserMatchThreshold", "MaxUsers", 80.0, 10),
    # a video's persons are each searched as SearchFacesByImage searches a face (service/video_jobs.py)
    "StartFaceSearch": ("FaceMatchThreshold", "MaxFaces", 80.0, 80),
}
POLICY_MEMBERS = {"MinFaceMatchThreshold", "BelowMinimum", "MaxFaces", "RequirePurpose", "RetentionDays",
                  "AllowLiveSearch"}
# \Z, not $: "$" also matches before a final newline, so "abc\n" would pass as an id
_COLLECTION_ID = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}\Z")
_EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9_.\-:]{1,255}\Z")
_FACE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def validate_policy(policy: Any) -> dict[str, Any]:
    if not isinstance(policy, dict):
        raise ValidationException("Policy must be an object")
    unknown = set(policy) - POLICY_MEMBERS
    if unknown:
        raise ValidationException(
            f"Unknown policy members: {_names(unknown)} (known: {', '.join(sorted(POLICY_MEMBERS))})"
        )
    out: dict[str, Any] = {}
    if "MinFaceMatchThreshold" in policy:
        v = policy["MinFaceMatchThreshold"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 100:
            raise ValidationException(f"Value '{preview(v)}' at 'policy.minFaceMatchThreshold' failed to satisfy "
                                      "constraint: Member must be a number between 0 and 100")
        out["MinFaceMatchThreshold"] = float(v)
    if "BelowMinimum" in policy:
        if policy["BelowMinimum"] not in ("REFUSE", "RAISE"):
            raise ValidationException(f"Value '{preview(policy['BelowMinimum'])}' at 'policy.belowMinimum' failed "
                                      "to satisfy constraint: Member must satisfy enum value set: [REFUSE, RAISE]")
        out["BelowMinimum"] = policy["BelowMinimum"]
    for key, low, high in (("MaxFaces", 1, 4096), ("RetentionDays", 1, 36500)):
        if key in policy:
            v = policy[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ValidationException(f"Value '{preview(v)}' at 'policy.{key[0].lower() + key[1:]}' failed to "
                                          f"satisfy constraint: Member must be an integer from {low} to {high}")
            out[key] = v
    if "RequirePurpose" in policy:
        if not isinstance(policy["RequirePurpose"], bool):
            raise ValidationException("Value at 'policy.requirePurpose' failed to satisfy constraint: "
                                      "Member must be a boolean")
        out["RequirePurpose"] = policy["RequirePurpose"]
    if "AllowLiveSearch" in policy:
        if not isinstance(policy["AllowLiveSearch"], bool):
            raise ValidationException("Value at 'policy.allowLiveSearch' failed to satisfy constraint: "
                                      "Member must be a boolean")
        out["AllowLiveSearch"] = policy["AllowLiveSearch"]
    return out


def require_purpose(policy: dict[str, Any] | None, operation: str, context: RequestContext,
                    collection_id: str) -> None:
    """AccessDeniedException when the collection's policy has RequirePurpose and the request brings no purpose
    and case reference (the X-Faceledger-Purpose and X-Faceledger-Case headers): for its searches, and for
    reading a video face search's results (GetFaceSearch), which say whom the search found."""
    if policy and policy.get("RequirePurpose") and not (context.purpose and context.case_reference):
        raise AccessDeniedException(
            f"Collection {collection_id} requires a purpose and a case reference for {operation}: send the "
            "X-Faceledger-Purpose and X-Faceledger-Case headers"
        )


def enforce(policy: dict[str, Any] | None, operation: str, request: dict[str, Any], context: RequestContext,
            collection_id: str) -> list[str]:
    """Apply a collection's policy to a 1:N search request (in place); returns notes for the ledger."""
    if not policy or operation not in SEARCHES:
        return []
    threshold_key, max_key, default_threshold, default_max = SEARCHES[operation]
    notes: list[str] = []
    require_purpose(policy, operation, context, collection_id)
    floor = policy.get("MinFaceMatchThreshold")
    if floor is not None:
        asked = request.get(threshold_key)
        if asked is None:
            if default_threshold < floor:
                request[threshold_key] = floor
                notes.append(f"{threshold_key} defaulted to the collection's floor {floor:g}")
        elif asked < floor:
            if policy.get("BelowMinimum", "REFUSE") == "RAISE":
                request[threshold_key] = floor
                notes.append(f"{threshold_key} {asked:g} raised to the collection's floor {floor:g}")
            else:
                raise InvalidParameterException(
                    f"{threshold_key} {asked:g} is below the floor of {floor:g} set for collection {collection_id}"
                )
    limit = policy.get("MaxFaces")
    if limit is not None:
        asked = request.get(max_key)
        if asked is None:
            if default_max > limit:
                request[max_key] = limit
                notes.append(f"{max_key} defaulted to the collection's limit {limit}")
        elif asked > limit:
            raise InvalidParameterException(
                f"{max_key} {asked} is over the limit of {limit} set for collection {collection_id}"
            )
    return notes


# ---------------------------------------------------------------------- faceledger's own operations


def _require(params: Any, member: str, pattern: re.Pattern, name: str) -> str:
    if not isinstance(params, dict):
        raise ValidationException("Request must be a JSON object")
    value = params.get(member)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationException(
            f"Value '{preview(value)}' at '{member[0].lower() + member[1:]}' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: {pattern.pattern[1:-1].replace('{1,255}', '+')}"
            if value is not None else f"1 validation error detected: Value null at '{name}' failed to satisfy "
            "constraint: Member must not be null"
        )
    return value


def _only(params: dict[str, Any], *members: str) -> None:
    unknown = set(params) - set(members)
    if unknown:
        raise ValidationException(f"Unknown members: {_names(unknown)}")


def _names(names: set[str], shown: int = 10) -> str:
    """Member names for a message: the first ``shown`` (each cut to 64 characters) and how many more."""
    first = sorted(names)[:shown]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(preview(n, 64) for n in first) + more


def put_collection_policy(inv, params: dict[str, Any]) -> dict[str, Any]:
    cid = _require(params, "CollectionId", _COLLECTION_ID, "collectionId")
    _only(params, "CollectionId", "Policy")
    policy = validate_policy(params.get("Policy"))
    if not inv.store.put_collection_policy(cid, policy):
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    return {"CollectionId": cid, "Policy": policy}


def get_collection_policy(inv, params: dict[str, Any]) -> dict[str, Any]:
    cid = _require(params, "CollectionId", _COLLECTION_ID, "collectionId")
    _only(params, "CollectionId")
    if inv.store.get_collection(cid, counts=False) is None:
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    return {"CollectionId": cid, "Policy": inv.store.get_collection_policy(cid) or {}}


def delete_collection_policy(inv, params: dict[str, Any]) -> dict[str, Any]:
    cid = _require(params, "CollectionId", _COLLECTION_ID, "collectionId")
    _only(params, "CollectionId")
    if not inv.store.put_collection_policy(cid, None):
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    return {"CollectionId": cid}


def _erased(face) -> dict[str, Any]:
    out = {"CollectionId": face.collection_id, "FaceId": face.face_id, "ImageId": face.image_id}
    if face.user_id is not None:
        out["UserId"] = face.user_id
    return out


def erase_faces(inv, params: dict[str, Any]) -> dict[str, Any]:
    """Every face of an ExternalImageId, in every collection, overwritten on disk; a receipt.

    ``FaceIds`` (optional): only those of them (what a preview showed: faces indexed since are left);
    ``DryRun: true``: erase nothing, return the faces that would be erased (``Faces``)."""
    external = _require(params, "ExternalImageId", _EXTERNAL_ID, "externalImageId")
    _only(params, "ExternalImageId", "FaceIds", "DryRun")
    dry_run = params.get("DryRun", False)
    if not isinstance(dry_run, bool):
        raise ValidationException("DryRun must be true or false")
    face_ids = params.get("FaceIds")
    if face_ids is not None and (not isinstance(face_ids, list) or
                                 not all(isinstance(f, str) and _FACE_ID.match(f) for f in face_ids)):
        raise ValidationException("FaceIds must be a list of face ids (UUIDs)")
    erased = inv.store.erase_external_image_id(external, face_ids=face_ids, dry_run=dry_run)
    if dry_run:
        return {"ExternalImageId": external, "DryRun": True, "Faces": [_erased(f) for f in erased]}
    receipt: dict[str, Any] = {
        "ErasureId": str(uuid.uuid4()),
        "ExternalImageId": external,
        "ErasedAt": inv.now(),
        "ErasedFaces": [_erased(f) for f in erased],
        "SecureDelete": True,
    }
    # After COMMIT: copy the WAL into the database and truncate it, so no page image of the
    # erased rows stays behind in the write-ahead log.
    inv.after_commit(lambda: receipt.__setitem__("WalCheckpointed", inv.store.checkpoint()))
    return receipt


def apply_retention(inv, params: dict[str, Any]) -> dict[str, Any]:
    """Delete the faces older than their collection's RetentionDays (all collections, or one)."""
    if not isinstance(params, dict):
        raise ValidationException("Request must be a JSON object")
    _only(params, "CollectionId")
    only = params.get("CollectionId")
    now = inv.now()
    deleted: list[dict[str, Any]] = []
    for cid, policy in inv.store.collection_policies().items():
        days = policy.get("RetentionDays")
        if days is None or (only is not None and cid != only):
            continue
        for face in inv.store.delete_faces_created_before(cid, now - timedelta(days=days)):
            deleted.append({"CollectionId": cid, "FaceId": face.face_id, "ExternalImageId": face.external_image_id,
                            "RetentionDays": days})
    if deleted:
        inv.after_commit(inv.store.checkpoint)
    return {"DeletedFaces": deleted, "AppliedAt": now}


EXTENSIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "PutCollectionPolicy": put_collection_policy,
    "GetCollectionPolicy": get_collection_policy,
    "DeleteCollectionPolicy": delete_collection_policy,
    "EraseFaces": erase_faces,
    "ApplyRetention": apply_retention,
}

# Export and import of whole collections (service/transfer.py): faceledger:ExportCollection, faceledger:ImportCollection
from .transfer import export_collection, import_collection  # noqa: E402  (transfer uses the validators above)

EXTENSIONS.update(ExportCollection=export_collection, ImportCollection=import_collection)
