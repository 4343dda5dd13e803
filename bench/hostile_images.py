"""Peak server memory and time per request for hostile image shapes, beside normal photos (issue 9, point 7).

    PYTHONPATH=src .venv/bin/python bench/hostile_images.py [--engine onnx|dlib] [--operation detect]
                                                            [--as-limit-gb 8] [--only 20000x1,lfw]

Starts `faceledger serve --dev` (the code under PYTHONPATH) on a loopback port, warms it up with one
normal photo (models load lazily), then sends each image once through boto3 (DetectFaces by default;
``--operation index`` for IndexFaces into the bench's collection, ``search`` for SearchFacesByImage,
``compare`` for CompareFaces with the image as both source and target).  Every image is built here with
Pillow/numpy; the normal photos come from ../shared/data.  Images over 5 MB go by S3Object (the
server's --buckets folder, 15 MB limit), the others as Bytes.

Per request it prints the answer (faces found, or the AWS error code and HTTP status), the wall time,
the serving process's peak RSS (VmHWM from /proc/<pid>/status, reset before each request by writing 5
to /proc/<pid>/clear_refs) and how far that peak rose above the RSS just before the request, and the
time and the peak as ratios to the LFW photo's (that row: the median of 5 requests).  "3 concurrent"
sends three requests at once from three threads.

``--as-limit-gb`` caps the server's address space (RLIMIT_AS; 0: no cap) so that a run against code
whose cost grows with the square of the image's longest side fails with MemoryError in the server
instead of exhausting the machine (the unfixed 60000x600 PNG would need about 25 GB).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import boto3
import httpx
import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.vision.image import jpeg_segments  # noqa: E402
DATA = Path(os.environ.get("FACELEDGER_TEST_DATA", ROOT.parent / "shared" / "data"))
LFW = DATA / "lfw_dev" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
GROUP = DATA / "groups" / "linzaer_imgs" / "11.jpg"
BYTES_LIMIT = 5 * 1024 * 1024


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def lfw_photo() -> bytes:
    return LFW.read_bytes()


def group_4000x3000() -> bytes:
    """A group photo of 26 faces (linzaer_imgs/11.jpg, 1024x791) enlarged to 4000x3000, as a 12 Mpx phone photo."""
    return encode(Image.open(GROUP).convert("RGB").resize((4000, 3000), Image.BICUBIC), "JPEG", quality=90)


def noise_jpeg() -> bytes:
    """6000x6000 grey noise, JPEG quality 30: about 12 MB of entropy-coded data (sent by S3Object)."""
    pixels = np.random.default_rng(0).integers(0, 256, (6000, 6000), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=30)


def many_scans(copies: int = 1000) -> bytes:
    """A 6000x6000 grey progressive JPEG whose last scan (59 bytes) is repeated ``copies`` times:
    libjpeg decodes every scan over every block (warning, not failing, on the bogus progression)."""
    data = encode(Image.new("L", (6000, 6000), 128), "JPEG", progressive=True, quality=90)
    _, start, end = [s for s in jpeg_segments(data) if s[0] == 0xDA][-1]
    return data[:-2] + data[start:end] * copies + data[-2:]  # before EOI


def png16() -> bytes:
    """A flat 16-bit greyscale 6000x6000 PNG: about 70 KB, 36 Mpx."""
    return encode(Image.new("I;16", (6000, 6000)), "PNG", optimize=True)


SHAPES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "lfw": ("LFW photo 250x250 JPEG (the baseline)", lfw_photo),
    "group": ("group photo 4000x3000 JPEG", group_4000x3000),
    "20000x1": ("20000x1 PNG", lambda: encode(Image.new("L", (20000, 1)), "PNG", optimize=True)),
    "36000000x1": ("36000000x1 1-bit PNG", lambda: encode(Image.new("1", (36_000_000, 1)), "PNG", optimize=True)),
    "60000x600": ("60000x600 1-bit PNG", lambda: encode(Image.new("1", (60000, 600)), "PNG", optimize=True)),
    "png16": ("16-bit grey 6000x6000 PNG", png16),
    "noise": ("6000x6000 noise JPEG (S3Object)", noise_jpeg),
    "progressive": ("6000x6000 progressive JPEG", lambda: encode(
        Image.new("RGB", (6000, 6000), (120, 130, 140)), "JPEG", quality=90, progressive=True)),
    "cmyk": ("6000x6000 CMYK JPEG", lambda: encode(Image.new("CMYK", (6000, 6000), (10, 20, 30, 40)), "JPEG")),
    "rgba": ("6000x6000 RGBA PNG", lambda: encode(Image.new("RGBA", (6000, 6000), (1, 2, 3, 128)), "PNG")),
    "scans": ("6000x6000 JPEG of 1006 progressive scans", many_scans),
    "3x png16": ("3 concurrent 16-bit 6000x6000 PNGs", png16),
}


@dataclass
class Result:
    answer: str
    seconds: float
    peak_mb: float
    rise_mb: float


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])  # kB
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, engine: str, as_limit_gb: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.buckets = root / "buckets"
        (self.buckets / "bench").mkdir(parents=True)
        self.log = open(root / "server.log", "wb")

        def cap() -> None:
            if as_limit_gb > 0:
                limit = int(as_limit_gb * 1024 ** 3)
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        cmd = [sys.executable, "-m", "faceledger", "serve", "--dev", "--port", str(self.port),
               "--data", str(root / "data"), "--buckets", str(self.buckets), "--engine", engine,
               "--log-level", "warning"]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=cap)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit("server did not start")

    def client(self):
        return boto3.client("rekognition", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local",
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=900, connect_timeout=10))

    def reset_peak(self) -> int:
        """Reset VmHWM to the current RSS; return that RSS (kB)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return _status(self.process.pid)["VmRSS"]

    def peak(self) -> int:
        return _status(self.process.pid)["VmHWM"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def image_param(server: Server, data: bytes) -> dict:
    if len(data) <= BYTES_LIMIT:
        return {"Bytes": data}
    name = f"{uuid.uuid4().hex}.img"
    (server.buckets / "bench" / name).write_bytes(data)
    return {"S3Object": {"Bucket": "bench", "Name": name}}


def call(server: Server, client, operation: str, image: dict, collection: str) -> str:
    try:
        if operation == "detect":
            return f"{len(client.detect_faces(Image=image)['FaceDetails'])} faces"
        if operation == "index":
            r = client.index_faces(CollectionId=collection, Image=image)
            return f"{len(r['FaceRecords'])} indexed, {len(r['UnindexedFaces'])} not"
        if operation == "search":
            r = client.search_faces_by_image(CollectionId=collection, Image=image)
            return f"{len(r['FaceMatches'])} matches"
        if operation == "compare":
            r = client.compare_faces(SourceImage=image, TargetImage=image)
            return f"{len(r['FaceMatches'])} matches"
        raise ValueError(operation)
    except ClientError as exc:
        return f"{exc.response['Error']['Code']} ({exc.response['ResponseMetadata']['HTTPStatusCode']})"
    except Exception as exc:  # noqa: BLE001 - a dropped connection (server killed) is a result too
        return f"{type(exc).__name__}"


def measure(server: Server, operation: str, data: bytes, collection: str, concurrent: int = 1) -> Result:
    image = image_param(server, data)
    clients = [server.client() for _ in range(concurrent)]
    before = server.reset_peak()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        answers = list(pool.map(lambda c: call(server, c, operation, image, collection), clients))
    seconds = time.perf_counter() - t0
    peak = server.peak() if server.process.poll() is None else 0
    answer = answers[0] if len(set(answers)) == 1 else " / ".join(answers)
    if server.process.poll() is not None:
        answer += " (server died)"
    return Result(answer, seconds, peak / 1024, (peak - before) / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["onnx", "dlib"], default="onnx")
    ap.add_argument("--operation", choices=["detect", "index", "search", "compare"], default="detect")
    ap.add_argument("--as-limit-gb", type=float, default=8.0,
                    help="RLIMIT_AS of the server in GiB (0: none); default 8")
    ap.add_argument("--only", default="", help="comma-separated shape names (default: all): " + ", ".join(SHAPES))
    args = ap.parse_args()
    if not LFW.is_file() or not GROUP.is_file():
        raise SystemExit(f"the normal photos are missing under {DATA} (set FACELEDGER_TEST_DATA to the shared data "
                         "folder; see its README)")
    names = [n for n in SHAPES if not args.only or n in args.only.split(",")]
    if "lfw" not in names:
        names.insert(0, "lfw")

    with tempfile.TemporaryDirectory(prefix="hostile-images-") as tmp:
        server = Server(Path(tmp), args.engine, args.as_limit_gb)
        try:
            client = server.client()
            collection = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_collection(CollectionId=collection)
            client.index_faces(CollectionId=collection, Image={"Bytes": lfw_photo()})  # warm-up, and a face to find
            cap = f"{args.as_limit_gb:g} GiB" if args.as_limit_gb else "none"
            print(f"engine {args.engine}, operation {args.operation}, server RLIMIT_AS {cap}")
            print(f"{'case':44} {'bytes':>10} {'answer':>34} {'time s':>8} {'peak MB':>8} {'rise MB':>8}"
                  f" {'time x':>8} {'peak x':>7}")
            base: Result | None = None
            for name in names:
                label, build = SHAPES[name]
                data = build()
                if server.process.poll() is not None:
                    print(f"{label:44} {len(data):>10} {'(server dead)':>34}")
                    continue
                if name == "lfw":  # the baseline: the median of 5 requests
                    runs = sorted((measure(server, args.operation, data, collection) for _ in range(5)),
                                  key=lambda r: r.seconds)
                    r = runs[2]
                    r.rise_mb = sorted(x.rise_mb for x in runs)[2]
                else:
                    r = measure(server, args.operation, data, collection, 3 if name.startswith("3x") else 1)
                if base is None:
                    base = r
                print(f"{label:44} {len(data):>10} {r.answer:>34} {r.seconds:>8.2f} {r.peak_mb:>8.0f} "
                      f"{r.rise_mb:>8.0f} {r.seconds / base.seconds:>8.1f} {r.peak_mb / base.peak_mb:>7.2f}",
                      flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
