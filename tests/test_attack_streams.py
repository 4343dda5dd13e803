"""Stream processors are bounded per server: CreateStreamProcessor past FACELEDGER_STREAM_MAX_PROCESSORS is
LimitExceededException (each running processor decodes its source all the time), also for Creates at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROLE = "arn:aws:iam::000000000000:role/faceledger"


def test_create_stream_processor_past_the_limit_is_limit_exceeded(tmp_path, monkeypatch):
    from faceledger.client import Client
    from faceledger.service import RequestContext

    monkeypatch.setenv("FACELEDGER_STREAM_MAX_PROCESSORS", "3")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 16)  # a file source is checked to be a file when added, not decoded until it runs
    context = RequestContext(transport="python", purpose="test: limits", case_reference="CASE-1")
    with Client(tmp_path / "data", context=context) as client:
        client.create_collection(CollectionId="c")
        client.put_collection_policy(CollectionId="c", Policy={"AllowLiveSearch": True})
        client.add_stream_source(Name="cam", Url=str(clip))

        def create(i: int) -> str:
            try:
                client.create_stream_processor(
                    Name=f"p{i}", RoleArn=ROLE,
                    Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam"}},
                    Output={"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:000000000000:stream/p{i}"}},
                    Settings={"FaceSearch": {"CollectionId": "c"}})
                return "created"
            except client.exceptions.LimitExceededException as exc:
                assert "FACELEDGER_STREAM_MAX_PROCESSORS" in str(exc)
                return "limit"

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(create, range(6)))
        assert sorted(results) == ["created"] * 3 + ["limit"] * 3
        assert len(client.list_stream_processors()["StreamProcessors"]) == 3
        client.delete_stream_processor(Name=client.list_stream_processors()["StreamProcessors"][0]["Name"])
        assert create(9) == "created"  # room again
    monkeypatch.setenv("FACELEDGER_STREAM_MAX_PROCESSORS", "0")
    from faceledger.service.streams import settings_from_env

    with pytest.raises(ValueError, match="FACELEDGER_STREAM_MAX_PROCESSORS"):
        settings_from_env()


@pytest.fixture
def hosted(tmp_path, monkeypatch):
    """(client, service, source clip) of an in-process service that runs its stream processors (as `serve` does),
    with a collection open to live search and a clip of 50 black 64x64 frames as source ``cam``."""
    from test_attack_video import _h264

    from faceledger.client import Client
    from faceledger.service import RequestContext, Service, ServiceConfig
    from faceledger.service.streams import host, shutdown

    monkeypatch.setenv("FACELEDGER_STREAM_FPS", "2")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(_h264(64, 64, 50, container="mp4"))
    service = Service(ServiceConfig(tmp_path / "data", tmp_path / "buckets"))
    host(service)
    context = RequestContext(transport="python", purpose="test: races", case_reference="CASE-1")
    with Client(service=service, context=context) as client:
        client.create_collection(CollectionId="c")
        client.put_collection_policy(CollectionId="c", Policy={"AllowLiveSearch": True})
        client.add_stream_source(Name="cam", Url=str(clip))
        yield client, service, clip
        shutdown(service)


def _threads_of(name: str) -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name in (f"faceledger-read-{name}",
                                                                 f"faceledger-analyse-{name}") and t.is_alive()]


def test_starts_at_once_run_one_processor_and_stop_leaves_none(hosted):
    """Six StartStreamProcessor at once: each saw the processor stopped, so five started a processor of their own
    (one a 500, "cannot join thread before it is started"), and four went on running after Stop and Delete, out of
    any call's reach, writing records. Now exactly one starts, the others are ResourceInUseException, and after
    Stop, Start/Stop pairs at once, and Delete, no thread of the processor is left."""
    import time

    client, service, _ = hosted
    from faceledger.service.streams import runtime_of

    client.create_stream_processor(
        Name="p", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam"}},
        Output={"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:000000000000:stream/p"}},
        Settings={"FaceSearch": {"CollectionId": "c"}})

    def call(operation):
        try:
            getattr(client, operation)(Name="p")
            return "ok"
        except (client.exceptions.ResourceInUseException, client.exceptions.ResourceNotFoundException) as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: call("start_stream_processor"), range(6)))
    assert sorted(results) == ["ResourceInUseException"] * 5 + ["ok"], results
    assert len(_threads_of("p")) == 2
    client.stop_stream_processor(Name="p")
    assert _threads_of("p") == [] and client.describe_stream_processor(Name="p")["Status"] == "STOPPED"
    for _ in range(4):  # a Start and a Stop at once, whichever comes first
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(call, ("start_stream_processor", "stop_stream_processor")))
        if client.describe_stream_processor(Name="p")["Status"] in ("STARTING", "RUNNING"):
            client.stop_stream_processor(Name="p")
        assert _threads_of("p") == [], _threads_of("p")
        assert client.describe_stream_processor(Name="p")["Status"] == "STOPPED"
    with ThreadPoolExecutor(2) as pool:  # a Start and a Delete at once: deleted and stopped, or running
        list(pool.map(call, ("start_stream_processor", "delete_stream_processor")))
    if call("stop_stream_processor") == "ok":
        client.delete_stream_processor(Name="p")
    time.sleep(0.5)
    assert _threads_of("p") == [] and runtime_of(service).running == {}
    assert client.list_stream_processors()["StreamProcessors"] == []


def test_urls_with_a_password_are_shown_without_it_in_answers_errors_and_the_ledger(hosted, monkeypatch, caplog):
    """A source URL refused for having no host was quoted whole in the InvalidParameterException (and so in the
    ledger's record of the refusal), a webhook URL's password was returned by PutStreamSink and ListStreamSinks,
    and a video job's notification webhook that failed was logged with its password: each now shows it as ***,
    as sources list does."""
    import json
    import logging
    import socket

    from faceledger.service import video_jobs

    client, service, _ = hosted
    for url in ("rtsp://admin:hunter2@:554/stream1", "http://cam:hunter2@/live.m3u8"):
        with pytest.raises(client.exceptions.InvalidParameterException) as info:
            client.add_stream_source(Name="nohost", Url=url)
        assert "hunter2" not in str(info.value) and ":***@" in str(info.value)
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/k"
    put = client.put_stream_sink(Arn=arn, WebhookUrl="http://hook:hunter2@127.0.0.1:9/records")
    assert put["WebhookUrl"] == "http://hook:***@127.0.0.1:9/records"
    assert "hunter2" not in json.dumps(client.list_stream_sinks()) and "hook:***@" in json.dumps(client.list_stream_sinks())
    assert not [r for r in service.store.ledger_rows() if "hunter2" in json.dumps(dict(r), default=str)]
    with socket.socket() as closed:  # a port nothing listens on: each try is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(video_jobs.time, "sleep", lambda seconds: None)
    with caplog.at_level(logging.WARNING, logger="faceledger.video"):
        video_jobs._notify(f"http://hook:hunter2@127.0.0.1:{port}/done", {"JobId": "j1"})
    assert "hook:***@127.0.0.1" in caplog.text and "hunter2" not in caplog.text


def test_a_source_whose_frames_claim_a_huge_size_is_refused_before_they_are_allocated(tmp_path):
    """A file source (or camera) whose PNG frames claim 16000x16000 pixels: its decoder allocated 768 MB a frame
    (about 1.5 GB with its threads) for a 1 KB file; it now refuses the frame before allocating it, a disconnect
    whose message names the limit."""
    from test_attack_video import claiming_mov, peak_mb

    from faceledger.streams.source import SourceError, check_source_url, open_source

    claiming_mov(tmp_path / "claims.mov")
    conn = open_source(check_source_url(str(tmp_path / "claims.mov")), max_pixels=100_000)
    with pytest.raises(SourceError, match="over the 0.1 megapixel limit"):
        for _ in conn.frames():
            pass
    conn.close()
    claiming_mov(tmp_path / "first.mov", real_first=False)  # the first frame, decoded to probe the stream
    peak, said = peak_mb(f"from faceledger.streams.source import open_source\ntry:\n"
                         f"    conn = open_source({str(tmp_path / 'first.mov')!r})\n    print(list(conn.frames()))\n"
                         "except Exception as exc:\n    print(exc)")
    assert peak < 400, (peak, said)
    peak, said = peak_mb(f"from faceledger.streams.source import open_source\nconn = open_source("
                         f"{str(tmp_path / 'claims.mov')!r})\ntry:\n    print(len(list(conn.frames())))\n"
                         "except Exception as exc:\n    print(exc)")
    assert "36 megapixel limit" in said, said
    assert peak < 400, (peak, said)


def test_a_processor_named_dot_dot_cannot_write_above_its_s3_destination(hosted):
    """A processor's S3 objects are keyed <KeyPrefix><Name>/<SessionId>/...: Name '..' (valid by the model) was
    accepted and then FAILED at its first record saying "a symbolic link leads out of the bucket" (there was
    none). It is refused at Create, for face search and label detection processors alike."""
    client, service, _ = hosted
    (Path(service.config.buckets_dir) / "bkt").mkdir(parents=True)
    video = {"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam"}}
    for name, prefix, settings in (("..", "", {"FaceSearch": {"CollectionId": "c"}}),
                                   ("..", "a/", {"ConnectedHome": {"Labels": ["PERSON"]}})):
        with pytest.raises(client.exceptions.InvalidParameterException, match="leaves the bucket"):
            client.create_stream_processor(Name=name, RoleArn=ROLE, Input=video, Settings=settings,
                                           Output={"S3Destination": {"Bucket": "bkt", "KeyPrefix": prefix}})
    client.create_stream_processor(Name="..", RoleArn=ROLE, Input=video, Settings={"FaceSearch": {"CollectionId": "c"}},
                                   Output={"S3Destination": {"Bucket": "bkt", "KeyPrefix": "x"}})  # keys x../...
    client.delete_stream_processor(Name="..")
