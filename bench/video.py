"""Stored video: frames/s, faces/s, stage times and real-time factor, against the naive per-frame baseline (issue 12).

    PYTHONPATH=src .venv/bin/python bench/video.py [--rates 1,2,5,10,30] [--naive-every 1]

For each clip (the hamilton clip, 640x360 29.97 fps 9.2 s; the facenet-pytorch crowd, 1920x1080 25 fps 4.2 s),
in one run, with the server's face model (whatever `faceledger serve` would use):

  detection  -- what a StartFaceDetection job computes at the default rate (5 frames/s): decode, detect, track
  search     -- what a StartFaceSearch job computes: decode every frame, shot cuts, detect and track at the
                default rate, embed each tracklet's best faces, merge tracklets, search each person once
                (through the same search policy as SearchFacesByImage, in an in-process service holding the
                two hamilton reference faces)
  naive      -- the baseline: every frame through DetectFaces and SearchFacesByImage (in-process Client), no
                tracking (--naive-every N: every Nth frame, the time scaled to every frame)

Real-time factor: seconds of video analysed per second of wall time (above 1: faster than the video plays).
Then the sampling-rate sweep (--rates) of face search on the hamilton clip: frames analysed, persons, Miranda's and
Lacamoire's person(s) and time ranges, wall time: how the default rate was chosen (docs/video.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.client import Client  # noqa: E402
from faceledger.service import Service, ServiceConfig  # noqa: E402
from faceledger.service.dispatch import Invocation  # noqa: E402
from faceledger.service.context import RequestContext  # noqa: E402
from faceledger.service.operations.search import face_matches  # noqa: E402
from faceledger.service.risk import search_threshold  # noqa: E402
from faceledger.service.video_jobs import band_similarity  # noqa: E402
from faceledger.video import FacePass, ShotDetector, frames, merge_tracklets, probe  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "video"
CLIPS = {"hamilton": DATA / "short_hamilton_clip.mp4", "crowd": DATA / "facenet_pytorch_video.mp4"}
REFS = DATA / "hamilton_reference_faces"


class Clock:
    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.t[name] = self.t.get(name, 0.0) + seconds


def timed_frames(clock: Clock, path: Path, **kw):
    it = iter(frames(path, **kw))
    while True:
        t0 = time.perf_counter()
        try:
            f = next(it)
        except StopIteration:
            clock.add("decode", time.perf_counter() - t0)
            return
        clock.add("decode", time.perf_counter() - t0)
        yield f


def pipeline(service: Service, collection_id: str, path: Path, fps: float, search: bool) -> dict:
    """One job's computation, stage by stage (as service/video_jobs.py runs it)."""
    info = probe(path)
    inv = Invocation(service, RequestContext(transport="bench"), {})
    if search:
        inv = inv.for_model(service.store.get_collection(collection_id).face_model_version)
    engine = inv.engine
    clock = Clock()
    fp = FacePass(engine, fps, embed=search)
    shots = ShotDetector(info.frame_rate) if search else None
    every = 1000.0 / fps
    slot = -1
    tracklets = []
    wall0 = time.perf_counter()
    for frame in timed_frames(clock, path, every_ms=None if search else every):
        if shots is not None:
            t0 = time.perf_counter()
            cut = shots.feed(frame.index, frame)
            clock.add("shots", time.perf_counter() - t0)
            if cut is not None:
                tracklets += fp.cut()
        s = int(frame.timestamp_ms // every)
        if s == slot:
            continue
        slot = s
        fp.frame(frame)
    tracklets += fp.cut()
    out = {"frames": fp.frames, "faces": fp.faces, "duration_s": info.duration_ms / 1000}
    if search:
        t0 = time.perf_counter()
        persons = merge_tracklets(tracklets, band_similarity(service, inv.face_model or service.model_version))
        clock.add("merge", time.perf_counter() - t0)
        t0 = time.perf_counter()
        collection = service.store.get_collection(collection_id)
        matched = []
        for index, group in enumerate(persons):
            probes = sorted((qv for t in group for qv in t.faces), key=lambda qv: -qv[0])[:3]
            if not probes:
                continue
            thr = search_threshold(Invocation(service, inv.context, {}, inv.face_model), 80.0,
                                   collection.face_count, probes=len(probes))
            names = set()
            for _, v, probe_band in probes:
                for m in face_matches(Invocation(service, inv.context, {}, inv.face_model), collection_id, v,
                                      {"FaceMatchThreshold": thr, "MaxFaces": 10}, face_count=collection.face_count,
                                      probe_band=probe_band):
                    names.add(m["Face"].get("ExternalImageId"))
            stamps = [t for tr in group for t in (tr.first_ms, tr.last_ms)]
            matched.append((index, sorted(names), min(stamps), max(stamps)))
        clock.add("search", time.perf_counter() - t0)
        out.update(persons=len(persons), tracklets=len(tracklets), matched=matched)
    for k, v in fp.timings.items():
        if v:
            clock.add(k, v)
    out["wall_s"] = time.perf_counter() - wall0
    out["stages"] = clock.t
    return out


def naive(client: Client, collection_id: str, path: Path, every: int) -> dict:
    """Every ``every``-th frame through DetectFaces and SearchFacesByImage, as JPEG bytes; time scaled to every frame."""
    import io

    from PIL import Image

    n = faces = searched = 0
    t0 = time.perf_counter()
    total = 0
    for frame in frames(path):
        total += 1
        if frame.index % every:
            continue
        buf = io.BytesIO()
        Image.fromarray(frame.image).save(buf, "JPEG", quality=95)
        data = buf.getvalue()
        d = client.detect_faces(Image={"Bytes": data})
        faces += len(d["FaceDetails"])
        if d["FaceDetails"]:
            try:
                client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": data})
                searched += 1
            except client.exceptions.InvalidParameterException:
                pass
        n += 1
    wall = time.perf_counter() - t0
    return {"frames": n, "faces": faces, "searches": searched, "wall_s": wall, "per_frame_s": wall / max(1, n),
            "all_frames_s": wall / max(1, n) * total, "total_frames": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1,2,5,10,30", help="sampling rates (frames/s) of the hamilton sweep")
    ap.add_argument("--naive-every", type=int, default=1, help="naive baseline on every Nth frame (scaled)")
    ap.add_argument("--clips", default="hamilton,crowd")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-video-"))
    service = Service(ServiceConfig(tmp / "data", tmp / "buckets"))
    client = Client(service=service)
    client.create_collection(CollectionId="hamilton")
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        client.index_faces(CollectionId="hamilton", Image={"Bytes": (REFS / f"{name}.png").read_bytes()},
                           ExternalImageId=name, MaxFaces=1)
    print(f"face model {service.model_version}; default sampling rate 5 frames/s; CPU: {sys.platform}")
    for clip in args.clips.split(","):
        path = CLIPS[clip]
        info = probe(path)
        print(f"\n== {clip}: {info.width}x{info.height}, {info.frame_rate} fps, {info.duration_ms / 1000:.1f} s, "
              f"{info.frames} frames")
        det = pipeline(service, "hamilton", path, 5.0, search=False)
        srch = pipeline(service, "hamilton", path, 5.0, search=True)
        base = naive(client, "hamilton", path, args.naive_every)
        for name, r in (("detection job", det), ("search job", srch)):
            stages = ", ".join(f"{k} {v:.2f}s" for k, v in r["stages"].items())
            print(f"{name:14s}: {r['frames']} frames, {r['faces']} faces in {r['wall_s']:.2f} s: "
                  f"{r['frames'] / r['wall_s']:.1f} frames/s, {r['faces'] / r['wall_s']:.1f} faces/s, "
                  f"real-time factor {r['duration_s'] / r['wall_s']:.2f}x  [{stages}]")
        print(f"  search job: {srch['tracklets']} tracklets -> {srch['persons']} persons; matched: "
              + "; ".join(f"#{i} {n or '-'} {a / 1000:.1f}-{b / 1000:.1f}s" for i, n, a, b in srch["matched"]))
        print(f"naive baseline: {base['frames']} of {base['total_frames']} frames through DetectFaces + "
              f"SearchFacesByImage ({base['searches']} searches): {base['per_frame_s']:.3f} s/frame, "
              f"{base['all_frames_s']:.1f} s for every frame: real-time factor "
              f"{info.duration_ms / 1000 / base['all_frames_s']:.2f}x; the search job is "
              f"{base['all_frames_s'] / srch['wall_s']:.1f}x faster, and searches {srch['persons']} persons "
              f"instead of {round(base['searches'] * base['total_frames'] / max(1, base['frames']))} frames")
    if args.rates and "hamilton" in args.clips:
        print("\n== sampling rate sweep, face search on the hamilton clip")
        for rate in [float(r) for r in args.rates.split(",")]:
            r = pipeline(service, "hamilton", CLIPS["hamilton"], rate, search=True)
            found = []
            for who, ref in (("Miranda", "lin-manuel-miranda"), ("Lacamoire", "alex-lacamoire")):
                seen = [(i, a, b) for i, n, a, b in r["matched"] if ref in n]
                found.append(f"{who} as " + (", ".join(f"#{i} {a / 1000:.1f}-{b / 1000:.1f}s" for i, a, b in seen)
                                              or "nobody"))
            print(f"{rate:5g} frames/s: {r['frames']:3d} frames, {r['faces']:3d} faces, {r['tracklets']:2d} tracklets, "
                  f"{r['persons']} persons, " + ", ".join(found)
                  + f"; {r['wall_s']:.2f} s, real-time factor {r['duration_s'] / r['wall_s']:.2f}x")
    client.close()


if __name__ == "__main__":
    main()
