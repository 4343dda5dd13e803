"""SearchFaces, SearchFacesByImage, CompareFaces: Similarity comes from the calibrated scale.

A pair of faces of which one or both are outside the range the scale was calibrated on (searched, compared or
indexed with QualityFilter NONE; service.quality) is scored with the table of its quality band
(vision.face_quality.pair_band: one face degraded, or both), so that its Similarity still states its false
match rate (docs/similarity.md, "Validity range"). A stored face's band is the one it had when indexed
(FaceRecord.quality_band; faces stored before it was recorded count as inside the range).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...vision import FaceAnalysis
from .. import shapes
from ..dispatch import Invocation, operation
from ..errors import InvalidParameterException
from ..images import InputImage, load_image
from ...vision.face_quality import CALIBRATED, COVERED, DEGRADED, PAIR_BANDS, TURNED, pair_band
from ..quality import face_band, face_degradations, failing_reasons
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
    degraded = face_degradations(faces[0])
    if degraded:
        inv.meta["Degradations"] = ",".join(degraded)
    return faces[0]


def reach_distance(inv: Invocation, probe_band: str, similarity: float) -> float:
    """How far to fetch stored faces for a probe of quality band ``probe_band`` so that every face that may
    score ``similarity`` or more is found: the largest distance at that Similarity over the tables of the pairs
    the probe can form (with a stored face inside the range, degraded, covered or turned): the stored faces'
    bands differ, and the most lenient of them sets the reach."""
    model = inv.face_model or inv.service.model_version
    scales = [inv.band_scale(pair_band(probe_band, CALIBRATED))] + [
        inv.service.band_scale_for(model, pair_band(probe_band, b)) or inv.scale  # no table: scored on the main one
        for b in (DEGRADED, COVERED, TURNED) if pair_band(probe_band, b) != CALIBRATED]
    return max(sc.max_distance(similarity) for sc in scales)


def face_matches(inv: Invocation, collection_id: str, vector: np.ndarray, req: dict[str, Any], exclude=(),
                 face_count: int | None = None, probe_band: str | None = None) -> list:
    """Faces at or above the threshold used (see risk.search_threshold), most similar first, unless the margin
    rule finds the search ambiguous (risk.ambiguous): then none. Each hit is scored with the table of its pair's
    quality band: ``probe_band`` (the searched face's, service.quality.face_band; None: calibrated) with the
    stored face's (FaceRecord.quality_band)."""
    probe_band = probe_band or CALIBRATED
    widest = inv.band_scale(pair_band(probe_band, CALIBRATED))  # no pair with this probe scores higher
    if face_count is None:
        face_count = inv.store.get_collection(collection_id).face_count
    threshold = search_threshold(inv, float(req.get("FaceMatchThreshold", DEFAULT_THRESHOLD)),
                                 max(0, face_count - len(exclude)))
    margin = margin_of(inv)
    max_faces = req.get("MaxFaces", DEFAULT_MAX_FACES)
    # pairs are read on their bands' tables, so a nearer face may score lower than a further one (a turned pair on
    # turned-both's table): RUNNER_UP_CANDIDATES more than max_faces are fetched and scored, and the best max_faces
    # by Similarity kept (a bounded fetch: every face within reach could be millions at scale)
    hits = inv.store.nearest(
        collection_id,
        vector,
        limit=max_faces + RUNNER_UP_CANDIDATES,
        max_distance=reach_distance(inv, probe_band, reach(threshold, margin)),
        exclude_face_ids=exclude,
    )
    scored = []
    for hit in hits:
        scale = inv.band_scale(pair_band(probe_band, hit.face.quality_band or CALIBRATED))
        similarity = float(scale.similarity(hit.distance))
        if similarity >= threshold:
            scored.append((similarity, hit))
    scored.sort(key=lambda sh: (-sh[0], sh[1].distance))
    matches = [{"Similarity": sim, "Face": shapes.stored_face(hit.face)} for sim, hit in scored[:max_faces]]
    if margin > 0 and matches:
        runner_up = _runner_up(inv, collection_id, hits)
        if ambiguous(inv, hits[0].distance, None if runner_up is None else runner_up.distance, margin, widest):
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
                                    face_count=collection.face_count, probe_band=face_band(face)),
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
            face_count=collection.face_count, probe_band=found[face_id].quality_band,
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
        distances = np.asarray(inv.engine.distance(src.embedding, np.stack([f.embedding for f in targets]))).reshape(-1)
        # each pair scored with the table of its quality band (both faces are known here)
        source_band = face_band(src)
        bands = [pair_band(source_band, face_band(f)) for f in targets]
        similarities = [float(inv.band_scale(b).similarity(float(d))) for b, d in zip(bands, distances)]
        worst = max(bands, key=PAIR_BANDS.index)
        if worst != CALIBRATED:
            inv.band_scale(worst)  # reports the worst pair's band (x-faceledger-quality-band)
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
