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
* ``flat``: the share of the face box that is flat (square cells of 1/32 of the face, at least 4 px, with
  a standard deviation under 1.5 grey levels): a covering band or a clipped region.

Pure numpy (and Pillow for resampling); imports nothing else from faceledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BANDS", "CALIBRATED", "DEGRADATIONS", "DEGRADED", "DETAIL_SIZE", "FACE_BANDS", "RANGE", "QualityMeasures", "ValidityRange",
           "band", "degradations", "measure", "pair_band"]

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


def _flat(grey: np.ndarray) -> float:
    """Share of flat cells: square cells of a face's 1/32 (at least 4 px: at a fixed pixel size a large, clean
    face's smooth skin would read as flat), standard deviation under 1.5 grey levels."""
    c = max(4, int(min(grey.shape) / 32))
    h, w = (grey.shape[0] // c) * c, (grey.shape[1] // c) * c
    if h < c or w < c:
        return 0.0
    cells = grey[:h, :w].reshape(h // c, c, w // c, c).transpose(0, 2, 1, 3).reshape(h // c, w // c, c * c)
    return float((cells.std(axis=2) < 1.5).mean())


def measure(image: np.ndarray, box: tuple[float, float, float, float]) -> QualityMeasures:
    """The measures of the face in ``box`` (left, top, right, bottom; pixels) of an (H, W, 3) uint8 image.
    Costs time in proportion to the box, not the image."""
    image = np.asarray(image)
    left, top, right, bottom = box
    face_px = float(max(0.0, min(right - left, bottom - top)))
    s = _box_slice(image.shape, box)
    if s is None:
        return QualityMeasures(face_px, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    x0, y0, x1, y1 = s
    crop = _luma(image[y0:y1, x0:x1])
    return QualityMeasures(
        face_px=face_px,
        detail=_detail(crop),
        noise=_noise(crop),
        blockiness=_blockiness(crop, x0, y0),
        contrast=float(crop.std()),
        flat=_flat(crop),
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
                      min_contrast=18.0, max_flat=0.2)

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


#: Quality bands of a face: inside the calibrated range or not.
CALIBRATED = "calibrated"
DEGRADED = "degraded"
#: Every band a face can be stored with (FaceRecord.quality_band; None: stored before bands were recorded).
FACE_BANDS = (CALIBRATED, DEGRADED)
#: Quality bands of a pair of faces: the Similarity table each is scored with (SimilarityScale.load(model,
#: band)); "calibrated" is the model's main table.
BANDS = (CALIBRATED, "degraded-one", "degraded-both")


def band(m: QualityMeasures | None) -> str:
    """A face's band: CALIBRATED, or DEGRADED when it is outside the range (None: unknown, CALIBRATED)."""
    return DEGRADED if m is not None and degradations(m) else CALIBRATED


def pair_band(a: str, b: str) -> str:
    """The band of a comparison between faces of bands ``a`` and ``b`` (one of BANDS)."""
    n = (a == DEGRADED) + (b == DEGRADED)
    return BANDS[n]
