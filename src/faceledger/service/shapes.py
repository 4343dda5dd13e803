"""Rekognition response shapes built from vision results and store records."""

from __future__ import annotations

from typing import Any

from ..store import FaceRecord
from ..vision import FaceAnalysis

# What DetectFaces, IndexFaces and CompareFaces return for each face. Attributes ALL (or GENDER, SMILE) adds
# Gender and Smile only (operations/_common.face_details, vision/attributes.py, measured in docs/analysis.md):
# faceledger has no measured model for age, emotions, glasses, beard, eyes or mouth open, occlusion or gaze,
# and never makes up an attribute it cannot compute.
DEFAULT_ATTRIBUTES = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")


def box_ratios(face: FaceAnalysis, width: int, height: int) -> tuple[float, float, float, float]:
    """(Width, Height, Left, Top) of the face box as ratios of the image, as Rekognition gives them."""
    d = face.detection
    return (
        (d.right - d.left) / width,
        (d.bottom - d.top) / height,
        d.left / width,
        d.top / height,
    )


def bounding_box(ratios: tuple[float, float, float, float]) -> dict[str, float]:
    w, h, left, top = ratios
    return {"Width": float(w), "Height": float(h), "Left": float(left), "Top": float(top)}


def landmarks(face: FaceAnalysis, width: int, height: int) -> list[dict[str, Any]]:
    return [
        {"Type": name, "X": float(x / width), "Y": float(y / height)} for name, (x, y) in face.landmarks.items()
    ]


def pose(face: FaceAnalysis) -> dict[str, float]:
    return {"Roll": float(face.pose.roll), "Yaw": float(face.pose.yaw), "Pitch": float(face.pose.pitch)}


def quality(face: FaceAnalysis) -> dict[str, float]:
    return {"Brightness": float(face.quality.brightness), "Sharpness": float(face.quality.sharpness)}


def face_detail(face: FaceAnalysis, width: int, height: int) -> dict[str, Any]:
    """A FaceDetail: everything faceledger measures about one detected face."""
    return {
        "BoundingBox": bounding_box(box_ratios(face, width, height)),
        "Landmarks": landmarks(face, width, height),
        "Pose": pose(face),
        "Quality": quality(face),
        "Confidence": float(face.detection.confidence),
    }


def compared_face(face: FaceAnalysis, width: int, height: int) -> dict[str, Any]:
    """A ComparedFace (CompareFaces' FaceMatches and UnmatchedFaces)."""
    return face_detail(face, width, height)


def stored_face(record: FaceRecord) -> dict[str, Any]:
    """A Face as ListFaces, IndexFaces and the searches return it."""
    out: dict[str, Any] = {
        "FaceId": record.face_id,
        "BoundingBox": bounding_box(record.bounding_box),
        "ImageId": record.image_id,
        "Confidence": float(record.confidence),
        "IndexFacesModelVersion": record.face_model_version,
    }
    if record.external_image_id is not None:
        out["ExternalImageId"] = record.external_image_id
    if record.user_id is not None:
        out["UserId"] = record.user_id
    return out
