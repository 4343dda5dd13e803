"""faceledger: self-hosted, Rekognition-compatible face recognition."""

__version__ = "0.1.0"
