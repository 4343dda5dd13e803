"""Tests for faceledger.vision.similarity (the FMR-defined Similarity scale)."""
from __future__ import annotations

import itertools
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    from faceledger.vision.similarity import SimilarityScale, fmr_from_similarity, similarity_from_fmr
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))
    from faceledger.vision.similarity import SimilarityScale, fmr_from_similarity, similarity_from_fmr

LFW = Path(os.environ.get("FACELEDGER_TEST_DATA", ROOT.parent / "shared" / "data")) / "lfw_dev"

THRESHOLDS = [1, 10, 30, 59.9, 60, 60.1, 70, 80, 85, 90, 95, 99, 99.9, 100]
NOMINAL = {60: 1e-2, 70: 1e-3, 80: 1e-4, 90: 1e-5, 95: 10 ** -5.5, 99: 10 ** -5.9, 99.5: 10 ** -7.45, 100: 1e-9}


@pytest.fixture(scope="module")
def scale() -> SimilarityScale:
    return SimilarityScale.load()


# ----------------------------------------------------------------------------- the definition

@pytest.mark.parametrize("sim,fmr", sorted(NOMINAL.items()))
def test_fmr_of_similarity_is_the_definition(scale, sim, fmr):
    assert scale.fmr(sim) == pytest.approx(fmr, rel=1e-12)
    assert similarity_from_fmr(fmr) == pytest.approx(sim, abs=1e-9)


def test_definition_ends_and_linear_branch():
    assert fmr_from_similarity(0) == 1.0
    assert fmr_from_similarity(100) == pytest.approx(1e-9)
    assert similarity_from_fmr(1.0) == 0.0
    assert similarity_from_fmr(1e-12) == 100.0  # clipped
    # above 99 one Similarity point spans the 3.1 decades from 10^-5.9 to 10^-9, continuously
    assert similarity_from_fmr(10 ** -5.9 * (1 - 1e-9)) == pytest.approx(99.0, abs=1e-6)
    assert similarity_from_fmr(1e-6) == pytest.approx(99 + 0.1 / 3.1)
    assert similarity_from_fmr(4e-8) == pytest.approx(99.4832, abs=1e-4)
    assert similarity_from_fmr(0.0) == 100.0
    assert similarity_from_fmr(0.5) == pytest.approx(60 * 0.5 / 0.99)
    # continuous at the knee
    assert similarity_from_fmr(1e-2 * (1 + 1e-9)) == pytest.approx(60.0, abs=1e-6)
    assert similarity_from_fmr(1e-2 * (1 - 1e-9)) == pytest.approx(60.0, abs=1e-6)
    for s in np.linspace(0, 100, 201):
        assert similarity_from_fmr(fmr_from_similarity(s)) == pytest.approx(s, abs=1e-9)
    with pytest.raises(ValueError):
        fmr_from_similarity(100.5)
    with pytest.raises(ValueError):
        fmr_from_similarity(-1)


# ----------------------------------------------------------------------------- the packaged table

def test_load_is_cached_and_well_formed(scale):
    assert SimilarityScale.load("dlib-resnet-v1") is scale
    assert scale.model == "dlib-resnet-v1"
    assert scale.meta["metric"] == "euclidean"
    assert scale.meta["impostor_pairs"] > 1_000_000
    with pytest.raises(ValueError):
        SimilarityScale.load("no-such-model")


def test_monotonic_over_distance_grid(scale):
    d = np.linspace(0.0, 2.0, 20001)
    s = scale.similarity(d)
    assert s.shape == d.shape
    assert np.all(np.diff(s) <= 1e-12)
    assert s.min() >= 0.0 and s.max() <= 100.0
    # smooth: no jumps larger than what the steepest table segment allows on this grid
    assert np.abs(np.diff(s)).max() < 0.5


def test_ends(scale):
    assert scale.similarity(0.0) == 100.0
    assert scale.similarity(2.0) == 0.0
    assert scale.similarity(5.0) == 0.0
    assert isinstance(scale.similarity(0.3), float)
    assert scale.max_distance(0) == math.inf
    assert scale.similarity(np.array([[0.0, 2.0]])).shape == (1, 2)


@pytest.mark.parametrize("t", THRESHOLDS)
def test_max_distance_inverts_similarity(scale, t):
    d = scale.max_distance(t)
    assert 0.0 < d < 2.0
    assert scale.similarity(d) == pytest.approx(t, abs=1e-6)
    assert scale.similarity(d + 1e-4) < t
    assert scale.similarity(d - 1e-4) >= t - 1e-9


def test_max_distance_is_monotonic_and_rises_to_100_smoothly(scale):
    ds = [scale.max_distance(t) for t in THRESHOLDS]
    assert all(a > b for a, b in zip(ds, ds[1:]))
    # below the smallest observed impostor distance the scale keeps rising (extrapolated tail) to FMR 1e-9,
    # it does not jump: 99 and 100 are reached at distinct distances, 3.1 decades of FMR apart
    assert 0.0 < scale.max_distance(99) - scale.max_distance(100) < 0.2
    assert scale.log10_fmr(scale.max_distance(100)) == pytest.approx(-9.0, abs=1e-6)
    # dlib's customary 0.6 is far more permissive than 80 on this scale
    assert scale.max_distance(80) < 0.6
    assert scale.similarity(0.6) < 70  # FMR above 1e-3


def test_synthetic_table():
    sc = SimilarityScale("toy", [0.0, 0.1, 0.5, 1.0], [-9.0, -7.0, -2.0, 0.0])
    assert sc.similarity(0.0) == 100.0
    assert sc.similarity(0.1) == pytest.approx(99 + 1.1 / 3.1)
    assert sc.similarity(0.5) == pytest.approx(60.0)
    assert sc.similarity(0.3) == pytest.approx(40 + 45)  # log10 FMR = -4.5
    assert sc.max_distance(80) == pytest.approx(0.1 + 0.4 * 3 / 5)
    assert sc.similarity(1.0) == 0.0
    with pytest.raises(ValueError):
        SimilarityScale("bad", [0.0, 0.1, 0.5, 0.4], [-9.0, -7.0, -2.0, 0.0])
    with pytest.raises(ValueError, match="Similarity 100"):  # a table must reach FMR 1e-9
        SimilarityScale("short", [0.1, 0.5, 1.0], [-7.0, -2.0, 0.0])
    with pytest.raises(ValueError):
        SimilarityScale("bad", [0.1, 0.5], [-5.0, 0.0])  # does not reach Similarity 100


# ----------------------------------------------------------------------------- real faces

def _embedder():
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    from PIL import Image, ImageOps

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def embed(path):
        with Image.open(path) as im:
            img = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)
        dets, _, _ = det.run(img, 1, 0.0)
        if len(dets) == 0:
            dets, _, _ = det.run(img, 2, 0.0)
            if len(dets) == 0:
                return None
        box = max(dets, key=lambda r: r.width() * r.height())
        return np.asarray(rec.compute_face_descriptor(img, sp(img, box)), dtype=np.float64)

    return embed


def test_lfw_dev_same_person_mostly_above_80_strangers_all_below(scale):
    if not LFW.is_dir():
        pytest.skip(f"LFW test images not found at {LFW} (../shared/data/lfw_dev); skipping the real-face check")
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)
    people = people[:: max(1, len(people) // 10)][:10]  # 10 people spread over the alphabet, 4 images each
    embed = _embedder()
    vecs, who = [], []
    for p in people:
        for f in sorted(p.glob("*.jpg"))[:4]:
            v = embed(f)
            if v is not None:
                vecs.append(v)
                who.append(p.name)
    assert len(vecs) >= 36
    same, diff = [], []
    for i, j in itertools.combinations(range(len(vecs)), 2):
        s = scale.similarity(float(np.linalg.norm(vecs[i] - vecs[j])))
        (same if who[i] == who[j] else diff).append(s)
    same, diff = np.array(same), np.array(diff)
    assert (same >= 80).mean() >= 0.6, f"same-person pairs >= 80: {(same >= 80).mean():.2f}"
    assert (diff < 80).all(), f"different-person pairs >= 80: {np.sort(diff)[-5:]}"


@pytest.mark.parametrize("model", ["faceledger-sface-v2", "faceledger-sface-v1", "faceledger-fusion-v1", "dlib-resnet-v1"])
def test_every_face_model_has_a_table(model):
    from faceledger.vision.engine import FACE_MODELS

    assert model in FACE_MODELS
    sc = SimilarityScale.load(model)
    assert sc.model == model and sc.meta["impostor_pairs"] > 1_000_000
    ds = [sc.max_distance(t) for t in (60, 80, 90, 99, 99.5, 100)]
    assert all(a > b > 0 for a, b in zip(ds, ds[1:]))
