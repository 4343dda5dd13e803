"""CreateUser, DeleteUser, ListUsers, AssociateFaces, DisassociateFaces, SearchUsers, SearchUsersByImage.

How a user's faces are aggregated: a user's Similarity to a query face is the
highest Similarity of any of the user's faces to it (each pair on its quality band's table); searching by
UserId takes the highest over every pair of the two users' faces. A user is
returned when that Similarity reaches UserMatchThreshold.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ...store import UserRecord
from .. import shapes, tokens
from ..dispatch import Invocation, operation
from ..errors import (
    ConflictException,
    InvalidParameterException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
)
from ..images import load_image
from ._common import MAX_FACES_PER_IMAGE, require_collection
from ..risk import ambiguous, margin_of, reach, search_threshold
from ...vision.face_quality import CALIBRATED, DEGRADED, TURNED, pair_band
from ..quality import face_band
from .search import largest_face, reach_distance

MAX_FACES_PER_USER = 100
DEFAULT_ASSOCIATE_THRESHOLD = 75.0
DEFAULT_SEARCH_THRESHOLD = 80.0
DEFAULT_MAX_USERS = 10
DEFAULT_LIST_SIZE = 500


def user_status(user: UserRecord) -> str:
    """ACTIVE once a user has faces; CREATED before (Rekognition's states, without the transient ones)."""
    return "ACTIVE" if user.face_count > 0 else "CREATED"


def require_user(inv: Invocation, collection_id: str, user_id: str) -> UserRecord:
    user = inv.store.get_user(collection_id, user_id)
    if user is None:
        raise ResourceNotFoundException(f"User {user_id} does not exist in collection {collection_id}")
    return user


@operation("CreateUser")
def create_user(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = require_collection(inv, req["CollectionId"], counts=False).collection_id
    if not inv.store.create_user(UserRecord(cid, req["UserId"], inv.now())):
        raise ConflictException(f"User {req['UserId']} already exists in collection {cid}")
    return {}


@operation("DeleteUser")
def delete_user(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = require_collection(inv, req["CollectionId"], counts=False).collection_id
    if not inv.store.delete_user(cid, req["UserId"]):
        raise ResourceNotFoundException(f"User {req['UserId']} does not exist in collection {cid}")
    return {}


@operation("ListUsers")
def list_users(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = require_collection(inv, req["CollectionId"], counts=False).collection_id
    after = tokens.decode(inv.service.pagination_key, "ListUsers", cid, req.get("NextToken"))
    page = inv.store.list_users(cid, after, req.get("MaxResults", DEFAULT_LIST_SIZE))
    out: dict[str, Any] = {"Users": [{"UserId": u.user_id, "UserStatus": user_status(u)} for u in page.items]}
    return tokens.with_next_token(inv.service.pagination_key, out, "ListUsers", cid, page.cursor)


@operation("AssociateFaces")
def associate_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = require_collection(inv, req["CollectionId"], counts=False).collection_id
    user_id = req["UserId"]
    require_user(inv, cid, user_id)
    threshold = float(req.get("UserMatchThreshold", DEFAULT_ASSOCIATE_THRESHOLD))
    requested = list(dict.fromkeys(req["FaceIds"]))
    faces = inv.store.get_faces(cid, requested, with_embeddings=True)
    existing = inv.store.list_faces(cid, after=None, limit=MAX_FACES_PER_USER + 1, user_id=user_id).items
    existing_vectors = None
    if existing:
        stored = inv.store.get_faces(cid, [f.face_id for f in existing], with_embeddings=True)
        existing_vectors = np.stack([f.embedding for f in stored.values()])

    associated, unsuccessful = [], []
    for face_id in requested:
        face = faces.get(face_id)
        if face is None:
            unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
            continue
        if face.user_id == user_id:
            associated.append(face_id)
            continue
        if face.user_id is not None:
            unsuccessful.append(
                {"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
            )
            continue
        if existing_vectors is not None:
            inv = inv.for_model(face.face_model_version)
            distance = float(np.min(inv.engine.distance(face.embedding, existing_vectors)))
            similarity = float(inv.scale.similarity(distance))
            if similarity < threshold:
                unsuccessful.append(
                    {
                        "FaceId": face_id,
                        "UserId": user_id,
                        "Confidence": similarity,
                        "Reasons": ["LOW_MATCH_CONFIDENCE"],
                    }
                )
                continue
        associated.append(face_id)

    new = [f for f in associated if faces[f].user_id != user_id]
    if len(existing) + len(new) > MAX_FACES_PER_USER:
        raise ServiceQuotaExceededException(
            f"User {user_id} would have {len(existing) + len(new)} faces; the limit is {MAX_FACES_PER_USER}"
        )
    inv.store.set_face_user(cid, new, user_id)
    return {
        "AssociatedFaces": [{"FaceId": f} for f in associated],
        "UnsuccessfulFaceAssociations": unsuccessful,
        "UserStatus": user_status(require_user(inv, cid, user_id)),
    }


@operation("DisassociateFaces")
def disassociate_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = require_collection(inv, req["CollectionId"], counts=False).collection_id
    user_id = req["UserId"]
    require_user(inv, cid, user_id)
    requested = list(dict.fromkeys(req["FaceIds"]))
    faces = inv.store.get_faces(cid, requested)
    done, unsuccessful = [], []
    for face_id in requested:
        face = faces.get(face_id)
        if face is None:
            unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
        elif face.user_id != user_id:
            entry: dict[str, Any] = {"FaceId": face_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
            if face.user_id is not None:
                entry["UserId"] = face.user_id
            unsuccessful.append(entry)
        else:
            done.append(face_id)
    inv.store.set_face_user(cid, done, None)
    return {
        "DisassociatedFaces": [{"FaceId": f} for f in done],
        "UnsuccessfulFaceDisassociations": unsuccessful,
        "UserStatus": user_status(require_user(inv, cid, user_id)),
    }


def user_matches(
    inv: Invocation, cid: str, vectors: Iterable[np.ndarray], req: dict[str, Any], exclude_user: str | None = None,
    probe_bands: Iterable[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Users ranked by their best-scored face to any of ``vectors`` (see the module's docstring); none when the
    margin rule finds the best user too close to the runner-up (risk.ambiguous). Each pair is scored with the
    table of its quality band (search.face_matches): ``probe_bands``, one a vector (None: calibrated), with the
    stored face's."""
    vectors = list(vectors)
    bands = [b or CALIBRATED for b in (probe_bands or [None] * len(vectors))]
    # the margin rule's scale: no pair of these probes scores higher than on this one
    scale = inv.band_scale(pair_band(CALIBRATED if CALIBRATED in bands or TURNED in bands or not bands else DEGRADED,
                                     CALIBRATED))
    face_count = inv.store.get_collection(cid).face_count
    # every face of the collection is compared (a user's own faces too: they are not excluded from the search)
    threshold = search_threshold(inv, float(req.get("UserMatchThreshold", DEFAULT_SEARCH_THRESHOLD)), face_count,
                                 probes=len(vectors))
    margin = margin_of(inv)
    # fetched as far as the most lenient pair any probe can form reaches (search.reach_distance): a turned probe's
    # pairs with faces inside the range are scored on the main table, which reaches further than degraded-one
    max_distance = max([reach_distance(inv, b, reach(threshold, margin)) for b in bands] or [0.0])
    best: dict[str, float] = {}
    similar: dict[str, float] = {}
    for vector, probe_band in zip(vectors, bands):
        for hit in inv.store.nearest(cid, vector, limit=face_count, max_distance=max_distance):
            uid = hit.face.user_id
            if uid is None or uid == exclude_user:
                continue
            best[uid] = min(best.get(uid, np.inf), hit.distance)
            pair = inv.band_scale(pair_band(probe_band, hit.face.quality_band or CALIBRATED))
            similar[uid] = max(similar.get(uid, 0.0), float(pair.similarity(hit.distance)))
    ordered = sorted(best.items(), key=lambda item: (item[1], item[0]))  # by distance: the margin rule's order
    # ranked by Similarity, not distance: each pair is read on its band's table, so the nearest user may score less
    ranked = sorted((uid for uid in best if similar[uid] >= threshold), key=lambda u: (-similar[u], best[u], u))
    matches = [{"Similarity": similar[uid], "User": {"UserId": uid, "UserStatus": "ACTIVE"}}
               for uid in ranked[: req.get("MaxUsers", DEFAULT_MAX_USERS)]]
    if margin > 0 and matches and ambiguous(inv, ordered[0][1], ordered[1][1] if len(ordered) > 1 else None, margin,
                                            scale):
        return []
    return matches


@operation("SearchUsers")
def search_users(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"], counts=False)
    cid = collection.collection_id
    if ("UserId" in req) == ("FaceId" in req):
        raise InvalidParameterException("SearchUsers needs exactly one of UserId or FaceId")
    inv = inv.for_model(collection.face_model_version)
    out: dict[str, Any] = {"FaceModelVersion": collection.face_model_version}
    if "FaceId" in req:
        face_id = req["FaceId"]
        found = inv.store.get_faces(cid, [face_id], with_embeddings=True)
        if face_id not in found:
            raise InvalidParameterException(f"Face {face_id} is not in collection {cid}")
        out["UserMatches"] = user_matches(inv, cid, [found[face_id].embedding], req, found[face_id].user_id,
                                          probe_bands=[found[face_id].quality_band])
        out["SearchedFace"] = {"FaceId": face_id}
    else:
        user_id = req["UserId"]
        require_user(inv, cid, user_id)
        own = inv.store.list_faces(cid, after=None, limit=MAX_FACES_PER_USER, user_id=user_id).items
        if not own:
            raise InvalidParameterException(f"User {user_id} has no faces to search with")
        stored = inv.store.get_faces(cid, [f.face_id for f in own], with_embeddings=True)
        out["UserMatches"] = user_matches(inv, cid, [f.embedding for f in stored.values()], req, user_id,
                                          probe_bands=[f.quality_band for f in stored.values()])
        out["SearchedUser"] = {"UserId": user_id}
    return out


@operation("SearchUsersByImage")
def search_users_by_image(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"], counts=False)
    inv = inv.for_model(collection.face_model_version)
    image = load_image(req["Image"], inv.config)
    # one detection: the largest face is searched, the next 99 largest are UnsearchedFaces (the limit of
    # the operations that return many faces, MAX_FACES_PER_IMAGE)
    found = inv.engine.analyze(image.image.pixels, embed=False, max_faces=MAX_FACES_PER_IMAGE)
    face = largest_face(inv, image, req.get("QualityFilter", "NONE"), found=found)
    others = found[1:]
    return {
        "UserMatches": user_matches(inv, collection.collection_id, [face.embedding], req,
                                    probe_bands=[face_band(face)]),
        "FaceModelVersion": collection.face_model_version,
        "SearchedFace": {"FaceDetail": shapes.face_detail(face, image.width, image.height)},
        "UnsearchedFaces": [
            {"FaceDetails": shapes.face_detail(f, image.width, image.height), "Reasons": ["FACE_NOT_LARGEST"]}
            for f in others
        ],
    }
