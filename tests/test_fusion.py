"""faceledger-fusion-v1 (vision/fusion.py) and faceres (vision/faceres.py) on real LFW photos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import shared_data
from faceledger.vision import decode_image, default_engine


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def faces():
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:3]
    eng = default_engine(face_model="faceledger-fusion-v1")
    out = []
    for p in people:
        for f in sorted(p.glob("*.jpg"))[:2]:
            img = decode_image(f.read_bytes()).pixels
            _, shapes = eng._locate(img, 1)
            out.append((p.name, img, shapes))
    return out


def test_fused_vector_is_the_documented_formula(faces):
    eng = default_engine(face_model="faceledger-fusion-v1")
    fusion = eng.embedder
    assert eng.model_version == "faceledger-fusion-v1" and fusion.weight == 2.0
    name, img, shapes = faces[0]
    v = fusion.embed(img, shapes)[0]
    assert v.shape == (1152,) and v.dtype == np.float32
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    # the dlib half: dlib's own vector of the 150 px chip, normalised
    chip = fusion.dlib.chips(img, shapes)
    d = fusion.dlib.embed_chips(chip)
    np.testing.assert_allclose(v[:128] * math.sqrt(3 / 2), unit(d[0]), atol=1e-5)
    # the faceres half: the authors' preprocessing (BGR, minus the ImageNet means), 224 px, padding 0.5
    fchip = fusion.faceres.chips(img, shapes)
    assert fchip.shape == (1, 224, 224, 3)
    sess = fusion.faceres._session()

    def faceres_raw(c):
        x = c[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
        return sess.run([fusion.faceres._output], {fusion.faceres._input: x[None]})[0][0]

    np.testing.assert_allclose(v[128:] * math.sqrt(3), unit(faceres_raw(fchip[0])), atol=1e-5)
    # the measured alternative (flip=True, not the model): each half averaged with its mirrored chip
    from faceledger.vision.fusion import FusionEmbedder

    flipped = FusionEmbedder(fusion.dlib, fusion.faceres, flip=True)
    assert flipped.name == "faceledger-fusion-v1-flip"
    w = flipped.embed(img, shapes)[0]
    d2 = fusion.dlib.embed_chips(np.concatenate([chip, chip[:, :, ::-1].copy()]))
    np.testing.assert_allclose(w[:128] * math.sqrt(3 / 2), unit(unit(d2[0]) + unit(d2[1])), atol=1e-5)
    np.testing.assert_allclose(w[128:] * math.sqrt(3),
                               unit(unit(faceres_raw(fchip[0])) + unit(faceres_raw(fchip[0][:, ::-1]))), atol=1e-5)


def test_same_person_is_closer_than_anyone_else(faces):
    eng = default_engine(face_model="faceledger-fusion-v1")
    V = np.stack([eng.embedder.embed(img, shapes)[0] for _, img, shapes in faces])
    names = [n for n, _, _ in faces]
    d = eng.distance(V, V)
    for i in range(len(V)):
        others = [j for j in range(len(V)) if j != i]
        nearest = min(others, key=lambda j: d[i, j])
        assert names[nearest] == names[i]
    # analyze_many batches the two networks' chips and gives the same vectors as analyze
    got = list(eng.analyze_many([img for _, img, _ in faces], max_faces=1, workers=2, batch_faces=3))
    np.testing.assert_allclose(np.stack([g[0].embedding for g in got]), V, atol=1e-5)
