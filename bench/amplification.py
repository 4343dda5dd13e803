"""What a hostile request costs the server, next to a normal one: response, ledger and memory per byte sent.

One ``faceledger serve`` as shipped (signatures checked, the ledger on), driven over HTTP with requests signed
by botocore's SigV4 signer. For each request shape, sent once with the admin key (the request is validated) and
once with a key whose policy allows nothing (the policy refuses it first), it prints:

* ``request``: bytes of the body sent;
* ``response``: bytes of the body answered (and the error code);
* ``ledger``: bytes of the ledger rows the request added (every column, ``detail`` JSON included);
* ``peak``: the server's peak RSS during the request above its RSS before it (``/proc/<pid>/clear_refs``
  resets the high-water mark before each request; Linux only). Python keeps memory it freed, so the second
  of two similar requests (the ``denied`` row after the ``admin`` one) can show less than it used;
* ratios response/request and ledger/request.

Then the refused, unauthenticated requests (badly signed, unsigned): ledger rows and bytes per refused
request, from one source, before and after the server's shutdown writes the last aggregate row.

    .venv/bin/python bench/amplification.py [--size 7800000] [--refused 2000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "lfw_dev" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
TARGET = "RekognitionService."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_key(data: Path, name: str, policy: dict | None = None) -> tuple[str, str]:
    cmd = [sys.executable, "-m", "faceledger", "keys", "create", "--data", str(data), "--name", name, "--json"]
    if policy is not None:
        path = data.parent / f"{name}.json"
        path.write_text(json.dumps(policy))
        cmd += ["--policy", str(path)]
    key = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return key["AccessKeyId"], key["SecretAccessKey"]


def signed(url: str, operation: str, body: bytes, key: tuple[str, str]) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url + "/", data=body,
                         headers={"X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(*key), "rekognition", "us-east-1").add_auth(request)
    return dict(request.headers.items())


class Server:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.admin = create_key(self.data, "admin")
        self.denied = create_key(self.data, "denied", {"Statement": []})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--port", str(self.port),
                                      "--data", str(self.data), "--log-level", "warning"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(1200):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        self.http = httpx.Client(timeout=300)

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def head(self) -> int:
        db = sqlite3.connect(self.data / "faceledger.db")
        try:
            return db.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0]
        finally:
            db.close()

    def ledger_since(self, seq: int) -> tuple[int, int]:
        """(rows, bytes of all their columns) after ``seq``."""
        db = sqlite3.connect(self.data / "faceledger.db")
        try:
            rows = db.execute("SELECT * FROM ledger WHERE seq > ?", (seq,)).fetchall()
        finally:
            db.close()
        return len(rows), sum(len(str(v).encode()) for row in rows for v in row if v is not None)

    def send(self, operation: str, body: bytes, key: tuple[str, str], headers: dict | None = None):
        """(status, error code, response bytes, ledger bytes, peak RSS above the RSS before, seconds)."""
        seq = self.head()
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = self.status("VmRSS")
        t = time.perf_counter()
        response = self.http.post(self.url + "/", content=body,
                                  headers=headers if headers is not None else signed(self.url, operation, body, key))
        seconds = time.perf_counter() - t
        peak = self.status("VmHWM") - before
        try:
            code = response.json().get("__type", "OK") if response.status_code != 200 else "OK"
        except ValueError:
            code = "?"
        return response.status_code, code, len(response.content), self.ledger_since(seq)[1], peak, seconds

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def shapes(size: int, photo: bytes | None) -> list[tuple[str, str, bytes]]:
    """(name, operation, body) of each request shape; hostile bodies are at most about ``size`` bytes."""
    cid = "bench"
    n = size - 200
    uuid_s = str(uuid.uuid4())
    nested: object = "x"
    for _ in range(400):
        nested = {"a": nested}
    out = [("normal: DescribeCollection", "DescribeCollection", {"CollectionId": cid})]
    if photo is not None:
        out.append(("normal: SearchFacesByImage (LFW photo)", "SearchFacesByImage",
                    {"CollectionId": cid, "Image": {"Bytes": base64.b64encode(photo).decode()}}))
    out += [
        ("huge CollectionId (pattern)", "DescribeCollection", {"CollectionId": "a" * n}),
        ("huge CollectionId, bad chars", "DescribeCollection", {"CollectionId": "!" * n}),
        ("huge ExternalImageId", "IndexFaces", {"CollectionId": cid, "ExternalImageId": "e" * n,
                                                "Image": {"Bytes": "AAAA"}}),
        ("huge FaceId (pattern)", "SearchFaces", {"CollectionId": cid, "FaceId": "f" * n}),
        ("huge unknown member name", "DescribeCollection", {"CollectionId": cid, "U" * n: 1}),
        ("many unknown members", "DescribeCollection", {"CollectionId": cid,
                                                        **{f"u{i}": 1 for i in range(n // 13)}}),
        ("long list of bad FaceIds", "DeleteFaces", {"CollectionId": cid, "FaceIds": ["bad"] * (n // 6)}),
        ("long list of good FaceIds", "DeleteFaces", {"CollectionId": cid, "FaceIds": [uuid_s] * (n // 39)}),
        ("long list of numbers in a string field", "DeleteFaces", {"CollectionId": cid,
                                                                   "FaceIds": [1] * (n // 2)}),
        ("long list without a max (Attributes)", "DetectFaces", {"Image": {"Bytes": "AAAA"},
                                                                  "Attributes": ["x"] * (n // 4)}),
        ("huge tag key and value", "CreateCollection", {"CollectionId": "bench-tags",
                                                        "Tags": {"k" * (n // 2): "v" * (n // 2)}}),
        ("many tags", "CreateCollection", {"CollectionId": "bench-tags",
                                           "Tags": {f"k{i}": "v" for i in range(n // 15)}}),
        ("huge non-base64 Image.Bytes", "DetectFaces", {"Image": {"Bytes": "!" * n}}),
        ("huge S3Object.Name", "DetectFaces", {"Image": {"S3Object": {"Bucket": "b", "Name": "n" * n}}}),
        ("huge string as a number", "SearchFaces", {"CollectionId": cid, "FaceId": uuid_s,
                                                    "FaceMatchThreshold": "9" * n}),
        ("4000-digit integer", "SearchFaces", {"CollectionId": cid, "FaceId": uuid_s,
                                               "MaxFaces": int("9" * 4000)}),
        ("deep object (400 levels) x many", "DescribeCollection", {"CollectionId": cid,
                                                                   "Deep": [nested] * (n // 2400)}),
    ]
    return [(name, op, json.dumps(body, separators=(",", ":")).encode()) for name, op, body in out]


def mb(n: float) -> str:
    return f"{n / 1e6:8.3f} MB" if n >= 1e5 else f"{n:8.0f} B "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=7_800_000, help="bytes of each hostile body (limit: 8 MiB)")
    ap.add_argument("--refused", type=int, default=2000, help="badly signed requests sent from one source")
    args = ap.parse_args()
    photo = PHOTO.read_bytes() if PHOTO.exists() else None
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            body = json.dumps({"CollectionId": "bench"}).encode()
            server.send("CreateCollection", body, server.admin)
            header = (f"{'request shape':40s} {'key':7s} {'request':>11s} {'response':>11s} {'ledger':>11s} "
                      f"{'peak RSS':>11s} {'resp/req':>9s} {'ledg/req':>9s} {'time':>7s}  answer")
            print(header)
            print("-" * len(header))
            for name, operation, body in shapes(args.size, photo):
                for who, key in (("admin", server.admin), ("denied", server.denied)):
                    status, code, response, ledger, peak, seconds = server.send(operation, body, key)
                    print(f"{name[:40]:40s} {who:7s} {mb(len(body))} {mb(response)} {mb(ledger)} {mb(max(peak, 0))} "
                          f"{response / len(body):9.4f} {ledger / len(body):9.4f} {seconds:6.2f}s  {status} {code}")
            refused(server, args.refused)
        finally:
            if server.proc.poll() is None:
                server.stop()


def refused(server: Server, n: int) -> None:
    """Ledger growth per refused, unauthenticated request: ``n`` badly signed ListCollections, one source."""
    print()
    body = b"{}"
    seq = server.head()
    bad_key = (server.admin[0], server.admin[1] + "wrong")
    t = time.perf_counter()
    for i in range(n):
        if i % 2:
            headers = signed(server.url, "ListCollections", body, bad_key)
        else:
            headers = {"X-Amz-Target": TARGET + "ListCollections", "Content-Type": "application/x-amz-json-1.1"}
        server.http.post(server.url + "/", content=body, headers=headers)
    seconds = time.perf_counter() - t
    rows, size = server.ledger_since(seq)
    print(f"{n} refused requests (half badly signed, half unsigned) from one source in {seconds:.1f} s "
          f"({n / seconds:.0f}/s): ledger +{rows} rows, +{size} bytes while running "
          f"({rows / n:.4f} rows, {size / n:.1f} bytes per refused request)")
    server.stop()  # shutdown writes the aggregate rows of the window in progress
    rows, size = server.ledger_since(seq)
    db = sqlite3.connect(server.data / "faceledger.db")
    counted = sum(json.loads(d)["Aggregate"]["Count"] for (d,) in db.execute(
        "SELECT detail FROM ledger WHERE seq > ? AND operation = 'RefusedRequests'", (seq,)))
    full = db.execute("SELECT count(*) FROM ledger WHERE seq > ? AND operation != 'RefusedRequests'",
                      (seq,)).fetchone()[0]
    largest = db.execute("SELECT max(length(detail)) FROM ledger WHERE seq > ?", (seq,)).fetchone()[0]
    db.close()
    print(f"after shutdown: +{rows} rows ({full} in full, {rows - full} aggregate rows counting {counted}), "
          f"+{size} bytes: {rows / n:.4f} rows and {size / n:.1f} bytes per refused request; largest detail "
          f"{largest} bytes; full + counted = {full + counted} of {n}")
    verify = subprocess.run([sys.executable, "-m", "faceledger", "audit", "verify", "--data", str(server.data)],
                            capture_output=True, text=True)
    print(f"audit verify: {verify.stdout.strip() or verify.stderr.strip()}")


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()
