"""Helpers shared by the operation modules."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ...store import CollectionRecord
from ...vision import FaceAnalysis
from .. import shapes
from ..dispatch import Invocation
from ..errors import ResourceNotFoundException

#: Faces of one image that an operation looks at, largest first: Rekognition's DetectFaces "detects the 100
#: largest faces", IndexFaces indexes at most "the 100 largest faces" (more go to UnindexedFaces with
#: EXCEEDS_MAX_FACES), CompareFaces compares "each of the 100 largest faces detected in the target image"
#: (botocore's documentation of these operations). SearchUsersByImage's UnsearchedFaces is held to the same.
MAX_FACES_PER_IMAGE = 100


def require_collection(inv: Invocation, collection_id: str, *, counts: bool = True) -> CollectionRecord:
    """The collection, or ResourceNotFoundException. ``counts=False``: without its face and user counts (None),
    for operations that do not use them (counting costs time in proportion to the collection's faces)."""
    collection = inv.store.get_collection(collection_id, counts=counts)
    if collection is None:
        raise ResourceNotFoundException(f"The collection id: {collection_id} does not exist")
    return collection


def embed_faces(inv: Invocation, pixels: np.ndarray, faces: Sequence[FaceAnalysis]) -> None:
    """Set the ``embedding`` of ``faces`` (found by ``inv.engine.analyze(pixels, embed=False)``): the same
    vectors ``analyze(embed=True)`` gives, computed only for the faces an operation keeps."""
    if faces:
        inv.engine.embed(pixels, faces)


#: Attributes values (DetectFaces' Attributes, IndexFaces' DetectionAttributes) that ask for Gender
GENDER_ATTRIBUTES = frozenset({"ALL", "GENDER"})


def face_details(pixels: np.ndarray, faces: Sequence[FaceAnalysis], width: int, height: int,
                 attributes: Sequence[str] | None) -> Callable[[FaceAnalysis], dict[str, Any]]:
    """A function giving each of ``faces`` its FaceDetail: :func:`shapes.face_detail` plus ``Gender`` when
    ``attributes`` asks for it (ALL or GENDER) and the face is large and sharp enough for the measured
    accuracy (vision/attributes.py; a smaller or blurrier face gets none). Gender is computed once, here, for
    the first MAX_FACES_PER_IMAGE faces."""
    extra: dict[int, dict[str, Any]] = {}
    if GENDER_ATTRIBUTES & set(attributes or ()):
        from ...vision.attributes import gender_model

        kept = list(faces[:MAX_FACES_PER_IMAGE])
        for face, gender in zip(kept, gender_model().genders(pixels, kept)):
            if gender is not None:
                extra[id(face)] = {"Gender": gender}
    return lambda face: {**shapes.face_detail(face, width, height), **extra.get(id(face), {})}
