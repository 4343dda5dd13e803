"""The ``faceledger eval`` procedures: embed (cached), measure (metrics), write report.json + report.html."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as M
from .datasets import draw_impostors, group_of, identity_groups, person_of, read_groups, read_pairs
from .embed import Embeddings, embed_dataset, list_images
from .report import require_plotting

LEVELS = (80, 90, 95, 99)
FARS = {"1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}
DEFAULT_THRESHOLD = 80.0  # the service's default FaceMatchThreshold / UserMatchThreshold


def _scale(scale, engine):
    if scale is not None:
        return scale
    from ..vision.similarity import SimilarityScale

    return SimilarityScale.load(engine.model_version)


def _engine(engine):
    if engine is None:
        from ..vision import default_engine

        engine = default_engine()
    return engine


def _header(emb: Embeddings, scale, dataset: Path) -> dict[str, Any]:
    return {"dataset": str(dataset), "model_version": emb.model_version, "detector": emb.detector,
            "calibration": {"model": scale.model, "source": scale.meta.get("source", "packaged table"),
                            "levels": {str(s): {"distance": scale.max_distance(s), "nominal_fmr": scale.fmr(s)}
                                       for s in (60, 70, *LEVELS)}},
            "failures_to_enrol": len(emb.failures)}


def _levels(scale) -> dict[str, float]:
    return {str(s): scale.max_distance(s) for s in LEVELS}


def _group_rates(paths, labels, groups_of_image, vectors, scale, min_identities: int = 2) -> dict[str, Any]:
    """Per group: FMR over impostor pairs within the group and FNMR over its genuine pairs, at each level;
    the differential (max/min) of each."""
    groups = np.array([g if g is not None else "" for g in groups_of_image], dtype=object)
    out: dict[str, Any] = {"groups": {}, "differential": {}}
    levels = _levels(scale)
    for g in sorted({x for x in groups.tolist() if x}):
        idx = np.flatnonzero(groups == g)
        ids = len(set(np.asarray(labels)[idx].tolist()))
        if ids < min_identities:
            continue
        gen, imp = M.within_group_pairs(labels, groups.astype(str), vectors, g)
        row: dict[str, Any] = {"identities": ids, "images": int(idx.size), "impostor_pairs": int(imp.size),
                               "genuine_pairs": int(gen.size), "at": {}}
        for name, t in levels.items():
            row["at"][name] = M.rates_at(gen, imp, t)
        row["eer"] = M.eer(gen, imp)["eer"] if gen.size and imp.size else None
        row["_gen"], row["_imp"] = gen, imp
        out["groups"][g] = row
    for name in levels:
        for what in ("fmr", "fnmr"):
            out["differential"].setdefault(name, {})[what] = M.differential(
                {g: r["at"][name][what]["rate"] for g, r in out["groups"].items()})
    return out


def _embeddings_and_scale(dataset: Path, images, embeddings, engine, scale, cache_dir, progress):
    """The dataset's embeddings (given, or computed with the engine through the cache) and the scale."""
    if embeddings is None:
        engine = _engine(engine)
        embeddings = embed_dataset(dataset, images, engine=engine, cache_dir=cache_dir, progress=progress)
    return embeddings, _scale(scale, engine)


def verify(dataset: Path, pairs_file: Path, out: Path, *, impostors: int = 0, groups_file: Path | None = None,
           seed: int = 0, engine=None, scale=None, cache_dir: Path | None = None, progress: bool = True,
           embeddings: Embeddings | None = None) -> dict[str, Any]:
    require_plotting()  # before any embedding: the report needs matplotlib
    pairs = read_pairs(pairs_file)
    need_all = bool(impostors) or groups_file is not None
    images = list_images(dataset) if need_all else sorted({p.a for p in pairs} | {p.b for p in pairs})
    emb, scale = _embeddings_and_scale(dataset, images, embeddings, engine, scale, cache_dir, progress)
    pos = emb.index()
    # every listed pair is decided (the standard protocol): a pair with an image that gave no face (a failure
    # to enrol) has distance inf, decided "different" (M.ten_fold_accuracy); EER, TAR and the ROC are over
    # the enrolled pairs (their k/n say how many)
    enrolled = np.array([p.a in pos and p.b in pos for p in pairs], bool)
    kept = [p for p, e in zip(pairs, enrolled) if e]
    same = np.array([p.same for p in kept], bool)
    d = M.pair_distances(emb.vectors, np.array([(pos[p.a], pos[p.b]) for p in kept]).reshape(-1, 2))
    gen, imp = d[same], d[~same]
    report: dict[str, Any] = _header(emb, scale, dataset)
    report["command"] = "verify"
    d_all = np.full(len(pairs), np.inf)
    d_all[enrolled] = d
    acc = M.ten_fold_accuracy(d_all, np.array([p.same for p in pairs], bool), np.array([p.fold for p in pairs]))
    extra = np.zeros(0)
    if impostors:
        listed = {(p.a, p.b) for p in pairs} | {(p.b, p.a) for p in pairs}
        idx = draw_impostors(emb.paths, impostors, seed=seed, exclude=listed)
        extra = M.pair_distances(emb.vectors, idx)
    all_imp = np.concatenate([imp, extra])
    fte_matched = sum(p.same for p, e in zip(pairs, enrolled) if not e)
    report["pairs"] = {"file": str(pairs_file), "total": len(pairs), "matched": int(same.sum()),
                       "mismatched": int((~same).sum()),
                       "failure_to_enrol": {"matched": fte_matched, "mismatched": len(pairs) - len(kept) - fte_matched,
                                            "decided": "different"},
                       "extra_impostors": int(extra.size), "impostors_used": int(all_imp.size), "seed": seed}
    # the headline: all listed pairs, a failure to enrol decided "different"; beside it, the other readings
    report["accuracy"] = acc["mean"]
    report["accuracy_std"] = acc["std"]
    report["accuracy_protocol"] = ("10-fold, every listed pair decided; a pair with an image that gave no face "
                                   "is decided 'different'")
    report["accuracy_enrolled_only"] = acc["enrolled"]["mean"]
    report["accuracy_enrolled_only_std"] = acc["enrolled"]["std"]
    report["accuracy_fte_as_error"] = acc["fte_as_error"]["mean"]
    report["accuracy_fte_as_error_std"] = acc["fte_as_error"]["std"]
    report["accuracy_folds"] = acc
    e = M.eer(gen, all_imp)
    report["eer"] = e["eer"]
    report["eer_threshold"] = {"distance": e["threshold"], "similarity": float(scale.similarity(e["threshold"]))}
    detail = {}
    for name, far in FARS.items():
        r = M.tar_at_far(gen, all_imp, far)
        r["similarity"] = float(scale.similarity(r["threshold"])) if math.isfinite(r["threshold"]) else 0.0
        detail[name] = r
    report["tar_at_far"] = {name: r["tar"]["rate"] for name, r in detail.items()}
    report["tar_at_far_detail"] = detail
    report["at_similarity"] = {name: dict(distance=t, nominal_fmr=scale.fmr(float(name)), **M.rates_at(gen, all_imp, t))
                               for name, t in _levels(scale).items()}
    curves = {"all": M.roc(gen, all_imp)}
    if groups_file is not None:
        labels_map = read_groups(groups_file)
        gimg = [group_of(p, labels_map) for p in emb.paths]
        people = [person_of(p) for p in emb.paths]
        g = _group_rates(emb.paths, people, gimg, emb.vectors, scale)
        for name, row in g["groups"].items():
            curves[name] = M.roc(row.pop("_gen"), row.pop("_imp"))
        g["file"] = str(groups_file)
        g["unlabelled_images"] = sum(x is None for x in gimg)
        report["groups"] = g
    _write(out, report, curves, kind="verify", gen=gen, imp=all_imp)
    return report


def _split_identify(emb: Embeddings, gallery_size: int, nonmated: int, seed: int):
    rng = np.random.default_rng(seed)
    by_person: dict[str, list[int]] = {}
    for i, p in enumerate(emb.paths):
        by_person.setdefault(person_of(p), []).append(i)
    people = sorted(by_person)
    order = [people[i] for i in rng.permutation(len(people))]
    strangers = order[:nonmated]
    rest = order[nonmated:]
    multi = [p for p in rest if len(by_person[p]) >= 2]
    single = [p for p in rest if len(by_person[p]) < 2]
    pool = multi + single
    if gallery_size <= 0 or gallery_size > len(pool):
        if gallery_size > len(pool):
            raise ValueError(f"gallery size {gallery_size} is more than the {len(pool)} identities left after "
                             f"{nonmated} non-mated ones (use --gallery-size {len(pool)} or fewer --nonmated)")
        gallery_size = len(pool)
    members = pool[:gallery_size]
    gallery = [by_person[p][0] for p in members]
    mated = [by_person[p][1] for p in members if len(by_person[p]) >= 2]
    strangers_idx = [by_person[p][0] for p in strangers]
    return gallery, mated, strangers_idx


def identify(dataset: Path, out: Path, *, gallery_size: int, nonmated: int = 500, groups_file: Path | None = None,
             seed: int = 0, engine=None, scale=None, cache_dir: Path | None = None, progress: bool = True,
             embeddings: Embeddings | None = None, people: list[str] | None = None) -> dict[str, Any]:
    require_plotting()  # before any embedding: the report needs matplotlib
    images = list_images(dataset, people)
    emb, scale = _embeddings_and_scale(dataset, images, embeddings, engine, scale, cache_dir, progress)
    gal, mat, non = _split_identify(emb, gallery_size, nonmated, seed)
    # a "stranger" whose image is known to show someone in the gallery (an LFW label error: one person under
    # two names, or an image whose largest face is another person) is not a stranger: left out, and counted
    from .label_errors import same_person_mask

    known = same_person_mask([emb.paths[i] for i in non], [emb.paths[i] for i in gal]).any(axis=1)
    known_label_errors = [emb.paths[i] for i, k in zip(non, known) if k]
    non = [i for i, k in zip(non, known) if not k]
    people_of = np.array([person_of(p) for p in emb.paths])
    X = emb.vectors
    N = len(gal)
    thresholds = dict(_levels(scale))
    # the service's default policy: FaceMatchThreshold 80, raised for the gallery's size until the expected
    # false matches per search are at most DEFAULT_MAX_EXPECTED_FALSE_MATCHES (one in 1,000 searches)
    from ..service.context import DEFAULT_MAX_EXPECTED_FALSE_MATCHES
    from ..service.risk import size_aware_threshold

    aware = size_aware_threshold(DEFAULT_THRESHOLD, N, DEFAULT_MAX_EXPECTED_FALSE_MATCHES)
    thresholds["default"] = scale.max_distance(aware)
    thresholds["size_aware_1e-3"] = scale.max_distance(aware)
    thresholds["80_margin_rule"] = scale.max_distance(DEFAULT_THRESHOLD)
    res = M.identification(X[gal], people_of[gal], X[mat], people_of[mat], X[non], thresholds)
    # the default policy also applies the service's margin rule (service/risk.py): re-count those rows
    from ..service.context import DEFAULT_MIN_MARGIN

    margin_masks = {}
    for name in ("default", "80_margin_rule"):
        margin_masks[name] = _apply_margin_rule(res, name, X[gal], people_of[gal], X[mat], people_of[mat], X[non], scale,
                           DEFAULT_MIN_MARGIN)
    report: dict[str, Any] = _header(emb, scale, dataset)
    report["command"] = "identify"
    report["gallery_size"] = N
    report["mated_searches"] = len(mat)
    report["nonmated_searches"] = len(non)
    report["known_label_errors_left_out"] = known_label_errors
    report["seed"] = seed
    sims = {name: float(name) for name in _levels(scale)}
    sims["default"] = aware
    sims["size_aware_1e-3"] = aware
    sims["80_margin_rule"] = DEFAULT_THRESHOLD
    rows = {}
    for name, r in res["thresholds"].items():
        fmr = scale.fmr(sims[name])
        r["similarity"] = sims[name]
        r["nominal_fmr"] = fmr
        r["expected_false_matches"] = M.expected_false_matches(fmr, N, len(non))
        r["expected_false_matches_per_search"] = M.expected_false_matches(fmr, N)
        r["observed_false_matches"] = r.pop("false_matches")
        r["expected_fpir"] = 1.0 - (1.0 - fmr) ** N
        rows[name] = r
    report["at"] = rows
    report["fpir"] = {k: v["fpir"]["rate"] for k, v in rows.items()}
    report["fnir"] = {k: v["fnir"]["rate"] for k, v in rows.items()}
    why = (f"the service's default policy: the lowest Similarity >= {DEFAULT_THRESHOLD:g} with expected false "
           f"matches per search <= {DEFAULT_MAX_EXPECTED_FALSE_MATCHES:g} for a gallery of {N}")
    report["policy"] = {"default": {"similarity": aware, "requested": DEFAULT_THRESHOLD,
                                    "max_expected_false_matches": DEFAULT_MAX_EXPECTED_FALSE_MATCHES,
                                    "min_margin_decades": DEFAULT_MIN_MARGIN, "why": why + ", and the margin rule"},
                        "80_margin_rule": {"similarity": DEFAULT_THRESHOLD, "min_margin_decades": DEFAULT_MIN_MARGIN,
                                           "why": "Rekognition's threshold with the margin rule, no size limit"},
                        "size_aware_1e-3": {"similarity": aware, "why": why}}
    curves = {"all": M.fpir_fnir_curve(res["_mate_distance"], res["_nonmated_top"])}
    if groups_file is not None:
        labels_map = read_groups(groups_file)
        idg = identity_groups(emb.paths, labels_map)
        mg = np.array([idg.get(people_of[i]) or "" for i in mat], dtype=object)
        ng = np.array([idg.get(people_of[i]) or "" for i in non], dtype=object)
        groups: dict[str, Any] = {"file": str(groups_file), "groups": {}, "differential": {}}
        md, nt = res["_mate_distance"], res["_nonmated_top"]
        for g in sorted({x for x in mg.tolist() + ng.tolist() if x}):
            row: dict[str, Any] = {"mated_searches": int((mg == g).sum()), "nonmated_searches": int((ng == g).sum()),
                                   "at": {}}
            for name, t in thresholds.items():
                miss, fp = margin_masks.get(name, (md > t, nt <= t))
                m, n = miss[mg == g], fp[ng == g]
                row["at"][name] = {"fnir": M.rate(int(m.sum()), m.size), "fpir": M.rate(int(n.sum()), n.size)}
            groups["groups"][g] = row
            if (mg == g).sum() and (ng == g).sum():
                curves[g] = M.fpir_fnir_curve(md[mg == g], nt[ng == g])
        for name in thresholds:
            for what in ("fnir", "fpir"):
                groups["differential"].setdefault(name, {})[what] = M.differential(
                    {g: r["at"][name][what]["rate"] for g, r in groups["groups"].items()})
        report["groups"] = groups
    _write(out, report, curves, kind="identify")
    return report


def _apply_margin_rule(res: dict, name: str, G, gl, M_, ml, NM, scale, margin: float):
    """Re-count row ``name`` of ``M.identification``'s result as the service answers with the margin rule:
    a search whose best gallery identity is within ``margin`` decades of FMR of the runner-up (the nearest
    gallery face that does not match the best one at Similarity 80) returns nothing."""
    from ..service.risk import SAME_IDENTITY_SIMILARITY

    row = res["thresholds"][name]
    t = row["distance"]
    same = scale.max_distance(SAME_IDENTITY_SIMILARITY)

    def answer(P):
        d = np.sqrt(np.maximum((P * P).sum(1)[:, None] + (G * G).sum(1)[None, :] - 2 * P @ G.T, 0))
        order = np.argsort(d, axis=1)[:, :20]
        answered = np.zeros(len(P), bool)
        for i in range(len(P)):
            top = order[i, 0]
            if d[i, top] > t:
                continue
            runner = None
            for j in order[i, 1:]:
                if np.linalg.norm(G[top] - G[j]) > same:
                    runner = d[i, j]
                    break
            answered[i] = not (runner is not None and scale.log10_fmr(runner) - scale.log10_fmr(d[i, top]) < margin)
        return d, order[:, 0], answered

    dm, topm, am = answer(np.asarray(M_))
    mate = np.array([np.where(gl == lab, dm[i], np.inf).min() for i, lab in enumerate(ml)])
    other = np.array([np.where(gl != lab, dm[i], np.inf).min() for i, lab in enumerate(ml)])
    dn, topn, an = answer(np.asarray(NM))
    top = dn[np.arange(len(dn)), topn]
    miss = (mate > t) | ~am
    row["fnir"] = M.rate(int(miss.sum()), len(mate))
    row["fnir_rank1"] = M.rate(int((miss | (other < mate)).sum()), len(mate))
    row["fpir"] = M.rate(int(((top <= t) & an).sum()), len(top))
    row["false_matches"] = int(((dn <= t).sum(1) * an).sum())
    row["ambiguous_searches"] = {"mated": int(((mate <= t) & ~am).sum()), "nonmated": int(((top <= t) & ~an).sum())}
    row["min_margin_decades"] = margin
    return miss, (top <= t) & an  # per mated search: missed; per non-mated search: falsely matched


def calibrate(dataset: Path, out_file: Path, *, engine=None, cache_dir: Path | None = None, progress: bool = True,
              min_count: int = 20, embeddings: Embeddings | None = None) -> dict[str, Any]:
    """A distance -> FMR table from all impostor pairs of a labelled dataset (person folders)."""
    engine = _engine(engine) if embeddings is None else engine
    emb = embeddings or embed_dataset(dataset, list_images(dataset), engine=engine, cache_dir=cache_dir,
                                      progress=progress)
    people = [person_of(p) for p in emb.paths]
    _, imp = M.all_pairs(people, vectors=emb.vectors)
    table = build_table(np.sort(imp.astype(np.float64)), min_count=min_count)
    obj = {"model": emb.model_version, "metric": "euclidean",
           "definition": "FMR(d) = share of impostor pairs with distance <= d; see docs/similarity.md",
           "source": (f"faceledger eval calibrate on {dataset} ({len(emb.paths)} images of {len(set(people))} "
                      f"people, {len(emb.failures)} failures to enrol, detector {emb.detector}), {imp.size} impostor "
                      f"pairs; empirical quantiles while at least {min_count} pairs lie below, then a straight "
                      "line in log10(FMR) fitted to the last measured decade, extended to 1e-9 (Similarity 100)"),
           "impostor_pairs": int(imp.size), **table}
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    return obj


def build_table(imp_sorted: np.ndarray, *, min_count: int = 20, step: float = 0.05, end: float = -9.0) -> dict:
    n = imp_sorted.size
    if n < 100:
        raise ValueError(f"need at least 100 impostor pairs to calibrate, got {n}")
    lowest = math.log10(min_count / n)
    grid = np.arange(0.0, lowest - 1e-12, -step)[::-1]  # ascending log10 FMR, >= lowest
    dist = np.quantile(imp_sorted, 10.0 ** grid, method="inverted_cdf")
    d, L = [], []
    for x, l in zip(dist.tolist(), grid.tolist()):
        if not d or (x > d[-1] and l > L[-1]):
            d.append(x)
            L.append(l)
    d_arr, L_arr = np.array(d), np.array(L)
    fit = L_arr <= L_arr[0] + 1.0  # the last measured decade
    slope = float(np.polyfit(d_arr[fit], L_arr[fit], 1)[0]) if fit.sum() >= 3 else 20.0
    slope = max(slope, 5.0)
    tail_L = np.arange(L_arr[0] - 0.25, end + 1e-9, -0.25)
    tail_L = np.append(tail_L, end)[::-1]  # always reaches ``end`` (Similarity 100)
    tail_d = d_arr[0] + (tail_L - L_arr[0]) / slope
    # a steep extrapolation must not cross distance 0: keep the points strictly increasing above it
    tail_d = np.maximum(tail_d, d_arr[0] * np.arange(1, tail_d.size + 1) / (tail_d.size + 1))
    distance = np.concatenate([tail_d, d_arr])
    log10_fmr = np.concatenate([tail_L, L_arr])
    if log10_fmr[-1] < 0:
        distance = np.append(distance, imp_sorted[-1] + 1e-6 if imp_sorted[-1] > distance[-1] else distance[-1] + 1e-6)
        log10_fmr = np.append(log10_fmr, 0.0)
    return {"distance": distance.tolist(), "log10_fmr": log10_fmr.tolist(),
            "_fit": {"slope_log10_fmr_per_distance": slope, "measured_down_to_log10_fmr": float(L_arr[0])}}


def _write(out: Path, report: dict, curves: dict, *, kind: str, gen=None, imp=None) -> None:
    from .report import write_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # strict JSON: an infinite or undefined ratio (a group rate of 0 below another) is written as null
    (out / "report.json").write_text(json.dumps(_finite(report), indent=1, default=_plain, allow_nan=False) + "\n")
    write_html(out / "report.html", report, curves, kind=kind, gen=gen, imp=imp)


def _finite(v):
    """``v`` with every non-finite float replaced by None, so report.json is strict JSON."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
        return None
    return v


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v).__name__)
