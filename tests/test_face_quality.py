"""vision.face_quality: each degradation that moves the false match rate more than 3x (docs/similarity.md,
"Validity range") is seen by its measure, on real LFW photos degraded inside the test; the sharp photos stay
inside the calibrated range. In-process (no server, no face model): the face box is LFW's fixed crop."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data
from faceledger.evaluation.degradations import degrade
from faceledger.vision.engine import Detection, FaceAnalysis, Pose, Quality
from faceledger.vision.face_quality import RANGE, band, degradations, measure, pair_band
from faceledger.vision.image import decode_image

# lfw_dev's deep-funneled 250x250 crops put the face at about this box
BOX = (72.0, 70.0, 178.0, 190.0)


@pytest.fixture(scope="module")
def photos():
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::400][:8]
    return [decode_image(sorted(p.glob("*.jpg"))[0].read_bytes()).pixels for p in people]


def _face(box=BOX):
    det = Detection(box[0], box[1], box[2], box[3], 1.0, 99.0)
    lm = {"eyeLeft": (102.0, 115.0), "eyeRight": (148.0, 115.0), "nose": (125.0, 142.0)}
    return FaceAnalysis(det, lm, Pose(0.0, 0.0, 0.0), Quality(50.0, 50.0), None)


def _measured(img, kind, p, seed=0):
    return measure(degrade(img, kind, p, _face(), np.random.default_rng(seed)), BOX)


def test_sharp_lfw_faces_are_inside_the_range(photos):
    for img in photos:
        m = measure(img, BOX)
        assert degradations(m) == [], m
        assert band(m) == "calibrated"


@pytest.mark.parametrize("kind,p,named", [
    ("blur", 5, "BLURRED"),
    ("noise", 25, "NOISY"),
    ("dark", 0.15, "LOW_CONTRAST"),
    ("occlude", 1, "COVERED"),
])
def test_each_degradation_is_seen(photos, kind, p, named):
    for k, img in enumerate(photos):
        m = _measured(img, kind, p, seed=k)
        assert named in degradations(m), (kind, p, m)
        assert band(m) == "degraded"


@pytest.mark.parametrize("kind,p", [("jpeg", 30), ("jpeg", 20), ("noise", 4)])
def test_degradations_that_keep_fmr_stay_inside(photos, kind, p):
    """JPEG quality 20-30 moved FMR by 1.0x, so it stays inside the range (docs/similarity.md); so do mild
    noise."""
    for k, img in enumerate(photos):
        assert degradations(_measured(img, kind, p, seed=k)) == []


def test_detail_falls_with_blur_and_noise_is_estimated(photos):
    img = photos[0]
    details = [_measured(img, "blur", r).detail for r in (0.5, 1, 2, 3, 5)]
    assert details == sorted(details, reverse=True)
    flat = np.full((250, 250, 3), 128, np.uint8)
    for sigma in (4, 8, 16):
        noisy = degrade(flat, "noise", sigma, _face(), np.random.default_rng(sigma))
        # Immerkaer's estimate, in luma: independent noise sigma per channel is sigma * |(.299, .587, .114)|
        assert measure(noisy, BOX).noise == pytest.approx(sigma * 0.6680, rel=0.05)


def test_measures_cost_the_box_not_the_image():
    big = np.zeros((4000, 4000, 3), np.uint8)
    m = measure(big, (10.0, 10.0, 60.0, 60.0))
    assert m.face_px == 50.0 and m.contrast == 0.0
    # a box outside the image or too small to measure: no detail, covered
    m = measure(big, (5000.0, 5000.0, 5100.0, 5100.0))
    assert m.detail == 0.0 and m.flat == 1.0


def test_pair_bands():
    assert pair_band("calibrated", "calibrated") == "calibrated"
    assert pair_band("degraded", "calibrated") == pair_band("calibrated", "degraded") == "degraded-one"
    assert pair_band("degraded", "degraded") == "degraded-both"
    assert band(None) == "calibrated"
