"""Stream processors are bounded per server: CreateStreamProcessor past FACELEDGER_STREAM_MAX_PROCESSORS is
LimitExceededException (each running processor decodes its source all the time), also for Creates at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
