"""QualityFilter: which detected faces are good enough to index or search.

Rekognition leaves its bars unpublished; ours are below, in one table, and
documented in docs/api.md. A face fails a bar for each reason it misses, with
Rekognition's reason codes. AUTO is MEDIUM.

Every filter but NONE also keeps to the range of image quality the Similarity tables
were calibrated on (vision.face_quality.RANGE; docs/similarity.md, "Validity range"):
outside it a Similarity states a false match rate many times too low. A face outside
the range fails with the reason of each way it is out (RANGE_REASONS). With NONE such
a face is compared anyway, and scored with its quality band's table (:func:`face_band`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..vision import FaceAnalysis
from ..vision.face_quality import band, degradations


@dataclass(frozen=True)
class QualityBar:
    min_confidence: float  # detector confidence, 0-100
    min_box_px: float  # shorter side of the face box, pixels
    min_brightness: float  # 0-100
    min_sharpness: float  # 0-100
    max_abs_yaw: float  # degrees
    max_abs_pitch: float  # degrees


BARS: dict[str, QualityBar] = {
    "LOW": QualityBar(50.0, 20.0, 5.0, 2.0, 75.0, 60.0),
    "MEDIUM": QualityBar(70.0, 36.0, 12.0, 5.0, 60.0, 45.0),
    "HIGH": QualityBar(90.0, 60.0, 20.0, 10.0, 40.0, 30.0),
}
BARS["AUTO"] = BARS["MEDIUM"]

#: Rekognition's reason for each way a face can be outside the calibrated range (vision.face_quality)
RANGE_REASONS = {
    "SMALL": "SMALL_BOUNDING_BOX",
    "BLURRED": "LOW_SHARPNESS",
    "LOW_CONTRAST": "LOW_BRIGHTNESS",
    "NOISY": "LOW_FACE_QUALITY",
    "COMPRESSED": "LOW_FACE_QUALITY",
    "COVERED": "LOW_FACE_QUALITY",
}


def face_degradations(face: FaceAnalysis) -> list[str]:
    """The ways ``face`` is outside the calibrated range (vision.face_quality.DEGRADATIONS; empty: inside)."""
    m = face.quality.measures
    return degradations(m) if m is not None else []


def face_band(face: FaceAnalysis) -> str:
    """``face``'s quality band: "calibrated", "degraded", "covered" or "turned" (vision.face_quality.band, with
    the face's yaw)."""
    return band(face.quality.measures, face.pose.yaw)


def failing_reasons(face: FaceAnalysis, quality_filter: str) -> list[str]:
    """Rekognition's Reasons for which ``face`` fails ``quality_filter`` (empty: it passes)."""
    bar = BARS.get(quality_filter)
    if bar is None:  # NONE
        return []
    det = face.detection
    reasons = []
    if abs(face.pose.yaw) > bar.max_abs_yaw or abs(face.pose.pitch) > bar.max_abs_pitch:
        reasons.append("EXTREME_POSE")
    if face.quality.brightness < bar.min_brightness:
        reasons.append("LOW_BRIGHTNESS")
    if face.quality.sharpness < bar.min_sharpness:
        reasons.append("LOW_SHARPNESS")
    if det.confidence < bar.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if min(det.right - det.left, det.bottom - det.top) < bar.min_box_px:
        reasons.append("SMALL_BOUNDING_BOX")
    for kind in face_degradations(face):
        if RANGE_REASONS[kind] not in reasons:
            reasons.append(RANGE_REASONS[kind])
    return reasons
