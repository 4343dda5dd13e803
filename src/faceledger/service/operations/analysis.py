"""Image analysis beyond faces: DetectText (and the ops that follow it), over :mod:`faceledger.analysis`.

Each model is loaded once per process on first use (a missing or altered model package is a 503
``InternalServerError`` saying what to install, never a made-up answer) and shared by every Service.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any, Callable, TypeVar

import numpy as np

from ...vision.models import ModelsUnavailable
from ..dispatch import Invocation, operation
from ..errors import InvalidParameterException, ServiceUnavailable
from ..images import load_image

T = TypeVar("T")
_LOCK = threading.RLock()  # re-entrant: a factory may ask for another model (the detector for the classifier)

#: DetectText "can detect up to 100 words in an image" (botocore's documentation of DetectText): the first 100
#: words that pass the filters, in reading order, and the lines they belong to.
MAX_WORDS = 100
#: WordFilter.MinConfidence when the request gives none: Rekognition's documented default (80), which the
#: measurement in docs/analysis.md supports (bench/text_accuracy.py).
DEFAULT_WORD_CONFIDENCE = 80.0


def _model(factory: Callable[[], T]) -> Callable[[], T]:
    """``factory()`` once per process (the first caller builds it, under a lock); ModelsUnavailable -> 503."""
    built: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        if not built:
            with _LOCK:
                if not built:
                    try:
                        built.append(factory())
                    except ModelsUnavailable as exc:
                        raise ServiceUnavailable(str(exc)) from exc
        return built[0]

    return get


@_model
def text_reader():
    from ...analysis.text import TextReader
    from ...vision.onnx_models import default_threads

    return TextReader(threads=default_threads())


# -- geometry of the request and the answer -----------------------------------------------------------------

def _finite(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidParameterException(f"{where} must be a finite number")
    return float(value)


def region_polygons(regions: list[dict[str, Any]], member: str = "RegionsOfInterest") -> list[np.ndarray]:
    """Each region of ``RegionsOfInterest`` as a polygon of (x, y) image ratios; InvalidParameterException for a
    region with neither or both of BoundingBox and Polygon, a box outside the image or of no area, a polygon of
    fewer than 3 points or a point outside [0, 1]."""
    out = []
    for i, region in enumerate(regions):
        where = f"{member}[{i}]"
        if ("BoundingBox" in region) == ("Polygon" in region):
            raise InvalidParameterException(f"{where} must have exactly one of BoundingBox or Polygon")
        if "BoundingBox" in region:
            box = region["BoundingBox"]
            missing = [k for k in ("Left", "Top", "Width", "Height") if k not in box]
            if missing:
                raise InvalidParameterException(f"{where}.BoundingBox needs {', '.join(missing)}")
            left, top, width, height = (_finite(box[k], f"{where}.BoundingBox.{k}")
                                        for k in ("Left", "Top", "Width", "Height"))
            if not (0 <= left < 1 and 0 <= top < 1 and 0 < width <= 1 and 0 < height <= 1):
                raise InvalidParameterException(
                    f"{where}.BoundingBox must lie in the image: Left and Top in [0, 1), Width and Height in (0, 1]")
            out.append(np.array([[left, top], [left + width, top], [left + width, top + height],
                                 [left, top + height]]))
        else:
            points = region["Polygon"]
            if len(points) < 3:
                raise InvalidParameterException(f"{where}.Polygon needs at least 3 points, it has {len(points)}")
            if len(points) > 1000:
                raise InvalidParameterException(f"{where}.Polygon has {len(points)} points, at most 1000 are read")
            xy = np.array([[_finite(p.get("X"), f"{where}.Polygon[{j}].X"), _finite(p.get("Y"), f"{where}.Polygon[{j}].Y")]
                           for j, p in enumerate(points)])
            if (xy < 0).any() or (xy > 1).any():
                raise InvalidParameterException(f"{where}.Polygon's points must lie in [0, 1]")
            out.append(xy)
    return out


def more_than_half_inside(polygon: np.ndarray, regions: list[np.ndarray]) -> bool:
    """Rekognition's rule for RegionsOfInterest: kept when more than half of ``polygon``'s area (image ratios)
    lies in one of ``regions``. A region that crosses itself counts by its valid part (shapely's make_valid)."""
    from shapely.geometry import Polygon
    from shapely.validation import make_valid

    shape = make_valid(Polygon(polygon))
    if shape.area <= 0:
        return False
    return any(shape.intersection(make_valid(Polygon(r))).area > 0.5 * shape.area for r in regions)


def geometry(polygon_px: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """Rekognition's Geometry: the axis-aligned BoundingBox and the Polygon, as ratios of the image (clipped
    to it)."""
    xy = np.clip(np.asarray(polygon_px, dtype=np.float64) / [width, height], 0.0, 1.0)
    left, top = xy.min(axis=0)
    right, bottom = xy.max(axis=0)
    return {"BoundingBox": {"Width": float(right - left), "Height": float(bottom - top),
                            "Left": float(left), "Top": float(top)},
            "Polygon": [{"X": float(x), "Y": float(y)} for x, y in xy]}


def _hull(polygons: list[np.ndarray]) -> np.ndarray:
    """The 4-point box around word polygons that are part of one line (their first and last words' ends)."""
    return np.array([polygons[0][0], polygons[-1][1], polygons[-1][2], polygons[0][3]], dtype=np.float64)


# -- DetectText ---------------------------------------------------------------------------------------------

@operation("DetectText")
def detect_text(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """LINE and WORD TextDetections (lines first, Ids 0..; words after them, ParentId their line's Id).

    WordFilter (MinConfidence default 80, MinBoundingBoxHeight/Width as ratios of the image) and
    RegionsOfInterest (a word is kept when more than half of it lies in a region) filter words; a line is
    returned with the words it keeps (its text, confidence and geometry are theirs) and dropped when it keeps
    none. At most MAX_WORDS words."""
    filters = req.get("Filters") or {}
    region_polygons(filters.get("RegionsOfInterest") or [])  # bad regions are refused before the image is read
    image = load_image(req["Image"], inv.config)
    return {"TextDetections": text_detections(image.image.pixels, filters),
            "TextModelVersion": text_reader().model_version}


def text_detections(pixels: np.ndarray, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """DetectText's TextDetections for one RGB image (also each sampled frame of StartTextDetection): lines
    first, then words, filtered by ``filters`` (DetectText's or StartTextDetection's Filters)."""
    word_filter = filters.get("WordFilter") or {}
    min_confidence = float(word_filter.get("MinConfidence", DEFAULT_WORD_CONFIDENCE))
    min_height = float(word_filter.get("MinBoundingBoxHeight", 0.0))
    min_width = float(word_filter.get("MinBoundingBoxWidth", 0.0))
    regions = region_polygons(filters.get("RegionsOfInterest") or [])
    h, w = pixels.shape[:2]
    lines = text_reader().read(pixels)

    kept_lines: list[tuple[Any, list[Any]]] = []
    words_left = MAX_WORDS
    for line in lines:
        words = []
        for word in line.words or ():
            if words_left <= 0:
                break
            geo = geometry(word.polygon, w, h)
            box = geo["BoundingBox"]
            if 100 * word.confidence < min_confidence or box["Height"] < min_height or box["Width"] < min_width:
                continue
            if regions and not more_than_half_inside(word.polygon / [w, h], regions):
                continue
            words.append(word)
            words_left -= 1
        if words:
            kept_lines.append((line, words))

    detections: list[dict[str, Any]] = []
    word_items: list[dict[str, Any]] = []
    next_word_id = len(kept_lines)
    for line_id, (line, words) in enumerate(kept_lines):
        whole = len(words) == len(line.words)
        detections.append({
            "DetectedText": line.text if whole else " ".join(word.text for word in words),
            "Type": "LINE", "Id": line_id,
            "Confidence": float(100 * (line.confidence if whole else np.mean([x.confidence for x in words]))),
            "Geometry": geometry(line.polygon if whole else _hull([x.polygon for x in words]), w, h),
        })
        for word in words:
            word_items.append({"DetectedText": word.text, "Type": "WORD", "Id": next_word_id, "ParentId": line_id,
                               "Confidence": float(100 * word.confidence), "Geometry": geometry(word.polygon, w, h)})
            next_word_id += 1
    return detections + word_items


# -- DetectModerationLabels ---------------------------------------------------------------------------------

@_model
def nsfw_classifier():
    from ...analysis.moderation import NsfwClassifier
    from ...vision.onnx_models import default_threads

    return NsfwClassifier(threads=default_threads())


#: Rekognition's top-level moderation categories (taxonomy v7) that no model here computes: a missing label
#: in these says nothing. Sent with every DetectModerationLabels answer as x-faceledger-undetectable-categories.
UNDETECTABLE_CATEGORIES = ("Violence", "Visually Disturbing", "Drugs & Tobacco", "Alcohol", "Rude Gestures",
                           "Gambling", "Hate Symbols", "Non-Explicit Nudity of Intimate parts and Kissing",
                           "Swimwear or Underwear")
#: What nsfwjs' five classes become (docs/analysis.md, "DetectModerationLabels"): each a level-1 label.
#: "Explicit" (Rekognition L1) = P(Porn) + P(Hentai): explicit photographs and drawings (the model does not
#: tell nudity from sexual activity or toys, so no level-2 label). "Suggestive" = P(Sexy): suggestive, not
#: explicit (swimwear, underwear, partial nudity, revealing poses); Rekognition's own top-level name for that
#: group before taxonomy v7, which splits it into "Non-Explicit Nudity of Intimate parts and Kissing" and
#: "Swimwear or Underwear" -- a split this model cannot make.
MODERATION_LABELS = {"Explicit": ("Porn", "Hentai"), "Suggestive": ("Sexy",)}
#: ContentTypes are never returned: nsfwjs' drawn classes (P(Drawing) + P(Hentai), computed as
#: "ContentType:Illustrated" for the bench) call real photographs drawings too often to be reported: at 99 or
#: more, 3 of the 37 group photos here (bench/moderation_safe.py, docs/analysis.md).
def moderation_scores(probabilities: dict[str, float]) -> dict[str, float]:
    """{label or content type: confidence 0-100} from nsfwjs' class probabilities."""
    out = {name: 100.0 * sum(probabilities[c] for c in classes) for name, classes in MODERATION_LABELS.items()}
    out["ContentType:Illustrated"] = 100.0 * (probabilities["Drawing"] + probabilities["Hentai"])
    return {k: min(100.0, max(0.0, v)) for k, v in out.items()}


@operation("DetectModerationLabels")
def detect_moderation_labels(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """ModerationLabels (level 1 only, see MODERATION_LABELS) at or above MinConfidence (default 50), most
    confident first; no ContentTypes (see above); the undetectable categories in ``inv.meta``."""
    for member, what in (("ProjectVersion", "custom moderation adapters"), ("HumanLoopConfig", "human review")):
        if member in req:
            raise InvalidParameterException(f"{member} ({what}) is not supported by faceledger: it runs one fixed "
                                            "open model (docs/analysis.md)")
    min_confidence = float(req.get("MinConfidence", 50.0))
    image = load_image(req["Image"], inv.config)
    labels = moderation_labels(image.image.pixels, min_confidence)
    inv.meta["Undetectable"] = ", ".join(UNDETECTABLE_CATEGORIES)
    return {"ModerationLabels": labels, "ModerationModelVersion": nsfw_classifier().model_version,
            "ContentTypes": []}


def moderation_labels(pixels: np.ndarray, min_confidence: float) -> list[dict[str, Any]]:
    """The ModerationLabels of one RGB image (also each sampled frame of StartContentModeration): level-1
    labels (MODERATION_LABELS) at or above ``min_confidence``, most confident first."""
    scores = moderation_scores(nsfw_classifier().classify(pixels))
    return sorted(({"Name": name, "ParentName": "", "TaxonomyLevel": 1, "Confidence": float(scores[name])}
                   for name in MODERATION_LABELS if scores[name] >= min_confidence),
                  key=lambda label: -label["Confidence"])


# -- DetectLabels -------------------------------------------------------------------------------------------

@_model
def label_classifier():
    from ...analysis.labels import LabelClassifier
    from ...vision.onnx_models import default_threads

    return LabelClassifier(threads=default_threads())


#: MinConfidence when the request gives none: Rekognition's documented default for DetectLabels.
DEFAULT_LABEL_CONFIDENCE = 55.0
#: MaxLabels when the request gives none (Rekognition's default is 1000).
DEFAULT_MAX_LABELS = 1000
#: Settings.ImageProperties.MaxDominantColors when the request gives none (botocore: "The default value is 10").
DEFAULT_DOMINANT_COLORS = 10


def _folded(names: list[str] | None) -> set[str] | None:
    return None if names is None else {n.casefold() for n in names}


def _color(c) -> dict[str, Any]:
    return {"Red": c.red, "Green": c.green, "Blue": c.blue, "HexCode": c.hex_code, "CSSColor": c.css_color,
            "SimplifiedColor": c.simplified_color, "PixelPercent": float(c.pixel_percent)}


@_model
def object_detector():
    from ...analysis.objects import ObjectDetector
    from ...vision.onnx_models import default_threads

    return ObjectDetector(threads=default_threads(), classifier=label_classifier())


def _instance(obj, width: int, height: int, pixels: np.ndarray | None, max_colors: int) -> dict[str, Any]:
    x0, y0, x1, y1 = obj.box
    out: dict[str, Any] = {"BoundingBox": {"Width": (x1 - x0) / width, "Height": (y1 - y0) / height,
                                           "Left": x0 / width, "Top": y0 / height},
                           "Confidence": 100.0 * obj.score}
    if pixels is not None:  # IMAGE_PROPERTIES asked: the instance's own dominant colours
        from ...analysis.image_properties import dominant_colors

        crop = pixels[int(y0):max(int(y0) + 1, int(y1)), int(x0):max(int(x0) + 1, int(x1))]
        out["DominantColors"] = [_color(c) for c in dominant_colors(crop, max_colors)]
    return out


def general_labels(pixels: np.ndarray, min_confidence: float, with_colors: bool, max_colors: int
                   ) -> tuple[list[dict[str, Any]], str]:
    """Every label at or above ``min_confidence``, most confident first, and the LabelModelVersion: the
    classifier's labels (class and parent names) merged by name with the detector's (COCO names with their
    boxes as Instances, and their parents); a merged label has the higher confidence and both's parents and
    categories. Instances below ``min_confidence`` are left out."""
    from ...analysis.objects import COCO

    classifier, detector = label_classifier(), object_detector()
    h, w = pixels.shape[:2]
    merged: dict[str, dict[str, Any]] = {}

    def put(name: str, confidence: float, parents, aliases, categories, instances=()) -> None:
        label = merged.setdefault(name.casefold(), {"Name": name, "Confidence": 0.0, "Instances": [],
                                                    "Parents": [], "Aliases": [], "Categories": []})
        label["Confidence"] = max(label["Confidence"], float(confidence))
        label["Instances"] += list(instances)
        for key, names in (("Parents", parents), ("Aliases", aliases), ("Categories", categories)):
            for n in names:
                if {"Name": n} not in label[key] and n.casefold() != name.casefold():
                    label[key].append({"Name": n})

    for label in classifier.labels(classifier.probabilities(pixels)):
        if label.confidence < min_confidence:
            break  # most confident first
        put(label.name, label.confidence, label.parents, label.aliases, label.categories)
    table = {name: (category, parents) for name, category, parents in COCO}
    by_name: dict[str, list] = {}
    for obj in detector.detect(pixels):
        if 100 * obj.score >= min_confidence:
            by_name.setdefault(obj.name, []).append(obj)
    for name, objects in by_name.items():
        category, parents = table[name]
        confidence = 100 * max(o.score for o in objects)
        put(name, confidence, parents, (), (category,),
            [_instance(o, w, h, pixels if with_colors else None, max_colors) for o in objects])
        for i, parent in enumerate(parents):
            put(parent, confidence, parents[i + 1:], (), (category,))
    labels = sorted(merged.values(), key=lambda label: -label["Confidence"])
    return labels, f"{classifier.model_version} + {detector.model_version}"


def filter_labels(found: list[dict[str, Any]], general: dict[str, Any]) -> list[dict[str, Any]]:
    """``found`` (general_labels' labels) kept by Settings.GeneralLabels: label and category inclusion and
    exclusion filters, names compared case-insensitively (DetectLabels and StartLabelDetection)."""
    include, exclude = _folded(general.get("LabelInclusionFilters")), _folded(general.get("LabelExclusionFilters"))
    include_cat = _folded(general.get("LabelCategoryInclusionFilters"))
    exclude_cat = _folded(general.get("LabelCategoryExclusionFilters"))
    labels = []
    for label in found:
        name = label["Name"].casefold()
        categories = {c["Name"].casefold() for c in label["Categories"]}
        if (include is not None and name not in include) or (exclude is not None and name in exclude):
            continue
        if (include_cat is not None and not categories & include_cat) or \
                (exclude_cat is not None and categories & exclude_cat):
            continue
        labels.append(label)
    return labels


@operation("DetectLabels")
def detect_labels(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """Labels from the ImageNet classifier (faceledger.analysis.labels: class and WordNet parent names, each
    with Parents, Aliases and Categories) merged with NanoDet's COCO objects (faceledger.analysis.objects: their
    boxes as Instances), at or above MinConfidence (55), filtered by Settings.GeneralLabels (label and category
    names, case-insensitive), most confident first, at most MaxLabels; ImageProperties (Quality,
    DominantColors; and each instance's DominantColors) when Features asks for IMAGE_PROPERTIES."""
    features = req.get("Features") or ["GENERAL_LABELS"]
    min_confidence = float(req.get("MinConfidence", DEFAULT_LABEL_CONFIDENCE))
    max_labels = int(req.get("MaxLabels", DEFAULT_MAX_LABELS))
    settings = req.get("Settings") or {}
    max_colors = int((settings.get("ImageProperties") or {}).get("MaxDominantColors", DEFAULT_DOMINANT_COLORS))
    image = load_image(req["Image"], inv.config)
    pixels = image.image.pixels
    response: dict[str, Any] = {}
    if "GENERAL_LABELS" in features:
        found, version = general_labels(pixels, min_confidence, "IMAGE_PROPERTIES" in features, max_colors)
        labels = filter_labels(found, settings.get("GeneralLabels") or {})
        response["Labels"] = labels[:max_labels]
        response["LabelModelVersion"] = version
    if "IMAGE_PROPERTIES" in features:
        from ...analysis.image_properties import dominant_colors, quality

        q = quality(pixels)
        response["ImageProperties"] = {
            "Quality": {"Brightness": q.brightness, "Sharpness": q.sharpness, "Contrast": q.contrast},
            "DominantColors": [_color(c) for c in dominant_colors(pixels, max_colors)]}
    return response
