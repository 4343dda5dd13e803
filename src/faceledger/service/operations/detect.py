"""DetectFaces."""

from __future__ import annotations

from typing import Any

from .. import shapes
from ..dispatch import Invocation, operation
from ..images import load_image


@operation("DetectFaces")
def detect_faces(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    # Attributes DEFAULT, ALL or any single attribute all get the same, honest FaceDetail:
    # see shapes.DEFAULT_ATTRIBUTES for what is returned and why nothing more is.
    image = load_image(req["Image"], inv.config)
    faces = inv.engine.analyze(image.image.pixels, embed=False)
    return {"FaceDetails": [shapes.face_detail(f, image.width, image.height) for f in faces]}
