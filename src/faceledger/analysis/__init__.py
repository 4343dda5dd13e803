"""Image analysis beyond faces: pure computation, one model class per task.

* :mod:`.text`: lines and words of text (DetectText), PP-OCRv6 small through rapidocr.
* :mod:`.moderation`: sexual content (DetectModerationLabels), nsfwjs' MobileNetV2 "mid".
* :mod:`.labels`: ImageNet-1k labels with WordNet parents (DetectLabels), EfficientNet-Lite0.
* :mod:`.image_properties`: quality and dominant colours (DetectLabels' IMAGE_PROPERTIES), no model.

Each class loads its weights from a registry package pinned by version and SHA-256 and raises
:class:`faceledger.vision.models.ModelsUnavailable` when they cannot be had. The service layer
(:mod:`faceledger.service.operations.analysis`) turns their results into Rekognition's shapes.
"""


def prepare_all() -> list[str]:
    """Fetch, check, convert and load every analysis model (``faceledger models fetch --analysis``): the
    model versions, in order; ModelsUnavailable names the first that cannot be had."""
    from .labels import LabelClassifier
    from .moderation import NsfwClassifier
    from .text import TextReader

    return [cls(threads=1).model_version for cls in (TextReader, NsfwClassifier, LabelClassifier)]
