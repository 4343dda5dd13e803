"""Stream processors on RTSP cameras served on loopback: lag and drop rate at 5 analysed frames per second, beside a
naive reader that analyses every frame (the baseline), and how many cameras of a size one machine holds.

    PYTHONPATH=src python bench/streams.py [--seconds 30] [--cameras 1,2] [--clip FILE] [--fps 5]

Needs Debian's GStreamer RTSP server for /usr/bin/python3 (see tests/rtsp_source.py) and the clips of
../shared/data/video. The clip is looped (remuxed 6 times into a temporary file) so that a camera does not end
during a run. Everything runs in this process through the in-process Client: the real CreateStreamProcessor and
StartStreamProcessor path, the real engine, search policy and ledger.

Figures: for the baseline, frames analysed and its lag (analysis end minus the moment the frame was due, growing
without bound); for N cameras at --fps each: analysed frames per second per camera, lag (receive to record
written) mean and max, drop rate, and the CPU the process used (cores, from os.times). A camera "fits" when its
analysed rate is within 10% of --fps (its lag is bounded by construction: about one period plus one analysis).
On a shared machine the process gets only part of the CPU, so the bench also prints the CPU-seconds one analysed
frame costs (process CPU over analysed frames) and how many cameras of that size one free core holds at --fps.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("FACELEDGER_TEST_DATA", REPO.parent / "shared" / "data"))

from faceledger.client import Client  # noqa: E402
from faceledger.service import RequestContext  # noqa: E402
from faceledger.service import streams as live  # noqa: E402
from faceledger.streams.source import check_source_url, open_source  # noqa: E402


def looped(src: Path, copies: int, out: Path) -> Path:
    """``src`` (one video stream) remuxed ``copies`` times back to back into ``out``."""
    with av.open(str(src)) as probe:
        packets = [p for p in probe.demux(probe.streams.video[0]) if p.pts is not None]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
    with av.open(str(out), "w") as dst:
        with av.open(str(src)) as first:
            stream = dst.add_stream_from_template(first.streams.video[0])
        for i in range(copies):
            with av.open(str(src)) as inp:
                for p in inp.demux(inp.streams.video[0]):
                    if p.pts is None:
                        continue
                    p.pts += i * span
                    p.dts = None if p.dts is None else p.dts + i * span
                    p.stream = stream
                    dst.mux(p)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def camera(clip: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "rtsp_source.py"), str(clip), str(port)],
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the RTSP server did not start (see tests/rtsp_source.py for its Debian packages)")
    return proc, f"rtsp://127.0.0.1:{port}/cam"


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def setup(root: Path) -> Client:
    client = Client(root / "data", context=RequestContext(transport="bench", purpose="bench", case_reference="B-1"))
    client.create_collection(CollectionId="hamilton")
    for photo in sorted((DATA / "video" / "hamilton_reference_faces").glob("*.png")):
        client.index_faces(CollectionId="hamilton", Image={"Bytes": photo.read_bytes()}, ExternalImageId=photo.stem,
                           MaxFaces=1)
    client.put_collection_policy(CollectionId="hamilton", Policy={"AllowLiveSearch": True})
    return client


def create(client: Client, name: str, url: str) -> None:
    client.add_stream_source(Name=name, Url=url)
    client.create_stream_processor(
        Name=name, RoleArn="arn:aws:iam::000000000000:role/bench",
        Input={"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:us-east-1:000000000000:stream/{name}"}},
        Output={"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"}},
        Settings={"FaceSearch": {"CollectionId": "hamilton"}})


def baseline(client: Client, url: str, seconds: float) -> dict:
    """Every frame analysed, in order, by the processor's own analysis function: how far behind it falls."""
    runtime = live.runtime_of(client._service)
    create(client, "naive", url)
    record = runtime.tables.get_processor("naive")
    context = RequestContext(transport="bench", purpose="bench", case_reference="B-1")
    conn = open_source(check_source_url(url))
    start = time.monotonic()
    t0 = None
    n, lags = 0, []
    for frame, t in conn.frames():
        if t0 is None:
            t0, start = t, time.monotonic()
        runtime._analyse(record, context, "baseline", frame.to_ndarray(format="rgb24"))
        n += 1
        lags.append(time.monotonic() - (start + (t - t0)))
        if time.monotonic() - start >= seconds:
            break
    conn.close()
    elapsed = time.monotonic() - start
    return {"analysed": n, "fps": n / elapsed, "lag_first": lags[0], "lag_last": lags[-1],
            "lag_growth_per_s": (lags[-1] - lags[0]) / elapsed}


def processors(client: Client, urls: list[str], seconds: float, fps: float) -> list[dict]:
    runtime = live.runtime_of(client._service)
    runtime.rate_fps = fps
    names = []
    for i, url in enumerate(urls):
        name = f"cam{len(urls)}-{i}"
        create(client, name, url)
        client.start_stream_processor(Name=name)
        names.append(name)
    while any(client.get_stream_processor_status(Name=n)["Status"] != "RUNNING" for n in names):
        time.sleep(0.2)
    time.sleep(2.0)  # settle: the first frames after a connection come in a burst
    before = {n: dict(client.get_stream_processor_status(Name=n)["Stats"]) for n in names}
    c0, w0 = cpu(), time.monotonic()
    lags: dict[str, list[float]] = {n: [] for n in names}
    while time.monotonic() - w0 < seconds:
        time.sleep(0.5)
        for n in names:
            lags[n].append(client.get_stream_processor_status(Name=n)["Stats"]["LagLastSeconds"])
    wall, used = time.monotonic() - w0, cpu() - c0
    out = []
    for n in names:
        after = client.get_stream_processor_status(Name=n)["Stats"]
        client.stop_stream_processor(Name=n)
        analysed = after["FramesAnalysed"] - before[n]["FramesAnalysed"]
        received = after["FramesReceived"] - before[n]["FramesReceived"]
        dropped = after["FramesDropped"] - before[n]["FramesDropped"]
        out.append({"name": n, "analysed_fps": analysed / wall, "received_fps": received / wall,
                    "drop_rate": dropped / max(received, 1), "lag_mean": sum(lags[n]) / len(lags[n]),
                    "lag_max": max(lags[n]), "lag_last": lags[n][-1], "cores": used / wall,
                    "size": after["FrameSize"], "analysis_s": after["AnalysisMeanSeconds"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--cameras", default="1,2", help="numbers of cameras to run at once, comma-separated")
    ap.add_argument("--clip", type=Path, default=DATA / "video" / "short_hamilton_clip.mp4")
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--baseline-seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = looped(args.clip, max(2, int((args.seconds + 15) // 10) + 1), root / "looped.mp4")
        client = setup(root)
        live.host(client._service)
        cams = []
        try:
            counts = [int(c) for c in args.cameras.split(",")]
            for _ in range(max(counts)):
                cams.append(camera(clip))
            print(f"clip {args.clip.name} looped; {os.cpu_count()} CPUs; target {args.fps:g} analysed frames/s "
                  f"per camera; load average before {os.getloadavg()[0]:.2f}")
            b = baseline(client, cams[0][1], args.baseline_seconds)
            print(f"baseline (every frame analysed, in order): {b['analysed']} frames in {args.baseline_seconds:g} s "
                  f"= {b['fps']:.2f} frames/s; lag {b['lag_first']:.2f} s at the start, {b['lag_last']:.2f} s "
                  f"at the end: grows {b['lag_growth_per_s']:.2f} s per second")
            for count in counts:
                rows = processors(client, [c[1] for c in cams[:count]], args.seconds, args.fps)
                for r in rows:
                    fits = r["analysed_fps"] >= 0.9 * args.fps
                    print(f"{count} camera(s) {r['size']}: {r['name']}: analysed {r['analysed_fps']:.2f}/s of "
                          f"{r['received_fps']:.1f} received/s, dropped {100 * r['drop_rate']:.1f}%, lag mean "
                          f"{r['lag_mean']:.3f} s max {r['lag_max']:.3f} s last {r['lag_last']:.3f} s, analysis "
                          f"{r['analysis_s']:.3f} s/frame; process CPU {r['cores']:.2f} cores; "
                          f"{'fits' if fits else 'does NOT fit'}")
                per_frame = rows[0]["cores"] / max(sum(r["analysed_fps"] for r in rows), 1e-9)
                print(f"  {count} camera(s): {per_frame:.3f} CPU-seconds per analysed frame (decode included): one "
                      f"free core holds {1 / (args.fps * per_frame):.2f} camera(s) of {rows[0]['size']} at "
                      f"{args.fps:g} analysed frames/s")
        finally:
            live.shutdown(client._service)
            for proc, _ in cams:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)


if __name__ == "__main__":
    main()
