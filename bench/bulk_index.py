"""`faceledger index` on a folder of N lfw_dev photos: images/s and faces/s with 1 and 2 workers, beside the
per-image IndexFaces loop through faceledger.Client (the baseline), in one run (issue 11, bulk indexing).

    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/bulk_index.py --n 400

Each pass runs in its own process on a fresh data folder (a new collection, the default face model), wall
time from start to exit (start-up and model loading included, as a user sees it); CPU is the user+system
time of the pass's processes over its wall time (2.0 = both cores busy throughout). Passes:

  client-loop  -- `for f in files: client.index_faces(...)` through faceledger.Client, one image at a time
  index-w1     -- `faceledger index C DIR --workers 1` (one thread in the CLI's process)
  index-w2-threads -- `--workers 2` as two threads in one process (FACELEDGER_INDEX_PROCESSES_FROM high)
  index-w2     -- `--workers 2` as two worker processes (the default from 200 images on)

Every pass must store the same faces (ExternalImageId and box; checked). The folder holds symbolic links to
the first N photos of ../shared/data/lfw_dev in sorted order, in a temporary folder outside the repo.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lfw_dev"

CLIENT_LOOP = """
import sys
from pathlib import Path
import faceledger
from faceledger.external_ids import external_image_id
folder, data = Path(sys.argv[1]), Path(sys.argv[2])
with faceledger.Client(data_dir=data) as client:
    for path in sorted(folder.rglob("*.jpg")):
        client.index_faces(CollectionId="c", Image={"Bytes": path.read_bytes()},
                           ExternalImageId=external_image_id(path.relative_to(folder).as_posix()))
"""


def faces_of(data: Path) -> list:
    sys.path.insert(0, str(ROOT / "src"))
    import faceledger

    with faceledger.Client(data_dir=data) as client:
        out, token = [], None
        while True:
            page = client.list_faces(CollectionId="c", MaxResults=1000, **({"NextToken": token} if token else {}))
            out += [(f["ExternalImageId"], tuple(sorted(f["BoundingBox"].items()))) for f in page["Faces"]]
            token = page.get("NextToken")
            if not token:
                return sorted(out)


def run_pass(name: str, folder: Path, work: Path) -> dict:
    data = work / name
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    py = sys.executable
    subprocess.run([py, "-m", "faceledger", "collections", "create", "c", "--data", str(data)], env=env,
                   check=True, capture_output=True)
    if name == "client-loop":
        cmd = [py, "-c", CLIENT_LOOP, str(folder), str(data)]
    else:
        workers = "1" if name == "index-w1" else "2"
        cmd = [py, "-m", "faceledger", "index", "c", str(folder), "--data", str(data), "--workers", workers,
               "--no-progress"]
        env["FACELEDGER_INDEX_PROCESSES_FROM"] = "1000000000" if name.endswith("threads") else "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{name} failed: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"name": name, "wall": wall, "cpu": cpu / wall, "faces": faces_of(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--passes", nargs="+", default=["client-loop", "index-w1", "index-w2-threads", "index-w2"])
    args = ap.parse_args()
    files = sorted(DATA.glob("*/*.jpg"))[: args.n]
    print(f"[machine] {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {len(files)} lfw_dev images", flush=True)
    with tempfile.TemporaryDirectory(prefix="bulk-index-bench-") as tmp:
        folder, work = Path(tmp) / "photos", Path(tmp) / "work"
        for f in files:
            (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
            (folder / f.parent.name / f.name).symlink_to(f)
        rows = []
        for name in args.passes:
            rows.append(run_pass(name, folder, work))
            r = rows[-1]
            print(f"[{name}] {r['wall']:.1f} s, {len(r['faces'])} faces, CPU {r['cpu']:.2f}; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    base = rows[0]
    for r in rows[1:]:
        assert r["faces"] == base["faces"], f"{r['name']} stored other faces than {base['name']}"
    print(f"\nevery pass stored the same {len(base['faces'])} faces (ExternalImageId and box)")
    print("\n| pass | wall s | images/s | faces/s | CPU (cores busy) | CPU ms an image | vs client-loop |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['wall']:.1f} | {len(files) / r['wall']:.1f} | {len(r['faces']) / r['wall']:.1f} "
              f"| {r['cpu']:.2f} | {1000 * r['cpu'] * r['wall'] / len(files):.0f} | {base['wall'] / r['wall']:.2f}x |")


if __name__ == "__main__":
    main()
