"""The batched, multi-core pipeline: FaceEngine.analyze_many, the HOG detector pool, and
concurrent analyze() calls (what IndexFaces does under the CLI's --workers and the server)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data
from faceledger.vision import decode_image, default_engine
from faceledger.vision.dlib_models import HogPool, load_models
from faceledger.vision.image import InvalidImageFormat


def load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).pixels


@pytest.fixture(scope="module")
def files() -> list[Path]:
    lfw = sorted(shared_data("lfw_dev").glob("*/*.jpg"))[:12]
    crowd = sorted(shared_data("groups", "linzaer_imgs").glob("*.jpg"))[:3]
    return lfw[:6] + crowd + lfw[6:]


def same(a, b) -> None:
    assert [f.detection for f in a] == [f.detection for f in b]
    assert [f.landmarks for f in a] == [f.landmarks for f in b]
    assert [f.quality for f in a] == [f.quality for f in b]
    for x, y in zip(a, b):
        if x.embedding is None:
            assert y.embedding is None
        else:
            np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-6)


@pytest.mark.parametrize("engine_name", ["onnx", "dlib"])
def test_analyze_many_equals_analyze(files: list[Path], engine_name: str) -> None:
    eng = default_engine(engine=engine_name)
    items = files if engine_name == "onnx" else files[:4] + files[6:8]  # dlib's ResNet is slow
    expected = [eng.analyze(load(f)) for f in items]
    assert sum(len(x) for x in expected) > len(items)  # crowd photos: several faces per image
    for workers, batch in ((1, 32), (2, 32), (3, 1), (2, 5)):
        got = list(eng.analyze_many(items, load=load, workers=workers, batch_faces=batch))
        assert len(got) == len(items)
        for a, b in zip(expected, got):
            same(a, b)


def test_analyze_many_options_and_errors(files: list[Path]) -> None:
    eng = default_engine()
    pixels = [load(f) for f in files[:3]]
    # arrays in, no load; max_faces and embed=False as analyze()
    got = list(eng.analyze_many(pixels, max_faces=1, embed=False, workers=2))
    for img, faces in zip(pixels, got):
        same(eng.analyze(img, max_faces=1, embed=False), faces)
        assert all(f.embedding is None for f in faces)
    # a failing item is yielded as its exception, in place; the others go on
    bad = files[0].with_name("does-not-exist.jpg")

    def loader(item):
        if isinstance(item, bytes):
            return decode_image(item).pixels
        return load(item)

    got = list(eng.analyze_many([files[0], bad, b"not an image", files[1]], load=loader, workers=2))
    assert isinstance(got[1], FileNotFoundError) and isinstance(got[2], InvalidImageFormat)
    same(got[0], eng.analyze(load(files[0])))
    same(got[3], eng.analyze(load(files[1])))
    assert list(eng.analyze_many([], workers=2)) == []
    # stopping early leaves no work behind
    it = eng.analyze_many(files, load=load, workers=2)
    next(it)
    it.close()


def test_concurrent_analyze_uses_several_hog_detectors(files: list[Path]) -> None:
    eng = default_engine()
    pixels = [load(f) for f in files]
    expected = [eng.analyze(p) for p in pixels]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(eng.analyze, pixels))
    for a, b in zip(expected, got):
        same(a, b)
    assert load_models().hog.created >= 2


def test_hog_pool_hands_out_distinct_detectors() -> None:
    pool = HogPool()
    inside = threading.Barrier(2)
    seen: list[object] = []

    def use() -> None:
        with pool() as det:
            seen.append(det)
            inside.wait(timeout=10)  # both hold one at the same time

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] is not seen[1] and pool.created == 2
    with pool() as again:  # reused, not created
        assert again in seen
    assert pool.created == 2


def test_blazeface_check_is_stricter_for_large_boxes() -> None:
    from faceledger.vision import engine
    from faceledger.vision.engine import Detection

    det = engine.blazeface_detector()
    small = Detection(0, 0, engine.BLAZEFACE_HOG_CHECK_LARGE_PX - 1, 79, 0.9, 99.0)
    large = Detection(0, 0, engine.BLAZEFACE_HOG_CHECK_LARGE_PX, 80, 0.9, 99.0)
    assert det.bar(small) == engine.BLAZEFACE_HOG_CHECK == -0.6
    assert det.bar(large) == engine.BLAZEFACE_HOG_CHECK_LARGE == 0.0
    # the blurred background of biden2.jpg (BlazeFace 0.74, HOG check -0.30, 153 px) is not a face
    img = load(shared_data("small_identities", "face_recognition_knn_examples", "train", "biden", "biden2.jpg"))
    assert len(det.detect(img)) == 1
