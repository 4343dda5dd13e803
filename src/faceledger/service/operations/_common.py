"""Helpers shared by the operation modules."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...store import CollectionRecord
from ...vision import FaceAnalysis
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
