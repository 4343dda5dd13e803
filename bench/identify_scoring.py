"""Make 1:N search safe, part 3: score normalisation, whitening and multi-face users (measurement only).

Reads what bench/identify_models.py cached in .cache/identify_safety/ (run that first): dlib-resnet-v1 and
faceres (padding 0.5) raw descriptors of every lfw_dev image's face and of its mirrored chip, and the
Congress-style split it used (``last_split.npz``: gallery = one image of each of 2,913 identities, 858 mated
probes = the second image of gallery identities, 500 strangers = the first image of 500 identities absent
from the gallery).  Nothing is recomputed from images; numpy only; a run takes well under a minute.

Descriptors (unit vectors, score = cosine):
  dflip  = unit(unit(Dp) + unit(Dm))                       dlib cos + flip
  V      = [sqrt(2) dflip, unit(unit(Fp) + unit(Fm))] / sqrt(3)   fusion p0.5 w2 (the best so far)
Metric: mated rank-1 identification rate at <= k false matches among the 500 strangers (k = 1, 2, 5, 10),
the threshold chosen AFTER the fact on the strangers' best scores (``rank1_at`` of identify_models: optimistic;
k = 1 rests on the 2nd-highest stranger score alone).  Known LFW label errors (``same_person_mask``) are not
counted as false matches.  The last column, "closed", is plain rank-1 with no threshold (no stranger
taken into account): it tells a change of ranking from a change of the open-set tail.

1. Cohort score normalisation.  The cohort is every lfw_dev image that is in none of the gal/mat/non rows,
   minus the images of stranger identities: 3,186 images, all of them 3rd+ images of the 459 gallery
   identities with >= 3 images (George_W_Bush 528 and Colin_Powell 234 of them).  Because the cohort is made
   of gallery identities, a person's own other images must be kept out of his own statistics (they would
   raise the mean of the top-K cohort scores of his gallery face and of his mated probe, and push the
   genuine score down).  Two ways of doing it are measured:
     own-id   each face's statistics exclude the cohort images of its own identity (the brief's rule);
              still optimistic: a stranger's statistics may include images of the gallery look-alike he
              is about to match, which lowers exactly that false score, something a cohort of outsiders
              would not do;
     pair     for each (probe, gallery face) pair both sides' statistics exclude the cohort images of BOTH
              identities, so for every score the cohort is a set of other people, as an outside cohort
              would be.  This is the figure to believe.
   Rules (mu, sd = mean, std of the top-K cohort scores of a face; K = 50, 200):
     T-norm   s' = (s - mu_p) / sd_p                      (probe side only; leaves each ranking as is)
     S-norm   s' = ((s - mu_p) / sd_p + (s - mu_g) / sd_g) / 2   (adaptive symmetric normalisation)
   "K=all": the whole cohort (own-id exclusion only).  "cap10": the cohort limited to the first 10 cohort
   images of each identity (George_W_Bush and Colin_Powell are 24 % of it).
2. Whitening learned without leakage, 2-fold cross-fitting over identities: all 3,413 identities are split
   in halves A and B (seed 1: seed 0 is the permutation the split itself used, which would put all 500
   strangers in one half); a transform learned on every image of A's identities is applied to the
   gal/mat/non rows of B's identities (a half-gallery, ~1,456 faces) and vice versa; rank-1 at <= k false
   matches with ONE threshold chosen on the union of both halves' stranger best scores.  The baseline is
   re-measured on the same half-galleries (smaller galleries: higher figures than the full split).
     center       subtract the training mean, renormalise
     PCAw d sA    centre, PCA whitening to d dims, covariance shrunk towards (tr C / D) I with weight A
     WCCN d sA    centre, PCA to d dims (not whitened), then multiply by Sw^(-1/2), Sw = within-class
                  covariance averaged over the training identities with >= 2 images (each identity
                  weighs the same, as in Hatch's WCCN), shrunk with weight A
     LDA d->e sA  as WCCN, then the e leading directions of the between-class covariance of the identity
                  means (all training identities) in the Sw-whitened space
3. Users of several faces (Rekognition's UserId with several FaceIds).  Gallery = the identities with
   >= 3 images that are not strangers (459 users: a gallery 6x smaller than the 2,913 of 1 and 2, so the
   figures are higher and not comparable with them); a user enrols its 1st (and 2nd) image; the probe is its
   3rd image; strangers = the same 500 ``non`` rows (none of them is a user).  User score rules for 2 faces:
   max of the two cosines (what the service does now), mean of the two cosines, cosine to the centroid
   unit(f1 + f2).  "enrol 1" rows use the 1st (or the 2nd) image alone.

    .venv/bin/python bench/identify_scoring.py

Conclusions (from the run below; 1 mated probe = 0.0012 of the full split, 0.0022 of the users' split):
1. Cohort normalisation does not help.  Fusion V: every setting loses at k=1; the best 'pair' setting
   (S-norm K=50) is -0.021 at k=1, +0.006 at k=2 (5 probes), and loses at k=5 and k=10; T-norm and the
   whole-cohort statistics lose heavily (T-norm K=50: 0.371 at k=1).  dlib alone: 7 of the 8 'pair'
   settings lose at k=1; one (S-norm K=200 cap10) gains +0.013 at k=1 and +0.017 at k=2 (11 and 15 probes),
   a best-of-8 pick with no pattern behind it (S-norm K=50 cap10 loses 0.108 at k=1): not a usable gain.
   own-id and pair differ by <= 0.002 at k=1 and k=2 (<= 0.035 at k=10): the simpler rule leaked little.
   Caveat: the cohort is LFW's 459 most photographed gallery people (Bush and Powell 24 %), not an outside
   set of many people.
2. Whitening learned on the other half of the identities does not help: every transform loses at every k
   for both descriptors (V: best PCAw 1152 s0.1 -0.058 at k=1, -0.054 at k=2; centring alone -0.146 at
   k=1; WCCN and LDA lose 0.35 to 0.47 at k=1).  Closed-set rank-1 hardly moves (centred 0.936 vs 0.932):
   the ranking survives, the open-set tail does not -- the closest strangers rise relative to the mates.
   Caveat: each transform is learned on ~1,700 LFW identities, most with one image.
3. Users of several faces: enrolling a 2nd face helps a lot (gallery of 459 users, not comparable with
   the 2,913 above).  V with the max rule: +0.102 at k=1, +0.120 at k=2 over the 1st image alone; dlib:
   +0.119 / +0.063 with max, +0.163 / +0.118 with the centroid.  Which rule: for V the service's max is best
   at k=1 and k=2 (centroid -0.024 / -0.031, mean of cosines -0.085 / -0.056); for dlib alone the centroid
   beats max by +0.044 / +0.054.  The mean of cosines is never the best.  k=1 rests on one stranger score.

Command and printed figures (2-core machine, numpy on one BLAS thread, ~40 s):

    .venv/bin/python bench/identify_scoring.py

    7892 images, 3413 identities; split: gallery 2913, mated 858, strangers 500; known label errors strangers x gallery: 4
    cohort: 3186 images of 459 identities (all gallery identities with >= 3 images)
      largest: George_W_Bush 528, Colin_Powell 234, Gerhard_Schroeder 107

    baseline (full split; identify_models printed 0.657 0.663 0.744 0.761 for the fusion)
      variant                                          k=1     k=2     k=5    k=10  closed
      fusion p0.5 w2 (V)                             0.657   0.663   0.744   0.761   0.920
      dlib cos+flip (dflip)                          0.490   0.507   0.555   0.633   0.913

    1. cohort normalisation, fusion p0.5 w2 (V)
       full split: gallery 2913, 858 mated, 500 strangers; cohort 3186 images
      variant                                          k=1     k=2     k=5    k=10  closed
      baseline (raw cosine)                          0.657   0.663   0.744   0.761   0.920
      T-norm K=50 own-id                             0.371   0.586   0.629   0.662   0.920
      S-norm K=50 own-id                             0.638   0.670   0.719   0.744   0.923
      T-norm K=50 pair                               0.371   0.586   0.627   0.641   0.911
      S-norm K=50 pair                               0.636   0.669   0.718   0.740   0.911
      T-norm K=200 own-id                            0.453   0.502   0.634   0.690   0.920
      S-norm K=200 own-id                            0.627   0.652   0.703   0.740   0.922
      T-norm K=200 pair                              0.453   0.502   0.606   0.669   0.910
      S-norm K=200 pair                              0.626   0.650   0.700   0.723   0.910
      T-norm K=all own-id                            0.227   0.244   0.359   0.436   0.920
      S-norm K=all own-id                            0.240   0.265   0.348   0.453   0.913
      T-norm K=50 pair, cap10                        0.392   0.464   0.582   0.634   0.910
      S-norm K=50 pair, cap10                        0.583   0.634   0.692   0.719   0.910
      T-norm K=200 pair, cap10                       0.340   0.449   0.663   0.688   0.914
      S-norm K=200 pair, cap10                       0.556   0.584   0.674   0.749   0.915
      => cohort normalisation, 'pair' rows (fusion p0.5 w2 (V)): no clear gain (mixed/noise); best of 8: 'S-norm K=50 pair'
         k=1 -0.021, k=2 +0.006, k=5 -0.026, k=10 -0.021 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)

    1. cohort normalisation, dlib cos+flip (dflip)
       full split: gallery 2913, 858 mated, 500 strangers; cohort 3186 images
      variant                                          k=1     k=2     k=5    k=10  closed
      baseline (raw cosine)                          0.490   0.507   0.555   0.633   0.913
      T-norm K=50 own-id                             0.212   0.280   0.478   0.586   0.913
      S-norm K=50 own-id                             0.287   0.474   0.635   0.683   0.906
      T-norm K=50 pair                               0.212   0.280   0.478   0.551   0.899
      S-norm K=50 pair                               0.287   0.473   0.634   0.670   0.893
      T-norm K=200 own-id                            0.369   0.389   0.562   0.620   0.913
      S-norm K=200 own-id                            0.485   0.487   0.568   0.675   0.899
      T-norm K=200 pair                              0.369   0.389   0.562   0.607   0.897
      S-norm K=200 pair                              0.484   0.486   0.566   0.674   0.886
      T-norm K=all own-id                            0.031   0.038   0.147   0.245   0.913
      S-norm K=all own-id                            0.033   0.037   0.100   0.244   0.883
      T-norm K=50 pair, cap10                        0.360   0.385   0.491   0.569   0.900
      S-norm K=50 pair, cap10                        0.382   0.491   0.594   0.660   0.892
      T-norm K=200 pair, cap10                       0.449   0.469   0.562   0.587   0.904
      S-norm K=200 pair, cap10                       0.502   0.524   0.598   0.670   0.899
      => cohort normalisation, 'pair' rows (dlib cos+flip (dflip)): helps; best of 8: 'S-norm K=200 pair, cap10'
         k=1 +0.013, k=2 +0.017, k=5 +0.043, k=10 +0.037 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)
      [29s]

    2. whitening, 2-fold over identities, fusion p0.5 w2 (V)
       half-galleries 1454 + 1459, mated 413 + 445, strangers 252 + 248; one threshold on the union of the strangers
      variant                                          k=1     k=2     k=5    k=10  closed
      baseline (raw cosine, same half-galleries)     0.686   0.727   0.765   0.781   0.932
      center                                         0.540   0.568   0.641   0.683   0.936
      PCAw 128 s0                                    0.576   0.592   0.614   0.650   0.897
      PCAw 128 s0.1                                  0.584   0.592   0.626   0.650   0.899
      PCAw 256 s0                                    0.502   0.583   0.641   0.696   0.896
      PCAw 256 s0.1                                  0.521   0.597   0.649   0.698   0.897
      PCAw 1152 s0.1                                 0.628   0.674   0.696   0.734   0.894
      WCCN 256 s0.1                                  0.315   0.319   0.362   0.533   0.921
      WCCN 512 s0.1                                  0.332   0.355   0.386   0.555   0.920
      LDA 256->128 s0.1                              0.220   0.251   0.293   0.466   0.914
      => whitening (fusion p0.5 w2 (V)): does not help; best of 9: 'PCAw 1152 s0.1'
         k=1 -0.058, k=2 -0.054, k=5 -0.069, k=10 -0.047 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)

    2. whitening, 2-fold over identities, dlib cos+flip (dflip)
       half-galleries 1454 + 1459, mated 413 + 445, strangers 252 + 248; one threshold on the union of the strangers
      variant                                          k=1     k=2     k=5    k=10  closed
      baseline (raw cosine, same half-galleries)     0.508   0.568   0.648   0.699   0.928
      center                                         0.324   0.362   0.409   0.473   0.924
      PCAw 64 s0                                     0.417   0.474   0.583   0.688   0.881
      PCAw 64 s0.1                                   0.402   0.470   0.571   0.693   0.893
      PCAw 128 s0                                    0.438   0.444   0.506   0.606   0.830
      PCAw 128 s0.1                                  0.376   0.418   0.641   0.707   0.899
      WCCN 128 s0.1                                  0.200   0.248   0.331   0.443   0.911
      WCCN 128 s0                                    0.213   0.253   0.387   0.456   0.888
      LDA 128->64 s0.1                               0.216   0.249   0.286   0.427   0.897
      => whitening (dlib cos+flip (dflip)): does not help; best of 8: 'PCAw 64 s0'
         k=1 -0.091, k=2 -0.093, k=5 -0.065, k=10 -0.012 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)
      [36s]

    3. users of several faces, fusion p0.5 w2 (V)
       gallery 459 users (identities with >= 3 images: 6x smaller than 2,913), 459 mated probes (3rd image), 500 strangers
      variant                                          k=1     k=2     k=5    k=10  closed
      enrol 1 face (1st image)                       0.758   0.763   0.791   0.834   0.956
      enrol 1 face (2nd image)                       0.730   0.752   0.800   0.856   0.972
      enrol 2 faces, max (service now)               0.861   0.882   0.904   0.915   0.985
      enrol 2 faces, mean of cosines                 0.776   0.826   0.858   0.891   0.983
      enrol 2 faces, cosine to centroid              0.837   0.852   0.895   0.935   0.991
      => 2 faces per user vs 1 (fusion p0.5 w2 (V)): helps; best of 3: 'enrol 2 faces, max (service now)'
         k=1 +0.102, k=2 +0.120, k=5 +0.113, k=10 +0.081 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)
      => user rule vs max (fusion p0.5 w2 (V)): no clear gain (mixed/noise); best of 2: 'enrol 2 faces, cosine to centroid'
         k=1 -0.024, k=2 -0.031, k=5 -0.009, k=10 +0.020 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)

    3. users of several faces, dlib cos+flip (dflip)
       gallery 459 users (identities with >= 3 images: 6x smaller than 2,913), 459 mated probes (3rd image), 500 strangers
      variant                                          k=1     k=2     k=5    k=10  closed
      enrol 1 face (1st image)                       0.667   0.728   0.763   0.786   0.946
      enrol 1 face (2nd image)                       0.636   0.643   0.730   0.778   0.961
      enrol 2 faces, max (service now)               0.786   0.791   0.830   0.891   0.983
      enrol 2 faces, mean of cosines                 0.736   0.789   0.808   0.867   0.974
      enrol 2 faces, cosine to centroid              0.830   0.845   0.887   0.913   0.980
      => 2 faces per user vs 1 (dlib cos+flip (dflip)): helps; best of 3: 'enrol 2 faces, cosine to centroid'
         k=1 +0.163, k=2 +0.118, k=5 +0.124, k=10 +0.126 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)
      => user rule vs max (dlib cos+flip (dflip)): helps; best of 2: 'enrol 2 faces, cosine to centroid'
         k=1 +0.044, k=2 +0.054, k=5 +0.057, k=10 +0.022 vs baseline (k=1 rests on one stranger score; best-of pick: optimistic)

    [36s]
"""

from __future__ import annotations

import argparse
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # a shared 2-core machine: keep BLAS on one thread

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from identify_models import CACHE, rank1_at, top2, unit  # noqa: E402

from faceledger.evaluation.label_errors import same_person_mask  # noqa: E402

KS = (1, 2, 5, 10)
CLOSED = 10**9  # k beyond the number of strangers: no threshold, closed-set rank-1 (the last column)
KC = KS + (CLOSED,)
DLIB = "lfw_dev-chipflip-dlib-resnet-v1-blazeface-back-tile256-hogcheck-0.6-from80px0.npz"
FACERES = "lfw_dev-faceres-p0.5-blazeface-back-tile256-hogcheck-0.6-from80px0.npz"


def row(name: str, vals) -> list[float]:
    vals = list(vals)
    print(f"  {name:44s} " + " ".join(f"{v:7.3f}" for v in vals), flush=True)
    return vals


def header(title: str) -> None:
    print(f"\n{title}\n  {'variant':44s} " + " ".join(f"{'k=' + str(k):>7s}" for k in KS) + "  closed", flush=True)


def conclude(what: str, base: list[float], rows: dict[str, list[float]]) -> None:
    best = max(rows, key=lambda n: (rows[n][0] + rows[n][1], rows[n][2] + rows[n][3]))
    b = rows[best]
    d = np.array(b[:4]) - np.array(base[:4])
    if (d <= 0.002).all():
        verdict = "does not help"
    elif (d >= 0).all() and d.mean() >= 0.01:
        verdict = "helps"
    else:
        verdict = "no clear gain (mixed/noise)"
    print(f"  => {what}: {verdict}; best of {len(rows)}: '{best}'\n"
          f"     k=1 {d[0]:+.3f}, k=2 {d[1]:+.3f}, k=5 {d[2]:+.3f}, k=10 {d[3]:+.3f} vs baseline "
          f"(k=1 rests on one stranger score; best-of pick: optimistic)", flush=True)

# ---------------------------------------------------------------------------------------------- 1. cohort
def cohort_stats(Sc, row_id, cid, K, other_id=None):
    """Mean and std of the top-K cohort scores of each row, leaving out the cohort images of the row's own
    identity; with ``other_id`` (the identity codes of the other side's faces) an (n, len(other_id)) pair of
    matrices whose (i, j) entries also leave out identity other_id[j]."""
    S = np.where(cid[None, :] == row_id[:, None], -np.inf, Sc)
    if K is None:  # the whole cohort (own identity left out); pair-exact exclusion not offered here
        S = np.where(np.isfinite(S), S, np.nan)
        return np.nanmean(S, 1)[:, None], np.nanstd(S, 1)[:, None]
    order = np.argsort(-S, axis=1)
    ss = np.take_along_axis(S, order, 1)
    ids = cid[order]
    mu0, sd0 = ss[:, :K].mean(1), ss[:, :K].std(1)
    if other_id is None:
        return mu0[:, None], sd0[:, None]
    cols_of: dict[int, np.ndarray] = {}
    for j, c in enumerate(other_id):
        cols_of.setdefault(int(c), []).append(j)
    cnt = np.bincount(cid)
    mu = np.repeat(mu0[:, None], len(other_id), 1)
    sd = np.repeat(sd0[:, None], len(other_id), 1)
    for i in range(len(S)):
        for c in np.unique(ids[i, :K]):
            cols = cols_of.get(int(c))
            if cols is None or c == row_id[i]:
                continue
            n = K + cnt[c]
            s = ss[i, :n][ids[i, :n] != c][:K]
            mu[i, cols], sd[i, cols] = s.mean(), s.std()
    return mu, sd


def exp_cohort(name, X, gal, mat, non, coh, code, mate_col, known):
    P = np.concatenate([mat, non])
    nm = len(mat)
    S = X[P] @ X[gal].T
    out = {}
    header(f"1. cohort normalisation, {name}\n   full split: gallery {len(gal)}, {nm} mated, {len(non)} strangers; "
           f"cohort {len(coh)} images")

    def score(Sn_all):
        Sm, Sn = Sn_all[:nm], Sn_all[nm:].copy()
        Sn[known] = -np.inf
        return [rank1_at(Sm, mate_col, Sn, k) for k in KC]

    base = row("baseline (raw cosine)", score(S))
    cohorts = {"": coh}
    # cap10: the first 10 cohort images of each identity
    seen: dict[int, int] = {}
    cap = []
    for i in coh:
        seen[code[i]] = seen.get(code[i], 0) + 1
        if seen[code[i]] <= 10:
            cap.append(i)
    cohorts[", cap10"] = np.array(cap)
    for cname, C in cohorts.items():
        cid = code[C]
        Cp, Cg = X[P] @ X[C].T, X[gal] @ X[C].T
        for K in ((50, 200, None) if not cname else (50, 200)):
            for mode in (("own-id", "pair") if K and not cname else ("own-id",) if not K else ("pair",)):
                if mode == "own-id":
                    mup, sdp = cohort_stats(Cp, code[P], cid, K)
                    mug, sdg = cohort_stats(Cg, code[gal], cid, K)
                else:
                    mup, sdp = cohort_stats(Cp, code[P], cid, K, code[gal])
                    mug, sdg = cohort_stats(Cg, code[gal], cid, K, code[P])
                mug, sdg = mug.T, sdg.T
                T = (S - mup) / sdp
                Sn_ = 0.5 * (T + (S - mug) / sdg)
                kn = f"K={K or 'all'} {mode}{cname}"
                out[f"T-norm {kn}"] = row(f"T-norm {kn}", score(T))
                out[f"S-norm {kn}"] = row(f"S-norm {kn}", score(Sn_))
    conclude(f"cohort normalisation, 'pair' rows ({name})", base, {n: v for n, v in out.items() if "pair" in n})
    return base, out


# ------------------------------------------------------------------------------------------- 2. whitening
def _shrink(C, a):
    return (1 - a) * C + a * np.trace(C) / len(C) * np.eye(len(C))


def _inv_sqrt(C):
    w, U = np.linalg.eigh(C)
    return U / np.sqrt(np.maximum(w, 1e-12 * w.max()))


def learn(kind, Xtr, ytr, d=None, a=0.0, e=None):
    """A function mapping descriptors to unit vectors, learned on (Xtr, identity codes ytr)."""
    mu = Xtr.mean(0)
    Xc = Xtr - mu
    if kind == "center":
        return lambda X: unit(X - mu)
    C = Xc.T @ Xc / len(Xc)
    w, U = np.linalg.eigh(_shrink(C, a) if kind == "pcaw" else C)
    w = np.maximum(w, 1e-9 * w.max())
    o = np.argsort(-w)[:d]
    if kind == "pcaw":
        W = U[:, o] / np.sqrt(w[o])
        return lambda X: unit((X - mu) @ W)
    P = U[:, o]
    Z = Xc @ P
    # within-class covariance, each identity with >= 2 images weighing the same
    _, inv, cnt = np.unique(ytr, return_inverse=True, return_counts=True)
    means = np.zeros((len(cnt), Z.shape[1]))
    np.add.at(means, inv, Z)
    means /= cnt[:, None]
    R = Z - means[inv]
    wgt = np.where(cnt[inv] >= 2, 1.0 / np.maximum(cnt[inv] - 1, 1), 0.0)
    Sw = (R * wgt[:, None]).T @ R / (cnt >= 2).sum()
    W = _inv_sqrt(_shrink(Sw, a))
    if kind == "wccn":
        M = P @ W
        return lambda X: unit((X - mu) @ M)
    Mw = (means - means.mean(0)) @ W
    wb, Ub = np.linalg.eigh(Mw.T @ Mw / len(Mw))
    M = P @ W @ Ub[:, np.argsort(-wb)[:e]]
    return lambda X: unit((X - mu) @ M)


def rank1_union(halves, k):
    ok, s1m, s1n = [], [], []
    for Sm, mc, Sn in halves:
        tm, a, _ = top2(Sm)
        ok.append(tm == mc)
        s1m.append(a)
        s1n.append(top2(Sn)[1])
    ok, s1m = np.concatenate(ok), np.concatenate(s1m)
    ns = np.sort(np.concatenate(s1n))[::-1]
    t = ns[k] if ns.size > k else -np.inf
    return float((ok & (s1m > t)).mean())


def exp_whiten(name, raw, variants, people, code, gal, mat, non, known_full, seed=1):
    ids = np.unique(people)
    half = np.zeros(len(ids), bool)
    half[np.random.default_rng(seed).permutation(len(ids))[: len(ids) // 2]] = True
    inA = dict(zip(ids, half))
    rowA = np.array([inA[p] for p in people])
    parts = []
    for h in (True, False):
        gsel, n_sel = np.flatnonzero(rowA[gal] == h), np.flatnonzero(rowA[non] == h)
        g, m = gal[gsel], mat[rowA[mat] == h]
        col = {people[i]: c for c, i in enumerate(g)}
        kn = known_full[np.ix_(n_sel, gsel)]
        parts.append((g, m, non[n_sel], np.array([col[people[i]] for i in m]), kn, ~rowA if h else rowA))
    header(f"2. whitening, 2-fold over identities, {name}\n   half-galleries {len(parts[0][0])} + "
           f"{len(parts[1][0])}, mated {len(parts[0][1])} + {len(parts[1][1])}, strangers "
           f"{len(parts[0][2])} + {len(parts[1][2])}; one threshold on the union of the strangers")

    def evaluate(f):
        halves = []
        for g, m, n, mc, kn, train in parts:
            T = f(train)
            Sm, Sn = T(raw[m]) @ T(raw[g]).T, T(raw[n]) @ T(raw[g]).T
            Sn[kn] = -np.inf
            halves.append((Sm, mc, Sn))
        return [rank1_union(halves, k) for k in KC]

    base = row("baseline (raw cosine, same half-galleries)", evaluate(lambda tr: unit))
    out = {}
    for vname, kw in variants.items():
        out[vname] = row(vname, evaluate(lambda tr, kw=kw: learn(Xtr=raw[tr], ytr=code[tr], **kw)))
    conclude(f"whitening ({name})", base, out)
    return base, out


# ----------------------------------------------------------------------------------------------- 3. users
def exp_users(name, X, people, paths, non):
    by: dict[str, list[int]] = {}
    for i, p in enumerate(people):
        by.setdefault(p, []).append(i)
    strangers = set(people[non])
    users = [p for p in sorted(by) if len(by[p]) >= 3 and p not in strangers]
    e1 = np.array([by[p][0] for p in users])
    e2 = np.array([by[p][1] for p in users])
    pr = np.array([by[p][2] for p in users])
    mc = np.arange(len(users))
    npaths = [paths[i] for i in non]
    k1 = same_person_mask(npaths, [paths[i] for i in e1])
    k2 = same_person_mask(npaths, [paths[i] for i in e2])
    header(f"3. users of several faces, {name}\n   gallery {len(users)} users (identities with >= 3 images: "
           f"6x smaller than 2,913), {len(pr)} mated probes (3rd image), {len(non)} strangers")

    def score(fm, fn, kn):
        Sm, Sn = fm(pr), fn(non).copy()
        Sn[kn] = -np.inf
        return [rank1_at(Sm, mc, Sn, k) for k in KC]

    s1 = lambda q: X[q] @ X[e1].T  # noqa: E731
    s2 = lambda q: X[q] @ X[e2].T  # noqa: E731
    cen = unit(X[e1] + X[e2])
    base = row("enrol 1 face (1st image)", score(s1, s1, k1))
    out = {"enrol 1 face (2nd image)": row("enrol 1 face (2nd image)", score(s2, s2, k2))}
    for rname, f in (("enrol 2 faces, max (service now)", lambda q: np.maximum(s1(q), s2(q))),
                     ("enrol 2 faces, mean of cosines", lambda q: 0.5 * (s1(q) + s2(q))),
                     ("enrol 2 faces, cosine to centroid", lambda q: X[q] @ cen.T)):
        out[rname] = row(rname, score(f, f, k1 | k2))
    two = {n: v for n, v in out.items() if "2 faces" in n}
    conclude(f"2 faces per user vs 1 ({name})", base, two)
    mx = out["enrol 2 faces, max (service now)"]
    conclude(f"user rule vs max ({name})", mx, {n: v for n, v in two.items() if "max" not in n})
    return base, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", type=int, nargs="+", default=[1, 2, 3], help="experiments to run (1 2 3)")
    args = ap.parse_args()
    t0 = time.monotonic()
    zd, zf, sp = np.load(CACHE / DLIB), np.load(CACHE / FACERES), np.load(CACHE / "last_split.npz")
    paths = zd["paths"].tolist()
    assert paths == zf["paths"].tolist()
    gal, mat, non = sp["gal"], sp["mat"], sp["non"]
    people = np.array([p.split("/")[0] for p in paths])
    _, code = np.unique(people, return_inverse=True)
    Dp, Dm, Fp, Fm = zd["plain"], zd["mirror"], zf["plain"], zf["mirror"]
    dflip = unit(unit(Dp) + unit(Dm))
    fflip = unit(unit(Fp) + unit(Fm))
    V = np.hstack([np.sqrt(2) * dflip, fflip]) / np.sqrt(3)
    descs = {"fusion p0.5 w2 (V)": V, "dlib cos+flip (dflip)": dflip}

    col = {p: c for c, p in enumerate(people[gal])}
    mate_col = np.array([col[people[i]] for i in mat])
    known = same_person_mask([paths[i] for i in non], [paths[i] for i in gal])
    used = np.zeros(len(paths), bool)
    used[np.concatenate([gal, mat, non])] = True
    stranger_ids = set(people[non])
    coh = np.array([i for i in range(len(paths)) if not used[i] and people[i] not in stranger_ids])
    cc = np.bincount(code[coh])
    print(f"{len(paths)} images, {len(set(people))} identities; split: gallery {len(gal)}, mated {len(mat)}, "
          f"strangers {len(non)}; known label errors strangers x gallery: {int(known.sum())}")
    print(f"cohort: {len(coh)} images of {int((cc > 0).sum())} identities (all gallery identities with >= 3 "
          f"images)\n  largest: " + ", ".join(f"{people[np.flatnonzero(code == c)[0]]} {cc[c]}"
                                          for c in np.argsort(-cc)[:3]))

    header("baseline (full split; identify_models printed 0.657 0.663 0.744 0.761 for the fusion)")
    for n, X in descs.items():
        Sm, Sn = X[mat] @ X[gal].T, X[non] @ X[gal].T
        Sn[known] = -np.inf
        row(n, [rank1_at(Sm, mate_col, Sn, k) for k in KC])

    for n, X in descs.items() if 1 in args.only else ():
        exp_cohort(n, X, gal, mat, non, coh, code, mate_col, known)
    print(f"  [{time.monotonic() - t0:.0f}s]", flush=True)

    wv = {"center": dict(kind="center")}
    for d in (128, 256):
        for a in (0.0, 0.1):
            wv[f"PCAw {d} s{a:g}"] = dict(kind="pcaw", d=d, a=a)
    wv["PCAw 1152 s0.1"] = dict(kind="pcaw", d=1152, a=0.1)
    wv["WCCN 256 s0.1"] = dict(kind="wccn", d=256, a=0.1)
    wv["WCCN 512 s0.1"] = dict(kind="wccn", d=512, a=0.1)
    wv["LDA 256->128 s0.1"] = dict(kind="lda", d=256, a=0.1, e=128)
    wd = {"center": dict(kind="center")}
    for d in (64, 128):
        for a in (0.0, 0.1):
            wd[f"PCAw {d} s{a:g}"] = dict(kind="pcaw", d=d, a=a)
    wd["WCCN 128 s0.1"] = dict(kind="wccn", d=128, a=0.1)
    wd["WCCN 128 s0"] = dict(kind="wccn", d=128, a=0.0)
    wd["LDA 128->64 s0.1"] = dict(kind="lda", d=128, a=0.1, e=64)
    for (n, raw), var in zip(descs.items(), (wv, wd)) if 2 in args.only else ():
        exp_whiten(n, raw, var, people, code, gal, mat, non, known)
    print(f"  [{time.monotonic() - t0:.0f}s]", flush=True)

    for n, X in descs.items() if 3 in args.only else ():
        exp_users(n, X, people, paths, non)
    print(f"\n[{time.monotonic() - t0:.0f}s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
