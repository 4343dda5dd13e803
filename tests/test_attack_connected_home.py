"""Hostile buckets and webhooks for ConnectedHome stream processors, through boto3 on a live server: the frame and
crop JPEG objects are held to the bucket as the JSON Lines objects are (a symbolic link planted in the bucket after
CreateStreamProcessor is refused, never written through); a webhook that never answers delays no Stop or Delete."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from faceledger.streams.sinks import WEBHOOK_TIMEOUT_S
from test_streams import ROLE, ledger, video_arn, wait_for
from test_streams_connected_home import BUCKET, home_server

HANGING = "arn:aws:sns:us-east-1:000000000000:hanging"


@pytest.fixture(scope="module")
def hanging():
    """A webhook that takes connections and never answers (the kernel's backlog accepts them)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/events"
    sock.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory, hanging):
    srv = home_server(tmp_path_factory.mktemp("attack-home"), HANGING, hanging)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rek(home):
    return home.client()


def files_under(folder) -> list:
    return [p for p in folder.rglob("*") if not p.is_dir()]


def test_frame_and_crop_jpegs_are_never_written_through_a_link_out_of_the_bucket(home, rek, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    rek.create_stream_processor(
        Name="linked", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
        Output={"S3Destination": {"Bucket": BUCKET, "KeyPrefix": "cam/"}},
        Settings={"ConnectedHome": {"Labels": ["ALL"], "MinConfidence": 0}})
    (home.buckets_dir / BUCKET / "cam").symlink_to(outside)  # planted after the processor was created
    try:
        rek.start_stream_processor(
            Name="linked", StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": int((time.time() - 60) * 1000)}},
            StopSelector={"MaxDurationInSeconds": 5})
        described = wait_for("the processor to fail", lambda: (lambda d: d if d["Status"] == "FAILED" else None)(
            rek.describe_stream_processor(Name="linked")), timeout=90)
        assert "symbolic link" in described["StatusMessage"], described
        assert files_under(outside) == []
    finally:
        (home.buckets_dir / BUCKET / "cam").unlink()
        rek.delete_stream_processor(Name="linked")
    verified = subprocess.run([sys.executable, "-m", "faceledger", "audit", "verify", "--data", str(home.data_dir)],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_webhook_that_never_answers_delays_no_stop_or_delete(home, rek):
    rek.create_stream_processor(
        Name="hung", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
        Output={"S3Destination": {"Bucket": BUCKET}}, NotificationChannel={"SNSTopicArn": HANGING},
        Settings={"ConnectedHome": {"Labels": ["PERSON"], "MinConfidence": 0}})
    rek.start_stream_processor(Name="hung", StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": 1}},
                               StopSelector={"MaxDurationInSeconds": 120})
    wait_for("a detection", lambda: [e for e in ledger(home, "StreamProcessorLabelDetected")
                                     if e["detail"]["Request"]["Name"] == "hung"], timeout=90)
    # a bound on a stall, not a speed: before, each call waited for the webhook's timeout (5 s, up to 10 s)
    bound = 0.8 * WEBHOOK_TIMEOUT_S
    started = time.monotonic()
    rek.stop_stream_processor(Name="hung")  # the notifications are stuck in the webhook's POST
    assert time.monotonic() - started < bound, "StopStreamProcessor waited for a webhook that never answers"
    assert rek.describe_stream_processor(Name="hung")["Status"] == "STOPPED"
    rek.start_stream_processor(Name="hung", StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": 1}},
                               StopSelector={"MaxDurationInSeconds": 1})
    wait_for("the session's end", lambda: rek.describe_stream_processor(Name="hung")["Status"] == "STOPPED",
             timeout=60)
    started = time.monotonic()
    rek.delete_stream_processor(Name="hung")
    assert time.monotonic() - started < bound, "DeleteStreamProcessor waited for a webhook that never answers"
    assert [e for e in ledger(home, "StreamProcessorSessionComplete") if "hung" in json.dumps(e)]


@pytest.mark.parametrize("regions", [
    [{}], [{"Polygon": []}], [{"Polygon": [{"X": 0.5, "Y": 0.5}]}],
    [{"Polygon": [{"X": i / 1001, "Y": (i % 7) / 7} for i in range(1001)]}],
    [{"BoundingBox": {"Left": -1, "Top": 2, "Width": 5, "Height": 0}}], [{"BoundingBox": {"Left": 0.5}}],
    [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1}, "Polygon": [{"X": 0, "Y": 0}] * 3}],
])
def test_regions_that_hold_no_box_are_refused_at_create_and_update(home, regions):
    raw = home.client(parameter_validation=False)
    kinds = {"S3Destination": {"Bucket": BUCKET}}
    with pytest.raises(ClientError) as info:
        raw.create_stream_processor(
            Name="regions", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}}, Output=kinds,
            RegionsOfInterest=regions, Settings={"ConnectedHome": {"Labels": ["PERSON"]}})
    # (1001 points: botocore's own ValidationException, the server's limit on a request's list members)
    assert info.value.response["Error"]["Code"] in ("InvalidParameterException", "ValidationException")
    assert "egionsOfInterest" in info.value.response["Error"]["Message"], info.value.response["Error"]
    raw.create_stream_processor(Name="regions", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
                                Output=kinds, Settings={"ConnectedHome": {"Labels": ["PERSON"]}})
    try:
        with pytest.raises(ClientError) as info:
            raw.update_stream_processor(Name="regions", RegionsOfInterestForUpdate=regions)
        assert info.value.response["Error"]["Code"] in ("InvalidParameterException", "ValidationException")
        assert "RegionsOfInterest" not in raw.describe_stream_processor(Name="regions")  # unchanged
        # a self-intersecting polygon still has an area: taken
        bow = [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}, {"X": 1, "Y": 0}, {"X": 0, "Y": 1}]}]
        raw.update_stream_processor(Name="regions", RegionsOfInterestForUpdate=bow)
        assert raw.describe_stream_processor(Name="regions")["RegionsOfInterest"] == bow
    finally:
        raw.delete_stream_processor(Name="regions")


def test_boxes_at_or_past_the_frame_edge_give_crops_inside_it_or_nothing():
    """A detector box cut to the frame can have no area (all of it at the right edge) or lie partly outside: the
    first is no detection (its crop was an empty image: ValueError, the processor failed), the second is cut."""
    from types import SimpleNamespace

    import numpy as np

    from faceledger.streams.connected_home import find_labels, jpeg

    pixels = np.zeros((36, 64, 3), np.uint8)
    boxes = [("Person", [64.0, 36.0, 64.0, 36.0]), ("Person", [63.5, 0.0, 70.0, 36.0]), ("Cat", [-5.0, -3.0, 2.0, 1.5]),
             ("Dog", [10.0, 10.0, 80.0, 50.0])]

    def detect(_pixels, _min_score):
        return [SimpleNamespace(name=n, score=0.9, box=np.array(b)) for n, b in boxes]

    found = find_labels(detect, pixels, ("PERSON", "PET"), 50)
    assert [f.label for f in found] == ["PET", "PET"]
    for f in found:
        x0, y0, x1, y1 = f.pixels
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 36
        assert all(0 <= v <= 1 for v in f.box.values()) and f.box["left"] + f.box["width"] <= 1
        assert jpeg(pixels[y0:y1, x0:x1])[:2] == b"\xff\xd8"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_that_redirects_is_a_failure_and_the_redirect_is_not_followed(status):
    """A webhook answering 3xx does not send the record (or a GET) anywhere else: the sink counts a failure
    naming the status, and the address the redirect points to gets no request."""
    import http.server
    import threading

    from faceledger.streams.sinks import WebhookSink

    hits: list[str] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's names)
            hits.append(f"GET {self.path}")
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    elsewhere = f"http://127.0.0.1:{target.server_address[1]}/internal"

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Location", elsewhere)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    webhook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    servers = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, webhook)]
    for t in servers:
        t.start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{webhook.server_address[1]}/events", timeout_s=5)
        sink.write(b'{"record": 1}')
        sink.close()  # no more records: the thread exits once the queued one is tried
        sink.finish(10)
        assert (sink.delivered, sink.failed) == (0, 1)
        assert str(status) in sink.last_error
        assert hits == []
    finally:
        for s in (target, webhook):
            s.shutdown()
            s.server_close()
