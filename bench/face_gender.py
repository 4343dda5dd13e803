"""Gender (faceres' gender head, vision/attributes.py) on the server's own engine: calibration and accuracy.

For each labelled image the server's default engine (``prepare_engine()``) finds the faces (the largest is
taken) with its five points; vision/attributes.GenderModel reads faceres' ``gender_pred`` on dlib's 224 px
chip.  Images are interleaved into two halves: Platt scaling (``P(female) = sigmoid(a * logit(s) + b)``) is
fitted on the first, accuracy and calibration (expected calibration error of Confidence, 10 bins) are reported
on the second, overall, per gender, per race group (LFW's USC identity labels; DeepFace's per-image race
PREDICTIONS, a proxy) with the differential (best minus worst group of 20 or more faces), and for the same
images downscaled (--scales) to measure the smallest face size the accuracy holds at.  WIDER FACE faces on
disk (groups/widerface_val_subset, perceived gender and skin tone) are matched to detections by IoU >= 0.4 and
scored with the shipped constants (vision/attributes.py), all of them and those that pass the size/sharpness bar.

LFW images: --per-gender of each gender (Afifi & Abdelhamed's labels), one image per person, evenly spread.

    nice -n 5 python bench/face_gender.py [--per-gender 600] [--scales 1,0.5,0.35]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"


def labelled(per_gender: int) -> list[tuple[Path, str]]:
    lfw = DATA / "lfw_dev"
    lists = {g: {n.strip() if n.strip().endswith(".jpg") else n.strip() + ".jpg"
                 for n in (DATA / "lfw_gender_afifi" / f"{g}_names.txt").read_text().splitlines() if n.strip()}
             for g in ("male", "female")}
    both = lists["male"] & lists["female"]
    out = []
    for gender, names in lists.items():
        people: dict[str, Path] = {}
        for n in sorted(names - both):
            person = n.rsplit("_", 1)[0]
            path = lfw / person / n
            if path.exists() and person not in people:
                people[person] = path
        paths = sorted(people.values())
        step = max(1, len(paths) // per_gender)
        out += [(p, gender) for p in paths[::step][:per_gender]]
    return sorted(out, key=lambda r: r[0].name)


def platt(raw: np.ndarray, female: np.ndarray) -> tuple[float, float]:
    """Logistic regression of female on logit(raw) by Newton's method (ridge 0.01) -> (a, b)."""
    s = np.clip(raw, 1e-6, 1 - 1e-6)
    x = np.stack([np.log(s / (1 - s)), np.ones_like(s)], axis=1)
    y = female.astype(np.float64)
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        g = x.T @ (p - y)
        h = (x * (p * (1 - p))[:, None]).T @ x + 1e-2 * np.eye(2)  # a light ridge: separable halves stay finite
        w -= np.linalg.solve(h, g + 1e-2 * w)
    return float(w[0]), float(w[1])


def summary(name: str, pf: np.ndarray, female: np.ndarray) -> str:
    if len(pf) == 0:
        return f"   {name}: no faces"
    right = (pf >= 0.5) == female
    conf = np.where(pf >= 0.5, pf, 1 - pf)
    bins = np.minimum(((conf - 0.5) / 0.05).astype(int), 9)
    ece = sum(abs(right[bins == k].mean() - conf[bins == k].mean()) * (bins == k).sum()
              for k in range(10) if (bins == k).any()) / len(pf)
    return (f"   {name}: accuracy {right.mean():.3f} ({right.sum()}/{len(pf)}), mean Confidence "
            f"{100 * conf.mean():.1f}, ECE {100 * ece:.1f} points")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-gender", type=int, default=600)
    ap.add_argument("--scales", default="1,0.5,0.35")
    args = ap.parse_args()
    from faceledger.vision import attributes
    from faceledger.vision.attributes import GenderModel
    from faceledger.vision.geometry import box_iou
    from faceledger.vision.models import prepare_engine

    engine = prepare_engine()
    model = GenderModel()
    print(f"engine: {engine.detector.name} + {engine.landmarks.name}; shipped Platt {attributes.GENDER_PLATT}, "
          f"min face {attributes.GENDER_MIN_FACE_PX} px, min sharpness {attributes.GENDER_MIN_SHARPNESS}")

    def measure(pixels: np.ndarray):
        faces = engine.analyze(pixels, embed=False, max_faces=1)
        if not faces:
            return None
        f = faces[0]
        side = min(f.detection.right - f.detection.left, f.detection.bottom - f.detection.top)
        return float(model.raw_scores(pixels, [f.points])[0]), side, f.quality.sharpness

    rows = labelled(args.per_gender)
    scales = [float(s) for s in args.scales.split(",")]
    results: dict[float, list] = {s: [] for s in scales}
    for path, gender in rows:
        img = Image.open(path).convert("RGB")
        for s in scales:
            im = img if s == 1 else img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)
            results[s].append((path, gender, measure(np.asarray(im))))
    full = [r for r in results[1.0] if r[2] is not None]
    print(f"{len(rows)} LFW images ({sum(g == 'female' for _, g in rows)} female), a face found in {len(full)}")
    pick, report = full[0::2], full[1::2]
    raw = lambda part: np.array([r[2][0] for r in part])  # noqa: E731
    fem = lambda part: np.array([r[1] == "female" for r in part])  # noqa: E731
    a, b = platt(raw(pick), fem(pick))
    print(f"Platt fitted on {len(pick)} faces: GENDER_PLATT = ({a:.4f}, {b:.4f})")
    cal = lambda part: GenderModel.p_female(raw(part), (a, b))  # noqa: E731
    sides = np.array([r[2][1] for r in full])
    sharp = np.array([r[2][2] for r in full])
    print(f"LFW face box side px: min {sides.min():.0f}, 5th pct {np.percentile(sides, 5):.0f}, median "
          f"{np.median(sides):.0f}; sharpness: min {sharp.min():.1f}, 5th pct {np.percentile(sharp, 5):.1f}, "
          f"median {np.median(sharp):.1f}")
    print(f"held-out half ({len(report)} faces):")
    print(summary("all", cal(report), fem(report)))
    for g in ("male", "female"):
        part = [r for r in report if r[1] == g]
        print(summary(g, cal(part), fem(part)))
    race = json.loads((DATA / "lfw_race_usc" / "lfw_race_dict.json").read_text())
    proxy = {}
    with open(DATA / "lfw_deepface_race_predictions" / "lfw_deepface_predictions_per_image.csv") as fh:
        for r in csv.DictReader(fh):
            proxy[r["image"]] = r["deepface_race"]
    for title, key in (("USC race (identity labels)", lambda p: race.get(p.parent.name)),
                       ("DeepFace race PREDICTION (proxy)", lambda p: proxy.get(p.name))):
        groups: dict[str, list] = {}
        for r in report:
            label = key(r[0])
            if label and "," not in label:
                groups.setdefault(label, []).append(r)
        print(f" per group, {title}:")
        accs = {}
        for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(summary(k, cal(v), fem(v)))
            if len(v) >= 20:
                accs[k] = ((cal(v) >= 0.5) == fem(v)).mean()
        if len(accs) > 1:
            print(f"   differential over groups of 20 or more faces: {max(accs.values()) - min(accs.values()):.3f}")
    for s in scales[1:]:
        found = [r for r in results[s] if r[2] is not None]
        held = set(p for p, _, _ in report)
        part = [r for r in found if r[0] in held]
        sd = np.array([r[2][1] for r in part]) if part else np.zeros(0)
        pf = GenderModel.p_female(np.array([r[2][0] for r in part]), (a, b)) if part else np.zeros(0)
        print(f"downscaled x{s}: face found in {len(found)}/{len(rows)}; held-out faces, box side median "
              f"{np.median(sd) if len(sd) else 0:.0f} px, 5th pct {np.percentile(sd, 5) if len(sd) else 0:.0f}:")
        print(summary(f"x{s}", pf, fem(part)))
    # WIDER FACE faces on disk
    wider = DATA / "groups" / "widerface_val_subset"
    by_image: dict[str, list] = {}
    with open(wider / "demographics_subset.csv") as fh:
        for r in csv.DictReader(fh):
            if r["perceived_gender"] in ("Male", "Female"):
                by_image.setdefault(Path(r["file"]).name, []).append(r)
    wrows = []
    for name, labels in by_image.items():
        if not (wider / "images" / name).exists():
            continue
        pixels = np.asarray(Image.open(wider / "images" / name).convert("RGB"))
        faces = engine.analyze(pixels, embed=False)
        if not faces:
            continue
        det = np.array([[f.detection.left, f.detection.top, f.detection.right, f.detection.bottom] for f in faces])
        gt = np.array([[float(r["x"]), float(r["y"]), float(r["x"]) + float(r["w"]), float(r["y"]) + float(r["h"])]
                       for r in labels])
        iou = box_iou(gt, det)
        for i, r in enumerate(labels):
            j = int(iou[i].argmax())
            if iou[i, j] >= 0.4:
                f = faces[j]
                side = min(f.detection.right - f.detection.left, f.detection.bottom - f.detection.top)
                wrows.append((r, float(model.raw_scores(pixels, [f.points])[0]), side, f.quality.sharpness))
    n_labels = sum(len(v) for v in by_image.values())
    sides = np.array([w[2] for w in wrows])
    print(f"WIDER FACE faces on disk with perceived gender: {n_labels}; detected (IoU >= 0.4): {len(wrows)}, box "
          f"side median {np.median(sides) if len(sides) else 0:.0f} px; calibrated with the SHIPPED GENDER_PLATT")
    for title, part in (("all detected", wrows),
                        ("eligible (size/sharpness bar)", [w for w in wrows if GenderModel.eligible(w[2], w[3])])):
        pf = GenderModel.p_female(np.array([w[1] for w in part])) if part else np.zeros(0)
        print(summary(f"WIDER {title}", pf, np.array([w[0]["perceived_gender"] == "Female" for w in part])))
        tones: dict[str, list] = {}
        for w in part:
            tones.setdefault(w[0]["perceived_skin"], []).append(w)
        for k, v in sorted(tones.items()):
            pv = GenderModel.p_female(np.array([w[1] for w in v]))
            print("   " + summary(f"skin {k}", pv, np.array([w[0]["perceived_gender"] == "Female" for w in v])))


if __name__ == "__main__":
    main()
