"""What accountability costs: SearchFacesByImage throughput with and without signatures + ledger.

Two servers on one data folder, the same engine and gallery, driven by the same boto3 clients:

* ``plain``: the dispatch as it was before accountability (no signature check, no authorization,
  no collection policy, no ledger entry): a bench-only subclass, not a setting of faceledger;
* ``accountable``: faceledger as it ships: SigV4 checked against the stored key, the key's policy,
  the collection's policy, and one ledger entry per request (its own BEGIN IMMEDIATE ... COMMIT
  with synchronous=FULL).

Rounds alternate (plain, accountable, plain, ...) so that drift hits both; the medians and their
ratio are printed.

    .venv/bin/python bench/ledger.py [--gallery 200] [--clients 4] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw_dev"


def serve(mode: str, port: int, data: Path) -> None:
    """Child process: one server."""
    import uvicorn

    from faceledger.api import create_app
    from faceledger.service import RequestContext, Service, ServiceConfig
    from faceledger.service.dispatch import Invocation

    class PlainService(Service):
        def call(self, operation_name, params, context=None, *, wire=False):
            _, handler, request = self._resolve(operation_name, params, wire)
            return handler(Invocation(self, context or RequestContext()), request)

    cls = PlainService if mode == "plain" else Service
    service = cls(ServiceConfig(data_dir=data))
    app = create_app(service, authenticate=(mode != "plain"), retention_interval_s=None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(mode: str, data: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port), "--data", str(data)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{mode} server did not start")


def client(url: str, key: tuple[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=Config(retries={"total_max_attempts": 1},
                                                                    max_pool_connections=64))


def run_round(url: str, key: tuple[str, str], queries: list[bytes], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        c = client(url, key)
        n = i
        try:
            while time.monotonic() < stop:
                c.search_faces_by_image(CollectionId="bench", Image={"Bytes": queries[n % len(queries)]},
                                        FaceMatchThreshold=80)
                done[i] += 1
                n += clients
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    start_t = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.monotonic() - start_t)


def overhead(data: Path, key: tuple[str, str], image: bytes, n: int = 200) -> tuple[float, float]:
    """In-process, per request: the signature check (key lookup, secret unsealing, SigV4) and one
    ledger entry in its own transaction (BEGIN IMMEDIATE, INSERT, COMMIT with fsync), in ms."""
    import base64

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from faceledger.service import RequestContext, Service, ServiceConfig
    from faceledger.service.auth import HttpRequest
    from faceledger.service.ledger import build_entry

    service = Service(ServiceConfig(data_dir=data))
    body = json.dumps({"CollectionId": "bench", "Image": {"Bytes": base64.b64encode(image).decode()}}).encode()
    request = AWSRequest(method="POST", url="http://127.0.0.1:8373/", data=body,
                         headers={"X-Amz-Target": "RekognitionService.SearchFacesByImage",
                                  "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(*key), "rekognition", "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:8373"
    http = HttpRequest("POST", "/", "", headers, body)
    context = RequestContext(transport="http", source_ip="127.0.0.1")
    t = time.perf_counter()
    for _ in range(n):
        service.authenticate(http, context, "SearchFacesByImage")
    check = (time.perf_counter() - t) / n * 1000
    params = {"CollectionId": "bench", "Image": {"Bytes": image}, "FaceMatchThreshold": 80.0}
    response = {"FaceMatches": [{"Similarity": 99.0, "Face": {"FaceId": "0" * 36, "ExternalImageId": "x"}}]}
    t = time.perf_counter()
    for _ in range(n):
        service.store.append_ledger(build_entry(when=service.clock(), operation="SearchFacesByImage",
                                                context=context, request=params, response=response))
    ledger = (time.perf_counter() - t) / n * 1000
    service.close()
    return check, ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=["plain", "accountable"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--gallery", type=int, default=200, help="faces indexed (LFW people, one photo each)")
    parser.add_argument("--queries", type=int, default=50, help="distinct query photos")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--rounds", type=int, default=4, help="per mode (the order alternates)")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.port, args.data)

    import faceledger
    from faceledger.service import Service, ServiceConfig

    if not LFW.is_dir():
        sys.exit(f"needs {LFW}")
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        service = Service(ServiceConfig(data_dir=data))
        key = service.create_access_key("bench")
        with faceledger.Client(service=service) as local:
            local.create_collection(CollectionId="bench")
            for person in people[: args.gallery]:
                photo = sorted(person.glob("*.jpg"))[0]
                local.index_faces(CollectionId="bench", Image={"Bytes": photo.read_bytes()},
                                  ExternalImageId=person.name, MaxFaces=1)
            faces = local.describe_collection(CollectionId="bench")["FaceCount"]
        queries = [sorted(p.glob("*.jpg"))[1].read_bytes() for p in people[: args.queries]]
        servers = {mode: start(mode, data) for mode in ("plain", "accountable")}
        try:
            for mode, (_, url) in servers.items():  # warm-up: models, connections, the search matrix
                run_round(url, key, queries, args.clients, 2.0)
            rates: dict[str, list[float]] = {"plain": [], "accountable": []}
            for r in range(args.rounds):
                order = list(servers.items())
                if r % 2:  # alternate which mode runs first, so drift in the machine's load cancels out
                    order.reverse()
                for mode, (_, url) in order:
                    rates[mode].append(run_round(url, key, queries, args.clients, args.seconds))
                    print(f"round {r + 1} {mode:<12} {rates[mode][-1]:7.1f} searches/s", flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
        ledger_entries = sum(1 for _ in Service(ServiceConfig(data_dir=data)).ledger(operation="SearchFacesByImage"))
        check_ms, ledger_ms = overhead(data, key, queries[0])
    plain, accountable = statistics.median(rates["plain"]), statistics.median(rates["accountable"])
    cost = 1 - accountable / plain
    print(json.dumps({"gallery_faces": faces, "clients": args.clients, "seconds_per_round": args.seconds,
                      "rounds": args.rounds}))
    print(f"SearchFacesByImage, median of {args.rounds} rounds: plain {plain:.1f}/s, with SigV4 + policy + "
          f"ledger {accountable:.1f}/s; ratio {accountable / plain:.3f} (cost {cost * 100:.1f}%, target < 10%); "
          f"{ledger_entries} search entries in the ledger")
    latency = args.clients / plain * 1000
    print(f"per request, measured in-process: signature check {check_ms:.2f} ms, ledger entry (own transaction, "
          f"fsync) {ledger_ms:.2f} ms; {(check_ms + ledger_ms) / latency * 100:.1f}% of a search's "
          f"{latency:.0f} ms at {args.clients} clients")


if __name__ == "__main__":
    main()
