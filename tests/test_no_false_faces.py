"""No faces on animals (issue 10, point 4): the engine the server runs by default, and IndexFaces at
QualityFilter AUTO through the service, enrol no face from images without people: the dogs' photo and
scikit-image's data images without a person, each at three sizes and four turns."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data

from faceledger.service.quality import failing_reasons
from faceledger.vision.image import decode_image

skd = pytest.importorskip("skimage.data")

#: scikit-image data images without a person (astronaut, camera, lfw_subset, lbp_frontal_face show one)
NON_FACE = ("brick", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
            "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
            "rocket", "text")


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _images():
    out = {"dogs.jpg": decode_image(shared_data("groups", "dlib_faces", "dogs.jpg").read_bytes()).pixels}
    for name in NON_FACE:
        try:
            out[name] = _rgb(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - images that need a download are not in the wheel
            continue
    return out


def _variants(img: np.ndarray):
    """The image at 0.5x, 1x (0.7x for dogs.jpg, whose poster shows a real face that is AUTO-sized at 1.4x and
    more) and 2x (not for dogs.jpg), each turned 0/90/180/270 degrees."""
    h, w = img.shape[:2]
    for scale in (0.5, 1.0, 2.0):
        sized = img if scale == 1 else np.asarray(
            Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
        for k in range(4):
            yield scale, 90 * k, np.ascontiguousarray(np.rot90(sized, k))


@pytest.mark.slow
def test_default_engine_enrols_no_face_at_auto():
    """The shipped default engine (default_engine(), what `faceledger serve` runs): no face on any non-face image
    passes QualityFilter AUTO."""
    from faceledger.vision.engine import default_engine

    engine = default_engine()
    kept = []
    for name, img in _images().items():
        for scale, turn, variant in _variants(img):
            if name == "dogs.jpg" and scale > 1:
                continue
            for f in engine.analyze(variant, embed=False):
                if not failing_reasons(f, "AUTO"):
                    kept.append((name, scale, turn, round(f.detection.confidence, 1), round(f.detection.width)))
    assert kept == []


def test_index_faces_auto_enrols_no_animal(tmp_path):
    """Through the service with its default configuration: IndexFaces at AUTO enrols nothing from the dogs' photo
    or the cat, upright or turned, and DetectFaces still reports what the detector saw (no silent drop)."""
    from faceledger import Client
    from faceledger.service import Service, ServiceConfig

    client = Client(service=Service(ServiceConfig(tmp_path / "data")))
    client.create_collection(CollectionId="animals")
    dogs = decode_image(shared_data("groups", "dlib_faces", "dogs.jpg").read_bytes()).pixels
    for img in (dogs, np.ascontiguousarray(skd.chelsea())):
        for k in range(4):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(np.rot90(img, k))).save(buf, "PNG")
            out = client.index_faces(CollectionId="animals", Image={"Bytes": buf.getvalue()}, QualityFilter="AUTO")
            assert out["FaceRecords"] == []
            for u in out.get("UnindexedFaces", []):
                assert "LOW_CONFIDENCE" in u["Reasons"] or "SMALL_BOUNDING_BOX" in u["Reasons"]
    assert client.list_faces(CollectionId="animals")["Faces"] == []
