"""Faces of a video: detected in sampled frames, tracked, the best faces of each tracklet embedded.

:class:`FacePass` is fed frames (from :func:`faceledger.video.decode.frames`, or a live source) and
``cut()`` at shot cuts. Detection runs on every sampled frame (``engine.analyze(embed=False)``: the same
detector, landmarks, pose and quality as DetectFaces); only the ``best_k`` best faces of each tracklet
(by :func:`faceledger.video.track.face_quality`) are embedded, when the tracklet closes (at a cut or
checkpoint), from a crop kept around each candidate and its landmarks: a face seen for 40 seconds costs 3 embeddings, not
200. Works with any :class:`faceledger.vision.FaceEngine` (whatever face model a collection uses).
``timings`` holds the CPU seconds of each stage (detect, track, embed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..vision import FaceAnalysis
from ..vision.face_quality import band
from .decode import Frame
from .track import FaceTracker, Tracklet, face_quality

__all__ = ["FacePass", "Sighting"]

#: Faces embedded per tracklet (its best ones).
BEST_FACES = 3
#: A candidate face is kept as a crop this many box sizes around it (the landmark model needs context).
CROP_MARGIN = 0.6


@dataclass
class Sighting:
    """One face in one sampled frame: its tracklet id and the analysis (detection, landmarks, pose, quality)."""

    timestamp_ms: int
    frame_index: int
    track: int
    face: FaceAnalysis
    width: int
    height: int


@dataclass
class _Candidate:
    quality: float
    crop: np.ndarray
    points: np.ndarray  # the landmark model's points, in the crop's pixels
    band: str  # the face's quality band (vision.face_quality.band): which Similarity table scores it


@dataclass
class _Open:
    tracklet: Tracklet
    candidates: list[_Candidate] = field(default_factory=list)


class FacePass:
    """Detect, track and (``embed=True``) embed the best faces of each tracklet; see the module docstring."""

    def __init__(self, engine, fps: float, *, embed: bool = True, best_k: int = BEST_FACES, first_track: int = 0,
                 max_faces: int = 100) -> None:
        self.engine = engine
        self.embed = embed
        self.best_k = best_k
        self.max_faces = max_faces
        self.tracker = FaceTracker(fps, first_track)
        self._open: dict[int, _Open] = {}
        self.timings = {"detect": 0.0, "track": 0.0, "embed": 0.0}
        self.frames = 0
        self.faces = 0

    @property
    def next_track(self) -> int:
        return self.tracker.next_id

    def frame(self, frame: Frame) -> list[Sighting]:
        """The faces of one sampled frame, each with its tracklet id."""
        t0 = time.perf_counter()
        faces = self.engine.analyze(frame.image, embed=False, max_faces=self.max_faces)
        t1 = time.perf_counter()
        boxes = [(f.detection.left, f.detection.top, f.detection.right, f.detection.bottom) for f in faces]
        ids = self.tracker.update(boxes, [f.detection.confidence / 100.0 for f in faces], frame.timestamp_ms)
        h, w = frame.image.shape[:2]
        out = []
        for face, track in zip(faces, ids):
            slot = self._open.get(track)
            if slot is None:
                slot = self._open[track] = _Open(Tracklet(track, frame.timestamp_ms, frame.timestamp_ms))
            slot.tracklet.last_ms = frame.timestamp_ms
            slot.tracklet.count += 1
            if self.embed:
                self._offer(slot, frame.image, face)
            out.append(Sighting(frame.timestamp_ms, frame.index, track, face, w, h))
        self.timings["detect"] += t1 - t0
        self.timings["track"] += time.perf_counter() - t1
        self.frames += 1
        self.faces += len(faces)
        return out

    def _offer(self, slot: _Open, image: np.ndarray, face: FaceAnalysis) -> None:
        d = face.detection
        q = face_quality(d.width, d.height, d.confidence, face.pose.yaw, face.pose.pitch)
        if len(slot.candidates) >= self.best_k and q <= slot.candidates[-1].quality:
            return
        h, w = image.shape[:2]
        mx, my = d.width * CROP_MARGIN, d.height * CROP_MARGIN
        x0, y0 = max(0, int(d.left - mx)), max(0, int(d.top - my))
        x1, y1 = min(w, int(np.ceil(d.right + mx))), min(h, int(np.ceil(d.bottom + my)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        # the landmark model runs on the whole frame (a detector's own points, as YuNet's, are in its
        # coordinates); the embedder gets the crop and the points moved into it
        try:
            pts = np.asarray(self.engine.landmarks.locate(image, d), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a face the landmark model cannot take is not a candidate
            return
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        slot.candidates.append(_Candidate(q, crop, pts - np.array([x0, y0], dtype=np.float64),
                                          band(face.quality.measures, face.pose.yaw)))
        slot.candidates.sort(key=lambda c: -c.quality)
        del slot.candidates[self.best_k:]

    def cut(self) -> list[Tracklet]:
        """A shot cut or a checkpoint: every open tracklet closes (its best faces embedded) and is returned;
        later faces start new tracklets."""
        self.tracker.reset()
        closed, self._open = self._open, {}
        t0 = time.perf_counter()
        out = []
        for slot in closed.values():
            for cand in slot.candidates:
                try:
                    vec = np.asarray(self.engine.embedder.embed(cand.crop, [cand.points]), dtype=np.float32)[0]
                except Exception:  # noqa: BLE001 - a face the embedder cannot take is left out, not the job
                    continue
                slot.tracklet.faces.append((cand.quality, vec, cand.band))
            out.append(slot.tracklet)
        self.timings["embed"] += time.perf_counter() - t0
        return out
