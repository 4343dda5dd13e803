"""DetectFaces."""

from __future__ import annotations

from typing import Any

from .. import shapes
from ..dispatch import Invocation, operation
from ..images import load_image
from ._common import MAX_FACES_PER_IMAGE


@operation("DetectFaces")
def detect_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    # Attributes DEFAULT, ALL or any single attribute all get the same, honest FaceDetail:
    # see shapes.DEFAULT_ATTRIBUTES for what is returned and why nothing more is.
    # Rekognition "detects the 100 largest faces in the image": the others are not returned.
    image = load_image(req["Image"], inv.config)
    faces = inv.engine.analyze(image.image.pixels, embed=False, max_faces=MAX_FACES_PER_IMAGE)
    return {"FaceDetails": [shapes.face_detail(f, image.width, image.height) for f in faces]}
