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
#: ... and for Smile
SMILE_ATTRIBUTES = frozenset({"ALL", "SMILE"})


def face_details(pixels: np.ndarray, faces: Sequence[FaceAnalysis], width: int, height: int,
                 attributes: Sequence[str] | None) -> Callable[[FaceAnalysis], dict[str, Any]]:
    """A function giving each of ``faces`` its FaceDetail: :func:`shapes.face_detail` plus ``Gender`` and
    ``Smile`` when ``attributes`` asks for them (ALL, GENDER, SMILE) and the face is large and sharp enough for
    the measured accuracy (vision/attributes.py; a smaller or blurrier face gets none). They are computed once,
    here, for the first MAX_FACES_PER_IMAGE faces."""
    from ...vision import attributes as models

    extra: dict[int, dict[str, Any]] = {}
    kept = list(faces[:MAX_FACES_PER_IMAGE])
    asked = set(attributes or ())
    for wanted, name, compute in ((GENDER_ATTRIBUTES, "Gender", lambda: models.gender_model().genders),
                                  (SMILE_ATTRIBUTES, "Smile", lambda: models.smile_model().smiles)):
        if wanted & asked:
            for face, value in zip(kept, compute()(pixels, kept)):
                if value is not None:
                    extra.setdefault(id(face), {})[name] = value
    return lambda face: {**shapes.face_detail(face, width, height), **extra.get(id(face), {})}
