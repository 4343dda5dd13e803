"""ConnectedHome (label detection) stream processors: PERSON and PET on the newest frames of a live source, with
Rekognition's notifications.

Labels come from the COCO object detector of DetectLabels (NanoDet-m, :mod:`faceledger.analysis.objects`), run on
the frames the processor analyses (the newest one at the configured rate, as face search processors do):

* ``PERSON``: COCO's ``Person``;
* ``PET``: COCO's domestic animals ``Cat``, ``Dog``, ``Bird``, ``Horse``, ``Sheep``, ``Cow`` (:data:`PET_CLASSES`;
  COCO has no other pet, and its wild animals, Elephant, Bear, Zebra, Giraffe, and the Teddy Bear are not pets);
* ``ALL``: PERSON and PET here (Rekognition's ALL also has PACKAGE);
* ``PACKAGE``: not detected (no model here detects parcels: COCO has no such class), so a request that asks for
  it is refused rather than answered with silence that would read as "no package".

A label's confidence is the detector's score x 100; a box is kept when it reaches ``MinConfidence`` (default 50,
Rekognition's) and, when RegionsOfInterest are set, when its centre lies in one of them.

As Rekognition does (Developer Guide, "Label detection operations for streaming video events"), a session
(StartStreamProcessor to its stop, by default after :data:`DEFAULT_MAX_DURATION_S` seconds) publishes one
``LABEL_DETECTED`` notification the first time each label is seen, and one ``STREAM_PROCESSING_COMPLETE``
notification with a summary when it ends. Each notification is ``{"Subject": "Rekognition Stream Processing
Event", "Message": {...}}`` with the Message members of that guide (:func:`label_message`,
:func:`completion_message`); the frame and a crop of each box are JPEG objects of the S3 destination.
"""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .processor import FrameInfo

SUBJECT = "Rekognition Stream Processing Event"
PERSON_CLASSES = ("Person",)
PET_CLASSES = ("Cat", "Dog", "Bird", "Horse", "Sheep", "Cow")
#: COCO class name -> ConnectedHome label.
COCO_TO_LABEL = {**{c: "PERSON" for c in PERSON_CLASSES}, **{c: "PET" for c in PET_CLASSES}}
#: The labels this server detects, in the order notifications list them.
SUPPORTED = ("PERSON", "PET")
#: Requested labels this server cannot detect, and why.
UNSUPPORTED = {"PACKAGE": "no model here detects packages (the object detector's 80 COCO classes have no parcel, "
                          "box or envelope), so a PACKAGE processor would stay silent when one is delivered"}
#: Rekognition's default MinConfidence for label detection processors.
DEFAULT_MIN_CONFIDENCE = 50.0
#: Scores under this (0-1) are not looked at, whatever MinConfidence asks (a MinConfidence under 5 acts as 5).
MIN_SCORE_FLOOR = 0.05
#: Rekognition's StopSelector.MaxDurationInSeconds default for label detection processors (the model allows 1-120).
DEFAULT_MAX_DURATION_S = 10
JPEG_QUALITY = 90


def labels_in_force(requested: list[str]) -> tuple[str, ...]:
    """The labels a ConnectedHome processor detects for ``Settings.ConnectedHome.Labels``: ALL means PERSON and
    PET. ValueError naming PACKAGE (not supported) or a label that is not one of PERSON, PET, PACKAGE, ALL."""
    asked = list(requested)
    for label in asked:
        if label in UNSUPPORTED:
            raise ValueError(f"ConnectedHome label {label} is not supported by faceledger: {UNSUPPORTED[label]}; "
                             f"it detects {' and '.join(SUPPORTED)} (ALL means {' and '.join(SUPPORTED)} here)")
        if label not in SUPPORTED and label != "ALL":
            raise ValueError(f"ConnectedHome label {label[:64]!r} is not one of PERSON, PET, PACKAGE, ALL")
    return SUPPORTED if "ALL" in asked else tuple(label for label in SUPPORTED if label in asked)


@dataclass(frozen=True)
class Found:
    """One box of a wanted label: confidence 0-100, box as ratios of the frame, and in pixels."""

    label: str
    confidence: float
    box: dict[str, float]  # left, top, width, height (ratios), the notification's boundingBox
    pixels: tuple[int, int, int, int]  # x0, y0, x1, y1


def find_labels(detect: Callable[[np.ndarray, float], list], pixels: np.ndarray, labels: tuple[str, ...],
                min_confidence: float, keep: Callable[[dict[str, float]], bool] | None = None) -> list[Found]:
    """The boxes of ``labels`` in ``pixels`` ((H, W, 3) uint8 RGB) at or above ``min_confidence`` (0-100), most
    confident first. ``detect(pixels, min_score)``: :meth:`ObjectDetector.detect`. ``keep(box)``: the
    RegionsOfInterest test of a box (ratios, Rekognition's BoundingBox member names)."""
    h, w = pixels.shape[:2]
    out = []
    for obj in detect(pixels, max(MIN_SCORE_FLOOR, min_confidence / 100.0)):
        label = COCO_TO_LABEL.get(obj.name)
        if label not in labels or 100.0 * obj.score < min_confidence:
            continue
        # held to the frame: a box (partly) outside it is cut to it, one with less than a pixel in it is no
        # detection (its crop would be an empty image, which no JPEG can hold: the processor failed)
        x0, x1 = (min(max(float(v), 0.0), float(w)) for v in (obj.box[0], obj.box[2]))
        y0, y1 = (min(max(float(v), 0.0), float(h)) for v in (obj.box[1], obj.box[3]))
        if x1 - x0 < 1.0 or y1 - y0 < 1.0:
            continue
        box = {"Left": x0 / w, "Top": y0 / h, "Width": (x1 - x0) / w, "Height": (y1 - y0) / h}
        if keep is not None and not keep(box):
            continue
        px = (int(np.floor(x0)), int(np.floor(y0)), min(max(int(np.ceil(x1)), int(np.floor(x0)) + 1), w),
              min(max(int(np.ceil(y1)), int(np.floor(y0)) + 1), h))
        out.append(Found(label, round(100.0 * float(obj.score), 3),
                         {"left": box["Left"], "top": box["Top"], "height": box["Height"], "width": box["Width"]},
                         px))
    out.sort(key=lambda f: -f.confidence)
    return out


def jpeg(pixels: np.ndarray) -> bytes:
    """``pixels`` ((H, W, 3) uint8 RGB) as JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {"Subject": SUBJECT, "Message": message}


def label_message(*, stream_arn: str, label_entries: list[dict[str, Any]], event_id: str, tags: dict[str, str],
                  session_id: str, start_request: dict[str, Any]) -> dict[str, Any]:
    """A ``LABEL_DETECTED`` notification (``label_entries``: :meth:`ConnectedHomeSession.frame` builds them)."""
    return _envelope({
        "inputInformation": {"kinesisVideo": {"streamArn": stream_arn}},
        "eventNamespace": {"type": "LABEL_DETECTED"},
        "labels": label_entries,
        "eventId": event_id,
        "tags": dict(tags),
        "sessionId": session_id,
        "startStreamProcessorRequest": start_request,
    })


def completion_message(*, stream_arn: str, processed_ms: int, message: str, event_id: str, tags: dict[str, str],
                       session_id: str, start_request: dict[str, Any]) -> dict[str, Any]:
    """The ``STREAM_PROCESSING_COMPLETE`` notification that ends a session."""
    return _envelope({
        "inputInformation": {"kinesisVideo": {"streamArn": stream_arn, "processedVideoDurationMillis": processed_ms}},
        "eventNamespace": {"type": "STREAM_PROCESSING_COMPLETE"},
        "streamProcessingResults": {"message": message},
        "eventId": event_id,
        "tags": dict(tags),
        "sessionId": session_id,
        "startStreamProcessorRequest": start_request,
    })


@dataclass
class ConnectedHomeSession:
    """One session of a ConnectedHome processor (StartStreamProcessor to its stop).

    ``detect(pixels, min_score)``: the object detector; ``put_object(key, bytes) -> uri``: writes an object of
    the S3 destination (key relative to ``<KeyPrefix><processor>/<SessionId>/``) and gives its ``s3://`` URI;
    ``record(message, frame_sha256, frame_uri)``: the ledger entry of a LABEL_DETECTED event, written before the
    notification leaves. ``start_after_ms`` / ``start_after_fragment``: StartSelector (frames received before
    that Unix time in milliseconds, or of an earlier fragment, are not analysed)."""

    stream_arn: str
    session_id: str
    labels: tuple[str, ...]
    min_confidence: float
    detect: Callable[[np.ndarray, float], list]
    put_object: Callable[[str, bytes], str]
    record: Callable[[dict[str, Any], str, str], None]
    tags: dict[str, str] = field(default_factory=dict)
    start_request: dict[str, Any] = field(default_factory=dict)
    keep: Callable[[dict[str, float]], bool] | None = None
    start_after_ms: int | None = None
    start_after_fragment: int | None = None
    first_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    frames: int = 0
    first_wall: float | None = None
    last_wall: float | None = None
    completed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def skipped(self, info: FrameInfo) -> bool:
        """Whether the StartSelector puts this frame before the start."""
        if self.start_after_ms is not None and info.received_wall * 1000.0 < self.start_after_ms:
            return True
        return self.start_after_fragment is not None and int(info.fragment_number) < self.start_after_fragment

    def frame(self, pixels: np.ndarray, info: FrameInfo) -> tuple[list[dict[str, Any]], int]:
        """The notifications one analysed frame gives (one LABEL_DETECTED per label seen here for the first time
        in this session, listing that label's boxes), and how many wanted boxes it has."""
        if self.skipped(info):
            return [], 0
        with self._lock:
            self.frames += 1
            self.first_wall = info.received_wall if self.first_wall is None else self.first_wall
            self.last_wall = info.received_wall
        found = find_labels(self.detect, pixels, self.labels, self.min_confidence, self.keep)
        new = [label for label in SUPPORTED if label not in self.first_seen and any(f.label == label for f in found)]
        out = []
        if new:
            frame_jpeg = jpeg(pixels)
            mapping = {"kinesisVideoMapping": {
                "fragmentNumber": info.fragment_number,
                "serverTimestamp": int(round(info.server_timestamp * 1000)),
                "producerTimestamp": int(round(info.producer_timestamp * 1000)),
                "frameOffsetMillis": int(round(info.frame_offset_s * 1000)),
            }}
            for label in new:
                event_id = str(uuid.uuid4())
                frame_uri = self.put_object(f"{event_id}/frame.jpg", frame_jpeg)
                entries = []
                for f in (f for f in found if f.label == label):
                    label_id = str(uuid.uuid4())
                    x0, y0, x1, y1 = f.pixels
                    crop_uri = self.put_object(f"{event_id}/{label_id}.jpg", jpeg(pixels[y0:y1, x0:x1]))
                    entries.append({"id": label_id, "name": label, "confidence": f.confidence,
                                    "frameImageUri": frame_uri, "croppedImageUri": crop_uri,
                                    "videoMapping": mapping, "boundingBox": f.box})
                message = label_message(stream_arn=self.stream_arn, label_entries=entries, event_id=event_id,
                                        tags=self.tags, session_id=self.session_id,
                                        start_request=self.start_request)
                self.record(message, hashlib.sha256(frame_jpeg).hexdigest(), frame_uri)
                self.first_seen[label] = {"eventId": event_id, "at": info.received_wall,
                                          "confidence": entries[0]["confidence"]}
                out.append(message)
        return out, len(found)

    def complete(self, how: str) -> dict[str, Any] | None:
        """The STREAM_PROCESSING_COMPLETE notification (once a session; None after the first call). ``how``:
        why the session ended, in words."""
        with self._lock:
            if self.completed:
                return None
            self.completed = True
            processed = 0 if self.first_wall is None else int(round((self.last_wall - self.first_wall) * 1000))
        seen = ", ".join(f"{label} (confidence {v['confidence']:.1f}, event {v['eventId']})"
                         for label, v in self.first_seen.items()) or "none"
        text = (f"{how}; frames analysed {self.frames}; labels detected: {seen}; labels looked for: "
                f"{', '.join(self.labels)} (PACKAGE is not detected by faceledger)")
        return completion_message(stream_arn=self.stream_arn, processed_ms=processed, message=text,
                                  event_id=str(uuid.uuid4()), tags=self.tags, session_id=self.session_id,
                                  start_request=self.start_request)
