"""Text in images: PP-OCRv6 small detection and recognition (PaddleOCR, Apache-2.0) run by ``rapidocr`` 3.10.0.

The three ONNX files ship inside the ``rapidocr`` wheel (``rapidocr/models/``); their SHA-256 is pinned here
(the values of the wheel's MODEL_LICENSES.md) and checked before they are loaded, so a changed package is
refused rather than run. Nothing is downloaded.

:class:`TextReader` turns an RGB image into :class:`TextLine` s (reading order: top to bottom, then left to
right), each with its :class:`TextWord` s. Geometry is in pixels of the image given, as 4-point polygons
(clockwise from the top-left corner of the text as written); confidences are the recogniser's mean character
probability, 0-1 (the detector's box score is not part of it). Upscaling: the detector sees the image with its
smaller side scaled up to at least ``min_side`` pixels (never down; default chosen by measurement,
docs/analysis.md); the image is never scaled past ``max_side`` on its longer side.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vision.models import ModelsUnavailable

#: rapidocr's bundled ONNX files and their SHA-256 (rapidocr 3.10.0's MODEL_LICENSES.md, section 6).
RAPIDOCR_VERSION = "3.10.0"
MODEL_FILES = {
    "det": ("PP-OCRv6_det_small.onnx", "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "rec": ("PP-OCRv6_rec_small.onnx", "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}
#: TextModelVersion: the models that compute the answer.
MODEL_VERSION = "PP-OCRv6-small+ppocr-cls-v2.0 (rapidocr 3.10.0)"
#: The detector's input: the smaller side scaled up to this many pixels (chosen by measurement,
#: docs/analysis.md "DetectText": character accuracy on page() and rendered text).
DEFAULT_MIN_SIDE = 480
#: ... and the longer side never past this (bounds the detector's cost: about 1 s a megapixel on one core).
DEFAULT_MAX_SIDE = 2048


@dataclass(frozen=True)
class TextWord:
    text: str
    confidence: float  # 0-1
    polygon: np.ndarray  # (4, 2) float64 pixels, x then y


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float  # 0-1
    polygon: np.ndarray  # (4, 2) float64 pixels
    words: tuple[TextWord, ...] = field(default_factory=tuple)


def _check_file(path: Path, sha256: str) -> None:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelsUnavailable(f"text model {path} cannot be read ({exc}): reinstall rapidocr=={RAPIDOCR_VERSION} "
                                "(pip install 'faceledger[analysis]')") from None
    if digest != sha256:
        raise ModelsUnavailable(f"text model {path} has SHA-256 {digest}, expected {sha256} (rapidocr "
                                f"{RAPIDOCR_VERSION}'s MODEL_LICENSES.md): install rapidocr=={RAPIDOCR_VERSION}")


def model_paths() -> dict[str, Path]:
    """The three ONNX files inside the installed ``rapidocr`` package, each checked against its pinned SHA-256;
    ModelsUnavailable when rapidocr is missing, another version, or a file differs."""
    try:
        import rapidocr
    except ImportError:
        raise ModelsUnavailable(f"DetectText needs rapidocr=={RAPIDOCR_VERSION}: pip install 'faceledger[analysis]'"
                                ) from None
    root = Path(rapidocr.__file__).parent / "models"
    paths = {}
    for task, (name, sha256) in MODEL_FILES.items():
        _check_file(root / name, sha256)
        paths[task] = root / name
    return paths


class TextReader:
    """Lines and words of text in an image (see the module's docstring). Thread-safe (one run at a time)."""

    model_version = MODEL_VERSION

    def __init__(self, min_side: int = DEFAULT_MIN_SIDE, max_side: int = DEFAULT_MAX_SIDE, threads: int = 1) -> None:
        import logging

        from rapidocr import RapidOCR

        paths = model_paths()
        self.min_side, self.max_side = int(min_side), int(max_side)
        self._ocr = RapidOCR(params={
            "Global.log_level": "error",
            "Global.text_score": 0.0,  # every line the recogniser reads: callers filter by confidence
            "Global.return_word_box": True,
            "Global.max_side_len": self.max_side,
            "Det.model_path": str(paths["det"]), "Rec.model_path": str(paths["rec"]),
            "Cls.model_path": str(paths["cls"]),
            "Det.limit_type": "min", "Det.limit_side_len": self.min_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": int(threads),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self._lock = threading.Lock()

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        """Every line of text in ``rgb`` ((H, W, 3) uint8 RGB), in reading order, with its words."""
        bgr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1])
        with self._lock:
            out = self._ocr(bgr)
        if out.boxes is None or out.txts is None:
            return []
        words = out.word_results if out.word_results else [()] * len(out.txts)
        lines = []
        for box, text, score, line_words in zip(out.boxes, out.txts, out.scores, words):
            if not text.strip():
                continue
            kept = tuple(TextWord(w_text, float(w_score), np.asarray(w_box, dtype=np.float64))
                         for w_text, w_score, w_box in line_words if w_text.strip())
            polygon = np.asarray(box, dtype=np.float64)
            if not kept:  # no word boxes for this line: the line is its one word
                kept = (TextWord(text.strip(), float(score), polygon),)
            lines.append(TextLine(text.strip(), float(score), polygon, words_of(text.strip(), kept)))
        return lines  # rapidocr's order: top to bottom, then left to right


def words_of(text: str, pieces: tuple[TextWord, ...]) -> tuple[TextWord, ...]:
    """The line's words as Rekognition counts them (separated by spaces), from rapidocr's word pieces: it splits
    letter-spaced capitals ("R" + "OYAL", "OPER" + "A") where the recogniser sees a gap. Consecutive pieces
    whose concatenation is one space-separated token become one word (box: from the first piece's left edge to
    the last's right edge; confidence: the lowest of them). When the pieces do not spell the tokens, they are
    returned as they are."""
    tokens = text.split()
    if [p.text for p in pieces] == tokens:
        return pieces
    out, i = [], 0
    for token in tokens:
        group, spelled = [], ""
        while i < len(pieces) and len(spelled) < len(token):
            group.append(pieces[i])
            spelled += pieces[i].text
            i += 1
        if spelled != token:
            return pieces
        polygon = np.array([group[0].polygon[0], group[-1].polygon[1], group[-1].polygon[2], group[0].polygon[3]])
        out.append(TextWord(token, min(p.confidence for p in group), polygon))
    return tuple(out) if i == len(pieces) else pieces


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of characters), O(len(a) x len(b))."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_accuracy(read: str, truth: str) -> float:
    """1 - (character edit distance / characters of ``truth``), at least 0: the usual OCR character accuracy
    (1 - CER). Whitespace runs count as one space."""
    read, truth = " ".join(read.split()), " ".join(truth.split())
    if not truth:
        return 1.0 if not read else 0.0
    return max(0.0, 1.0 - edit_distance(read, truth) / len(truth))
