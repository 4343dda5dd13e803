"""Image analysis beyond faces: pure computation, one model class per task.

* :mod:`.text`: lines and words of text (DetectText), PP-OCRv6 small through rapidocr.
* :mod:`.moderation`: sexual content (DetectModerationLabels), nsfwjs' MobileNetV2 "mid".
* :mod:`.labels`: ImageNet-1k labels with WordNet parents (DetectLabels), EfficientNet-Lite0.
* :mod:`.objects`: COCO objects with boxes (DetectLabels' Instances), NanoDet-m.
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
    from .objects import ObjectDetector
    from .text import TextReader

    return [cls(threads=1).model_version for cls in (TextReader, NsfwClassifier, LabelClassifier, ObjectDetector)]


class OnnxModel:
    """An onnxruntime session over one ONNX file, run by one thread at a time: the base of the analysis models
    whose weights are converted into the model cache (``_session``, ``_input``: its first input's name)."""

    def __init__(self, path, threads: int = 1) -> None:
        import threading

        import onnxruntime as ort

        from ..vision.onnx_models import session_options

        self._session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()
