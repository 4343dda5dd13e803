"""Hostile inputs of video.track: boxes that are not boxes, sizes that churn tracklets, crowds of tracklets."""

from __future__ import annotations

import numpy as np

from faceledger.video.track import FaceTracker, Tracklet, merge_tracklets

BANDS = ["calibrated", "degraded", "covered", "turned"]


def _sim(d, band):
    """A Similarity that differs by pair band (so a pair read on the wrong table would show)."""
    return 100.0 - np.asarray(d, dtype=np.float64) * (10.0 + len(band) % 5)


def _greedy(tracklets, similarity, threshold):
    """The definition merge_tracklets keeps: repeatedly merge the two groups whose best face pair is most similar."""
    from faceledger.vision.face_quality import pair_band

    groups = [[t] for t in sorted(tracklets, key=lambda t: (t.first_ms, t.track))]

    def score(a, b):
        if any(x.overlaps(y) for x in a for y in b):
            return -1.0
        return max((float(similarity(np.array([np.linalg.norm(fa[1].astype(np.float64) - fb[1])]),
                                     pair_band(fa[2], fb[2]))[0])
                    for x in a for y in b for fa in x.faces for fb in y.faces), default=-1.0)

    while True:
        cands = [(score(groups[i], groups[j]), i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))]
        cands = [c for c in cands if c[0] >= threshold]
        if not cands:
            break
        _, i, j = max(cands, key=lambda c: (c[0], -c[1], -c[2]))
        groups[i] += groups.pop(j)
    return sorted(sorted(t.track for t in g) for g in groups)


def test_merging_matches_the_greedy_definition_on_random_crowds():
    rng = np.random.default_rng(7)
    for _ in range(60):
        centers = rng.standard_normal((int(rng.integers(1, 5)), 16))
        tracklets = []
        for i in range(int(rng.integers(0, 10))):
            first = int(rng.integers(0, 1000))
            person = int(rng.integers(len(centers)))
            faces = [(1.0, (centers[person] + rng.standard_normal(16) * 0.3).astype(np.float32),
                      str(rng.choice(BANDS))) for _ in range(int(rng.integers(0, 3)))]  # some have no faces
            tracklets.append(Tracklet(i, first, first + int(rng.integers(0, 200)), 1, faces))
        got = sorted(sorted(t.track for t in g) for g in merge_tracklets(tracklets, _sim, 85.0))
        assert got == _greedy(tracklets, _sim, 85.0)


def test_a_crowd_of_2000_tracklets_merges_each_persons_parts():
    # 1000 persons, each seen as two tracklets far apart in time (a size churn or a lost track): the pair
    # scoring is vectorised and keeps only pairs over the threshold, so this is seconds and megabytes
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((1000, 64)) * 10
    tracklets = []
    for p in range(1000):
        for part in range(2):
            first = p * 10 + part * 100_000
            faces = [(1.0, (centers[p] + rng.standard_normal(64) * 0.01).astype(np.float32), BANDS[p % 4])
                     for _ in range(2)]
            tracklets.append(Tracklet(2 * p + part, first, first + 5, 1, faces))
    tracklets.append(Tracklet(9999, 0, 10, 1, []))  # no faces: alone
    persons = merge_tracklets(tracklets, _sim, 95.0)
    groups = sorted(sorted(t.track for t in g) for g in persons)
    assert len(groups) == 1001
    assert [9999] in groups
    assert all(g == [g[0], g[0] + 1] and g[0] % 2 == 0 for g in groups if g != [9999])


def test_boxes_that_are_not_boxes_are_tracklets_of_their_own():
    tracker = FaceTracker(5)
    good = (100.0, 100.0, 160.0, 160.0)
    first = tracker.update([good], [0.9], 0)
    for k, bad in enumerate([(float("nan"), 10, 30, 20), (0, 0, float("inf"), 20), (10, 10, 10, 20),
                             (30, 10, 10, 20), (10, 20, 30, 20)]):
        ids = tracker.update([bad, good], [0.9, 0.9], 200 * (k + 1))
        assert ids[1] == first[0]  # the real face keeps its tracklet
        assert ids[0] not in first and ids[0] != ids[1]
        first.append(ids[0])


def test_a_box_alternating_in_size_keeps_the_trackers_memory_per_live_face():
    tracker = FaceTracker(5)
    ids = set()
    for f in range(60):
        w = 40 if f % 2 else 100
        ids.update(tracker.update([(100, 100, 100 + w, 100 + w)], [0.9], f * 200))
    assert len(ids) == 60  # every size jump starts a tracklet (MAX_SIZE_CHANGE) ...
    assert len(tracker._ids) <= len(tracker._sort.tracks) and len(tracker._widths) <= len(tracker._sort.tracks)
