"""QualityFilter: which detected faces are good enough to index or search.

Rekognition leaves its bars unpublished; ours are below, in one table, and
documented in docs/api.md. A face fails a bar for each reason it misses, with
Rekognition's reason codes. AUTO is MEDIUM.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..vision import FaceAnalysis


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
    return reasons
