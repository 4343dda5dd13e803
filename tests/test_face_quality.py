"""vision.face_quality: each degradation that moves the false match rate more than 3x (docs/similarity.md,
"Validity range") is seen by its measure, on real LFW photos degraded inside the test; the sharp photos stay
inside the calibrated range. In-process (no server): the face box is LFW's fixed crop, or where the default engine
finds the face (the COVERED tests, which place the eye and mouth strips by its landmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data
from faceledger.evaluation.degradations import CLEAN, as_camera_would, clean, degrade
from faceledger.vision.engine import Detection, FaceAnalysis, Pose, Quality
from faceledger.vision.face_quality import RANGE, _flat, band, degradations, measure, pair_band
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
        # a covered face has a band of its own (so does a face so dark that its features vanish)
        assert band(m) == ("covered" if "COVERED" in degradations(m) else "degraded")
        assert kind != "occlude" or band(m) == "covered"


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
    # covered faces: bands of their own with a face inside the range or another covered one
    assert pair_band("covered", "covered") == "covered-both"
    assert pair_band("covered", "degraded") == pair_band("degraded", "covered") == "degraded-both"
    assert pair_band("covered", "calibrated") == pair_band("calibrated", "covered") == "covered-one"
    # turned faces (|yaw| >= POSE_YAW, inside the range otherwise): two of them have a table of their own; one
    # counts as frontal, with any other face
    assert pair_band("turned", "turned") == "turned-both"
    assert pair_band("turned", "calibrated") == pair_band("calibrated", "turned") == "calibrated"
    assert pair_band("turned", "degraded") == "degraded-one" and pair_band("covered", "turned") == "covered-one"


def test_a_turned_face_inside_the_range_is_turned_and_a_degraded_one_stays_degraded(photos):
    from faceledger.vision.face_quality import POSE_YAW

    m = measure(photos[0], BOX)
    assert band(m) == band(m, 0.0) == band(m, POSE_YAW - 0.5) == band(m, -(POSE_YAW - 0.5)) == "calibrated"
    assert band(m, POSE_YAW) == band(m, -35.0) == "turned"
    blurred = measure(degrade(photos[0], "blur", 5, _face(), np.random.default_rng(0)), BOX)
    assert band(blurred, 40.0) == band(blurred) == "degraded"


# ------------------------------------------------------------------ COVERED on clean photos (flat)

#: of the 8 photos, the one whose subject wears sunglasses (a real occluder: on the beauty-filtered photo the
#: lenses are featureless and the face reads COVERED, rightly; on the JPEG their reflections keep it inside)
SUNGLASSES = 6


@pytest.fixture(scope="module")
def located(photos):
    """The 8 photos with their faces as the service's default engine locates them (box and landmarks)."""
    from faceledger.vision import default_engine

    eng = default_engine()
    return eng, [(img, eng.analyze(img, embed=False, max_faces=1)[0], clean(img, "denoised nlm")) for img in photos]


def _flat_of(eng, img):
    f = eng.analyze(img, embed=False, max_faces=1)[0]
    d = f.detection
    return measure(img, (d.left, d.top, d.right, d.bottom), f.points)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLEAN)
def test_clean_smooth_photos_are_not_covered(located, name):
    """The kind of the studio-photo fault: denoised, beauty-filtered, upscaled or hard-compressed clean photos
    have flat cells of skin and hair (the whole-box measure read 0.2-0.46 on them and called most COVERED);
    nothing covers their eyes or mouth, so they are not COVERED."""
    eng, faces = located
    for k, (img, _, _) in enumerate(faces):
        m = _flat_of(eng, as_camera_would(clean(img, name)))
        if k != SUNGLASSES:
            assert "COVERED" not in degradations(m), (name, k, m)


def test_the_studio_reference_photos_are_inside_the_range():
    """The noise-free studio PNGs of the hamilton clip (Alex Lacamoire's read flat 0.21 over the whole box, and
    AUTO refused it): nothing covered, nothing else wrong."""
    from faceledger.vision import default_engine

    eng = default_engine()
    for path in sorted(shared_data("video", "hamilton_reference_faces").glob("*.png")):
        m = _flat_of(eng, decode_image(path.read_bytes()).pixels)
        assert m.flat < 0.1 and degradations(m) == [], (path.name, m)


@pytest.mark.slow
@pytest.mark.parametrize("kind,misses", [("occlude", 1), ("occlude noisy", 1), ("occlude hand", 2)])
@pytest.mark.parametrize("where", [0, 1])
@pytest.mark.parametrize("denoised", [False, True])
def test_covered_faces_are_covered_on_clean_and_noisy_photos(located, kind, misses, where, denoised):
    """A band across the eyes or the lower face is still COVERED, with the landmarks the engine finds on the
    covered face: uniform, with a camera's sensor noise on it, skin-coloured and shaded like a hand; on the LFW
    photo and on a denoised one. (A miss or two of the 8 faces are allowed: the detector places the landmarks
    of about 1 covered face in 12 off the band, and the hand's shading leaves a few cells of the mouth strip
    with features; bench/degradation.py checkset measures the rates: 90-98%.)"""
    eng, faces = located
    missed = []
    for k, (img, face, den) in enumerate(faces):
        base = den if denoised else img
        m = _flat_of(eng, as_camera_would(degrade(base, kind, where, face, np.random.default_rng(k))))
        if "COVERED" not in degradations(m):
            missed.append(m)
    assert len(missed) <= misses, missed


@pytest.mark.parametrize("kind", ["occlude", "occlude noisy"])
@pytest.mark.parametrize("move,with_box", [(0.8, True), (-0.45, False)])
def test_an_eye_band_the_landmarks_miss_is_covered(located, kind, move, with_box):
    """The kind of the eye-band fault (issue 10 point 5, faceledger-sface-v2's `band eyes` pairs): with the eyes
    covered, the detector may find only the face under the band and place its box lower, and the landmarks
    located on that box fall under the band with it; the eye strip then reads the cheeks and nose, and the face
    was scored as inside the range. Here the band is laid over the eyes of a real photo and the box and
    landmarks moved 0.8 eye distances down (as the detector moved them on about 1 covered face in 30), or the
    landmarks alone 0.45 up (as YuNet's own keypoints, faceledger-sface-v1's, sit on the band's upper edge on
    some covered faces): the landmarks' strips miss the band, the band scan from the box's top to 0.6 eye
    distances under the eye line finds it. The same box and landmarks on the uncovered photo: not covered."""
    _, faces = located
    for k, (img, face, _) in enumerate(faces):
        pts = np.asarray(face.points, dtype=np.float64)
        iod = float(np.hypot(*(pts[:2].mean(axis=0) - pts[2:4].mean(axis=0))))
        down, d = move * iod, face.detection
        box = (d.left, d.top + down, d.right, d.bottom + down) if with_box else (d.left, d.top, d.right, d.bottom)
        moved = pts + np.array([0.0, down])
        covered = as_camera_would(degrade(img, kind, 0, face, np.random.default_rng(k)))
        assert _flat(covered, moved) <= RANGE.max_flat, k  # the fault: the strips alone read it as uncovered
        m = measure(covered, box, moved)
        assert "COVERED" in degradations(m) and band(m) == "covered", (k, m)
        if k != SUNGLASSES:
            assert "COVERED" not in degradations(measure(img, box, moved)), k


def test_a_cap_shading_the_brow_is_not_a_band():
    """Clipped black or white is a sensor's saturation, not a band: lfw_dev's Candie Kung under a cap's black
    visor shade (a featureless, even run of rows across the whole face above the eyes, read 0.62 before
    CLIPPED) is inside the range."""
    from faceledger.vision import default_engine

    img = decode_image((shared_data("lfw_dev") / "Candie_Kung" / "Candie_Kung_0001.jpg").read_bytes()).pixels
    f = default_engine().analyze(img, embed=False, max_faces=1)[0]
    assert degradations(f.quality.measures) == [], f.quality.measures
