"""Image analysis beyond faces: pure computation, one model class per task.

* :mod:`.text`: lines and words of text (DetectText), PP-OCRv6 small through rapidocr.

Each class loads its weights from a registry package pinned by version and SHA-256 and raises
:class:`faceledger.vision.models.ModelsUnavailable` when they cannot be had. The service layer
(:mod:`faceledger.service.operations.analysis`) turns their results into Rekognition's shapes.
"""
