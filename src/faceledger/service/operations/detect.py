"""DetectFaces."""

from __future__ import annotations

from typing import Any

from ..dispatch import Invocation, operation
from ..images import load_image
from ._common import MAX_FACES_PER_IMAGE, face_details


@operation("DetectFaces")
def detect_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    # Attributes DEFAULT or any single attribute get the same, honest FaceDetail (shapes.DEFAULT_ATTRIBUTES);
    # ALL or GENDER add Gender where the face is large and sharp enough (vision/attributes.py). Nothing more.
    # Rekognition "detects the 100 largest faces in the image": the others are not returned.
    image = load_image(req["Image"], inv.config)
    faces = inv.engine.analyze(image.image.pixels, embed=False, max_faces=MAX_FACES_PER_IMAGE)
    detail = face_details(image.image.pixels, faces, image.width, image.height, req.get("Attributes"))
    return {"FaceDetails": [detail(f) for f in faces]}
