"""Image-quality measures of one face, for deciding whether its Similarity can be trusted.

The Similarity scale (vision/similarity.py) is calibrated on LFW press photos: faces of about 90-120 px,
in focus, exposed well, mildly JPEG-compressed. Cameras also produce blurred, tiny, heavily compressed,
noisy, dark and partly covered faces, and on those the same distance stands for a much larger false match
rate (docs/similarity.md, "Validity range"; bench/degradation.py measures it). These measures say how far a
face is from the calibrated range; :func:`degradations` turns them into the list of ways it is outside it.

All measures are on the face box of the RGB image as given (its own pixel grid), in luma (BT.601, 0-255):

* ``face_px``: the shorter side of the face box, pixels.
* ``detail``: how much fine detail survives, scale-free: the standard deviation of the crop minus its
  Gaussian-smoothed self (sigma 1 px) divided by the standard deviation of the crop, with the crop first
  resampled to ``DETAIL_SIZE`` px (so a 250-px face and a 90-px face are judged at the same scale; a face
  smaller than that is upsampled and reads as blurred, which it is). Contrast-free, so a dark but sharp
  face keeps its value. About 0.13-0.30 on sharp LFW faces, under 0.06 after a Gaussian blur of radius 3
  on a 110-px face.
* ``noise``: Immerkaer's estimate of additive white noise sigma (J. Immerkaer, "Fast noise variance
  estimation", CVIU 64(2), 1996), in grey levels of luma, on the crop at its own resolution (noise of
  sigma s independent in each of R, G, B reads as 0.668 s).
* ``blockiness``: JPEG's 8x8 block edges: the mean absolute step across the image's 8-pixel grid lines
  inside the face box divided by the mean step between other neighbouring pixels (1.0: no grid).
* ``contrast``: the standard deviation of luma in the face box, grey levels.
* ``flat``: how much of the face's features is covered: the share of *featureless* cells in the eye strip,
  or 2/3 of that share in the mouth strip (MOUTH_WEIGHT), whichever is larger (0: none). The strips are
  placed by the five landmarks in the face's own frame (turned so that the eyes are level, at the image's
  resolution, nearest pixels): the eye strip from 0.45 eye distances above the eye line to 0.1 below, 0.5
  beyond each eye; the mouth strip from 0.15 to 0.85 eye distances below the nose point, 0.1 beyond each
  eye. A cell (1/8 of the eye distance, at least 3 px) is featureless when, after a 3x3 mean (which takes
  white sensor noise down 3x), its standard deviation is under 1.5 grey levels. An uncovered face has eyes,
  brows, nostrils and lips there whatever its skin looks like (a noise-free studio PNG, a denoised or
  beauty-filtered phone photo, an upscaled one); a band, a hand or a plain mask across them leaves them
  featureless. Cells outside the image are not counted. Cheeks, forehead, hair, a plain background or
  clothing inside the box never count in the strips (the measure used until 2026-11-30 counted flat cells over
  the whole box, and so refused clean photos as COVERED).
  With the face box, ``flat`` is also at least the **band scan**'s value, which does not need the landmarks to
  land on a band (with the eyes covered, the detector may find only the face under the band and put its box, and
  the landmarks located on it, below it: the strips then read cheeks and nose, about 1 eye-banded face in 30 for
  faceledger-sface-v2). In the same level frame and cells, rows across the eye strip's width, from the box's top
  (less 0.15 eye distances; at most BAND_REACH above the eye line) down to BAND_BOTTOM (0.6 eye distances below
  the eye line): a row is covered when 70% of its cells are featureless (BAND_ROW_SHARE; cells clipped to black
  or white do not count: CLIPPED), and a run of covered rows is a band when its featureless cells are of one
  flat colour (their means' standard deviation under BAND_SD, 2 grey levels: a smooth forehead's shading reads
  3.3 or more). The tallest band over BAND_FULL (0.6 eye distances), capped at 1: COVERED from a band 0.3 eye
  distances tall.

Pure numpy (and Pillow for resampling); imports nothing else from faceledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BANDS", "CALIBRATED", "COVERED", "DEGRADATIONS", "DEGRADED", "DETAIL_SIZE", "FACE_BANDS", "FALLBACK",
           "MEAN_POINTS", "RANGE", "QualityMeasures", "ValidityRange", "band", "degradations", "measure", "pair_band"]

#: the crop size (px, square) at which ``detail`` is measured
DETAIL_SIZE = 64


@dataclass(frozen=True)
class QualityMeasures:
    face_px: float
    detail: float
    noise: float
    blockiness: float
    contrast: float
    flat: float
    brightness: float  # mean luma of the box, 0-100 (as Quality.Brightness)

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def _box_slice(shape, box) -> tuple[int, int, int, int] | None:
    h, w = shape[:2]
    left, top, right, bottom = box
    x0, y0 = max(0, int(math.floor(left))), max(0, int(math.floor(top)))
    x1, y1 = min(w, int(math.ceil(right))), min(h, int(math.ceil(bottom)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return x0, y0, x1, y1


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _gauss1(g: np.ndarray) -> np.ndarray:
    """Separable Gaussian, sigma 1 px, edges replicated."""
    k = np.exp(-0.5 * np.arange(-3, 4, dtype=np.float32) ** 2)
    k /= k.sum()
    p = np.pad(g, 3, mode="edge")
    t = sum(k[i] * p[:, i:i + g.shape[1]] for i in range(7))
    return sum(k[i] * t[i:i + g.shape[0], :] for i in range(7))


def _detail(grey: np.ndarray) -> float:
    from PIL import Image

    img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    g = np.asarray(img.resize((DETAIL_SIZE, DETAIL_SIZE), Image.BICUBIC if min(grey.shape) < DETAIL_SIZE
                              else Image.BOX), dtype=np.float32)
    sd = float(g.std())
    if sd < 1e-3:
        return 0.0
    return float((g - _gauss1(g))[3:-3, 3:-3].std() / sd)


def _noise(grey: np.ndarray) -> float:
    """Immerkaer 1996: sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|."""
    if min(grey.shape) < 3:
        return 0.0
    g = grey.astype(np.float64)
    conv = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
            - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
            + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    h, w = g.shape
    return float(math.sqrt(math.pi / 2.0) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def _blockiness(luma: np.ndarray, x0: int, y0: int) -> float:
    """Mean |step| across the image's 8-px grid lines over the mean |step| elsewhere; ``luma`` is the face
    box, whose top-left pixel is (x0, y0) of the image."""
    ratios = []
    for axis, a0 in ((1, x0), (0, y0)):
        d = np.abs(np.diff(luma, axis=axis))  # step between index i and i+1 (image coordinate a0 + i)
        if d.shape[axis] < 16:
            continue
        on = ((a0 + np.arange(d.shape[axis])) % 8) == 7
        m = d.mean(axis=1 - axis)
        ratios.append(float(m[on].mean() / max(float(m[~on].mean()), 0.5)))
    return float(np.mean(ratios)) if ratios else 1.0


#: Where the five landmarks (dlib's order: right eye outer, right eye inner, left eye outer, left eye inner,
#: nose) lie in a face box on average (fractions of its width and height; YuNet's boxes of lfw_dev faces):
#: :func:`measure` places ``flat``'s strips by them when it is given no landmarks.
MEAN_POINTS = np.array([[0.814, 0.369], [0.640, 0.373], [0.188, 0.371], [0.362, 0.374], [0.502, 0.644]])
#: A cell of ``flat``'s strips is featureless under this standard deviation (grey levels of luma, after a 3x3
#: mean).
FEATURELESS_SD = 1.5
#: The mouth strip's share counts at this weight: it holds more bare skin than the eye strip (a heavily
#: smoothed clean face reads up to 0.73 there, up to 0.47 in the eye strip: bench/degradation.py checkset), so
#: at RANGE.max_flat 0.5 the eye strip must be half featureless and the mouth strip three quarters.
MOUTH_WEIGHT = 2.0 / 3.0


def _mean3(g: np.ndarray) -> np.ndarray:
    p = np.pad(g, 1, mode="edge")
    return sum(p[i:i + g.shape[0], j:j + g.shape[1]] for i in range(3) for j in range(3)) / 9.0


#: ``flat``'s band scan: a row of cells across the eye strip's width is covered when at least this share of its
#: cells (those inside the image, at least half of the row) is featureless.
BAND_ROW_SHARE = 0.7
#: A run of covered rows is an occluder's band when its featureless cells are of one flat colour: the standard
#: deviation of their means under this (grey levels of luma). A plain, noisy or evenly lit band reads 0-0.5; the
#: smooth foreheads of denoised and beauty-filtered clean photos read 3.3 or more (their shading, hair at the
#: sides; bench/degradation.py checkset), and so never count, however featureless.
BAND_SD = 2.0
#: A band this tall (eye distances) reads 1.0 (the eye strip's height, 0.55, rounded up); COVERED (flat over
#: RANGE.max_flat 0.5) from a band over 0.3 eye distances tall.
BAND_FULL = 0.6
#: The scan reaches up to the face box's top less 0.15 eye distances, but no higher than this above the eye line
#: (eye distances): a box placed below a band (the detector found only the face under it) still has the band.
BAND_REACH = 2.5
#: ...and down to this below the eye line (eye distances): landmarks placed above a band (the detector's own
#: keypoints, faceledger-sface-v1, put the eye line at the band's upper edge on some covered faces) still have
#: it below them.
BAND_BOTTOM = 0.6
#: A cell whose mean is within this of black or white (grey levels) is clipped, not featureless, for the band
#: scan: a sensor's saturation (the black shade under a cap's visor, a white cap, dark hair) is as flat and even
#: as a band, and as common in clean photos (2 of 1200 sharp lfw_dev faces read COVERED without this).
CLIPPED = 8.0


def _level(luma, a, c: float, s: float, x0: float, y0: float, w: int, h: int):
    """The luma image (PIL "L") in the face's level frame: pixel (u, v) of the (h, w) result is the image's
    pixel nearest a + R (u + x0, v + y0), R the rotation by (c, s). Returns the 3x3 mean of it and where that
    mean lies wholly inside the image (so the result's own border never counts)."""
    from PIL import Image

    m = (c, -s, a[0] + c * x0 - s * y0, s, c, a[1] + s * x0 + c * y0)
    g = _mean3(np.asarray(luma.transform((w, h), Image.AFFINE, m, resample=Image.NEAREST, fillcolor=0),
                          dtype=np.float32))
    inside = np.asarray(Image.new("L", luma.size, 255).transform((w, h), Image.AFFINE, m,
                                                                 resample=Image.NEAREST, fillcolor=0)) > 0
    inside = np.pad(inside, 1, mode="constant")  # a pixel counts when its whole 3x3 mean is in the image
    inside = np.logical_and.reduce([inside[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    return g, inside


def _cells(arr: np.ndarray, cx0: int, cy0: int, nx: int, ny: int, k: int) -> np.ndarray:
    """The (ny, nx) cells of k x k pixels of ``arr`` from (cx0, cy0), as (ny, nx, k * k)."""
    return arr[cy0:cy0 + ny * k, cx0:cx0 + nx * k].reshape(ny, k, nx, k).transpose(0, 2, 1, 3).reshape(ny, nx, k * k)


def _band(luma, a, c: float, s: float, iod: float, k: int, top: float) -> float:
    """``flat``'s band scan (module docstring): rows of k-px cells across the eye strip's width (0.5 eye
    distances beyond each eye) from ``top`` (eye distances above the eye line, negative) to BAND_BOTTOM
    below it; the tallest run of covered rows (BAND_ROW_SHARE) of one flat colour (BAND_SD), over
    BAND_FULL eye distances, capped at 1."""
    x0, y0 = -0.5 * iod - 1.0, top * iod - 1.0  # a pixel's margin: the level frame's own border never counts
    nx, ny = int(2.0 * iod) // k, int((BAND_BOTTOM - top) * iod) // k
    if nx < 1 or ny < 1:
        return 0.0
    g, inside = _level(luma, a, c, s, x0, y0, nx * k + 2, ny * k + 2)
    cg, ci = _cells(g, 1, 1, nx, ny, k), _cells(inside, 1, 1, nx, ny, k).all(axis=2)
    means = cg.mean(axis=2)
    featureless = (cg.std(axis=2) < FEATURELESS_SD) & ci & (means >= CLIPPED) & (means <= 255.0 - CLIPPED)
    n_in = ci.sum(axis=1)
    covered = (2 * n_in >= nx) & (featureless.sum(axis=1) >= BAND_ROW_SHARE * np.maximum(n_in, 1))
    best, r = 0, 0
    while r < ny:
        if not covered[r]:
            r += 1
            continue
        e = r
        while e < ny and covered[e]:
            e += 1
        if e - r > best and float(means[r:e][featureless[r:e]].std()) < BAND_SD:
            best = e - r
        r = e
    return min(1.0, best * k / (BAND_FULL * iod))


def _flat(image: np.ndarray, points: np.ndarray, box: tuple[float, float, float, float] | None = None) -> float:
    """The ``flat`` measure (module docstring) of the face whose five landmarks are ``points`` ((5, 2),
    pixels) in the RGB ``image``; ``box`` (left, top, right, bottom; pixels): the face box, whose top bounds
    the band scan (None: no band scan)."""
    from PIL import Image

    p = np.asarray(points, dtype=np.float64)
    a, b = (p[2] + p[3]) / 2.0, (p[0] + p[1]) / 2.0  # the eye on the image's left, and the one on its right
    iod = float(math.hypot(*(b - a)))
    if not math.isfinite(iod) or iod < 4.0:
        return 1.0
    c, s = (b - a) / iod
    nose_v = float((p[4] - a) @ np.array([-s, c]))  # the nose point below the eye line, in the level frame
    strips = ((-0.5, 1.5, -0.45, 0.1), (-0.1, 1.1, nose_v / iod + 0.15, nose_v / iod + 0.85))
    x0, y0 = -0.5 * iod, -0.45 * iod
    w = int(math.ceil(2.0 * iod))
    h = int(math.ceil(max(nose_v + 0.85 * iod, 0.1 * iod) - y0))
    if not 0 < w * h <= 4096 * 4096:
        return 1.0
    luma = Image.fromarray(np.clip(_luma(image), 0, 255).astype(np.uint8))
    g, inside = _level(luma, a, c, s, x0, y0, w, h)
    k = max(3, int(round(iod / 8.0)))
    shares = []
    for (u0, u1, v0, v1), weight in zip(strips, (1.0, MOUTH_WEIGHT)):
        cx0, cy0 = max(0, int(round((u0 - x0 / iod) * iod))), max(0, int(round(v0 * iod - y0)))
        nx = (min(w, int(round((u1 - x0 / iod) * iod))) - cx0) // k
        ny = (min(h, int(round(v1 * iod - y0))) - cy0) // k
        if nx < 1 or ny < 1:
            continue
        cells = [_cells(arr, cx0, cy0, nx, ny, k).reshape(ny * nx, k * k) for arr in (g, inside)]
        ok = cells[1].all(axis=1)
        if ok.any():
            shares.append(weight * float((cells[0][ok].std(axis=1) < FEATURELESS_SD).mean()))
    if box is not None:
        left, top, right, _ = box
        top_v = float((np.array([(left + right) / 2.0, top]) - a) @ np.array([-s, c])) / iod
        if math.isfinite(top_v):
            shares.append(_band(luma, a, c, s, iod, k, min(-0.45, max(-BAND_REACH, top_v - 0.15))))
    return max(shares) if shares else 0.0


def measure(image: np.ndarray, box: tuple[float, float, float, float],
            points: np.ndarray | None = None) -> QualityMeasures:
    """The measures of the face in ``box`` (left, top, right, bottom; pixels) of an (H, W, 3) uint8 image.
    ``points``: the face's five landmarks ((5, 2) pixels, dlib's order, as the engine locates them), which
    place ``flat``'s strips; None: their average place in the box (MEAN_POINTS); the box's top bounds
    ``flat``'s band scan. Costs time in proportion to the box, not the image."""
    image = np.asarray(image)
    left, top, right, bottom = box
    face_px = float(max(0.0, min(right - left, bottom - top)))
    s = _box_slice(image.shape, box)
    if s is None:
        return QualityMeasures(face_px, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    x0, y0, x1, y1 = s
    crop = _luma(image[y0:y1, x0:x1])
    if points is None:
        points = np.array([left, top]) + MEAN_POINTS * np.array([right - left, bottom - top])
    return QualityMeasures(
        face_px=face_px,
        detail=_detail(crop),
        noise=_noise(crop),
        blockiness=_blockiness(crop, x0, y0),
        contrast=float(crop.std()),
        flat=_flat(image, points, box),
        brightness=float(crop.mean() / 255.0 * 100.0),
    )


# --------------------------------------------------------------------------------------
# The calibrated range
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidityRange:
    """The range of image quality the Similarity tables were calibrated on (LFW's own photos)."""
    min_face_px: float
    min_detail: float
    max_noise: float
    max_blockiness: float
    min_contrast: float
    max_flat: float


#: Set from the sharp lfw_dev faces and the degradations that move the false match rate more than 3x
#: (bench/degradation.py; docs/similarity.md, "Validity range"). A face outside any bound is "degraded".
#: min_face_px: faces of 20 px move faceledger-sface-v1's FMR 3.2x at Similarity 80 and 3.9x at 90 (30 px:
#: 1.0x and 0.7x; fusion-v1: 1.6x at 20 px); 25 px lies between the two conditions' 99th and 1st percentiles.
RANGE = ValidityRange(min_face_px=25.0, min_detail=0.07, max_noise=8.0, max_blockiness=math.inf,
                      min_contrast=18.0, max_flat=0.5)

#: The ways a face can be outside RANGE, as :func:`degradations` names them.
DEGRADATIONS = ("SMALL", "BLURRED", "NOISY", "COMPRESSED", "LOW_CONTRAST", "COVERED")


def degradations(m: QualityMeasures, rng: ValidityRange = RANGE) -> list[str]:
    """The ways ``m`` is outside the calibrated range (empty: inside it)."""
    out = []
    if m.face_px < rng.min_face_px:
        out.append("SMALL")
    if m.detail < rng.min_detail:
        out.append("BLURRED")
    if m.noise > rng.max_noise:
        out.append("NOISY")
    if m.blockiness > rng.max_blockiness:
        out.append("COMPRESSED")
    if m.contrast < rng.min_contrast:
        out.append("LOW_CONTRAST")
    if m.flat > rng.max_flat:
        out.append("COVERED")
    return out


#: Quality bands of a face: inside the calibrated range, outside it, or outside it because its features are
#: covered (COVERED among its degradations, whatever else).
CALIBRATED = "calibrated"
DEGRADED = "degraded"
COVERED = "covered"
#: A face inside the range but turned: |yaw| >= POSE_YAW degrees (geometry.pose_from_landmarks). Two such faces
#: of different people match more often than the main table says: faceledger-sface-v2 on all of lfw_dev, 562,752
#: impostor pairs of two turned faces, 3.3x nominal at Similarity 80 and 90 (95% CI 2.8-3.8x at 80); one turned
#: face and one frontal, 1.25x (bench/pose_calibrate.py; docs/similarity.md). Such pairs have a table of their own.
TURNED = "turned"
POSE_YAW = 20.0
#: Every band a face can be stored with (FaceRecord.quality_band; None: stored before bands were recorded).
FACE_BANDS = (CALIBRATED, DEGRADED, COVERED, TURNED)
#: Quality bands of a pair of faces: the Similarity table each is scored with (SimilarityScale.load(model,
#: band)); "calibrated" is the model's main table. Covered faces, the kind whose false match rate moves most
#: (a band over the eyes of both faces: 113x at Similarity 80 on the main table, still 3.9x at 90 and 12x at 99
#: on the degraded-both table; docs/similarity.md), have tables of their own: "covered-one" (a covered face
#: and one inside the range, which may be a covered face the measure missed) and "covered-both".
BANDS = (CALIBRATED, "degraded-one", "degraded-both", "covered-one", "covered-both")
#: The table a pair band is scored with where a model has none of its own (bench/degradation.py calibrate
#: builds them; a model calibrated before the covered bands existed has the degraded ones only).
FALLBACK = {"covered-one": "degraded-one", "covered-both": "degraded-both"}
#: The pair band of two turned faces (both inside the range otherwise): bench/pose_calibrate.py builds its table.
TURNED_BOTH = "turned-both"
#: Every pair band, from the main table to the furthest from it (the order a call reports its worst pair in).
PAIR_BANDS = (CALIBRATED, TURNED_BOTH, *BANDS[1:])


def band(m: QualityMeasures | None, yaw: float | None = None) -> str:
    """A face's band: CALIBRATED; COVERED when it is outside the range and covered; else DEGRADED when it is
    outside the range; else TURNED when ``yaw`` (degrees) is at least POSE_YAW either way (None: measures or
    pose unknown, as if inside the range and frontal)."""
    if m is None:
        return CALIBRATED
    found = degradations(m)
    if found:
        return COVERED if "COVERED" in found else DEGRADED
    return TURNED if yaw is not None and abs(float(yaw)) >= POSE_YAW else CALIBRATED


def pair_band(a: str, b: str) -> str:
    """The band of a comparison between faces of bands ``a`` and ``b`` (one of PAIR_BANDS; a band that is not
    CALIBRATED, such as a stored face's older DEGRADED, counts as outside the range). Two TURNED faces are
    TURNED_BOTH; one TURNED face counts as CALIBRATED (one turned face and one frontal: 1.25x nominal at 80)."""
    if a == b == TURNED:
        return TURNED_BOTH
    a, b = (CALIBRATED if x == TURNED else x for x in (a, b))
    if a == b == COVERED:
        return "covered-both"
    if {a, b} == {COVERED, CALIBRATED}:
        return "covered-one"
    return BANDS[(a != CALIBRATED) + (b != CALIBRATED)]
