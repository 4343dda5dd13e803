"""IndexFaces' service path does no work twice and none in proportion to the collection (issue 10, point 6),
with the same answers: HOG runs once a box when BlazeFace's HOG check and the AUTO confirmation look at the same
boxes; landmarks located while detecting are the ones the embedding aligns on; IndexFaces never counts the
collection's faces.  The speed itself is measured by bench/service_speed.py (no timing here)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from conftest import image_bytes, shared_data

from faceledger import Client
from faceledger.service import Service, ServiceConfig
from faceledger.vision.confirm import HogConfirmed
from faceledger.vision.dlib_models import HogVerifiedDetector
from faceledger.vision.engine import blazeface_detector, default_engine
from faceledger.vision.image import decode_image


def _photos() -> list[np.ndarray]:
    """Faces, crowds and animals: every kind of box the checks decide on (kept, dropped, confidence lowered)."""
    paths = [shared_data("groups", "dlib_faces", name) for name in ("dogs.jpg", "bald_guys.jpg", "2008_002470.jpg")]
    paths += sorted(shared_data("lfw_dev").glob("*/*.jpg"))[:6]
    return [decode_image(p.read_bytes()).pixels for p in paths]


class _Counted:
    """Counts the calls of one method of an object while the ``with`` block runs (the method runs as it is)."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name, self.calls = owner, name, 0

    def __enter__(self) -> "_Counted":
        real = getattr(self.owner, self.name)

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        setattr(self.owner, self.name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        delattr(self.owner, self.name)


class _Plain:
    """A detector that is only a detector: HogConfirmed over it checks every box with HOG itself."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name

    def detect(self, image):
        return self.inner.detect(image)


def test_confirmation_reuses_the_hog_check_scores_with_the_same_detections():
    checked = blazeface_detector()  # BlazeFace, each box kept only when HOG sees a face there
    assert isinstance(checked, HogVerifiedDetector)
    reusing, fresh = HogConfirmed(checked), HogConfirmed(_Plain(checked))
    lowered = boxes = 0
    for img in _photos():
        with _Counted(checked, "hog_score") as first, _Counted(reusing._hog, "hog_score") as again:
            got = reusing.detect(img)
        assert again.calls == 0 and first.calls >= len(got)  # HOG ran once a box, in BlazeFace's check
        assert got == fresh.detect(img)  # the same boxes and Confidences as checking each box afresh
        boxes += len(got)
        lowered += sum(d.confidence == reusing.unconfirmed_confidence for d in got)
    assert boxes > 10 and 0 < lowered < boxes  # both outcomes of the confirmation were exercised


def test_scores_are_reused_only_where_they_tell_the_answer():
    checked = blazeface_detector()
    confirm = HogConfirmed(checked)._hog  # hog_min 0: looks at HOG detections above -0.5
    assert checked.score_as(confirm, 0.3) == 0.3
    assert checked.score_as(confirm, -0.7) == -np.inf  # below confirm's threshold: it would see nothing there
    looser = HogConfirmed(checked, hog_min=-2.0)._hog  # looks at HOG detections the check never saw
    assert checked.score_as(looser, -1.5) is None and checked.score_as(looser, 0.3) is None  # HOG must run again
    assert checked.score_as(HogVerifiedDetector(checked.inner, min_score=0.0, box_px=60), 0.3) is None


def test_embedding_later_aligns_on_the_points_found_while_detecting():
    engine = default_engine()
    img = _photos()[1]  # bald_guys.jpg: several faces
    whole = engine.analyze(img)
    later = engine.analyze(img, embed=False)
    assert len(whole) >= 2 and all(f.points is not None and f.embedding is None for f in later)
    with _Counted(engine.landmarks, "locate") as located:
        engine.embed(img, later[::-1])
    assert located.calls == 0
    for a, b in zip(whole, later):  # the same vectors (to float rounding: other faces share the batch)
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=0, atol=1e-6)
    lost = engine.analyze(img, embed=False)[:1]  # a face without its points (built elsewhere) is located again
    lost[0].points = None
    with _Counted(engine.landmarks, "locate") as located:
        engine.embed(img, lost)
    assert located.calls == 1
    np.testing.assert_allclose(lost[0].embedding, whole[0].embedding, rtol=0, atol=1e-6)


def test_index_faces_does_not_count_the_collection(tmp_path, lfw):
    service = Service(ServiceConfig(tmp_path / "data"))
    client = Client(service=service)
    client.create_collection(CollectionId="c")
    statements: list[str] = []
    service.store._conn().set_trace_callback(statements.append)  # this thread's connection: the Client's
    paths = sorted(lfw.glob("*/*.jpg"))[:2]
    for n, path in enumerate(paths):
        out = client.index_faces(CollectionId="c", Image={"Bytes": image_bytes(path)}, ExternalImageId=f"p{n}")
        assert len(out["FaceRecords"]) == 1
    client.list_faces(CollectionId="c")
    assert statements and not [s for s in statements if "COUNT(" in s.upper()]
    service.store._conn().set_trace_callback(None)
    assert client.describe_collection(CollectionId="c")["FaceCount"] == 2  # who needs the count still gets it
    record = service.store.get_collection("c", counts=False)
    assert (record.face_count, record.user_count) == (None, None)
    assert record.face_model_version == service.store.get_collection("c").face_model_version
    assert service.store.get_collection("missing", counts=False) is None
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.index_faces(CollectionId="missing", Image={"Bytes": image_bytes(paths[0])})
    client.close()
    assert sqlite3.connect(tmp_path / "data" / "faceledger.db").execute("SELECT COUNT(*) FROM faces").fetchone() == (2,)
