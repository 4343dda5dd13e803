"""faceledger.evaluation.metrics against hand-computed cases (tiny score sets with known answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceledger.evaluation import metrics as M
from faceledger.evaluation.datasets import read_groups, read_pairs
from faceledger.service.risk import size_aware_threshold

GEN = np.array([0.1, 0.2, 0.3, 0.6])
IMP = np.array([0.4, 0.5, 0.7, 0.8])


def test_clopper_pearson_known_values():
    assert M.clopper_pearson(0, 10) == pytest.approx((0.0, 0.30850), abs=1e-4)
    assert M.clopper_pearson(5, 10) == pytest.approx((0.18709, 0.81291), abs=1e-4)
    assert M.clopper_pearson(10, 10) == pytest.approx((0.69150, 1.0), abs=1e-4)
    lo, hi = M.clopper_pearson(3100, 31_015_157)
    assert lo < 1e-4 < hi and hi - lo < 1e-5


def test_eer_is_where_the_rates_cross():
    # at distance 0.4: impostor 0.4 accepted (FMR 1/4), genuine 0.6 rejected (FNMR 1/4)
    e = M.eer(GEN, IMP)
    assert e["eer"] == pytest.approx(0.25)
    assert e["threshold"] == pytest.approx(0.4)
    assert M.eer([0.1, 0.2], [0.5, 0.6])["eer"] == 0.0  # separable


def test_tar_at_far():
    r = M.tar_at_far(GEN, IMP, 0.25)  # one impostor (0.4) may pass: threshold below 0.5
    assert (r["far"]["k"], r["tar"]["k"], r["measurable"]) == (1, 3, True)
    assert 0.4 <= r["threshold"] < 0.5
    r = M.tar_at_far(GEN, IMP, 0.1)  # 0.1 x 4 < 1: no impostor may pass, and it cannot be measured
    assert (r["far"]["k"], r["tar"]["k"], r["measurable"]) == (0, 3, False)
    assert r["threshold"] < 0.4


def test_ten_fold_accuracy_chooses_the_threshold_on_the_other_folds():
    d = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.35])
    same = np.array([1, 0, 1, 0, 1, 0], bool)
    folds = np.array([0, 0, 1, 1, 2, 2])
    r = M.ten_fold_accuracy(d, same, folds)
    # folds 0,1 alone are separable at 0.5; fold 2 (0.3 same, 0.35 different) is tested at a threshold
    # learned on folds 0 and 1 (between 0.2 and 0.8: the midpoint 0.5): 0.35 accepted -> 1/2 correct
    assert r["folds"] == [1.0, 1.0, 0.5]
    assert r["mean"] == pytest.approx(2.5 / 3)
    assert M.best_threshold(np.r_[GEN, IMP], np.r_[[True] * 4, [False] * 4]) == pytest.approx(0.35)


def test_identification_fnir_fpir_and_false_matches():
    gallery = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = ["a", "b", "c"]
    mated = np.array([[0.3, 0.0], [10.0, 2.0]])  # a at 0.3; b at 2.0
    nonmated = np.array([[0.0, 9.5], [5.0, 5.0], [0.4, 0.0]])  # c at 0.5; nothing near (7.07); a at 0.4
    r = M.identification(gallery, labels, mated, ["a", "b"], nonmated, {"t1": 1.0, "t0": 0.45})
    t1, t0 = r["thresholds"]["t1"], r["thresholds"]["t0"]
    assert (t1["fnir"]["k"], t1["fnir"]["n"]) == (1, 2)  # b's mate is 2.0 away
    assert (t1["fpir"]["k"], t1["fpir"]["n"]) == (2, 3)
    assert t1["false_matches"] == 2
    assert (t0["fnir"]["k"], t0["fpir"]["k"], t0["false_matches"]) == (1, 1, 1)


def test_differential_is_max_over_min():
    d = M.differential({"x": 1e-4, "y": 4e-4, "z": 2e-4, "none": None})
    assert d["ratio"] == pytest.approx(4.0)
    assert (d["max_group"], d["min_group"]) == ("y", "x")
    assert M.differential({"x": 0.0, "y": 1e-3})["ratio"] == math.inf
    assert M.differential({"x": 1e-3})["ratio"] is None


def test_all_pairs_and_within_group():
    v = np.array([[0.0], [1.0], [3.0], [6.0]])
    gen, imp = M.all_pairs(["p", "p", "q", "r"], vectors=v)
    assert sorted(gen.tolist()) == [1.0]
    assert sorted(imp.tolist()) == [2.0, 3.0, 3.0, 5.0, 6.0]
    gen, imp = M.within_group_pairs(["p", "p", "q", "r"], ["g", "g", "g", "h"], v, "g")
    assert sorted(gen.tolist()) == [1.0] and sorted(imp.tolist()) == [2.0, 3.0]


def test_size_aware_threshold():
    # 1 expected false match in a 25,000-face search: FMR 4e-5 -> Similarity 40 - 10 log10(4e-5) = 83.98
    assert size_aware_threshold(80, 25_000, 1.0) == pytest.approx(83.979, abs=1e-3)
    assert size_aware_threshold(90, 25_000, 1.0) == 90  # never lower than requested
    assert size_aware_threshold(80, 100, 1.0) == 80  # small collection: 80 already expects 0.01
    # fewer than 1 false match in 1,000 searches of 25,000 faces: FMR 4e-8 -> 99 + (7.398 - 5.9) / 3.1
    assert size_aware_threshold(80, 25_000, 1e-3) == pytest.approx(99.4832, abs=1e-4)
    assert size_aware_threshold(80, 25_000, 0.0) == 100.0
    assert size_aware_threshold(80, 25_000, None) == 80


def test_read_pairs_and_groups(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text("2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n")
    pairs = read_pairs(p)
    assert [(x.fold, x.same) for x in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert pairs[1].b == "B/B_0003.jpg"
    g = tmp_path / "g.csv"
    g.write_text("key,group\nA,x\nB/B_0003.jpg,y\n")
    assert read_groups(g) == {"A": "x", "B/B_0003.jpg": "y"}


def test_known_label_errors_mask():
    from faceledger.evaluation.label_errors import same_person_mask

    probes = ["Noer_Moeis/Noer_Moeis_0001.jpg", "Colin_Powell/Colin_Powell_0046.jpg",
              "Colin_Powell/Colin_Powell_0001.jpg", "Joe_Lieberman/Joe_Lieberman_0002.jpg"]
    gallery = ["Noer_Muis/Noer_Muis_0001.jpg", "Joe_Lieberman/Joe_Lieberman_0001.jpg",
               "Colin_Powell/Colin_Powell_0046.jpg"]
    m = same_person_mask(probes, gallery)
    # identity-level entry, either direction; image-level entry only for that image, either side
    assert m.tolist() == [[True, False, False],
                          [False, True, False],
                          [False, False, False],
                          [False, False, True]]


def test_margin_rule_in_eval_identify_answers_as_the_service():
    """A toy scale (log10 FMR = -9 + 10 d up to d = 0.5, Similarity 80 at 0.5) and 2-d vectors: a stranger
    equally close to two gallery identities is ambiguous (no answer); one who stands out is a false match;
    the mate who stands out is found."""
    from faceledger.evaluation.run import _apply_margin_rule
    from faceledger.vision.similarity import SimilarityScale

    scale = SimilarityScale("toy", [0.0, 0.5, 1.0, 2.0], [-9.0, -4.0, -1.0, 0.0])
    G = np.array([[0.0, 0.0], [0.6, 0.0], [5.0, 5.0]])  # g0, g1 0.6 apart: two identities at Similarity 80
    gl = np.array(["p0", "p1", "p2"])
    mated, ml = np.array([[-0.1, 0.0]]), np.array(["p0"])  # 0.1 from g0 (-8), 0.7 from g1 (-2.8): stands out
    strangers = np.array([[0.3, 0.0],    # 0.3 from both: a 0-decade gap, ambiguous
                          [0.0, 0.2]])   # 0.2 (-7) vs 0.632 (-3.2): answered, a false match
    res = {"thresholds": {"x": {"distance": 0.45}}}
    miss, fp = _apply_margin_rule(res, "x", G, gl, mated, ml, strangers, scale, 1.0)
    assert miss.tolist() == [False] and fp.tolist() == [False, True]
    row = res["thresholds"]["x"]
    assert row["fpir"]["k"] == 1 and row["fnir"]["k"] == 0 and row["false_matches"] == 1
    assert row["ambiguous_searches"] == {"mated": 0, "nonmated": 1}
    # without the rule the first stranger is a false match too
    res = {"thresholds": {"x": {"distance": 0.45}}}
    _, fp = _apply_margin_rule(res, "x", G, gl, mated, ml, strangers, scale, 0.0)
    assert fp.tolist() == [True, True]


def test_ten_fold_accuracy_decides_every_pair_a_failure_to_enrol_as_different():
    """The standard protocol decides every listed pair: a pair with an image that gave no face (inf) is
    "different": right for a mismatched pair, an error for a matched one. Beside it, the accuracy over the
    enrolled pairs and the strictest reading (every failure to enrol an error), at the same thresholds."""
    inf = np.inf
    d = np.array([0.1, 0.9, inf, 0.2, 0.8, inf])
    same = np.array([1, 0, 1, 1, 0, 0], bool)
    folds = np.array([0, 0, 0, 1, 1, 1])
    r = M.ten_fold_accuracy(d, same, folds)
    assert r["folds"] == pytest.approx([2 / 3, 1.0])  # fold 0: the matched pair without a face is an error
    assert r["mean"] == pytest.approx(5 / 6)
    assert r["enrolled"]["folds"] == [1.0, 1.0] and r["enrolled"]["mean"] == 1.0
    assert r["fte_as_error"]["folds"] == pytest.approx([2 / 3, 2 / 3])  # the mismatched one counted wrong too
    assert (r["pairs"], r["failures_to_enrol"], r["failures_to_enrol_matched"]) == (6, 2, 1)
    assert all(np.isfinite(r["thresholds"]))  # chosen among finite distances only
    # without failures to enrol the three readings are one
    finite = M.ten_fold_accuracy(d[np.isfinite(d)], same[np.isfinite(d)], folds[np.isfinite(d)])
    assert finite["mean"] == finite["enrolled"]["mean"] == finite["fte_as_error"]["mean"] == 1.0
