"""Hostile settings and buckets for ConnectedHome stream processors, through boto3 on a live server: the frame and
crop JPEG objects are held to the bucket as the JSON Lines objects are (a symbolic link planted in the bucket after
CreateStreamProcessor is refused, never written through)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import Server, shared_data
from test_streams import ROLE, STREAM_ENV, extension, video_arn, wait_for

BUCKET = "home"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack-home")
    (root / "buckets" / BUCKET).mkdir(parents=True)
    srv = Server(root / "data", root / "buckets", env={**os.environ, **STREAM_ENV})
    extension(srv, "AddStreamSource", Name="porchcam", Url=str(shared_data("video", "short_hamilton_clip.mp4")))
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
