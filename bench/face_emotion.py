"""Smile from the ``emotion`` model's P(happy) (vision/emotion.py), against the hand labels of
bench/data/face_state_labels.csv, next to facemesh geometry (bench/face_state.py: held-out accuracy 0.855).

For each of the 120 labelled LFW images the server's default engine finds the faces (the largest is taken); the
emotion model (human-models' mini-Xception, FER2013's 7 classes) reads a square crop of ``scale`` x the face
box.  As bench/face_state.py does, the labelled faces (blank labels left out) are split by position: the crop
scale and the threshold on P(happy) are chosen on the even ones (the pick half), accuracy is reported on the odd
ones (held out), next to the majority-class baseline, with a Wilson 95% interval.  A Platt fit of
``P(smile) = sigmoid(a logit(P(happy)) + b)`` on the pick half gives the calibration error (ECE, 10 bins) of
Confidence on the held-out half, both as a plain logistic fit and with Platt's own (1999) target smoothing
(targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0), which keeps a pick half that one threshold
separates perfectly from giving near-certain Confidence.  Per-face probabilities go to --csv when given.  The same held-out faces downscaled (--scales) show the size the figure holds
at.  Then what the 7-class output says on all 120 faces: the top class and the mean probabilities, by smile label
and by mouth label (the only labels here: nothing labels anger, disgust, fear, sadness or surprise).

    nice -n 5 python bench/face_emotion.py [--scales 1,0.5,0.35]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"
CROP_SCALES = (1.0, 1.2, 1.4, 1.6)

from face_gender import platt, summary  # noqa: E402
from face_state import best_threshold  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if not n:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="1,0.5,0.35")
    ap.add_argument("--csv", help="write each labelled face's 7 probabilities (chosen crop) here")
    args = ap.parse_args()
    from faceledger.vision.attributes import SMILE_MIN_FACE_PX, SMILE_PLATT, SmileModel
    from faceledger.vision.emotion import CLASSES, EMOTION_CROP_SCALE, EmotionModel
    from faceledger.vision.models import prepare_engine

    engine = prepare_engine()
    model = EmotionModel()
    rows = list(csv.DictReader(open(ROOT / "bench" / "data" / "face_state_labels.csv")))
    img_scales = [float(s) for s in args.scales.split(",")]
    # probs[img_scale][i] = {crop_scale: (7,) probabilities} or None; face[img_scale][i] = (box side, sharpness)
    probs: dict[float, list] = {s: [] for s in img_scales}
    face: dict[float, list] = {s: [] for s in img_scales}
    for r in rows:
        img = Image.open(DATA / "lfw_dev" / r["image"].rsplit("_", 1)[0] / r["image"]).convert("RGB")
        for s in img_scales:
            im = img if s == 1 else img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)
            px = np.asarray(im)
            faces = engine.analyze(px, embed=False, max_faces=1)
            if not faces:
                probs[s].append(None)
                face[s].append(None)
                continue
            d = faces[0].detection
            box = [(d.left, d.top, d.right, d.bottom)]
            probs[s].append({c: model.probabilities(px, box, c)[0] for c in CROP_SCALES})
            face[s].append((min(d.right - d.left, d.bottom - d.top), faces[0].quality.sharpness))
    full = probs[1.0]
    print(f"{len(rows)} labelled faces, a face found in {sum(p is not None for p in full)}")
    happy = CLASSES.index("happy")
    idx = [i for i, r in enumerate(rows) if r["smile"] in ("0", "1") and full[i] is not None]
    y = np.array([rows[i]["smile"] == "1" for i in idx])
    pick, rep = np.arange(len(idx)) % 2 == 0, np.arange(len(idx)) % 2 == 1
    print(f"Smile labels: {len(idx)} faces ({y.sum()} smiling); pick half {pick.sum()}, held-out half {rep.sum()}")
    best = None
    for c in CROP_SCALES:
        x = np.array([full[i][c][happy] for i in idx])
        t, acc_pick = best_threshold(x[pick], y[pick])
        acc = ((x[rep] >= t) == y[rep]).mean()
        print(f"  crop {c:.1f}x box: threshold on P(happy) {t:.3f} chosen on the pick half (accuracy there "
              f"{acc_pick:.3f}); held-out {acc:.3f}")
        if best is None or acc_pick > best[2]:
            best = (c, t, acc_pick)
    c, t, _ = best
    x = np.array([full[i][c][happy] for i in idx])
    k, n = int(((x[rep] >= t) == y[rep]).sum()), int(rep.sum())
    lo, hi = wilson(k, n)
    base = max(y[rep].mean(), 1 - y[rep].mean())
    print(f"CHOSEN on the pick half: crop {c:.1f}x, threshold {t:.3f}. Held-out: accuracy {k / n:.3f} ({k}/{n}), "
          f"Wilson 95% {lo:.3f}-{hi:.3f}; majority class {base:.3f}; facemesh geometry 0.855 on its held-out half")
    s_clip = np.clip(x, 1e-6, 1 - 1e-6)
    n_pos, n_neg = int(y[pick].sum()), int((~y[pick]).sum())
    for how, target in (("plain logistic", y[pick].astype(float)),
                        ("Platt's smoothed targets", np.where(y[pick], (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)))):
        a, b = platt(s_clip[pick], target)
        p_smile = SmileModel.p_smile(x, (a, b))
        print(f"calibration on the pick half, {how}: SMILE_PLATT = ({a:.4f}, {b:.4f}); held-out (Value: P(smile) "
              f">= 0.5, i.e. P(happy) >= {1 / (1 + np.exp(b / a)):.3f}):")
        print(summary("Smile", p_smile[rep], y[rep]))
    print(f"shipped (vision/attributes.py): SMILE_PLATT = {SMILE_PLATT}, crop {EMOTION_CROP_SCALE}x, faces of "
          f"{SMILE_MIN_FACE_PX} px or more")
    for s in img_scales[1:]:
        ok = [j for j, i in enumerate(idx) if rep[j] and probs[s][i] is not None]
        xs = np.array([probs[s][idx[j]][c][happy] for j in ok])
        ys = y[ok]
        sides = np.array([face[s][idx[j]][0] for j in ok])
        print(f"  held-out faces downscaled x{s}: found {len(ok)}/{n}, box side median {np.median(sides):.0f} px, "
              f"5th pct {np.percentile(sides, 5):.0f}, min {sides.min():.0f}; at the chosen threshold: accuracy "
              f"{((xs >= t) == ys).mean():.3f}; shipped calibration:")
        print("  " + summary(f"x{s}", SmileModel.p_smile(xs), ys))
    # the 7-class output
    found = [i for i in range(len(rows)) if full[i] is not None]
    P = np.array([full[i][c] for i in found])
    top = P.argmax(1)
    print(f"\n7-class output on the {len(found)} faces (crop {c:.1f}x): top class counts and mean probability")
    print("  " + "  ".join(f"{name} {int((top == j).sum())} ({P[:, j].mean():.2f})" for j, name in enumerate(CLASSES)))
    for col in ("smile", "mouth_open"):
        for v, what in (("1", "yes"), ("0", "no"), ("", "blank")):
            m = np.array([rows[i][col] == v for i in found])
            if m.any():
                print(f"  {col}={what} ({m.sum()} faces): top " + ", ".join(
                    f"{name} {int((top[m] == j).sum())}" for j, name in enumerate(CLASSES) if (top[m] == j).any())
                      + "; mean " + " ".join(f"{name[:3]} {P[m, j].mean():.2f}" for j, name in enumerate(CLASSES)))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["image", "smile", "mouth_open", *CLASSES])
            for i in found:
                out.writerow([rows[i]["image"], rows[i]["smile"], rows[i]["mouth_open"],
                              *(f"{v:.4f}" for v in full[i][c])])
    print("  labels here: eyes_open, mouth_open, smile only: no face is labelled angry, disgusted, afraid, sad, "
          "surprised or calm, so no class but HAPPY (as Smile) can be scored")


if __name__ == "__main__":
    main()
