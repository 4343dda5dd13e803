"""The Congress test, end to end: a live `faceledger serve` at its default settings, driven by boto3.

The public test that faceledger answers searched photos of 535 members of Congress against 25,000 arrest
photos at Rekognition's default threshold and got 28 false matches. This is the same kind of test on the
Congress-style split of lfw_dev that ``faceledger eval identify --gallery-size 0 --nonmated 500`` uses
(seed 0): a collection of one photo of each of ~2,900 people, ~500 strangers who are not in it, and a
second photo of every collection member who has one. Every search is a real SearchFacesByImage call
through boto3 to a server started with no options (default face model, default search policy), so it
measures exactly what a user gets.

Counted per search: for a stranger, any match is a false match (listed, to check by eye); for a member,
found (the best match is their photo), missed (no match), or misidentified (the best match is someone
else's photo). The same searches are repeated on the same server with Rekognition's behaviour instead of
faceledger's policy: FaceMatchThreshold 80 with no limit on expected false matches and the margin rule
off (request headers ``X-Faceledger-Max-Expected-False-Matches: 1e12`` and ``X-Faceledger-Min-Margin: 0``).

Strangers whose photo is a known LFW label error (the same person is in the collection under another
name, faceledger.evaluation.label_errors) are left out, as in ``faceledger eval identify``.

    python bench/congress_test.py [--dataset ../shared/data/lfw_dev] [--nonmated 500] [--serve-args "..."]

Takes about 10 minutes on 2 cores (indexing ~2,900 photos, then ~2,700 searches).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceledger.evaluation.datasets import person_of
from faceledger.evaluation.embed import embed_dataset, list_images
from faceledger.evaluation.label_errors import same_person_mask
from faceledger.evaluation.run import _split_identify

ROOT = Path(__file__).resolve().parents[1]
REKOGNITION_LIKE = {"X-Faceledger-Max-Expected-False-Matches": "1e12", "X-Faceledger-Min-Margin": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, extra: list[str]):
    key = json.loads(subprocess.run([sys.executable, "-m", "faceledger", "keys", "create", "--data", str(data),
                                     "--name", "bench", "--json"], check=True, capture_output=True, text=True).stdout)
    port = free_port()
    log = open(data.parent / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "faceledger", "serve", "--port", str(port), "--data", str(data),
                             "--log-level", "warning", *extra], stdout=log, stderr=subprocess.STDOUT)
    import httpx

    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            health = httpx.get(url + "/health", timeout=1).json()
            return proc, url, key, health
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError((data.parent / "server.log").read_text())
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def client(url: str, key: dict):
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=300))


def progress(k: int, n: int, t0: float, what: str) -> None:
    if k % 100 == 0 or k == n:
        rate = k / max(time.monotonic() - t0, 1e-9)
        print(f"  {what}: {k}/{n}  {rate:.1f}/s  ETA {(n - k) / rate:.0f}s", file=sys.stderr, flush=True)


def search_all(c, dataset: Path, searches: list[tuple[str, str]], headers: dict[str, str] | None, what: str):
    """[(image, person)] -> [(image, top gallery image or None, top_similarity, n_matches, http headers)]"""
    if headers:
        def add(request, **_):
            for k, v in headers.items():
                request.headers[k] = v
        c.meta.events.register("before-sign.rekognition.SearchFacesByImage", add, unique_id="bench-headers")
    else:
        c.meta.events.unregister("before-sign.rekognition.SearchFacesByImage", unique_id="bench-headers")
    out = []
    t0 = time.monotonic()
    for k, (rel, person) in enumerate(searches, 1):
        try:
            r = c.search_faces_by_image(CollectionId="congress", Image={"Bytes": (dataset / rel).read_bytes()})
        except c.exceptions.InvalidParameterException:  # no face found in the probe
            out.append((rel, None, None, 0, {"no-face": "true"}))
            continue
        m = r["FaceMatches"]
        top = m[0]["Face"].get("ExternalImageId", "").replace(":", "/") if m else None  # the gallery image
        out.append((rel, top, m[0]["Similarity"] if m else None, len(m), r["ResponseMetadata"]["HTTPHeaders"]))
        progress(k, len(searches), t0, what)
    return out


def summarise(name: str, mated, strangers) -> dict:
    def same(probe, top):  # the same person: same name, or a known LFW label error
        return person_of(probe) == person_of(top) or bool(same_person_mask([probe], [top])[0, 0])

    found = sum(1 for p, top, *_ in mated if top is not None and same(p, top))
    known = sum(1 for p, top, *_ in mated if top is not None and person_of(p) != person_of(top) and same(p, top))
    wrong = sum(1 for p, top, *_ in mated if top is not None and not same(p, top))
    nofind = sum(1 for _, _, _, _, h in mated + strangers if h.get("no-face") == "true")
    false = [(p, top, s) for p, top, s, *_ in strangers if top is not None]
    wrong_list = [(p, top, s) for p, top, s, *_ in mated if top is not None and not same(p, top)]
    amb = sum(1 for *_, h in mated + strangers if h.get("x-faceledger-ambiguous") == "true")
    used = [float(h["x-faceledger-threshold-used"]) for *_, h in mated + strangers if "x-faceledger-threshold-used" in h]
    efm = [float(h["x-faceledger-expected-false-matches"]) for *_, h in strangers
           if "x-faceledger-expected-false-matches" in h]
    row = {"policy": name, "members_found": found, "members_found_via_label_errors": known, "members": len(mated),
           "misidentified": wrong,
           "strangers_falsely_matched": len(false), "strangers": len(strangers),
           "expected_false_matches": float(np.sum(efm)), "threshold_used": float(np.median(used)) if used else None,
           "ambiguous": amb, "no_face_in_probe": nofind, "false_matches": false, "misidentifications": wrong_list}
    print(f"\n{name}\n  threshold used {row['threshold_used']}, searches answered 'ambiguous' {amb}, "
          f"probes with no face {nofind}\n"
          f"  members found {found}/{len(mated)} = {found / max(len(mated), 1):.3f} ({known} of them through a known "
          f"LFW label error); misidentified (best match another person) {wrong}\n"
          f"  strangers falsely matched {len(false)}/{len(strangers)} (expected {row['expected_false_matches']:.2f})",
          flush=True)
    for p, top, s in sorted(false, key=lambda x: -x[2])[:10]:
        print(f"    stranger {p} -> {top} (Similarity {s:.2f})", flush=True)
    for p, top, s in sorted(wrong_list, key=lambda x: -x[2])[:10]:
        print(f"    member {p} -> {top} (Similarity {s:.2f})", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "lfw_dev")
    ap.add_argument("--nonmated", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serve-args", default="", help="extra `faceledger serve` options (default: none)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    emb = embed_dataset(args.dataset, list_images(args.dataset), progress=True)  # the eval cache: the split
    gal, mat, non = _split_identify(emb, 0, args.nonmated, args.seed)
    known = same_person_mask([emb.paths[i] for i in non], [emb.paths[i] for i in gal]).any(axis=1)
    non = [i for i, k in zip(non, known) if not k]
    print(f"collection {len(gal)} people, {len(mat)} member searches, {len(non)} stranger searches "
          f"({int(known.sum())} known label errors left out)", flush=True)

    with tempfile.TemporaryDirectory(prefix="congress-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        proc, url, key, health = start_server(data, shlex.split(args.serve_args))
        try:
            print(f"server: {health}", flush=True)
            c = client(url, key)
            created = c.create_collection(CollectionId="congress")
            print(f"collection face model {created['FaceModelVersion']}", flush=True)
            t0 = time.monotonic()
            unindexed = 0
            for k, i in enumerate(gal, 1):
                rel = emb.paths[i]
                r = c.index_faces(CollectionId="congress", Image={"Bytes": (args.dataset / rel).read_bytes()},
                                  ExternalImageId=rel.replace("/", ":"), MaxFaces=1)
                unindexed += not r["FaceRecords"]
                progress(k, len(gal), t0, "index")
            print(f"indexed {len(gal) - unindexed} of {len(gal)} photos (IndexFaces defaults: QualityFilter AUTO; "
                  f"{unindexed} not indexed)", flush=True)
            members = [(emb.paths[i], person_of(emb.paths[i])) for i in mat]
            strangers = [(emb.paths[i], person_of(emb.paths[i])) for i in non]
            print(f"{len(members)} member searches, {len(strangers)} stranger searches", flush=True)
            rows = []
            for name, headers in (("faceledger defaults", None),
                                  ("Rekognition's behaviour (threshold 80, no limit, no margin rule)",
                                   REKOGNITION_LIKE)):
                m = search_all(c, args.dataset, members, headers, "members")
                s = search_all(c, args.dataset, strangers, headers, "strangers")
                rows.append(summarise(name, m, s))
        finally:
            proc.terminate()
            proc.wait(10)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
