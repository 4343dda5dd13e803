"""SearchFaces, SearchFacesByImage, CompareFaces: Similarity comes from the calibrated scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...vision import FaceAnalysis
from .. import shapes
from ..dispatch import Invocation, operation
from ..errors import InvalidParameterException
from ..images import InputImage, load_image
from ..quality import failing_reasons
from ..risk import (
    RUNNER_UP_CANDIDATES,
    SAME_IDENTITY_SIMILARITY,
    ambiguous,
    margin_of,
    reach,
    search_threshold,
)
from ._common import MAX_FACES_PER_IMAGE, embed_faces, require_collection

DEFAULT_THRESHOLD = 80.0
DEFAULT_MAX_FACES = 80
#: CompareFaces "compares a face in the source input image with each of the 100 largest faces detected in the
#: target input image" (botocore's documentation): the smaller ones are neither matched nor unmatched.
COMPARE_MAX_TARGET_FACES = MAX_FACES_PER_IMAGE


def largest_face(inv: Invocation, image: InputImage, quality_filter: str, member: str = "image",
                 found: list[FaceAnalysis] | None = None) -> FaceAnalysis:
    """The largest face of an image, embedded; InvalidParameterException when there is none fit to search.
    ``found``: the image's faces, largest first, when the caller has analysed it already (not embedded)."""
    if found is None:
        faces = inv.engine.analyze(image.image.pixels, embed=True, max_faces=1)
    else:
        faces = found[:1]
    if not faces:
        raise InvalidParameterException(f"There are no faces in the {member}. Should be at least 1.")
    reasons = failing_reasons(faces[0], quality_filter)
    if reasons:
        raise InvalidParameterException(
            f"The largest face in the {member} does not pass QualityFilter {quality_filter}: {', '.join(reasons)}"
        )
    if faces[0].embedding is None:
        embed_faces(inv, image.image.pixels, faces)
    return faces[0]


def face_matches(inv: Invocation, collection_id: str, vector: np.ndarray, req: dict[str, Any], exclude=(),
                 face_count: int | None = None) -> list:
    """Faces at or above the threshold used (see risk.search_threshold), nearest first, unless the margin
    rule finds the search ambiguous (risk.ambiguous): then none."""
    if face_count is None:
        face_count = inv.store.get_collection(collection_id).face_count
    threshold = search_threshold(inv, float(req.get("FaceMatchThreshold", DEFAULT_THRESHOLD)),
                                 max(0, face_count - len(exclude)))
    margin = margin_of(inv)
    max_faces = req.get("MaxFaces", DEFAULT_MAX_FACES)
    hits = inv.store.nearest(
        collection_id,
        vector,
        limit=max_faces + (RUNNER_UP_CANDIDATES if margin > 0 else 0),
        max_distance=inv.scale.max_distance(reach(threshold, margin)),
        exclude_face_ids=exclude,
    )
    matches = []
    for hit in hits[:max_faces]:
        similarity = float(inv.scale.similarity(hit.distance))
        if similarity >= threshold:
            matches.append({"Similarity": similarity, "Face": shapes.stored_face(hit.face)})
    if margin > 0 and matches:
        runner_up = _runner_up(inv, collection_id, hits)
        if ambiguous(inv, hits[0].distance, None if runner_up is None else runner_up.distance, margin):
            return []
    return matches


def _runner_up(inv: Invocation, collection_id: str, hits: list):
    """The nearest hit that is another identity than the first: not the same user, and (for faces without a
    user) not a match of the first face at SAME_IDENTITY_SIMILARITY. Stored vectors are read only for the
    candidates looked at, a few at a time (usually the first one settles it)."""
    best = hits[0]
    others = [h for h in hits[1:] if best.face.user_id is None or h.face.user_id != best.face.user_id]
    same = inv.scale.max_distance(SAME_IDENTITY_SIMILARITY)
    best_vector = None
    for start in range(0, len(others), 8):
        batch = others[start:start + 8]
        need = [h.face.face_id for h in batch if h.face.user_id is None or best.face.user_id is None]
        if best_vector is None and need:
            need.append(best.face.face_id)
        vectors = inv.store.get_faces(collection_id, need, with_embeddings=True) if need else {}
        if best_vector is None and best.face.face_id in vectors:
            best_vector = vectors[best.face.face_id].embedding
        for h in batch:
            if h.face.user_id is not None and best.face.user_id is not None:
                return h  # two different users
            v = vectors.get(h.face.face_id)
            if best_vector is None or v is None or float(np.linalg.norm(best_vector - v.embedding)) > same:
                return h
    return None


@operation("SearchFacesByImage")
def search_faces_by_image(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
    inv = inv.for_model(collection.face_model_version)
    image = load_image(req["Image"], inv.config)
    face = largest_face(inv, image, req.get("QualityFilter", "NONE"))
    return {
        "SearchedFaceBoundingBox": shapes.bounding_box(shapes.box_ratios(face, image.width, image.height)),
        "SearchedFaceConfidence": float(face.detection.confidence),
        "FaceMatches": face_matches(inv, collection.collection_id, face.embedding, req,
                                    face_count=collection.face_count),
        "FaceModelVersion": collection.face_model_version,
    }


@operation("SearchFaces")
def search_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
    face_id = req["FaceId"]
    found = inv.store.get_faces(collection.collection_id, [face_id], with_embeddings=True)
    if face_id not in found:
        raise InvalidParameterException(f"Face {face_id} is not in collection {collection.collection_id}")
    inv = inv.for_model(collection.face_model_version)
    return {
        "SearchedFaceId": face_id,
        "FaceMatches": face_matches(
            inv, collection.collection_id, found[face_id].embedding, req, exclude=(face_id,),
            face_count=collection.face_count,
        ),
        "FaceModelVersion": collection.face_model_version,
    }


@operation("CompareFaces")
def compare_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    quality_filter = req.get("QualityFilter", "NONE")
    threshold = float(req.get("SimilarityThreshold", DEFAULT_THRESHOLD))
    source = load_image(req["SourceImage"], inv.config, "SourceImage")
    target = load_image(req["TargetImage"], inv.config, "TargetImage")
    src = largest_face(inv, source, quality_filter, "source image")
    targets = [
        f
        for f in inv.engine.analyze(target.image.pixels, embed=True, max_faces=COMPARE_MAX_TARGET_FACES)
        if not failing_reasons(f, quality_filter)
    ]
    matches, unmatched = [], []
    if targets:
        distances = inv.engine.distance(src.embedding, np.stack([f.embedding for f in targets]))
        similarities = np.atleast_1d(inv.scale.similarity(np.asarray(distances).reshape(-1)))
        for face, similarity in zip(targets, similarities):
            detail = shapes.compared_face(face, target.width, target.height)
            if similarity >= threshold:
                matches.append({"Similarity": float(similarity), "Face": detail})
            else:
                unmatched.append(detail)
    matches.sort(key=lambda m: -m["Similarity"])
    return {
        "SourceImageFace": {
            "BoundingBox": shapes.bounding_box(shapes.box_ratios(src, source.width, source.height)),
            "Confidence": float(src.detection.confidence),
        },
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }
