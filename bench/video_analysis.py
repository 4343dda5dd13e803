"""Stored video: cost of label, moderation and text jobs per analysed frame, frames/s and real-time factor at the
default sampling rate (1 frame/s), beside the baseline of every frame and of a face detection job's detector.

    PYTHONPATH=src .venv/bin/python bench/video_analysis.py [--clips hamilton,crowd] [--threads 1]

For each clip (the hamilton clip, 640x360 29.97 fps 9.2 s; the facenet-pytorch crowd, 1920x1080 25 fps 4.2 s),
in one run: the frames a job analyses at 1 frame/s (decoded and scaled as service/video_jobs.py does) through the
same per-frame functions as the jobs (service/video_jobs._frame_analyser): labels (EfficientNet-Lite0 + NanoDet),
moderation (nsfwjs), text (PP-OCRv6 via rapidocr); and the face detector (what StartFaceDetection runs per
sampled frame) on the same frames as the baseline. Real-time factor: seconds of video per second of wall time
(above 1: faster than the video plays); "every frame": the same per-frame cost at the clip's own frame rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DATA = ROOT.parent / "shared" / "data" / "video"
CLIPS = {"hamilton": DATA / "short_hamilton_clip.mp4", "crowd": DATA / "facenet_pytorch_video.mp4"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="hamilton,crowd")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model (default 1: one core)")
    args = ap.parse_args()
    os.environ["FACELEDGER_ONNX_THREADS"] = str(args.threads)
    from faceledger.service import Service, ServiceConfig
    from faceledger.service.video_jobs import ANALYSIS_FPS, ANALYSIS_SIDE, _frame_analyser
    from faceledger.video import frames, probe

    service = Service(ServiceConfig(data_dir=Path(tempfile.mkdtemp(prefix="bench-va-"))))
    engine = service.engine
    jobs = {"labels": "LabelDetection", "moderation": "ContentModeration", "text": "TextDetection"}
    analysers = {name: _frame_analyser(api, {})[0] for name, api in jobs.items()}
    every = 1000.0 / ANALYSIS_FPS
    print(f"sampling: {ANALYSIS_FPS:g} frame/s; onnxruntime threads per model: {args.threads}")
    print(f"{'clip':9s} {'job':11s} {'frames':>6s} {'ms/frame':>9s} {'frames/s':>9s} {'RTF@1/s':>8s} "
          f"{'RTF every frame':>15s}  found")
    for clip in args.clips.split(","):
        path = CLIPS[clip]
        info = probe(path)
        rows = {}
        for name, api in [*jobs.items(), ("faces", "FaceDetection")]:
            side = ANALYSIS_SIDE.get(api, 1920)
            images = [f.image.copy() for f in frames(path, every_ms=every, max_side=side)]
            t_decode = time.perf_counter()
            list(frames(path, every_ms=every, max_side=side))
            decode = time.perf_counter() - t_decode
            found: list = []
            t0 = time.perf_counter()
            for image in images:
                if name == "faces":
                    found.append(len(engine.analyze(image, embed=False)))
                else:
                    found.append(analysers[name](image))
            spent = time.perf_counter() - t0
            per = spent / len(images)
            wall = spent + decode
            rtf = info.duration_ms / 1000 / wall
            rtf_all = 1.0 / (per * info.frame_rate)
            if name == "labels":
                what = sorted({label["Name"] for f in found for label in f})[:8]
            elif name == "moderation":
                what = sorted({label["Name"] for f in found for label in f})
            elif name == "text":
                what = sorted({d["DetectedText"] for f in found for d in f if d["Type"] == "LINE"})[:5]
            else:
                what = f"{sum(found)} faces"
            rows[name] = per
            print(f"{clip:9s} {name:11s} {len(images):6d} {1000 * per:9.1f} {1 / per:9.2f} {rtf:8.2f} "
                  f"{rtf_all:15.3f}  {what}")
        print(f"{clip:9s} labels cost {rows['labels'] / rows['faces']:.2f}x a face detection frame; decode of the "
              f"sampled frames included in RTF@1/s")


if __name__ == "__main__":
    main()
