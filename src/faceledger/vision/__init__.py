"""faceledger.vision: pure computation on images (decode, detect, landmarks, embed,
analyse).  Imports nothing else from faceledger."""

from .engine import (
    Detection,
    FaceAnalysis,
    FaceDetector,
    FaceEmbedder,
    FaceEngine,
    LandmarkModel,
    Pose,
    Quality,
    default_engine,
)
from .image import DecodedImage, ImageError, ImageTooLarge, ImageTooSmall, InvalidImageFormat, decode_image

__all__ = [
    "DecodedImage",
    "Detection",
    "FaceAnalysis",
    "FaceDetector",
    "FaceEmbedder",
    "FaceEngine",
    "ImageError",
    "ImageTooLarge",
    "ImageTooSmall",
    "InvalidImageFormat",
    "LandmarkModel",
    "Pose",
    "Quality",
    "decode_image",
    "default_engine",
]
