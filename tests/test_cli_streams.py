"""`faceledger streams` on a local data folder: sources, processors, and the live-search policy, in-process."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from conftest import shared_data

from faceledger.cli import main
from faceledger.client import Client
from faceledger.service import Service, ServiceConfig
from faceledger.service import streams


def run(*args: object, code: int = 0):
    result = CliRunner(env={"COLUMNS": "160"}).invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def test_streams_commands_on_a_local_data_folder(tmp_path):
    clip = shared_data("video", "short_hamilton_clip.mp4")
    data = ("--data", tmp_path / "data")
    why = ("--purpose", "lobby safety", "--case", "SEC-1")
    run("collections", "create", "staff", *data)
    added = json.loads(run("streams", "sources", "add", "lobby", clip, *data, "--json").stdout)
    assert added["Kind"] == "file" and added["KinesisVideoStreamArn"].endswith(":stream/lobby")
    assert "lobby" in run("streams", "sources", "list", *data).stdout

    # refused until the collection allows live search, then without purpose and case
    refused = run("streams", "processors", "create", "watch", "--source", "lobby", "--collection", "staff",
                  *why, *data, code=2)
    assert "AccessDeniedException" in refused.stderr and "AllowLiveSearch" in refused.stderr
    run("policy", "set", "staff", "--allow-live-search", *data)
    assert json.loads(run("policy", "show", "staff", *data, "--json").stdout)["Policy"] == {"AllowLiveSearch": True}
    refused = run("streams", "processors", "create", "watch", "--source", "lobby", "--collection", "staff", *data,
                  code=2)
    assert "X-Faceledger-Purpose" in refused.stderr
    assert "--purpose WHY --case REF" in refused.stderr  # the options that send those headers

    out = run("streams", "processors", "create", "watch", "--source", "lobby", "--collection", "staff",
              "--threshold", "60", *why, *data).stdout
    assert "streamprocessor/watch" in out
    described = json.loads(run("streams", "processors", "describe", "watch", *data, "--json").stdout)
    assert described["StreamProcessor"]["Status"] == "STOPPED"
    assert described["StreamProcessor"]["Settings"]["FaceSearch"]["FaceMatchThreshold"] == 80.0  # raised to 80
    assert described["Status"]["Source"] == "lobby"
    shown = run("streams", "processors", "describe", "watch", *data).stdout
    assert "KinesisDataStream arn:aws:kinesis:us-east-1:000000000000:stream/watch" in shown and "{'Arn'" not in shown
    assert "no sinks with a webhook" in run("streams", "sinks", "list", *data).stdout
    listed = json.loads(run("streams", "processors", "list", *data, "--json").stdout)
    assert listed["StreamProcessors"] == [{"Name": "watch", "Status": "STOPPED"}]

    # without a server, start records the wish: a server on this folder runs it
    assert "faceledger serve" in run("streams", "processors", "start", "watch", *data).stdout
    status = json.loads(run("streams", "processors", "describe", "watch", *data, "--json").stdout)["Status"]
    assert status["Status"] == "STARTING" and "waiting for a faceledger server" in status["StatusMessage"]
    refused = run("streams", "sources", "remove", "lobby", *data, code=2)
    assert "ResourceInUseException" in refused.stderr and "watch" in refused.stderr

    # a server on this folder (here: a Service that hosts processors, as `serve` does) runs it, and one that stops
    # leaves it wanted: the next one resumes it
    service = Service(ServiceConfig(data_dir=tmp_path / "data"))
    client = Client(service=service)
    try:
        def status_when(what, check):
            deadline = time.monotonic() + 120
            while not check(s := client.get_stream_processor_status(Name="watch")):
                assert time.monotonic() < deadline, (what, s)
                time.sleep(0.2)
            return s

        assert streams.host(service) == ["watch"]
        s = status_when("2 frames analysed", lambda s: s["Stats"].get("FramesAnalysed", 0) >= 2)
        assert s["Status"] == "RUNNING" and s["Source"] == "lobby"
        streams.shutdown(service)
        after = client.describe_stream_processor(Name="watch")
        assert after["Status"] == "STOPPED" and "resumes at its next start" in after["StatusMessage"]
        assert streams.runtime_of(service).tables.desired_running() == ["watch"]

        # resumed again; its collection deleted under it: FAILED saying why, and no longer wanted
        assert streams.host(service) == ["watch"]
        status_when("a frame analysed", lambda s: s["Stats"].get("FramesAnalysed", 0) >= 1)
        client.delete_collection(CollectionId="staff")
        failed = status_when("FAILED", lambda s: s["Status"] == "FAILED")
        assert "collection staff was deleted" in failed["StatusMessage"]
        assert streams.runtime_of(service).tables.desired_running() == []
    finally:
        streams.shutdown(service)
        service.close()
    assert "not running" in run("streams", "processors", "stop", "watch", *data, code=2).stderr
    run("streams", "processors", "delete", "watch", *data)
    run("streams", "sources", "remove", "lobby", *data)
    assert "no stream processors" in run("streams", "processors", "list", *data).stdout
    audit = run("audit", "list", "--operation", "StopStreamProcessor", "--data", tmp_path / "data").stdout
    assert "StopStreamProcessor" in audit and "SEC-1" not in audit  # recorded, with this command's (no) case


def test_video_commands_exit_1_on_a_failed_job_with_or_without_json(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    data = ("--data", tmp_path / "data")
    failed = json.loads(run("video", "segments", empty, *data, "--json", code=1).stdout)
    assert failed["JobStatus"] == "FAILED" and "the file is empty" in failed["StatusMessage"]
    shown = run("video", "segments", empty, *data, code=1)
    assert "no segments" in shown.stdout and "Confidence" not in shown.stdout  # no table without rows
    assert "job FAILED" in shown.stderr and "the file is empty" in shown.stderr
    faces = run("video", "faces", empty, *data, code=1)
    assert "0 faces" in faces.stdout and "BoundingBox" not in faces.stdout


def test_video_s3_location_without_a_buckets_folder_says_which_option(tmp_path):
    refused = run("video", "faces", "s3://cctv/lobby.mp4", "--data", tmp_path / "data", code=2)
    assert "--buckets DIR" in refused.stderr and "--endpoint" in refused.stderr


def test_video_search_table_fits_a_narrow_terminal(tmp_path):
    import io

    from rich.console import Console

    from faceledger.cli.common import App
    from faceledger.cli.video import persons_table

    persons = {0: {"stamps": [0, 200, 400, 600, 2800, 3000], "matches": [
                   {"Similarity": 99.5, "Face": {"ExternalImageId": "lin-manuel-miranda.png",
                                                 "FaceId": "6b7c8251-6d99-4566-ab0d-add55c1f75c1"}}]},
               1: {"stamps": [600], "matches": []}}
    shown = {}
    for width in (80, 160):
        app = App(tmp_path, None, None, None, False)
        app.out = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
        app.out.print(persons_table(app, persons))
        shown[width] = app.out.file.getvalue()
        assert max(len(line) for line in shown[width].splitlines()) <= width
        assert "99.50" in shown[width] and "Similarity" in shown[width] and "(no match)" in shown[width]
    assert "6b7c8251-6d99-4566-ab0d-add55c1f75c1" in shown[160] and "0.0s-0.6s, 2.8s-3.0s" in shown[160]
    assert "0.6s " in shown[160]  # one sighting: one time
    # 80 columns: no FaceId (it said where to find it), one range a line, each whole
    assert "FaceId" in shown[80] and "6b7c8251" not in shown[80]
    assert "0.0s-0.6s" in shown[80] and "2.8s-3.0s" in shown[80]


def test_processors_create_and_start_check_their_options_as_the_help_says(tmp_path):
    data = ("--data", tmp_path / "data")
    refused = run("streams", "processors", "create", "porch", "--source", "porchcam", "--labels", "PERSON", *data,
                  code=2)
    assert "--labels needs --s3-bucket" in refused.stderr
    refused = run("streams", "processors", "start", "porch", "--max-duration", "500", *data, code=2)
    assert "1<=x<=120" in refused.stderr  # StopSelector.MaxDurationInSeconds, refused before any call


def test_video_faces_attributes_all_adds_gender_and_smile(tmp_path):
    """`video faces --attributes ALL` sends FaceAttributes ALL, as `detect --attributes ALL` sends Attributes ALL."""
    import av
    import numpy as np
    from PIL import Image

    photo = Image.open(shared_data("video", "hamilton_reference_faces", "lin-manuel-miranda.png")).convert("RGB")
    photo = photo.resize((photo.width // 2 * 2, photo.height // 2 * 2))
    clip = tmp_path / "one-face.mp4"
    with av.open(str(clip), "w") as out:  # 1 s at 5 frames/s: one sampled frame each 200 ms
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = photo.width, photo.height, "yuv420p"
        for _ in range(5):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(photo), format="rgb24")))
        out.mux(stream.encode())
    data = ("--data", tmp_path / "data")
    faces = json.loads(run("video", "faces", clip, "--attributes", "all", *data, "--json").stdout)["Faces"]
    assert faces and all(f["Face"]["Gender"]["Value"] == "Male" and "Smile" in f["Face"] for f in faces)
    shown = run("video", "faces", clip, "--attributes", "ALL", *data).stdout
    assert "Gender" in shown and "Male" in shown
    assert "Gender" not in run("video", "faces", clip, *data).stdout  # DEFAULT: no attributes


def test_describe_with_a_key_limited_to_its_collection(server, tmp_path, monkeypatch):
    """A key allowed rekognition:* on one collection may describe that collection's processors (docs/streams.md);
    `processors describe` shows them without the counters of faceledger:GetStreamProcessorStatus (on `*`) instead
    of failing whole."""
    import uuid

    from conftest import create_key

    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret)
    e = ("--endpoint", server.url)
    tag = uuid.uuid4().hex[:8]
    cid, source, name = f"cli-desc-{tag}", f"cam-{tag}", f"watch-{tag}"
    run("collections", "create", cid, *e)
    try:
        run("policy", "set", cid, "--allow-live-search", *e)
        run("streams", "sources", "add", source, shared_data("video", "short_hamilton_clip.mp4"), *e)
        run("streams", "processors", "create", name, "--source", source, "--collection", cid,
            "--purpose", "test", "--case", "T-1", *e)
        key = create_key(server.data_dir, f"only-{tag}", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "rekognition:*",
             "Resource": f"arn:aws:rekognition:us-east-1:000000000000:collection/{cid}"}]},
            database=server.database)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key[1])
        shown = run("streams", "processors", "describe", name, *e)
        assert "STOPPED" in shown.stdout and source in shown.stdout and cid in shown.stdout
        assert "counters not shown" in shown.stderr and "GetStreamProcessorStatus" in shown.stderr
        raw = json.loads(run("streams", "processors", "describe", name, *e, "--json").stdout)
        assert raw["StreamProcessor"]["Name"] == name and raw["Status"] is None
    finally:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret)
        CliRunner().invoke(main, ["streams", "processors", "delete", name, *e])
        CliRunner().invoke(main, ["streams", "sources", "remove", source, *e])
        run("collections", "delete", cid, *e)


def test_video_progress_bar_goes_to_stderr_with_json_as_index_has_it(tmp_path):
    """--progress shows the bar on stderr with --json too (stdout stays JSON), --no-progress hides it."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    data = ("--data", tmp_path / "data")
    shown = run("video", "segments", empty, *data, "--json", "--progress", code=1)
    assert json.loads(shown.stdout)["JobStatus"] == "FAILED"
    assert "segment detection empty.mp4" in shown.stderr
    hidden = run("video", "segments", empty, *data, "--json", "--no-progress", code=1)
    assert "segment detection" not in hidden.stderr
