"""`collections import` speed, before and after a change, in one run (issue 11: 10M faces in <= 60 minutes).

    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/import_speed.py --faces 100000 --before bca03ab

Writes one export of N faces (random uuid4 FaceIds, as IndexFaces gives them, so the FaceId index is written
in random order; unit 128-d vectors: dlib-resnet-v1) in a temporary folder outside the repo, then imports
it with ``Faceledger.ImportCollection`` into a fresh data folder, once with the source tree of ``--before``
(a git revision, extracted with ``git archive``) and once with this working tree, each in its own process.
Prints, for each: wall time, CPU time (user + system of the process), the vector index build (after the
commit, part of the call) and faces/s with and without it. On a machine shared with other work, wall time
follows the load; CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL, DIM = "dlib-resnet-v1", 128

CHILD = """
import json, sys, time
from pathlib import Path
from faceledger.client import Client
client = Client(Path(sys.argv[2]))
t = time.monotonic()
client._service.call("ImportCollection", {"Directory": sys.argv[1]})
wall = time.monotonic() - t
print(json.dumps({"wall": wall, "build": client._service.store.indexes.last_build_seconds}))
"""


def write_export(out: Path, n: int) -> None:
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    matrix = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 50000):
        v = rng.standard_normal((min(50000, n - start), DIM)).astype(np.float32)
        matrix[start:start + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    matrix.flush()
    del matrix
    with open(out / "faces.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"FaceId": str(uuid.uuid4()), "ImageId": str(uuid.uuid4()),
                                "ExternalImageId": f"person{i // 3}:photo{i}.jpg", "UserId": None,
                                "BoundingBox": {"Width": 0.41, "Height": 0.52, "Left": 0.27, "Top": 0.26},
                                "Confidence": 99.91, "IndexFacesModelVersion": MODEL,
                                "CreationTimestamp": f"2026-11-30T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                                                     f"{i % 60:02d}.{i % 1000:03d}Z"}) + "\n")
    (out / "collection.json").write_text(json.dumps({"CollectionId": "scale", "FaceModelVersion": MODEL,
                                                     "Tags": {}, "Policy": None}))


def run(src: Path, export: Path, data: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(export), str(data)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(src)})
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["process_wall"] = wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=100000)
    ap.add_argument("--before", default="bca03ab", help="git revision to compare with (default: before issue 11's "
                                                          "import speed change)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-speed-") as tmp:
        tmp = Path(tmp)
        t = time.monotonic()
        write_export(tmp / "export", args.faces)
        print(f"[export] {args.faces} faces written in {time.monotonic() - t:.1f} s; load {os.getloadavg()[0]:.1f}",
              flush=True)
        old = tmp / "before"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        rows = []
        for name, src in ((f"before ({args.before})", old / "src"), ("after (this tree)", ROOT / "src")):
            r = run(src, tmp / "export", tmp / f"data-{len(rows)}")
            r["name"] = name
            rows.append(r)
            print(f"[{name}] wall {r['wall']:.1f} s (index build {r['build']:.1f} s), CPU {r['cpu']:.1f} s; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    n = args.faces
    print(f"\n{n} faces, {DIM}-d ({MODEL}), random uuid4 FaceIds")
    print("| code | import wall s | of which index build s | faces/s | faces/s without the build | CPU s | "
          "faces per CPU-second |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['wall']:.1f} | {r['build']:.1f} | {n / r['wall']:,.0f} | "
              f"{n / (r['wall'] - r['build']):,.0f} | {r['cpu']:.1f} | {n / r['cpu']:,.0f} |")


if __name__ == "__main__":
    main()
