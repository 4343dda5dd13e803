"""Face geometry from dlib's 5 landmarks: Rekognition landmark names, the
mouth-corner model, head pose, and image quality.  Pure numpy.

dlib 5-point order (anatomical, so it follows the face through in-plane rotation):

    0: subject's left eye, outer corner  -> Rekognition ``rightEyeRight``
    1: subject's left eye, inner corner  -> ``rightEyeLeft``
    2: subject's right eye, outer corner -> ``leftEyeLeft``
    3: subject's right eye, inner corner -> ``leftEyeRight``
    4: bottom of the nose (subnasale)    -> ``nose``

Rekognition names landmarks from the viewer's side: on an upright face ``eyeLeft``
has the smaller x (checked against AWS's published DetectFaces responses).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CANONICAL_SHAPE5",
    "CANONICAL_MOUTH",
    "NOSE_DEPTH",
    "FRONTAL_NOSE_DROP",
    "SHARPNESS_SCALE",
    "brightness",
    "estimate_mouth_corners",
    "fit_similarity",
    "landmark_dict",
    "pose_from_landmarks",
    "sharpness",
    "apply_similarity",
]

# --------------------------------------------------------------------------------------
# Canonical frame and the mouth-corner model.
#
# CANONICAL_SHAPE5 is the generalised-Procrustes mean of dlib's 5-point predictions on
# the faces of shared/data/groups/dlib_faces (bench/fit_mouth_model.py), each face also
# mirrored, normalised so the two eye centres (corner midpoints) sit at (-0.5, 0) and
# (0.5, 0) (x to the image's right, y down, unit = inter-ocular distance, IOD).
#
# CANONICAL_MOUTH is NOT fitted to data: the only mouth labels at hand were produced by
# dlib's 68-point model, whose training data forbids commercial use, so nothing derived
# from them ships. It comes from published adult facial proportions (Farkas' anthropometric
# norms, rounded): mouth width (cheilion to cheilion) ~52 mm against ~61 mm between the
# eye centres -> corners at x = +/-0.426 IOD; subnasale to mouth line ~21 mm -> 0.344 IOD
# below the canonical nose point. At run time the similarity CANONICAL_SHAPE5 -> the
# face's 5 points maps CANONICAL_MOUTH into the image. The mouth corners are therefore
# ESTIMATED from the eye/nose geometry, not detected: a smile or an open mouth is not
# seen. Their measured error is in docs/engine.md (bench/fit_mouth_model.py).
# --------------------------------------------------------------------------------------
CANONICAL_SHAPE5 = np.array(
    [
        [0.6926, -0.0044],  # 0 rightEyeRight
        [0.3074, 0.0044],  # 1 rightEyeLeft
        [-0.6926, -0.0044],  # 2 leftEyeLeft
        [-0.3074, 0.0044],  # 3 leftEyeRight
        [0.0000, 0.8000],  # 4 nose (subnasale)
    ]
)
CANONICAL_MOUTH = np.array([[-0.426, 0.800 + 0.344], [0.426, 0.800 + 0.344]])  # mouthLeft, mouthRight

#: Zero-pitch reference: the subnasale's drop below the eye midpoint, in inter-ocular
#: distances, on a face looking at the camera.  Median over 985 LFW images (every 8th
#: of lfw_dev sorted by path; press photos, mostly eye-level), largest HOG face at
#: upsample 1; the 18 VOC faces of the mouth model give 0.80.
FRONTAL_NOSE_DROP = 0.77

#: Depth of the subnasale in front of the eye-corner midpoints, in inter-ocular
#: distances (anthropometric estimate: ~28 mm against ~62 mm between eye centres).
NOSE_DEPTH = 0.45


# --------------------------------------------------------------------------------------
# Similarity transforms (rotation + uniform scale + translation, no reflection)
# --------------------------------------------------------------------------------------
def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity ``dst ~ a * src + b`` in complex form (Umeyama without
    reflection).  Returns ``(a, b)``; ``abs(a)`` is the scale, ``angle(a)`` the rotation."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    zs = s[:, 0] + 1j * s[:, 1]
    zd = d[:, 0] + 1j * d[:, 1]
    ms, md = zs.mean(), zd.mean()
    cs, cd = zs - ms, zd - md
    denom = float(np.sum(np.abs(cs) ** 2))
    if denom <= 0:
        raise ValueError("degenerate source points")
    a = complex(np.sum(np.conj(cs) * cd) / denom)
    b = complex(md - a * ms)
    return a, b


def apply_similarity(t: tuple[complex, complex], pts: np.ndarray) -> np.ndarray:
    a, b = t
    p = np.asarray(pts, dtype=np.float64)
    z = a * (p[:, 0] + 1j * p[:, 1]) + b
    return np.stack([z.real, z.imag], axis=1)


# --------------------------------------------------------------------------------------
# Landmarks
# --------------------------------------------------------------------------------------
def estimate_mouth_corners(shape5: np.ndarray) -> np.ndarray:
    """(2, 2) estimated (mouthLeft, mouthRight) in pixels from the 5 dlib points."""
    t = fit_similarity(CANONICAL_SHAPE5, shape5)
    return apply_similarity(t, CANONICAL_MOUTH)


def landmark_dict(shape5: np.ndarray) -> dict[str, tuple[float, float]]:
    """Rekognition landmark Type -> (x, y) pixels, from the 5 dlib points."""
    p = np.asarray(shape5, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got {p.shape}")
    mouth = estimate_mouth_corners(p)

    def xy(v: np.ndarray) -> tuple[float, float]:
        return (float(v[0]), float(v[1]))

    return {
        "eyeLeft": xy((p[2] + p[3]) / 2),
        "eyeRight": xy((p[0] + p[1]) / 2),
        "leftEyeLeft": xy(p[2]),
        "leftEyeRight": xy(p[3]),
        "rightEyeLeft": xy(p[1]),
        "rightEyeRight": xy(p[0]),
        "nose": xy(p[4]),
        "mouthLeft": xy(mouth[0]),
        "mouthRight": xy(mouth[1]),
    }


# --------------------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------------------
def pose_from_landmarks(shape5: np.ndarray) -> tuple[float, float, float]:
    """(roll, yaw, pitch) in degrees, a geometric estimate from 5 points.

    * roll: angle of the line from eyeLeft to eyeRight, ``atan2(dy, dx)`` in image
      coordinates (y down).  Positive when the face is turned clockwise as seen in the
      image (its eyeRight lower than its eyeLeft), matching AWS's sample responses.
    * yaw: after removing roll, the nose's horizontal offset from the eye midpoint
      (minus the canonical offset), in inter-ocular distances ``u``; with the nose
      ``NOSE_DEPTH`` IODs in front of the eyes, ``yaw = atan(u / NOSE_DEPTH)``.
      Positive when the nose moves toward the image's right (the face turns toward
      the viewer's right), as in AWS's sample responses.
    * pitch: the nose's vertical offset below the eye midpoint ``v`` (IOD units, the
      IOD corrected for yaw foreshortening); a point ``H`` below and ``D`` in front of the
      eyes projects to ``v = H cos(p) - D sin(p)``, solved for ``p``.  Positive when the
      face tilts up (chin up: the nose moves toward the eyes).
    All three are clipped to Rekognition's -180..180.  Expect errors of several degrees;
    beyond ~45 degrees of yaw HOG rarely finds the face anyway.
    """
    p = np.asarray(shape5, dtype=np.float64)
    eye_l = (p[2] + p[3]) / 2
    eye_r = (p[0] + p[1]) / 2
    nose = p[4]
    d = eye_r - eye_l
    iod = float(math.hypot(d[0], d[1]))
    if iod <= 1e-9:
        return 0.0, 0.0, 0.0
    roll = math.degrees(math.atan2(d[1], d[0]))
    c, s = d[0] / iod, d[1] / iod
    rel = nose - (eye_l + eye_r) / 2
    # rotate by -roll into the face's upright frame
    u = (c * rel[0] + s * rel[1]) / iod
    v = (-s * rel[0] + c * rel[1]) / iod
    canon_nose = CANONICAL_SHAPE5[4]
    u -= float(canon_nose[0])
    yaw_rad = math.atan2(u, NOSE_DEPTH)
    v *= math.cos(yaw_rad)  # the projected IOD shrinks by cos(yaw)
    h = FRONTAL_NOSE_DROP
    r = math.hypot(h, NOSE_DEPTH)
    alpha = math.atan2(NOSE_DEPTH, h)
    pitch_rad = math.acos(max(-1.0, min(1.0, v / r))) - alpha

    def clip(x: float) -> float:
        return float(max(-180.0, min(180.0, x)))

    return clip(roll), clip(math.degrees(yaw_rad)), clip(math.degrees(pitch_rad))


# --------------------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------------------
#: Sharpness = 100 * (1 - exp(-var(Laplacian) / SHARPNESS_SCALE)) on the face crop
#: resized to 128x128 grey (0-255).  See docs/engine.md for how it was chosen.
SHARPNESS_SCALE = 30.0
_SHARP_SIZE = 128


def _crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    h, w = image.shape[:2]
    left, top, right, bottom = box
    x0, y0 = max(0, int(math.floor(left))), max(0, int(math.floor(top)))
    x1, y1 = min(w, int(math.ceil(right))), min(h, int(math.ceil(bottom)))
    if x1 <= x0 or y1 <= y0:
        return None
    return image[y0:y1, x0:x1]


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def brightness(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean luminance (ITU-R BT.601) of the face box clipped to the image, 0-100."""
    crop = _crop(image, box)
    if crop is None:
        return 0.0
    return float(np.mean(_luma(crop.astype(np.float32))) / 255.0 * 100.0)


def laplacian_variance(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the 4-neighbour Laplacian of the face crop, resized to 128x128 grey."""
    from PIL import Image

    crop = _crop(image, box)
    if crop is None or min(crop.shape[:2]) < 2:
        return 0.0
    grey = Image.fromarray(np.ascontiguousarray(crop)).convert("L")
    grey = grey.resize((_SHARP_SIZE, _SHARP_SIZE), Image.BILINEAR)
    g = np.asarray(grey, dtype=np.float64)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def sharpness(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """0-100, monotonic in the Laplacian variance: ``100 * (1 - exp(-var / SCALE))``."""
    var = laplacian_variance(image, box)
    return float(100.0 * (1.0 - math.exp(-var / SHARPNESS_SCALE)))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union: ``a`` (n, 4) and ``b`` (m, 4) boxes as x0 y0 x1 y1 (pixels) -> (n, m)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
