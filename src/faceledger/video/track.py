"""Faces across frames: tracklets (SORT from the ``trackers`` package) and their merging into persons.

A *tracklet* is one face followed from sampled frame to sampled frame by box overlap (SORT: a Kalman
filter and IoU association). The tracker is reset at every shot cut (a box of the next shot overlapping
one of the last shot is not the same face) and at checkpoints, so a person seen in two shots, or leaving
and coming back, is several tracklets. :func:`merge_tracklets` merges them back by embedding: two groups of
tracklets are one person when they are never seen at the same time and the best Similarity between their
best faces (each pair read on its quality band's table, as search reads it) reaches the merge threshold: at least :data:`MERGE_SIMILARITY` (90, FMR 1e-5 a comparison),
stricter than search's default (80), and raised with the number of comparisons made so that the job
expects at most :data:`MAX_EXPECTED_WRONG_MERGES` wrong merges (:func:`merge_threshold`). A wrong merge
cannot be undone (it would give one person another's matches); a missed one only shows one person twice.
The median Similarity between two tracklets' faces was tried first and is too strict: the two tracklets of
Lin-Manuel Miranda in one shot of the hamilton clip (lost for one sampled frame) are 78 by median, 99 by best
pair, and each matches his reference photo at 95-99.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["MERGE_SIMILARITY", "FaceTracker", "Tracklet", "face_quality", "merge_threshold", "merge_tracklets"]

#: The lowest Similarity (calibrated: FMR 1e-5) at which two tracklets are merged into one person ...
MERGE_SIMILARITY = 90.0
#: ... raised for the number of face comparisons a job's merging makes, to at most this many wrong merges.
MAX_EXPECTED_WRONG_MERGES = 0.01
#: How long (seconds) SORT keeps a face it no longer sees before it starts a new tracklet for it.
LOST_TRACK_SECONDS = 1.0
#: A face whose box is this many times wider or narrower than its tracklet's last box starts a new tracklet: box
#: overlap alone let a face take over another's tracklet where their boxes overlapped (the crowd clip: a head
#: seen from behind, 0.026 of the frame wide, then the boy in front of it, 0.042, as one tracklet at 1.6-2.2 s);
#: a face walking toward the camera grows far less between two samples. A face split in two this way is merged
#: back by embedding (merge_tracklets) when its two parts are never seen at the same time.
MAX_SIZE_CHANGE = 1.5
#: Box overlap (IoU) that associates a face with a tracklet from one sampled frame to the next (SORT compares
#: the Kalman filter's predicted box): 0.1, as a head moves fast between samples 200 ms apart (Miranda's face
#: at 4.0 s in the hamilton clip: IoU 0.22 with the sample before, less with the prediction, which broke his
#: track at 0.2); two faces of one frame are kept apart by the assignment, which maximises the total overlap.
MIN_IOU = 0.1


@dataclass
class Tracklet:
    """One tracked face: ``track`` (its id in the job), first and last timestamps (ms), how many sampled
    frames show it, and the embeddings of its best faces (``faces``: (quality, vector, quality band) triples, best
    first; the band is vision.face_quality.band's, which Similarity table a search scores the face with)."""

    track: int
    first_ms: int
    last_ms: int
    count: int = 0
    faces: list[tuple[float, np.ndarray, str]] = field(default_factory=list)

    def overlaps(self, other: "Tracklet") -> bool:
        return self.first_ms <= other.last_ms and other.first_ms <= self.last_ms


def face_quality(width: float, height: float, confidence: float, yaw: float, pitch: float) -> float:
    """How good a face is to recognise: its size (up to 160 px), detector confidence and frontality."""
    side = min(max(0.0, width), max(0.0, height), 160.0)
    frontal = max(0.1, math.cos(math.radians(min(abs(yaw), 89.0)))) * max(0.1, math.cos(math.radians(
        min(abs(pitch), 89.0))))
    return float(side * frontal * max(0.0, confidence) / 100.0)


class FaceTracker:
    """SORT over face boxes; ids are unique across resets (``first_id``: the first id to give)."""

    def __init__(self, fps: float, first_id: int = 0) -> None:
        import warnings

        from trackers import SORTTracker

        warnings.filterwarnings("ignore", module="trackers")
        self.fps = max(0.1, float(fps))
        self._sort = SORTTracker(lost_track_buffer=max(1, int(round(30 * LOST_TRACK_SECONDS))), frame_rate=self.fps,
                                 track_activation_threshold=0.0, minimum_consecutive_frames=1,
                                 minimum_iou_threshold=MIN_IOU)
        self.next_id = first_id
        self._ids: dict[int, tuple[int, object]] = {}
        self._widths: dict[int, float] = {}  # each tracklet's last box width (pixels), by SORT track object

    def reset(self) -> None:
        """Forget every tracklet (a shot cut, a checkpoint): later faces start new tracklets."""
        self._sort.reset()
        self._ids = {}
        self._widths = {}

    def update(self, boxes: Sequence[tuple[float, float, float, float]], scores: Sequence[float],
               timestamp_ms: int) -> list[int]:
        """The tracklet id of each box (left, top, right, bottom in pixels) of one sampled frame; a box with a
        coordinate that is not finite, or no width or height, is not tracked: a tracklet of its own."""
        import supervision as sv

        raw_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        valid = np.isfinite(raw_boxes).all(1) & (raw_boxes[:, 2] > raw_boxes[:, 0]) & (raw_boxes[:, 3] > raw_boxes[:, 1])
        if not valid.all():
            kept = iter(self.update([tuple(b) for b in raw_boxes[valid]],
                                    [sc for sc, v in zip(scores, valid) if v], timestamp_ms))
            out_ids = []
            for v in valid:
                if v:
                    out_ids.append(next(kept))
                else:
                    out_ids.append(self.next_id)
                    self.next_id += 1
            return out_ids
        if len(boxes) == 0:
            detections = sv.Detections.empty()
        else:
            detections = sv.Detections(xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                                       confidence=np.asarray(scores, dtype=np.float32))
        out = self._sort.update(detections)
        # SORT gives a new tracklet its id only from its second frame (-1 on the first): the tracklet objects
        # are followed instead, so that a face has one id from the first frame it is seen.
        by_id = {t.tracker_id: t for t in self._sort.tracks if t.tracker_id >= 0}
        fresh = [t for t in self._sort.tracks if t.tracker_id < 0 and t.number_of_successful_updates == 1
                 and t.time_since_update == 0]
        ids = []
        for i, raw in enumerate(out.tracker_id if len(boxes) else []):
            obj = by_id.get(int(raw))
            if obj is None and fresh:
                box = np.asarray(boxes[i], dtype=np.float64)
                obj = min(fresh, key=lambda t: float(np.abs(np.asarray(t.get_state_bbox()) - box).sum()))
                fresh.remove(obj)
            if obj is None:  # not kept by SORT: a tracklet of its own
                ids.append(self.next_id)
                self.next_id += 1
                continue
            key = id(obj)
            width = max(1e-9, float(boxes[i][2]) - float(boxes[i][0]))
            last = self._widths.get(key)
            if key not in self._ids or (last is not None and max(width / last, last / width) > MAX_SIZE_CHANGE):
                self._ids[key] = (self.next_id, obj)  # the object is held so that its id() stays its own
                self.next_id += 1
            self._widths[key] = width
            ids.append(self._ids[key][0])
        live = {id(t) for t in self._sort.tracks}  # forget tracklets SORT dropped: memory stays per live face
        self._ids = {k: v for k, v in self._ids.items() if k in live}
        self._widths = {k: v for k, v in self._widths.items() if k in live}
        return ids


def merge_threshold(tracklets: Sequence[Tracklet], floor: float = MERGE_SIMILARITY) -> float:
    """The Similarity two tracklets' best faces must reach to be merged: ``floor``, raised until FMR x the
    number of face pairs merging may compare is at most MAX_EXPECTED_WRONG_MERGES."""
    from ..vision.similarity import similarity_from_fmr

    n = [len(t.faces) for t in tracklets if t.faces]
    total = sum(n)
    comparisons = (total * total - sum(k * k for k in n)) / 2
    if comparisons <= 0:
        return floor
    return float(min(100.0, max(floor, similarity_from_fmr(min(1.0, MAX_EXPECTED_WRONG_MERGES / comparisons)))))


def merge_tracklets(tracklets: Sequence[Tracklet], similarity: Callable[[np.ndarray, str], np.ndarray],
                    min_similarity: float | None = None) -> list[list[Tracklet]]:
    """Persons: groups of tracklets, in order of first appearance (each group's tracklets in time order).

    ``similarity(distances, pair_band)``: calibrated Similarity (0-100) of an array of embedding distances
    between faces whose pair is in quality band ``pair_band`` (vision.face_quality.pair_band of the two faces'
    bands: a blurred or covered face's distance is read on its band's table, as search reads it, never on the
    main table, which overstates it: two blurred audience faces of the hamilton clip 0.96 apart score 99 on
    faceledger-sface-v2's main table and 68 on the covered-both one); ``min_similarity``: the merge threshold
    (None: :func:`merge_threshold`). Greedy: the two groups whose best pair of faces is the most similar are
    merged first, as long as that Similarity reaches the threshold and no tracklet of one is seen at the same
    time as a tracklet of the other. Tracklets without embeddings stay alone."""
    from ..vision.face_quality import pair_band

    if min_similarity is None:
        min_similarity = merge_threshold(tracklets)
    ordered = sorted(tracklets, key=lambda t: (t.first_ms, t.track))
    first = np.array([t.first_ms for t in ordered], dtype=np.int64)
    last = np.array([t.last_ms for t in ordered], dtype=np.int64)
    # every face in one matrix, tracklet by tracklet; pair bands looked up by band code (a few bands)
    withfaces = [i for i, t in enumerate(ordered) if t.faces]
    edges: list[tuple[float, int, int]] = []  # (Similarity, i, j) of pairs reaching the threshold: sparse
    if len(withfaces) > 1:
        vectors = np.stack([v for i in withfaces for _, v, _band in ordered[i].faces]).astype(np.float64)
        names = sorted({str(b) for i in withfaces for _, _v, b in ordered[i].faces})
        code = {b: c for c, b in enumerate(names)}
        codes = np.array([code[str(b)] for i in withfaces for _, _v, b in ordered[i].faces])
        pair_names = [[pair_band(a, b) for b in names] for a in names]
        pair_list = sorted({p for row in pair_names for p in row})
        pair_code = np.array([[pair_list.index(p) for p in row] for row in pair_names])
        starts = np.concatenate([[0], np.cumsum([len(ordered[i].faces) for i in withfaces])])
        norms = (vectors * vectors).sum(1)
        tracks = np.array(withfaces)
        for a in range(len(withfaces) - 1):
            i = withfaces[a]
            rows, rest = slice(starts[a], starts[a + 1]), slice(starts[a + 1], len(vectors))
            d = np.sqrt(np.maximum(0.0, norms[rows][:, None] + norms[rest][None, :]
                                   - 2 * vectors[rows] @ vectors[rest].T))
            bands = pair_code[codes[rows][:, None], codes[rest][None, :]]
            s = np.full(d.shape, -1.0)
            for pb in np.unique(bands):
                mask = bands == pb
                s[mask] = np.asarray(similarity(d[mask], pair_list[pb]), dtype=np.float64)
            col = s.max(0)
            per = np.maximum.reduceat(col, starts[a + 1:-1] - starts[a + 1])  # best pair per later tracklet
            later = tracks[a + 1:]
            keep = (per >= min_similarity) & ~((first[later] <= last[i]) & (first[i] <= last[later]))
            edges.extend((float(per[b]), i, int(later[b])) for b in np.flatnonzero(keep))
    # greedy, most similar first: two groups' score is their best pair's (an edge), and a group pair that
    # overlaps in time stays overlapping as groups grow, so the edges in order of Similarity decide it all
    edges.sort(key=lambda e: (-e[0], e[1], e[2]))
    root = list(range(len(ordered)))
    members: dict[int, list[int]] = {i: [i] for i in range(len(ordered))}
    refused: set[tuple[int, int]] = set()

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for _s, x, y in edges:
        rx, ry = find(x), find(y)
        if rx == ry or (min(rx, ry), max(rx, ry)) in refused:
            continue
        mx, my = np.array(members[rx]), np.array(members[ry])
        if np.any((first[mx][:, None] <= last[my][None, :]) & (first[my][None, :] <= last[mx][:, None])):
            refused.add((min(rx, ry), max(rx, ry)))
            continue
        keep_root, gone = min(rx, ry), max(rx, ry)
        root[gone] = keep_root
        members[keep_root] = members[keep_root] + members.pop(gone)
        refused = {(min(find(p), find(q)), max(find(p), find(q))) for p, q in refused}
    persons = [sorted((ordered[k] for k in g), key=lambda t: t.first_ms) for g in members.values()]
    persons.sort(key=lambda g: (g[0].first_ms, g[0].track))
    return persons
