"""int8 (static, QDQ, per-channel) quantization of dlib's ResNet as ONNX: speed on one
core and verification accuracy on lfw_dev/pairs_dev.txt, against float32 and dlib.

    PYTHONPATH=src .venv/bin/python bench/embedding_int8.py [--calib 256]

* the float32 model is the project's conversion (faceledger.vision.onnx_models);
* int8: ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights,
  uint8 activations, MinMax calibration) on ``--calib`` chips from lfw_dev images that
  are not in pairs_dev; written to the model cache, never committed;
* pairs_dev: the service's pipeline as the similarity calibration ran it (largest HOG
  face at upsample 1, else 2; 5 points; dlib's chip), every image of the 6,000 pairs;
  dlib's own vectors from the calibration cache ``.cache/lfw_dev_dlib.npz`` when present
  (``bench/calibrate_similarity.py embed``), else dlib is not compared;
* accuracy: at dlib's distance 0.6, and the standard 10-fold protocol (threshold
  chosen on 9 folds, accuracy on the 10th).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from calibrate_similarity import read_pairs  # noqa: E402
from faceledger.vision.dlib_models import load_models  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402
from faceledger.vision.onnx_models import model_cache_dir, resnet_onnx_path, session_options  # noqa: E402


def chip_of(m, img: np.ndarray):
    import dlib

    dets, _, _ = m.detector.run(img, 1, 0.0)
    if len(dets) == 0:
        dets, _, _ = m.detector.run(img, 2, 0.0)
        if len(dets) == 0:
            return None
    box = max(dets, key=lambda r: r.width() * r.height())
    return dlib.get_face_chip(img, m.shape5(img, box), size=150, padding=0.25)


def quantize(src: Path, calib: np.ndarray, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"chips": calib[i:i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pre.unlink()
    return out


def run(session, chips: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([session.run(None, {"chips": chips[i:i + batch]})[0]
                           for i in range(0, len(chips), batch)])


def accuracies(vec: dict, pairs) -> tuple[float, float, int]:
    rows = [(f, same, float(np.linalg.norm(vec[a] - vec[b]))) for f, same, a, b in pairs if a in vec and b in vec]
    fold = np.array([r[0] for r in rows])
    same = np.array([r[1] for r in rows])
    dist = np.array([r[2] for r in rows])
    at06 = float(((dist <= 0.6) == same).mean())
    cv = []
    cands = np.unique(dist)
    for f in np.unique(fold):
        tr = fold != f
        accs = [((dist[tr] <= t) == same[tr]).mean() for t in cands[:: max(1, len(cands) // 2000)]]
        t = cands[:: max(1, len(cands) // 2000)][int(np.argmax(accs))]
        cv.append(((dist[~tr] <= t) == same[~tr]).mean())
    return at06, float(np.mean(cv)), len(rows)


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--calib", type=int, default=256)
    args = ap.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    lfw = args.data / "lfw_dev"
    pairs = read_pairs(lfw / "pairs_dev.txt")
    in_pairs = sorted({p for _, _, a, b in pairs for p in (a, b)})
    m = load_models()

    t0 = time.time()
    calib = []
    pair_set = set(in_pairs)
    for p in sorted(lfw.glob("*/*.jpg")):
        rel = f"{p.parent.name}/{p.name}"
        if rel in pair_set:
            continue
        c = chip_of(m, decode_image(p.read_bytes()).pixels)
        if c is not None:
            calib.append(c)
        if len(calib) == args.calib:
            break
    calib = np.stack(calib)
    names, chips = [], []
    for rel in in_pairs:
        c = chip_of(m, decode_image((lfw / rel).read_bytes()).pixels)
        if c is not None:
            names.append(rel)
            chips.append(c)
    chips = np.stack(chips)
    print(f"{len(calib)} calibration chips, {len(chips)} of {len(in_pairs)} pairs_dev images have a face "
          f"({time.time() - t0:.0f} s)")

    src = resnet_onnx_path()
    q = quantize(src, calib, model_cache_dir() / (src.stem + "-int8-qdq.onnx"))
    s32 = ort.InferenceSession(str(src), session_options(1), providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(str(q), session_options(1), providers=["CPUExecutionProvider"])
    run(s32, chips[:32]), run(s8, chips[:32])
    t32, t8 = [], []
    bench = chips[:256]
    for _ in range(3):
        t = time.perf_counter(); run(s32, bench); t32.append(time.perf_counter() - t)
        t = time.perf_counter(); run(s8, bench); t8.append(time.perf_counter() - t)
    f32 = len(bench) / statistics.median(t32)
    f8 = len(bench) / statistics.median(t8)
    print(f"1 core, batches of 32: float32 {f32:.0f} faces/s, int8 {f8:.0f} faces/s ({f8 / f32:.2f}x)")

    v32 = run(s32, chips)
    v8 = run(s8, chips)
    cos = (v32 * v8).sum(1) / np.linalg.norm(v32, axis=1) / np.linalg.norm(v8, axis=1)
    d = np.linalg.norm(v32 - v8, axis=1)
    print(f"int8 vs float32: cosine min {cos.min():.5f} median {np.median(cos):.6f}; "
          f"distance median {np.median(d):.4f} max {d.max():.4f}")
    results = {"onnx float32": dict(zip(names, v32)), "onnx int8": dict(zip(names, v8))}
    cache = ROOT / ".cache" / "lfw_dev_dlib.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        dl = dict(zip(list(z["paths"]), z["vectors"].astype(np.float32)))
        results["dlib (calibration cache)"] = dl
        common = [n for n in names if n in dl]
        a = np.stack([dl[n] for n in common])
        b = np.stack([results["onnx float32"][n] for n in common])
        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(f"float32 vs dlib's cached vectors through the whole pipeline ({len(common)} images): "
              f"min cosine {c.min():.9f}")
    print("\n| vectors | pairs | accuracy at 0.6 | 10-fold accuracy |\n|---|---|---|---|")
    for name, vec in results.items():
        at06, cv, n = accuracies(vec, pairs)
        print(f"| {name} | {n} | {100 * at06:.2f}% | {100 * cv:.2f}% |")


if __name__ == "__main__":
    main()
