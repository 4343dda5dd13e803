"""faceledger-sface-v1 and -v2: SFace 2021dec (vision/sface.py) on YuNet's box, aligned on YuNet's five points
(v1) or dlib's 5-point model's (v2), on real LFW photos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data


def _people(n: int, per: int = 2):
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= per)[:n]
    return [sorted(p.glob("*.jpg"))[:per] for p in people]


def _pixels(path):
    from faceledger.vision import decode_image

    return decode_image(path.read_bytes()).pixels


def test_default_engine_is_sface_v2_on_yunet():
    from faceledger.vision import default_engine
    from faceledger.vision.engine import DEFAULT_FACE_MODEL, default_detector, landmark_source

    eng = default_engine()
    assert DEFAULT_FACE_MODEL == "faceledger-sface-v2" == eng.model_version
    assert eng.dim == 128 and default_detector() == "yunet" and landmark_source(DEFAULT_FACE_MODEL) == "dlib"
    assert default_engine(face_model="faceledger-sface-v2", detector="yunet") is eng
    assert "yunet" in eng.detector.name
    # the previous default keeps its pipeline: YuNet's own points
    v1 = default_engine(face_model="faceledger-sface-v1")
    assert v1 is not eng and v1.detector.name == eng.detector.name and landmark_source(v1.model_version) == "detector"
    # the older models keep the pipeline they were measured and calibrated with
    old = default_engine(face_model="faceledger-fusion-v1")
    assert old.dim == 1152 and "blazeface" in old.detector.name


@pytest.mark.parametrize("model", ["faceledger-sface-v2", "faceledger-sface-v1"])
def test_sface_vectors_tell_people_apart(model):
    from faceledger.vision import default_engine

    eng = default_engine(face_model=model)
    people = _people(4)
    vecs = []
    for imgs in people:
        for path in imgs:
            faces = eng.analyze(_pixels(path), max_faces=1)
            assert len(faces) == 1, path
            v = faces[0].embedding
            assert v.shape == (128,) and v.dtype == np.float32
            assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
            vecs.append(v)
    V = np.array(vecs).reshape(len(people), 2, 128)
    same = [float(V[i, 0] @ V[i, 1]) for i in range(len(people))]
    diff = [float(V[i, 0] @ V[j, 1]) for i in range(len(people)) for j in range(len(people)) if i != j]
    assert min(same) > max(diff), (same, diff)
    # OpenCV's published cosine threshold for SFace is 0.363: every pair on its side
    assert min(same) > 0.363 > max(diff)


def test_batched_and_single_vectors_agree():
    from faceledger.vision import default_engine

    eng = default_engine()
    paths = [p for imgs in _people(3) for p in imgs]
    single = [eng.analyze(_pixels(p), max_faces=1)[0].embedding for p in paths]
    many = list(eng.analyze_many(paths, load=_pixels, max_faces=1, workers=2))
    for a, faces in zip(single, many):
        assert np.allclose(a, faces[0].embedding, atol=1e-5)


def test_rewritten_prelu_gives_the_networks_own_values(tmp_path):
    """The runnable graph's PRelu rewrite (sface._prelu_as_blocked_ops) is a speed change, not a new model:
    on real aligned faces it gives the values of the graph with its PRelu nodes kept, to float rounding."""
    import onnx
    import onnxruntime as ort

    from faceledger.vision import default_engine, pypi
    from faceledger.vision.sface import SFACE_WHEEL, _rewrite, sface_onnx_path

    reference = tmp_path / "prelu.onnx"
    onnx.save(_rewrite(pypi.wheel_file(*SFACE_WHEEL), rewrite_prelu=False), str(reference))
    ops = {n.op_type for n in onnx.load(str(sface_onnx_path())).graph.node}
    assert "PRelu" not in ops and "PRelu" in {n.op_type for n in onnx.load(str(reference)).graph.node}
    eng = default_engine()
    chips = []
    for path in [p for imgs in _people(3) for p in imgs]:
        face = eng.analyze(_pixels(path), max_faces=1)[0]
        chips.append(eng.embedder.chips(_pixels(path), [face.points])[0])
    x = np.ascontiguousarray(np.array(chips).transpose(0, 3, 1, 2), dtype=np.float32)
    raw = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
           for f in (reference, sface_onnx_path())]
    assert np.abs(raw[0] - raw[1]).max() < 1e-5 * np.abs(raw[0]).max()
    unit = [r / np.linalg.norm(r, axis=1, keepdims=True) for r in raw]
    assert (unit[0] * unit[1]).sum(axis=1).min() > 1 - 1e-6


def test_chips_follow_the_template():
    """A face whose points already sit on the template is copied pixel for pixel (no half-pixel shift); the
    same face shifted and scaled in a larger image gives nearly the same chip."""
    from faceledger.vision.sface import _dlib_template, arcface_chips

    img = _pixels(_people(1, 1)[0][0])
    crop = np.ascontiguousarray(img[60:172, 70:182])
    tpl = _dlib_template()
    chip = arcface_chips(crop, [tpl])[0]
    assert np.abs(chip.astype(int) - crop.astype(int)).max() <= 1
    # the crop enlarged 2x and moved: the chip is the crop again (up to resampling)
    from PIL import Image

    big = np.zeros((400, 400, 3), np.uint8)
    big[50:274, 100:324] = np.asarray(Image.fromarray(crop).resize((224, 224), Image.BILINEAR))
    chip2 = arcface_chips(big, [tpl * 2 + [100 + 0.5, 50 + 0.5]])[0]
    assert np.abs(chip2.astype(int) - crop.astype(int)).mean() < 6
    with pytest.raises(ValueError):
        arcface_chips(img[..., 0], [tpl])


@pytest.mark.parametrize("model", ["faceledger-sface-v2", "faceledger-sface-v1"])
def test_rotated_photo_gives_the_same_vector(model):
    """The points follow the face through a quarter turn (vision/rotation.py: v1's YuNet points mapped back,
    v2's dlib points located on the turned pixels): the vector stays close."""
    from faceledger.vision import default_engine

    eng = default_engine(face_model=model)
    img = _pixels(_people(1, 1)[0][0])
    up = eng.analyze(img, max_faces=1)[0].embedding
    turned = eng.analyze(np.ascontiguousarray(np.rot90(img)), max_faces=1)
    assert turned and float(up @ turned[0].embedding) > 0.8


def test_v2_aligns_on_dlibs_points_and_v1_on_yunets():
    """The two SFace models run one detector and one network; only the points the face is aligned on differ:
    v2's are dlib's 5-point model's on YuNet's box, v1's are YuNet's own (keypoints_to_shape5)."""
    from faceledger.vision import default_engine
    from faceledger.vision.dlib_models import Shape5Landmarks
    from faceledger.vision.yunet import keypoints_to_shape5

    v1 = default_engine(face_model="faceledger-sface-v1")
    v2 = default_engine(face_model="faceledger-sface-v2")
    assert v2.model_version == "faceledger-sface-v2" and v2.dim == 128 and v2 is not v1
    assert v2.detector.name == v1.detector.name and "yunet" in v2.detector.name
    assert v1.embedder._session() is v2.embedder._session()  # one onnxruntime session for both
    img = _pixels(_people(1, 1)[0][0])
    f1, f2 = v1.analyze(img, max_faces=1)[0], v2.analyze(img, max_faces=1)[0]
    assert f1.detection == f2.detection
    assert np.allclose(f2.points, Shape5Landmarks().locate(img, f2.detection))
    assert np.allclose(f1.points, keypoints_to_shape5(np.asarray(f1.detection.keypoints)))
    assert not np.allclose(f1.points, f2.points, atol=0.5)
    # the same network on the two alignments: close vectors of the same face, but not the same vectors
    assert 0.8 < float(f1.embedding @ f2.embedding) < 0.9999


def test_serve_offers_every_face_model():
    """`faceledger serve --face-model` lists the engine's FACE_MODELS (written out there to keep numpy out of the
    CLI's import)."""
    from faceledger.cli.serve import serve
    from faceledger.vision.engine import FACE_MODELS

    option = next(p for p in serve.params if p.name == "face_model")
    assert tuple(option.type.choices) == FACE_MODELS
