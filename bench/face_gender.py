"""faceres' gender head on the project's own alignment and preprocessing: accuracy on LFW with Afifi's labels.

Not shipped in DetectFaces yet (docs/analysis.md): this measures whether it could be. For each image the server's
engine finds the faces (the largest is taken), dlib's 5 points align it the way faceres' descriptor is
computed (vision/faceres.py: 224 px chip, padding 0.5, BGR minus ImageNet means), and faceres' ``gender_pred``
sigmoid is read. The threshold is chosen on the first half of the images (interleaved) and the accuracy
reported on the second half, overall and per race group of LFW's USC labels (identities with one label only),
with the differential (best minus worst group). LFW images: --per-gender of each gender, evenly spread over
lfw_dev (one image per person).

    nice -n 5 python bench/face_gender.py [--per-gender 300]
"""

from __future__ import annotations

import argparse
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
    out = []
    for gender in ("male", "female"):
        names = [n.strip() for n in (DATA / "lfw_gender_afifi" / f"{gender}_names.txt").read_text().splitlines()]
        names = sorted({n if n.endswith(".jpg") else n + ".jpg" for n in names if n})
        people: dict[str, Path] = {}
        for n in names:
            person = n.rsplit("_", 1)[0]
            path = lfw / person / n
            if path.exists() and person not in people:
                people[person] = path
        paths = sorted(people.values())
        step = max(1, len(paths) // per_gender)
        out += [(p, gender) for p in paths[::step][:per_gender]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-gender", type=int, default=300)
    args = ap.parse_args()
    import onnxruntime as ort

    from faceledger.vision.faceres import IMAGENET_BGR_MEAN, FaceresEmbedder
    from faceledger.vision.models import prepare_engine

    engine = prepare_engine()
    faceres = FaceresEmbedder(threads=1)
    faceres._session()
    session: ort.InferenceSession = faceres._sess
    gender_output = [o.name for o in session.get_outputs() if "gender" in o.name][0]
    race = json.loads((DATA / "lfw_race_usc" / "lfw_race_dict.json").read_text())
    rows = []
    for path, gender in labelled(args.per_gender):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        faces = engine.analyze(pixels, embed=False, max_faces=1)
        if not faces:
            rows.append((path, gender, None))
            continue
        points = np.asarray(engine.landmarks.locate(pixels, faces[0].detection), dtype=np.float64)
        chip = faceres.chips(pixels, [points])
        x = chip[..., ::-1].astype(np.float32) - IMAGENET_BGR_MEAN
        (p,) = session.run([gender_output], {faceres._input: np.ascontiguousarray(x)})
        rows.append((path, gender, float(p[0, 0])))
    found = [r for r in rows if r[2] is not None]
    print(f"{len(rows)} LFW images ({sum(g == 'female' for _, g, _ in rows)} female), a face found in {len(found)}")
    pick, report = found[0::2], found[1::2]

    def accuracy(part, t, female_high):
        return np.mean([(s >= t) == (g == "female") if female_high else (s >= t) == (g == "male")
                        for _, g, s in part])

    best = max(((accuracy(pick, t, fh), t, fh) for t in np.linspace(0.02, 0.98, 49) for fh in (True, False)))
    _, t, female_high = best
    print(f"threshold chosen on {len(pick)} faces: P >= {t:.2f} means {'female' if female_high else 'male'} "
          f"(accuracy there {best[0]:.3f})")
    print(f"accuracy on the other {len(report)} faces: {accuracy(report, t, female_high):.3f}")
    for g in ("male", "female"):
        part = [r for r in report if r[1] == g]
        print(f"   {g}: {accuracy(part, t, female_high):.3f} ({len(part)} faces)")
    groups: dict[str, list] = {}
    for r in report:
        label = race.get(r[0].parent.name)
        if label and "," not in label:
            groups.setdefault(label, []).append(r)
    accs = {k: accuracy(v, t, female_high) for k, v in groups.items() if len(v) >= 5}
    for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"   race {k}: {accuracy(v, t, female_high):.3f} ({len(v)} faces)")
    if len(accs) > 1:
        print(f"differential over groups of 5 or more faces: {max(accs.values()) - min(accs.values()):.3f}")
    confident = [r for r in report if abs(r[2] - t) >= 0.4]
    if confident:
        print(f"faces scored 0.4 or more from the threshold: {len(confident)}, accuracy "
              f"{accuracy(confident, t, female_high):.3f}")


if __name__ == "__main__":
    main()
