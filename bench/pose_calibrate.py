#!/usr/bin/env python3
"""Similarity of turned faces: the false match rate of pairs of two turned faces, and their table.

Issue 10 point 5 lists off-angle pose among the degradations cameras produce. It cannot be synthesised from a
frontal photo without a 3-D model, so LFW's own turned faces are used: every lfw_dev image is analysed by the
service's pipeline (``default_engine(face_model=M).analyze``, largest face) and its face put in a band by
``vision.face_quality.band`` with the face's yaw (TURNED: inside the calibrated range, |yaw| >= POSE_YAW from
the five landmarks). Every impostor pair (LFW's label errors dropped, as the main table does) is put in its pair
band (``pair_band``: two turned faces are "turned-both"; one turned face counts as frontal) and, for each, this
prints the FMR at Similarity 80, 90 and 99 of the model's main table with its ratio to nominal and the 95%
Clopper-Pearson interval, and the TAR of the mated pairs.

``calibrate`` then builds the "turned-both" table (``degradation.band_table``: at each FMR the smaller distance
of the main table and of the turned pairs' impostor quantile, so it never states a lower FMR than the main table)
and writes ``src/faceledger/data/similarity-<model>.turned-both.json``; it checks it held out: built on one half
of the people (seeded), FMR measured on the other half's turned pairs, both ways.

    PYTHONPATH=src python bench/pose_calibrate.py [measure|calibrate] [--face-model M] [--data DIR]

The analyses are cached in ``.cache/pose-<model>.npz`` (about 7 minutes for lfw_dev's 7,926 images on one
core with faceledger-sface-v2).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from calibrate_similarity import clopper_pearson, list_images, person_of  # noqa: E402
from degradation import band_table  # noqa: E402

from faceledger.evaluation.label_errors import excluded_index_pairs  # noqa: E402
from faceledger.vision.face_quality import CALIBRATED, TURNED_BOTH, band, pair_band  # noqa: E402

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "lfw_dev").resolve()
LEVELS = (80, 90, 99)
SEED = 20261130


def analyses(model: str, data: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(image paths relative to ``data``, (N, D) vectors (NaN rows: no face), yaw (N,) degrees, face band (N))."""
    cache = ROOT / ".cache" / f"pose-{model}.npz"
    rels = list_images(data)
    if cache.exists():
        z = np.load(cache)
        if list(z["rels"]) == rels:
            return rels, z["vectors"], z["yaw"], [str(b) for b in z["bands"]]
    from faceledger.vision import decode_image, default_engine

    engine = default_engine(face_model=model)
    vectors = np.full((len(rels), engine.dim), np.nan, np.float32)
    yaw = np.full(len(rels), np.nan)
    bands = [""] * len(rels)
    started = time.monotonic()
    for i, rel in enumerate(rels):
        faces = engine.analyze(decode_image((data / rel).read_bytes()).pixels, embed=True, max_faces=1)
        if faces:
            vectors[i], yaw[i] = faces[0].embedding, faces[0].pose.yaw
            bands[i] = band(faces[0].quality.measures, faces[0].pose.yaw)
        if i % 500 == 0 or i == len(rels) - 1:
            print(f"[analyse] {i + 1}/{len(rels)} images, {time.monotonic() - started:.0f} s", file=sys.stderr,
                  flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, rels=np.array(rels), vectors=vectors, yaw=yaw, bands=np.array(bands))
    return rels, vectors, yaw, bands


class Pairs:
    """Every pair of faces found (i < j): distance, impostor or mated, pair band."""

    def __init__(self, rels: list[str], vectors: np.ndarray, bands: list[str], metric: str) -> None:
        ok = np.isfinite(vectors[:, 0])
        idx = np.nonzero(ok)[0]
        V = vectors[idx].astype(np.float64)
        i, j = np.triu_indices(len(idx), 1)
        if metric == "euclidean":
            G = V @ V.T
            sq = np.diag(G)
            self.d = np.sqrt(np.maximum(sq[i] + sq[j] - 2 * G[i, j], 0.0))
        else:
            raise SystemExit(f"metric {metric} is not handled here")
        self.i, self.j = idx[i], idx[j]
        people = np.array([person_of(r) for r in rels])
        self.people = people
        self.mated = people[self.i] == people[self.j]
        # LFW's label errors: (a, b) image pairs, a < b, located among the pairs (i, j) by their key i * N + j,
        # which np.triu_indices gives in ascending order
        dropped = excluded_index_pairs(rels)
        key = self.i.astype(np.int64) * len(rels) + self.j
        want = dropped[:, 0] * len(rels) + dropped[:, 1]
        at = np.searchsorted(key, want)
        found = at[(at < key.size) & (key[np.minimum(at, key.size - 1)] == want)]
        self.impostor = ~self.mated
        self.impostor[found] = False
        kinds = {b: k for k, b in enumerate(sorted(set(bands)))}
        codes = np.array([kinds[b] for b in bands])
        pb = {(x, y): pair_band(x or CALIBRATED, y or CALIBRATED) for x in kinds for y in kinds}
        names = sorted(set(pb.values()))
        lookup = np.zeros((len(kinds), len(kinds)), np.int16)
        for (x, y), name in pb.items():
            lookup[kinds[x], kinds[y]] = names.index(name)
        self.band_names = names
        self.band = lookup[codes[self.i], codes[self.j]]

    def of(self, band_name: str) -> np.ndarray:
        return self.band == self.band_names.index(band_name) if band_name in self.band_names else \
            np.zeros(self.d.size, bool)


def rates(scale, d: np.ndarray, impostor: np.ndarray, mated: np.ndarray) -> list[dict]:
    out = []
    for level in LEVELS:
        t, nominal = scale.max_distance(level), scale.fmr(level)
        n, k = int(impostor.sum()), int((d[impostor] <= t).sum())
        lo, hi = clopper_pearson(k, n)
        m = int(mated.sum())
        out.append({"level": level, "impostor_pairs": n, "false_matches": k, "fmr": k / max(n, 1),
                    "ratio": k / max(n, 1) / nominal, "ci": [lo / nominal, hi / nominal],
                    "mated_pairs": m, "tar": float((d[mated] <= t).sum() / max(m, 1))})
    return out


def show(name: str, rows: list[dict]) -> None:
    cells = [f"{r['false_matches']}/{r['impostor_pairs']} = {r['ratio']:.2f}x [{r['ci'][0]:.2f}-{r['ci'][1]:.2f}]"
             for r in rows]
    print(f"| {name} | " + " | ".join(cells) + f" | {rows[0]['tar']:.3f} ({rows[0]['mated_pairs']}) |")


def header(title: str) -> None:
    print(f"\n{title}\n| pairs | " + " | ".join(f"@{lv}: false / impostor = x nominal [95% CI]" for lv in LEVELS)
          + " | TAR@80 (mated) |")
    print("|---|" + "---|" * (len(LEVELS) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["measure", "calibrate"], nargs="?", default="measure")
    ap.add_argument("--face-model", default="faceledger-sface-v2")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    from faceledger.vision.face_quality import POSE_YAW, TURNED
    from faceledger.vision.similarity import SimilarityScale

    model = args.face_model
    rels, vectors, _yaw, bands = analyses(model, args.data)
    base = SimilarityScale.load(model)
    pairs = Pairs(rels, vectors, bands, base.meta.get("metric", "euclidean"))
    turned = sum(b == TURNED for b in bands)
    print(f"# bench/pose_calibrate.py: {model}; {len(rels)} lfw_dev images, {int(np.isfinite(vectors[:, 0]).sum())} "
          f"faces, {turned} turned (|yaw| >= {POSE_YAW:g}, inside the range otherwise)")
    frontal = pairs.of(CALIBRATED)
    one = frontal & ((np.array(bands)[pairs.i] == TURNED) | (np.array(bands)[pairs.j] == TURNED))
    both = pairs.of(TURNED_BOTH)
    header(f"main table ({model}), QualityFilter NONE:")
    show("all pairs", rates(base, pairs.d, pairs.impostor, pairs.mated))
    show("both frontal, in range", rates(base, pairs.d, pairs.impostor & frontal & ~one, pairs.mated & frontal & ~one))
    show("one turned, one frontal", rates(base, pairs.d, pairs.impostor & one, pairs.mated & one))
    show("both turned", rates(base, pairs.d, pairs.impostor & both, pairs.mated & both))
    existing = SimilarityScale.has_band(model, TURNED_BOTH)
    if args.command == "measure":
        if existing:
            header(f"the {TURNED_BOTH} table (shipped):")
            show("both turned", rates(SimilarityScale.load(model, TURNED_BOTH), pairs.d, pairs.impostor & both,
                                      pairs.mated & both))
        return

    # held out: a table built on one half of the people, measured on the other half's pairs (both ways)
    people = np.unique(pairs.people)
    half = set(np.random.default_rng(SEED).permutation(people)[: len(people) // 2])
    in_a = np.array([p in half for p in pairs.people])
    a_pair = in_a[pairs.i] & in_a[pairs.j]
    b_pair = ~in_a[pairs.i] & ~in_a[pairs.j]
    header(f"held out: the {TURNED_BOTH} table built on one half of the people, measured on the other half")
    for name, build, test in (("built on A, measured on B", a_pair, b_pair), ("built on B, measured on A", b_pair, a_pair)):
        t = band_table(base, [pairs.d[pairs.impostor & both & build]], min_pairs=50_000)
        show(name, rates(SimilarityScale.from_dict({**t, "model": model}), pairs.d,
                         pairs.impostor & both & test, pairs.mated & both & test))
    table = band_table(base, [pairs.d[pairs.impostor & both]])
    table.update(model=model, band=TURNED_BOTH, metric=base.meta.get("metric", "euclidean"), source=(
        f"bench/pose_calibrate.py calibrate: {len(rels)} lfw_dev images, {int((pairs.impostor & both).sum())} "
        f"impostor pairs of two turned faces (|yaw| >= {POSE_YAW:g}, inside the range otherwise; LFW label errors "
        f"dropped); at each FMR the smaller distance of {model}'s main table and of those pairs' quantile"))
    out = ROOT / "src" / "faceledger" / "data" / f"similarity-{model}.{TURNED_BOTH}.json"
    out.write_text(json.dumps(table, indent=None, separators=(",", ":")) + "\n")
    scale = SimilarityScale.from_dict(table)
    print(f"\n[calibrate] {out.relative_to(ROOT)}: d80 {scale.max_distance(80):.4f} d90 {scale.max_distance(90):.4f} "
          f"d99 {scale.max_distance(99):.4f} (main table {base.max_distance(80):.4f} {base.max_distance(90):.4f} "
          f"{base.max_distance(99):.4f})")
    header(f"the {TURNED_BOTH} table (in sample):")
    show("both turned", rates(scale, pairs.d, pairs.impostor & both, pairs.mated & both))


if __name__ == "__main__":
    main()
