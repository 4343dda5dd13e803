"""Tests of faceledger.vision on real images (no mocks).

Face images come from ../shared/data (override with FACELEDGER_TEST_DATA); tests that
need them skip when the folder is missing.  skimage.data images ship with
scikit-image (a test dependency).
"""

from __future__ import annotations

import io
import os
import resource
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    import faceledger.vision  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.vision import (  # noqa: E402
    DecodedImage,
    FaceEngine,
    ImageError,
    ImageTooLarge,
    InvalidImageFormat,
    decode_image,
    default_engine,
)
from faceledger.vision import geometry  # noqa: E402
from faceledger.vision.dlib_models import hog_confidence, load_models  # noqa: E402

DATA = Path(
    os.environ.get("FACELEDGER_TEST_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
needs_data = pytest.mark.skipif(
    not (DATA / "lfw_dev").is_dir(),
    reason=f"test images not found at {DATA} (set FACELEDGER_TEST_DATA to the shared data folder)",
)

LANDMARK_TYPES = {
    "eyeLeft", "eyeRight", "leftEyeLeft", "leftEyeRight", "rightEyeLeft", "rightEyeRight",
    "nose", "mouthLeft", "mouthRight",
}


def lfw(name: str, i: int) -> Path:
    return DATA / "lfw_dev" / name / f"{name}_{i:04d}.jpg"


def lfw_pixels(name: str, i: int) -> np.ndarray:
    return decode_image(lfw(name, i).read_bytes()).pixels


def encode(arr_or_img, fmt: str, **kw) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return default_engine(1)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut())


# ------------------------------------------------------------------------------ decode
def test_decode_jpeg_and_png(astronaut):
    jpg = decode_image(encode(astronaut, "JPEG", quality=95))
    assert isinstance(jpg, DecodedImage)
    assert jpg.format == "JPEG" and (jpg.width, jpg.height) == (512, 512)
    assert jpg.pixels.shape == (512, 512, 3) and jpg.pixels.dtype == np.uint8
    assert jpg.pixels.flags.c_contiguous
    png = decode_image(encode(astronaut, "PNG"))
    assert png.format == "PNG"
    assert np.array_equal(png.pixels, astronaut)  # lossless


@needs_data
def test_decode_real_lfw_jpeg():
    d = decode_image(lfw("Al_Gore", 1).read_bytes())
    assert (d.width, d.height, d.format) == (250, 250, "JPEG")


def test_decode_converts_modes_to_rgb(astronaut):
    grey = Image.fromarray(astronaut).convert("L")
    d = decode_image(encode(grey, "PNG"))
    assert d.pixels.shape == (512, 512, 3)
    assert np.array_equal(d.pixels[..., 0], np.asarray(grey))
    # RGBA: fully transparent pixels composite over white
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    d = decode_image(encode(rgba, "PNG"))
    assert d.pixels.shape == (512, 512, 3)
    assert (d.pixels[:10, :10] == 255).all()
    assert np.array_equal(d.pixels[20:, 20:], astronaut[20:, 20:])
    # palette
    d = decode_image(encode(Image.fromarray(astronaut).convert("P"), "PNG"))
    assert d.pixels.shape == (512, 512, 3)
    # 16-bit greyscale: scaled to 8 bits, not clipped
    g16 = np.asarray(grey).astype(np.uint16) * 257
    d = decode_image(encode(Image.fromarray(g16), "PNG"))
    assert np.abs(d.pixels[..., 0].astype(int) - np.asarray(grey)).max() <= 1


@needs_data
def test_exif_orientation_applied(tmp_path, engine):
    upright = Image.open(lfw("Al_Gore", 1)).convert("RGB")
    canvas = Image.new("RGB", (400, 250), (128, 128, 128))  # non-square, so dims swap
    canvas.paste(upright, (75, 0))
    # store it rotated 90 degrees counter-clockwise with Orientation=6 ("rotate 90 CW to view")
    stored = canvas.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())

    raw = Image.open(path)
    assert raw.size == (250, 400)  # as stored: portrait
    d = decode_image(path.read_bytes())
    assert (d.width, d.height) == (400, 250)  # as viewed: landscape, dims swapped
    faces = engine.analyze(d.pixels, embed=False)
    assert len(faces) == 1
    assert abs(faces[0].pose.roll) < 15  # upright
    # without the orientation applied the face is sideways and HOG misses it
    assert engine.analyze(np.asarray(raw.convert("RGB")), embed=False) == []


def test_truncated_jpeg_and_png_rejected(astronaut):
    jpg = encode(astronaut, "JPEG", quality=90)
    for cut in (len(jpg) // 2, len(jpg) - 200, 300):
        with pytest.raises(InvalidImageFormat):
            decode_image(jpg[:cut])
    png = encode(astronaut, "PNG")
    with pytest.raises(InvalidImageFormat):
        decode_image(png[: len(png) // 2])


def test_garbage_rejected():
    rng = np.random.default_rng(0)
    for data in (rng.bytes(5000), b"", b"\xff\xd8\xff" + rng.bytes(100), b"\x89PNG\r\n\x1a\n" + rng.bytes(64)):
        with pytest.raises(InvalidImageFormat):
            decode_image(data)
    assert issubclass(InvalidImageFormat, ImageError) and issubclass(ImageTooLarge, ImageError)


def test_gif_and_bmp_rejected(astronaut):
    for fmt in ("GIF", "BMP", "TIFF", "WEBP"):
        try:
            data = encode(astronaut, fmt)
        except (KeyError, OSError):  # codec not built into this Pillow
            continue
        with pytest.raises(InvalidImageFormat, match="only JPEG and PNG"):
            decode_image(data)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, all black, built row by row."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF
        )

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = []
    block = row * 1000
    for _ in range(height // 1000):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (height % 1000)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding():
    bomb = _png_bomb(30000, 30000)  # 900 Mpx (2.7 GB as RGB) in a small file
    assert len(bomb) < 1_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        decode_image(bomb)
    assert time.perf_counter() - t0 < 1.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 100


def test_max_pixels_limit(astronaut):
    data = encode(astronaut, "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=512 * 512 - 1)
    assert decode_image(data, max_pixels=512 * 512).width == 512


# --------------------------------------------------------------------------- detection
@needs_data
@pytest.mark.parametrize(
    "name,i", [("Al_Gore", 1), ("Colin_Powell", 1), ("Serena_Williams", 1), ("Gerhard_Schroeder", 2)]
)
def test_one_face_on_lfw(engine, name, i):
    faces = engine.analyze(lfw_pixels(name, i), embed=False)
    assert len(faces) >= 1
    big = faces[0]
    # the portrait face is centred and dominant in deep-funneled LFW
    assert 50 < (big.detection.left + big.detection.right) / 2 < 200
    assert big.detection.width > 60


def test_astronaut_one_face(engine, astronaut):
    faces = engine.analyze(astronaut)
    # HOG at upsample 1 with threshold 0 also returns a weak box on the suit
    # (score 0.12, confidence 59); only one face is confident.
    confident = [f for f in faces if f.detection.confidence >= 90]
    assert len(confident) == 1
    f = faces[0]
    assert f is confident[0]
    assert 150 < (f.detection.left + f.detection.right) / 2 < 300  # her face, upper left
    assert len(default_engine(0).analyze(astronaut, embed=False)) == 1
    assert len(default_engine(2).analyze(astronaut, embed=False)) == 1
    assert f.embedding is not None and f.embedding.shape == (engine.dim,) and f.embedding.dtype == np.float32


@pytest.mark.parametrize("which", ["chelsea", "coffee"])
def test_no_face_on_cat_and_coffee(engine, which):
    skdata = pytest.importorskip("skimage.data")
    assert engine.analyze(np.ascontiguousarray(getattr(skdata, which)())) == []


@needs_data
def test_no_face_on_dogs(engine):
    img = decode_image((DATA / "groups" / "dlib_faces" / "dogs.jpg").read_bytes()).pixels
    assert engine.analyze(img, embed=False) == []


@needs_data
def test_largest_first_and_max_faces(engine):
    img = decode_image((DATA / "groups" / "facenet_pytorch_multiface.jpg").read_bytes()).pixels
    faces = engine.analyze(img, embed=False)
    assert len(faces) >= 2
    areas = [f.detection.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    top2 = engine.analyze(img, embed=False, max_faces=2)
    assert [f.detection for f in top2] == [f.detection for f in faces[:2]]
    assert engine.analyze(img, max_faces=0) == []


def test_confidence_mapping():
    assert hog_confidence(0.0) == pytest.approx(50.0)
    xs = np.linspace(-3, 5, 81)
    ys = [hog_confidence(x) for x in xs]
    assert all(b >= a for a, b in zip(ys, ys[1:]))
    assert 0.0 <= min(ys) and max(ys) <= 100.0
    assert hog_confidence(1.8) > 99


# --------------------------------------------------------------------------- embedding
@needs_data
def test_same_person_closer_than_different(engine):
    def emb(name, i):
        return engine.analyze(lfw_pixels(name, i), max_faces=1)[0].embedding

    gore1, gore2 = emb("Al_Gore", 1), emb("Al_Gore", 2)
    powell1, powell2 = emb("Colin_Powell", 1), emb("Colin_Powell", 2)
    same = [float(engine.distance(gore1, gore2[None])[0]), float(engine.distance(powell1, powell2[None])[0])]
    diff = engine.distance(np.stack([gore1, gore2]), np.stack([powell1, powell2]))
    assert diff.shape == (2, 2)
    assert max(same) < diff.min()
    from faceledger.vision.similarity import SimilarityScale

    # the model's own same-person threshold: Similarity 80 of its packaged table (dlib's was its documented 0.6)
    threshold = SimilarityScale.load(engine.model_version).max_distance(80)
    assert max(same) < threshold < diff.min()


@needs_data
def test_embedding_is_exactly_dlibs_call(engine):
    """The similarity calibration relies on exactly this call on the largest HOG face."""
    import dlib
    import face_recognition_models as frm

    img = lfw_pixels("Colin_Powell", 1)
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    rects, _, _ = det.run(img, 1, 0.0)
    largest = max(rects, key=lambda r: r.area())
    expected = np.asarray(rec.compute_face_descriptor(img, sp(img, largest)), dtype=np.float32)
    got = default_engine(1, "dlib").analyze(img, max_faces=1)[0].embedding
    assert np.array_equal(got, expected)
    # the ONNX engine's dlib-resnet-v1: the same network, equal up to float rounding
    dlib_onnx = default_engine(1, "onnx", "dlib-resnet-v1")
    onnx = dlib_onnx.analyze(img, max_faces=1)[0].embedding
    assert dlib_onnx.model_version == "dlib-resnet-v1"
    cos = float(onnx @ expected) / float(np.linalg.norm(onnx) * np.linalg.norm(expected))
    assert cos >= 0.9999 and np.abs(onnx - expected).max() < 1e-4


def test_distance_shapes(engine):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 128)), rng.normal(size=(5, 128))
    d = engine.distance(a, b)
    assert d.shape == (3, 5)
    assert np.allclose(d, np.linalg.norm(a[:, None] - b[None], axis=2))
    assert engine.distance(a[0], b).shape == (5,)
    assert engine.distance(a[0], a[0:1])[0] == pytest.approx(0.0, abs=1e-6)


def test_default_engine_cached_and_versioned():
    e = default_engine()
    assert e is default_engine()
    assert default_engine(1) is default_engine(1)
    assert e.model_version == "faceledger-sface-v2" and e.dim == 128
    assert default_engine(None, "dlib") is not e and default_engine(None, "onnx") is e
    assert default_engine(None, "onnx", "faceledger-sface-v2") is e
    v1 = default_engine(None, "onnx", "faceledger-sface-v1")
    assert v1 is not e and v1.model_version == "faceledger-sface-v1" and v1.dim == 128
    f = default_engine(None, "onnx", "faceledger-fusion-v1")
    assert f.model_version == "faceledger-fusion-v1" and f.dim == 1152
    assert default_engine(None, "dlib").model_version == "dlib-resnet-v1"
    d = default_engine(None, "onnx", "dlib-resnet-v1")
    assert d.model_version == "dlib-resnet-v1" and d.dim == 128  # the same vectors as dlib's
    assert type(d.embedder).__name__ == "OnnxResNetEmbedder" and type(f.embedder).__name__ == "FusionEmbedder"
    assert type(e.embedder).__name__ == "SFaceEmbedder"
    assert f.embedder.dlib is d.embedder  # one dlib session per process
    with pytest.raises(ValueError):
        default_engine(None, "tensorflow")
    with pytest.raises(ValueError, match="face model"):
        default_engine(None, "onnx", "no-such-model")
    with pytest.raises(ValueError, match="dlib-resnet-v1 only"):
        default_engine(None, "dlib", "faceledger-fusion-v1")
    assert load_models() is load_models()


def test_default_upsample_rule():
    from faceledger.vision.engine import DEFAULT_UPSAMPLE, UPSAMPLE_MAX_PIXELS

    det = default_engine(engine="dlib").detector
    small = np.broadcast_to(np.zeros(3, np.uint8), (2160, 3839, 3))
    big = np.broadcast_to(np.zeros(3, np.uint8), (2160, 3840, 3))
    assert det.upsample_for(small) == DEFAULT_UPSAMPLE == 1
    assert UPSAMPLE_MAX_PIXELS == 3840 * 2160 - 1
    assert det.upsample_for(big) == 0
    assert default_engine(1).detector.upsample_for(big) == 1  # explicit upsample: no rule


def test_threads_give_same_results(engine, astronaut):
    ref = engine.analyze(astronaut)[0].embedding
    out, errors = [], []

    def work():
        try:
            out.append(engine.analyze(astronaut)[0].embedding)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(e, ref) for e in out)


# ----------------------------------------------------------------- landmarks, pose, quality
@needs_data
def test_landmarks_named_and_placed(engine):
    f = engine.analyze(lfw_pixels("Al_Gore", 1), embed=False)[0]
    lm, d = f.landmarks, f.detection
    assert set(lm) == LANDMARK_TYPES
    margin = 0.15 * d.width
    for name, (x, y) in lm.items():
        assert d.left - margin <= x <= d.right + margin, name
        assert d.top - margin <= y <= d.bottom + margin, name
    assert lm["eyeLeft"][0] < lm["eyeRight"][0]  # Rekognition: eyeLeft is on the image's left
    assert lm["leftEyeLeft"][0] < lm["leftEyeRight"][0] < lm["rightEyeLeft"][0] < lm["rightEyeRight"][0]
    assert lm["mouthLeft"][0] < lm["mouthRight"][0]
    eye_y = (lm["eyeLeft"][1] + lm["eyeRight"][1]) / 2
    assert eye_y < lm["nose"][1] < lm["mouthLeft"][1]


@needs_data
def test_pose_frontal_and_roll_follows_rotation(engine):
    img = lfw_pixels("Al_Gore", 1)
    base = engine.analyze(img, embed=False)[0].pose
    assert abs(base.roll) < 10 and abs(base.yaw) < 20 and abs(base.pitch) < 20
    for angle in (20, -20):
        # PIL rotates counter-clockwise for positive angles: the image-right eye rises,
        # so Rekognition's roll goes negative.
        rot = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.BILINEAR, expand=True,
                                                     fillcolor=(128, 128, 128)))
        faces = engine.analyze(np.ascontiguousarray(rot), embed=False)
        assert faces, f"no face after rotating by {angle}"
        assert faces[0].pose.roll == pytest.approx(base.roll - angle, abs=5)


@needs_data
def test_mouth_model_error_on_dlib_testing_set():
    """Estimated mouth corners vs dlib's testing_with_face_landmarks.xml (48, 54)."""
    import xml.etree.ElementTree as ET

    import dlib

    xml = DATA / "groups" / "dlib_faces" / "testing_with_face_landmarks.xml"
    if not xml.is_file():
        pytest.skip(f"{xml} missing")
    m = load_models()
    errs = []
    for im in ET.parse(xml).getroot().iter("image"):
        img = decode_image((xml.parent / im.get("file")).read_bytes()).pixels
        for box in im.iter("box"):
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            pts = np.array([parts[i] for i in range(68)])
            left, top, w, h = (int(box.get(k)) for k in ("left", "top", "width", "height"))
            s = m.shape5(img, dlib.rectangle(left, top, left + w - 1, top + h - 1))
            s5 = np.array([(p.x, p.y) for p in s.parts()], dtype=float)
            est = geometry.estimate_mouth_corners(s5)
            iod = np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
            errs.extend(np.linalg.norm(est - pts[[48, 54]], axis=1) / iod)
    assert len(errs) == 50
    # measured 0.155 (docs/engine.md); the bound guards against a broken transform or swapped corners
    assert np.mean(errs) < 0.17


def test_quality_monotonic(engine, astronaut):
    from PIL import ImageFilter

    f = engine.analyze(astronaut, embed=False)[0]
    box = (f.detection.left, f.detection.top, f.detection.right, f.detection.bottom)
    q = f.quality
    assert 0 <= q.brightness <= 100 and 0 <= q.sharpness <= 100
    blurred = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(3)))
    assert geometry.sharpness(blurred, box) < q.sharpness - 10
    darker = (astronaut * 0.5).astype(np.uint8)
    assert geometry.brightness(darker, box) == pytest.approx(q.brightness / 2, abs=1.0)
    # a box entirely outside the image
    assert geometry.brightness(astronaut, (600, 600, 700, 700)) == 0.0


def test_pose_geometry_signs():
    canon = geometry.CANONICAL_SHAPE5 * 100 + 200
    roll, yaw, pitch = geometry.pose_from_landmarks(canon)
    assert abs(roll) < 1 and abs(yaw) < 1
    shifted = canon.copy()
    shifted[4, 0] += 20  # nose toward the image's right -> positive yaw (AWS samples)
    assert geometry.pose_from_landmarks(shifted)[1] > 10
    raised = canon.copy()
    raised[4, 1] -= 20  # nose toward the eyes -> chin up -> positive pitch
    assert geometry.pose_from_landmarks(raised)[2] > 10
    # mouth model reproduces the canonical mouth on the canonical shape
    assert np.allclose(geometry.estimate_mouth_corners(canon), geometry.CANONICAL_MOUTH * 100 + 200)


def test_onnx_engine_detector_is_blazeface_with_monotonic_confidence():
    from faceledger.vision.engine import BLAZEFACE_SCORE_THRESHOLD, blazeface_detector
    from faceledger.vision.tfjs_models import BlazeFaceDetector, blazeface_confidence

    assert isinstance(blazeface_detector().inner, BlazeFaceDetector)
    assert type(default_engine(engine="dlib").detector).__name__ == "HogFaceDetector"
    assert type(default_engine(1).detector).__name__ == "HogFaceDetector"  # explicit upsample: HOG
    t = BLAZEFACE_SCORE_THRESHOLD
    assert blazeface_confidence(t, t) == pytest.approx(50.0)
    xs = np.linspace(0.01, 0.999, 200)
    ys = [blazeface_confidence(x, t) for x in xs]
    assert all(b > a for a, b in zip(ys, ys[1:]))
    # the QualityFilter bars (docs/api.md): MEDIUM/AUTO 70 sits just above the threshold,
    # clear LFW faces (score ~0.9) are 98+
    assert 0.65 < min(x for x, y in zip(xs, ys) if y >= 70) < 0.70
    assert blazeface_confidence(0.9, t) > 97


def test_blazeface_finds_the_hog_face_with_the_same_landmarks(astronaut):
    import skimage.data

    from faceledger.vision.engine import blazeface_detector

    assert blazeface_detector().detect(np.ascontiguousarray(skimage.data.chelsea())) == []  # HOG's check
    """dlib's 5-point predictor on BlazeFace's box lands on the points it finds on HOG's box."""
    from faceledger.vision.engine import FaceEngine, blazeface_detector

    base = default_engine(engine="dlib")
    onnx = FaceEngine(blazeface_detector(), base.landmarks, base.embedder).analyze(astronaut, embed=False)
    hog = default_engine(engine="dlib").analyze(astronaut, embed=False)
    assert onnx and hog
    a, b = onnx[0], hog[0]
    assert a.detection.confidence > 90
    for k, (x, y) in b.landmarks.items():
        if k.startswith("mouth"):
            continue  # estimated from the others
        assert abs(a.landmarks[k][0] - x) <= 2 and abs(a.landmarks[k][1] - y) <= 2, k
