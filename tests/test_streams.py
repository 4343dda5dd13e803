"""Stream processors through boto3 on a live server: the API's shapes and refusals, and a processor reading an RTSP
camera served on loopback (GStreamer's RTSP server playing the hamilton clip): it finds Lin-Manuel Miranda, writes
Rekognition's Kinesis face-search records, reconnects when the camera is killed and restarted, detects a frozen
camera by its read timeout, and records every match and its stop in the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import REPO, Server, free_port, shared_data

from faceledger.cli.common import add_purpose_headers

GST_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi and the GStreamer RTSP server (.ci/run installs them)
ROLE = "arn:aws:iam::000000000000:role/faceledger"
# Short timeouts and a low rate keep the test's CPU low (3 analysed frames a second).
STREAM_ENV = {"FACELEDGER_STREAM_FPS": "3", "FACELEDGER_STREAM_READ_TIMEOUT": "2",
              "FACELEDGER_STREAM_OPEN_TIMEOUT": "4", "FACELEDGER_STREAM_BACKOFF": "0.5",
              "FACELEDGER_STREAM_MAX_BACKOFF": "2"}


def video_arn(source: str) -> str:
    return f"arn:aws:kinesisvideo:us-east-1:000000000000:stream/{source}/1700000000000"


def data_arn(stream: str) -> str:
    return f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"


def post(server: Server, operation: str, body: bytes, key: tuple[str, str] | None = None) -> httpx.Response:
    """``body`` to faceledger's own operation (Faceledger.<Op>), signed as boto3 signs (with ``key``, else the
    server's admin key)."""
    request = AWSRequest(method="POST", url=server.url + "/", data=body,
                         headers={"X-Amz-Target": f"Faceledger.{operation}",
                                  "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(*(key or (server.key_id, server.secret))), "rekognition", "us-east-1").add_auth(request)
    return httpx.post(server.url + "/", content=request.body, headers=dict(request.headers.items()), timeout=30)


def extension(server: Server, operation: str, **params) -> dict:
    """faceledger's own operation with ``params``; its response, or AssertionError with the error."""
    response = post(server, operation, json.dumps(params).encode())
    body = response.json()
    if response.status_code != 200:
        raise AssertionError(f"{operation}: {response.status_code} {body}")
    return body


def ledger(server: Server, operation: str) -> list[dict]:
    """`faceledger audit list --operation OPERATION --json` on the server's data folder."""
    out = subprocess.run([sys.executable, "-m", "faceledger", "audit", "list", "--data", str(server.data_dir),
                          "--operation", operation, "--json"], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    srv = Server(root / "data", root / "buckets", env={**os.environ, **STREAM_ENV})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rekognition(live):
    client = live.client()
    add_purpose_headers(client, "test: live search", "CASE-12")
    return client


@pytest.fixture(scope="module")
def bare(live):
    """A client sending no purpose and no case."""
    return live.client()


def error_of(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def create(client, name: str, source: str, collection: str, s3: dict | None = None, **settings):
    output = {"KinesisDataStream": {"Arn": data_arn(name)}, **({"S3Destination": s3} if s3 else {})}
    return client.create_stream_processor(
        Name=name, RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn(source)}}, Output=output,
        Settings={"FaceSearch": {"CollectionId": collection, **settings}})


class Webhook:
    """An HTTP server on loopback that keeps the bodies POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/records"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_processor_api_and_refusals(live, rekognition, bare):
    clip = shared_data("video", "short_hamilton_clip.mp4")
    cid = f"live-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    src = extension(live, "AddStreamSource", Name="clipfile", Url=str(clip))
    assert src["Kind"] == "file" and src["KinesisVideoStreamArn"].endswith(":stream/clipfile")
    # sources the server cannot read are refused, saying what it accepts; passwords are not shown back
    for url, says in (("ftp://cam/x", "scheme"), ("relative/clip.mp4", "absolute"), ("/no/such/file.mp4", "exist"),
                      ("rtsp:///nohost", "no host"), ("rtsp://cam/\nx", "line breaks")):
        with pytest.raises(AssertionError, match="InvalidParameterException") as info:
            extension(live, "AddStreamSource", Name="bad", Url=url)
        assert says in str(info.value)
    # hostile bodies get a 400 that says what is wrong, never a 500
    hostile = [b"null", b"[]", b'"x"', b"{}", json.dumps({"Name": 5, "Url": {}}).encode(),
               json.dumps({"Name": "x" * 5000, "Url": "rtsp://h/" + "y" * 100_000}).encode(),
               json.dumps({"Name": "ok", "Url": "rtsp://h/x", "Extra": 1}).encode(),
               json.dumps({"Name": "../..", "Url": ["rtsp://h"]}).encode(),
               json.dumps({"Arn": "arn:aws:kinesis:us-east-1:000000000000:stream/a/../b", "WebhookUrl": "file:///etc"})
               .encode()]
    for operation in ("AddStreamSource", "RemoveStreamSource", "PutStreamSink", "GetStreamProcessorStatus",
                      "ListStreamSources", "ListStreamSinks"):
        for body in hostile:
            answer = post(live, operation, body)
            if answer.status_code == 200:  # the listings take {} (and null: no parameters)
                assert operation.startswith("List") and body in (b"{}", b"null"), (operation, body)
                continue
            assert answer.status_code == 400, (operation, body[:80], answer.text)
            assert answer.json()["__type"] in ("ValidationException", "InvalidParameterException",
                                               "ResourceNotFoundException"), answer.text
            assert len(answer.json()["message"]) < 2000
    extension(live, "AddStreamSource", Name="door", Url="rtsp://admin:hunter2@192.0.2.7:554/stream1")
    listed = {s["Name"]: s for s in extension(live, "ListStreamSources")["Sources"]}
    assert listed["door"]["Url"] == "rtsp://admin:***@192.0.2.7:554/stream1" and "hunter2" not in json.dumps(listed)
    extension(live, "RemoveStreamSource", Name="door")

    # live search is refused until the collection's policy allows it, naming the policy
    code, message = error_of(create, rekognition, "p-refused", "clipfile", cid)
    assert code == "AccessDeniedException" and "AllowLiveSearch" in message and cid in message
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    # ... and without a purpose and a case reference
    code, message = error_of(create, bare, "p-refused", "clipfile", cid)
    assert code == "AccessDeniedException" and "X-Faceledger-Purpose" in message
    # a Kinesis video stream that is no known source, label detection, a bad output ARN
    code, message = error_of(create, rekognition, "p-x", "nosuchcamera", cid)
    assert code == "InvalidParameterException" and "nosuchcamera" in message and "sources add" in message
    code, _ = error_of(rekognition.create_stream_processor, Name="p-x", RoleArn=ROLE,
                       Input={"KinesisVideoStream": {"Arn": video_arn("clipfile")}},
                       Output={"KinesisDataStream": {"Arn": data_arn("x")}},
                       Settings={"ConnectedHome": {"Labels": ["PERSON"]}})
    assert code == "InvalidParameterException"

    # FaceMatchThreshold below 80 is raised to 80 (Rekognition's rule); the default is 80
    arn = create(rekognition, "p-low", "clipfile", cid, FaceMatchThreshold=50)["StreamProcessorArn"]
    assert arn.endswith(":streamprocessor/p-low")
    d = rekognition.describe_stream_processor(Name="p-low")
    assert d["Settings"]["FaceSearch"] == {"CollectionId": cid, "FaceMatchThreshold": 80.0}
    assert d["Status"] == "STOPPED" and d["StreamProcessorArn"] == arn
    assert error_of(create, rekognition, "p-low", "clipfile", cid)[0] == "ResourceInUseException"
    create(rekognition, "p-high", "clipfile", cid, FaceMatchThreshold=95)
    assert rekognition.describe_stream_processor(Name="p-high")["Settings"]["FaceSearch"]["FaceMatchThreshold"] == 95

    # listing pages with NextToken; tags on the processor's ARN
    first = rekognition.list_stream_processors(MaxResults=1)
    second = rekognition.list_stream_processors(MaxResults=1, NextToken=first["NextToken"])
    names = [p["Name"] for p in first["StreamProcessors"] + second["StreamProcessors"]]
    assert names == ["p-high", "p-low"]
    rekognition.tag_resource(ResourceArn=arn, Tags={"site": "lobby"})
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"site": "lobby"}
    rekognition.untag_resource(ResourceArn=arn, TagKeys=["site"])
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {}

    # regions of interest: set, shown, deleted; label-detection settings refused
    roi = [{"BoundingBox": {"Left": 0.5, "Top": 0.0, "Width": 0.5, "Height": 1.0}}]
    rekognition.update_stream_processor(Name="p-low", RegionsOfInterestForUpdate=roi)
    assert rekognition.describe_stream_processor(Name="p-low")["RegionsOfInterest"] == roi
    rekognition.update_stream_processor(Name="p-low", ParametersToDelete=["RegionsOfInterest"])
    assert "RegionsOfInterest" not in rekognition.describe_stream_processor(Name="p-low")
    code, _ = error_of(rekognition.update_stream_processor, Name="p-low",
                       SettingsForUpdate={"ConnectedHomeForUpdate": {"MinConfidence": 50}})
    assert code == "InvalidParameterException"

    # not running: Stop is refused; a source in use cannot be removed; Delete is recorded
    assert error_of(rekognition.stop_stream_processor, Name="p-low")[0] == "ResourceInUseException"
    assert error_of(rekognition.describe_stream_processor, Name="nope")[0] == "ResourceNotFoundException"
    with pytest.raises(AssertionError, match="ResourceInUseException"):
        extension(live, "RemoveStreamSource", Name="clipfile")
    rekognition.delete_stream_processor(Name="p-low")
    rekognition.delete_stream_processor(Name="p-high")
    deleted = ledger(live, "DeleteStreamProcessor")
    assert {e["detail"]["Request"]["Name"] for e in deleted} == {"p-low", "p-high"}
    assert all(e["purpose"] == "test: live search" and e["case_ref"] == "CASE-12" for e in deleted)
    refused = [e for e in ledger(live, "CreateStreamProcessor") if e["result"] == "AccessDeniedException"]
    assert len(refused) == 2 and all(e["collection_id"] == cid for e in refused)
    extension(live, "RemoveStreamSource", Name="clipfile")


def test_regions_of_interest_keep_faces_whose_centre_is_inside():
    from faceledger.service.streams import in_regions

    face = {"Left": 0.75, "Top": 0.1, "Width": 0.1, "Height": 0.2}  # centre (0.8, 0.2)
    assert in_regions(face, [{"BoundingBox": {"Left": 0.5, "Top": 0.0, "Width": 0.5, "Height": 1.0}}])
    assert not in_regions(face, [{"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 0.5, "Height": 1.0}}])
    triangle = [{"X": 0.5, "Y": 0.0}, {"X": 1.0, "Y": 0.0}, {"X": 1.0, "Y": 1.0}]
    assert in_regions(face, [{"Polygon": triangle}])  # the triangle: y <= 2 (x - 0.5); 0.2 <= 0.6
    assert not in_regions({"Left": 0.5, "Top": 0.8, "Width": 0.1, "Height": 0.1}, [{"Polygon": triangle}])


class RtspCamera:
    """GStreamer's RTSP server on a loopback port, playing a file from its start for each client."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([GST_PYTHON, str(REPO / "tests" / "rtsp_source.py"), str(self.path),
                                         str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"RTSP server did not start: {line}{self.process.stderr.read()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def camera():
    try:
        missing = subprocess.run([GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                                 capture_output=True).returncode != 0
    except OSError:  # no /usr/bin/python3
        missing = True
    if missing:
        pytest.skip("GStreamer's RTSP server for Python is missing: apt-get install python3-gi "
                    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad (.ci/run does)")
    cam = RtspCamera(shared_data("video", "short_hamilton_clip.mp4"), free_port())
    yield cam
    cam.thaw()
    cam.kill()


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def records(live: Server, stream: str) -> list[dict]:
    path = live.data_dir / "streams" / f"{stream}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def matched(recs: list[dict]) -> set[str]:
    return {m["Face"]["ExternalImageId"] for r in recs for f in r["FaceSearchResponse"] for m in f["MatchedFaces"]}


@pytest.mark.slow
def test_rtsp_processor_finds_people_reconnects_and_detects_a_frozen_source(live, rekognition, camera):
    refs = shared_data("video", "hamilton_reference_faces")
    cid = f"hamilton-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    for photo in sorted(refs.glob("*.png")):
        rekognition.index_faces(CollectionId=cid, Image={"Bytes": photo.read_bytes()}, ExternalImageId=photo.stem,
                                MaxFaces=1)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    extension(live, "AddStreamSource", Name="stage", Url=camera.url)
    webhook = Webhook()
    sink = extension(live, "PutStreamSink", Arn=data_arn("stage-watch"), WebhookUrl=webhook.url)
    assert sink["File"].endswith("streams/stage-watch.jsonl")
    (live.buckets_dir / "records").mkdir()
    create(rekognition, "stage-watch", "stage", cid, s3={"Bucket": "records", "KeyPrefix": "live/"})
    session = rekognition.start_stream_processor(Name="stage-watch")["SessionId"]
    assert session
    assert error_of(rekognition.start_stream_processor, Name="stage-watch")[0] == "ResourceInUseException"

    def status():
        return extension(live, "GetStreamProcessorStatus", Name="stage-watch")

    # Lin-Manuel Miranda is on screen from about 2.8 s to 7 s of the clip (checked frame by frame)
    wait_for("a match of Lin-Manuel Miranda", lambda: "lin-manuel-miranda" in matched(records(live, "stage-watch")))
    assert rekognition.describe_stream_processor(Name="stage-watch")["Status"] == "RUNNING"
    health = httpx.get(live.url + "/health", timeout=10).json()["streams"]["stage-watch"]  # the metrics
    assert health["Status"] == "RUNNING" and health["FramesAnalysed"] > 0

    # the camera dies: a disconnect, not a stop; it comes back: the processor reconnects and goes on
    camera.kill()
    wait_for("the disconnect", lambda: status()["Status"] == "STARTING" and
             "disconnected" in status()["StatusMessage"])
    received = status()["Stats"]["FramesReceived"]
    camera.start()
    wait_for("the reconnection", lambda: (s := status())["Status"] == "RUNNING" and s["Stats"]["Connections"] >= 2
             and s["Stats"]["FramesReceived"] > received + 30)
    assert status()["Stats"]["Disconnects"] >= 1

    # the camera freezes (its process stopped, its TCP connection open): the read timeout notices
    camera.freeze()
    frozen = wait_for("the read timeout", lambda: (s := status())["Status"] == "STARTING" and
                      "read timeout" in s["StatusMessage"] and s, timeout=30)
    assert "frozen" in frozen["StatusMessage"]
    camera.thaw()
    wait_for("recovery after the freeze", lambda: status()["Status"] == "RUNNING", timeout=30)

    rekognition.stop_stream_processor(Name="stage-watch")
    final = rekognition.describe_stream_processor(Name="stage-watch")
    assert final["Status"] == "STOPPED" and "frames received" in final["StatusMessage"]
    stats = status()["Stats"]
    # never behind: every frame received was analysed or dropped (3 analysed a second of a 30 fps camera)
    assert stats["FramesReceived"] == stats["FramesAnalysed"] + stats["FramesDropped"]
    assert stats["FramesDropped"] > stats["FramesAnalysed"] > 0

    # Rekognition's Kinesis face-search record, one per analysed frame
    recs = records(live, "stage-watch")
    assert len(recs) == stats["FramesAnalysed"]
    for r in recs:
        assert set(r) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"}
        kv = r["InputInformation"]["KinesisVideo"]
        assert set(kv) == {"StreamArn", "FragmentNumber", "ProducerTimestamp", "ServerTimestamp",
                           "FrameOffsetInSeconds"}
        assert kv["StreamArn"] == video_arn("stage") and kv["FragmentNumber"].isdigit()
        assert abs(kv["ServerTimestamp"] - time.time()) < 600 and kv["FrameOffsetInSeconds"] >= 0
        assert r["StreamProcessorInformation"] == {"Status": "RUNNING"}
        for face in r["FaceSearchResponse"]:
            assert set(face["DetectedFace"]) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
            for m in face["MatchedFaces"]:
                assert m["Similarity"] >= 80
                assert set(m["Face"]) == {"BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId"}
    # the same records went to the webhook and, as JSON Lines objects, to the S3 destination
    webhook.close()
    assert [json.loads(b) for b in webhook.bodies] == recs
    objects = sorted((live.buckets_dir / "records" / "live" / "stage-watch" / session).glob("*.jsonl"))
    assert objects and [json.loads(line) for o in objects for line in o.read_text().splitlines()] == recs
    fragments = [int(r["InputInformation"]["KinesisVideo"]["FragmentNumber"]) for r in recs]
    assert fragments == sorted(fragments) and len(set(fragments)) > 2

    # every match reported is a ledger entry, with the processor's purpose and case; the stop is recorded
    reported = [m for r in recs for f in r["FaceSearchResponse"] for m in f["MatchedFaces"]]
    entries = [e for e in ledger(live, "StreamProcessorMatch") if e["collection_id"] == cid]
    assert sum(len(e["detail"]["Faces"]) for e in entries) == len(reported) > 0
    assert all(e["purpose"] == "test: live search" and e["case_ref"] == "CASE-12" for e in entries)
    assert {f["FaceId"] for e in entries for f in e["detail"]["Faces"]} == {m["Face"]["FaceId"] for m in reported}
    stops = [e for e in ledger(live, "StopStreamProcessor") if e["detail"]["Request"]["Name"] == "stage-watch"]
    assert len(stops) == 1 and stops[0]["result"] == "OK"


def test_s3_destination_never_writes_through_a_link_out_of_the_buckets_folder(live, rekognition, tmp_path):
    """A bucket that is a symbolic link out of the buckets folder is refused at Create; a folder of the key prefix
    that is one (planted before or after Create) fails the processor at its first record, writing nothing there."""
    clip = shared_data("video", "short_hamilton_clip.mp4")
    outside = tmp_path / "outside"
    outside.mkdir()
    (live.buckets_dir / "evil").symlink_to(outside)
    (live.buckets_dir / "drop").mkdir()
    (live.buckets_dir / "drop" / "link").symlink_to(outside)
    cid = f"s3-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    extension(live, "AddStreamSource", Name="s3clip", Url=str(clip))
    code, message = error_of(create, rekognition, "p-evil", "s3clip", cid, s3={"Bucket": "evil", "KeyPrefix": ""})
    assert code == "InvalidParameterException" and "link out of it" in message
    code, message = error_of(create, rekognition, "p-long", "s3clip", cid, s3={"Bucket": "drop", "KeyPrefix": "a" * 300})
    assert code == "InvalidParameterException" and "at most 200 bytes" in message  # not a failure at the first record
    create(rekognition, "p-link", "s3clip", cid, s3={"Bucket": "drop", "KeyPrefix": "link/"})
    rekognition.start_stream_processor(Name="p-link")
    deadline = time.monotonic() + 60
    while (d := rekognition.describe_stream_processor(Name="p-link"))["Status"] != "FAILED":
        assert time.monotonic() < deadline, d
        time.sleep(0.3)
    assert "symbolic link leads out of the bucket" in d["StatusMessage"], d
    assert list(outside.iterdir()) == []
    rekognition.delete_stream_processor(Name="p-link")
    extension(live, "RemoveStreamSource", Name="s3clip")


def test_processor_operations_are_authorized_on_the_collection_the_processor_searches(live, rekognition):
    """Starting a processor is a live search of its collection: a key limited to another collection may not start,
    describe, delete or tag it (as it may not create it); a key limited to that collection may."""
    from conftest import create_key

    clip = shared_data("video", "short_hamilton_clip.mp4")
    cid = f"auth-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    extension(live, "AddStreamSource", Name="authclip", Url=str(clip))
    arn = create(rekognition, "p-auth", "authclip", cid)["StreamProcessorArn"]
    actions = [f"rekognition:{a}" for a in ("StartStreamProcessor", "StopStreamProcessor", "DescribeStreamProcessor",
                                            "DeleteStreamProcessor", "UpdateStreamProcessor", "TagResource")]
    actions.append("faceledger:GetStreamProcessorStatus")
    keys = {}

    def key(collection: str):
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions,
                  "Resource": f"arn:aws:rekognition:us-east-1:000000000000:collection/{collection}"}]}
        keys[collection] = create_key(live.data_dir, f"k-{collection}", policy)
        client = live.client(keys[collection])
        add_purpose_headers(client, "test: live search", "CASE-12")
        return client

    other, same = key("some-other-collection"), key(cid)
    # faceledger's status operation names a processor too: authorized on its collection, as Describe is
    status = json.dumps({"Name": "p-auth"}).encode()
    assert post(live, "GetStreamProcessorStatus", status, keys[cid]).json()["Status"] == "STOPPED"
    denied = post(live, "GetStreamProcessorStatus", status, keys["some-other-collection"])
    assert denied.status_code == 400 and denied.json()["__type"].endswith("AccessDeniedException"), denied.text
    assert f"collection/{cid}" in denied.json()["message"]
    for call, kwargs in ((other.start_stream_processor, {"Name": "p-auth"}),
                         (other.describe_stream_processor, {"Name": "p-auth"}),
                         (other.delete_stream_processor, {"Name": "p-auth"}),
                         (other.tag_resource, {"ResourceArn": arn, "Tags": {"a": "b"}})):
        code, message = error_of(call, **kwargs)
        assert code == "AccessDeniedException" and f"collection/{cid}" in message, (call, message)
    assert rekognition.describe_stream_processor(Name="p-auth")["Status"] == "STOPPED"  # not started
    assert same.describe_stream_processor(Name="p-auth")["Settings"]["FaceSearch"]["CollectionId"] == cid
    same.tag_resource(ResourceArn=arn, Tags={"a": "b"})
    same.delete_stream_processor(Name="p-auth")
    extension(live, "RemoveStreamSource", Name="authclip")


def test_a_camera_password_never_reaches_a_status_message(live, rekognition):
    """FFmpeg's errors quote the URL they could not open: the processor's StatusMessage (DescribeStreamProcessor,
    GetStreamProcessorStatus) shows it with the password as ***, as `sources list` does."""
    cid = f"pw-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    extension(live, "AddStreamSource", Name="pwcam", Url=f"rtsp://admin:p@ss-hunter2@127.0.0.1:{free_port()}/x")
    create(rekognition, "p-pw", "pwcam", cid)
    rekognition.start_stream_processor(Name="p-pw")
    deadline = time.monotonic() + 30
    while "cannot open" not in (d := rekognition.describe_stream_processor(Name="p-pw")).get("StatusMessage", ""):
        assert time.monotonic() < deadline, d
        time.sleep(0.2)
    status = extension(live, "GetStreamProcessorStatus", Name="p-pw")
    assert "admin:***@127.0.0.1" in d["StatusMessage"]
    assert "hunter2" not in json.dumps(d, default=str) and "hunter2" not in json.dumps(status)
    rekognition.stop_stream_processor(Name="p-pw")
    assert "hunter2" not in rekognition.describe_stream_processor(Name="p-pw").get("StatusMessage", "")
    rekognition.delete_stream_processor(Name="p-pw")
    extension(live, "RemoveStreamSource", Name="pwcam")


def test_a_blurred_face_on_camera_is_scored_with_its_quality_band(live, rekognition, tmp_path):
    """Issue 10's blurred strangers, live: stranger A's blurred photo is enrolled anyway (QualityFilter NONE), and a
    camera shows stranger B blurred. Both faces are out of the calibrated range, so the pair is scored on the
    degraded-both table and is no match at 80; scored as if the camera's face were sharp (the degraded-one table,
    as before) it was one."""
    from test_video import blurred_strangers

    stored, clip = blurred_strangers(tmp_path, frames=15)
    (tmp_path / "blurred.mp4").write_bytes(clip)
    cid = f"blur-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    r = rekognition.index_faces(CollectionId=cid, Image={"Bytes": stored}, QualityFilter="NONE", MaxFaces=1,
                                ExternalImageId="stranger-a")
    assert len(r["FaceRecords"]) == 1
    extension(live, "AddStreamSource", Name="blurcam", Url=str(tmp_path / "blurred.mp4"))
    create(rekognition, "p-blur", "blurcam", cid, FaceMatchThreshold=80)
    rekognition.start_stream_processor(Name="p-blur")
    try:
        recs = wait_for("frames of the blurred camera", lambda: (lambda rs: rs if len(rs) >= 3 else None)(
            records(live, "p-blur")), timeout=90)
    finally:
        rekognition.stop_stream_processor(Name="p-blur")
    assert all(f["DetectedFace"] for r in recs for f in r["FaceSearchResponse"])
    assert matched(recs) == set()  # before: stranger-a, at the degraded-one table's 80+
    assert not [e for e in ledger(live, "StreamProcessorMatch") if e["detail"]["Request"].get("Name") == "p-blur"]
    rekognition.delete_stream_processor(Name="p-blur")
    extension(live, "RemoveStreamSource", Name="blurcam")


def miranda_collection(live: Server, rekognition, prefix: str) -> str:
    """A new collection (``prefix``-<random>) holding Lin-Manuel Miranda's reference photo, live search allowed."""
    cid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    photo = shared_data("video", "hamilton_reference_faces") / "lin-manuel-miranda.png"
    rekognition.index_faces(CollectionId=cid, Image={"Bytes": photo.read_bytes()},
                            ExternalImageId="lin-manuel-miranda", MaxFaces=1)
    extension(live, "PutCollectionPolicy", CollectionId=cid, Policy={"AllowLiveSearch": True})
    return cid


@pytest.mark.slow
def test_hls_and_http_sources_find_miranda(live, rekognition, tmp_path):
    """An HLS playlist (the hamilton clip cut into 2-second MPEG-TS segments by PyAV's hls muxer, no re-encoding)
    and an MP4 file, both served over HTTP on loopback, are read as sources: each processor finds Lin-Manuel
    Miranda and writes Kinesis records. Neither is paced (docs/streams.md: a recording over HTTP is read as fast
    as it downloads, the newest frame analysed), and each end of the stream is a disconnect and a reconnection."""
    import functools
    import http.server
    import threading

    import av

    clip = shared_data("video", "short_hamilton_clip.mp4")
    # the clip's index (moov) is at its end, which a reader over HTTP reaches only with range requests, which
    # Python's http.server does not serve: the MP4 source is the clip remuxed with its index first ("faststart")
    for name, fmt, options in (("index.m3u8", "hls", {"hls_time": "2", "hls_list_size": "0",
                                                      "hls_playlist_type": "vod"}),
                               ("clip.mp4", "mp4", {"movflags": "faststart"})):
        with av.open(str(clip)) as src, av.open(str(tmp_path / name), "w", format=fmt, options=options) as out:
            stream = out.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    out.mux(packet)
    assert len(list(tmp_path.glob("*.ts"))) >= 4

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cid = miranda_collection(live, rekognition, "http")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = {"hls": f"{base}/index.m3u8", "httpmp4": f"{base}/clip.mp4"}
    try:
        for name, url in urls.items():
            assert extension(live, "AddStreamSource", Name=name, Url=url)["Kind"] == "http"
            create(rekognition, f"{name}-watch", name, cid)
            rekognition.start_stream_processor(Name=f"{name}-watch")
        for name in urls:
            wait_for(f"a match of Miranda from the {name} source",
                     lambda: "lin-manuel-miranda" in matched(records(live, f"{name}-watch")), timeout=90)
            recs = records(live, f"{name}-watch")
            assert recs[0]["InputInformation"]["KinesisVideo"]["StreamArn"] == video_arn(name)
            stats = extension(live, "GetStreamProcessorStatus", Name=f"{name}-watch")["Stats"]
            assert stats["FramesReceived"] >= stats["FramesAnalysed"] > 0
    finally:
        for name in urls:
            try:
                rekognition.stop_stream_processor(Name=f"{name}-watch")
            except ClientError:
                pass
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_rtmp_source_finds_miranda(live, rekognition):
    """An RTMP camera (tests/rtmp_source.py: Debian's nginx RTMP module relaying the hamilton clip, published in
    real time by PyAV) read by a processor, which finds Lin-Manuel Miranda and writes Kinesis records."""
    import shutil

    if shutil.which("nginx") is None or not Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists():
        pytest.skip("nginx's RTMP module is missing: apt-get install libnginx-mod-rtmp (.ci/run does)")
    port = free_port()
    camera = subprocess.Popen([sys.executable, str(REPO / "tests" / "rtmp_source.py"),
                               str(shared_data("video", "short_hamilton_clip.mp4")), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = camera.stdout.readline()
        assert line.strip() == "ready", f"RTMP camera did not start: {line}{camera.stderr.read()}"
        cid = miranda_collection(live, rekognition, "rtmp")
        assert extension(live, "AddStreamSource", Name="rtmpcam",
                         Url=f"rtmp://127.0.0.1:{port}/live/cam")["Kind"] == "rtmp"
        create(rekognition, "rtmp-watch", "rtmpcam", cid)
        rekognition.start_stream_processor(Name="rtmp-watch")
        wait_for("a match of Miranda from the RTMP camera",
                 lambda: "lin-manuel-miranda" in matched(records(live, "rtmp-watch")), timeout=90)
        status = extension(live, "GetStreamProcessorStatus", Name="rtmp-watch")
        assert status["Status"] == "RUNNING" and "rtmp source" in status["StatusMessage"], status
        assert records(live, "rtmp-watch")[0]["InputInformation"]["KinesisVideo"]["StreamArn"] == video_arn("rtmpcam")
        rekognition.stop_stream_processor(Name="rtmp-watch")
    finally:
        camera.terminate()
        camera.wait(10)
