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


def require_collection(inv: Invocation, collection_id: str) -> CollectionRecord:
    collection = inv.store.get_collection(collection_id)
    if collection is None:
        raise ResourceNotFoundException(f"The collection id: {collection_id} does not exist")
    return collection


def embed_faces(inv: Invocation, pixels: np.ndarray, faces: Sequence[FaceAnalysis]) -> None:
    """Set the ``embedding`` of ``faces`` (found by ``inv.engine.analyze(pixels, embed=False)``): the same
    vectors ``analyze(embed=True)`` gives, computed only for the faces an operation keeps."""
    if not faces:
        return
    engine = inv.engine
    image = np.ascontiguousarray(pixels)
    shapes = [np.asarray(engine.landmarks.locate(image, f.detection), dtype=np.float64) for f in faces]
    vectors = np.asarray(engine.embedder.embed(image, shapes), dtype=np.float32)
    for face, vector in zip(faces, vectors):
        face.embedding = vector.copy()
