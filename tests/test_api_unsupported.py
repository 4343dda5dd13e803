"""Operations faceledger deliberately does not offer answer one error type, naming the operation and why."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from PIL import Image

from faceledger.cli import main
from faceledger.service.unsupported import UNSUPPORTED


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 120), (200, 180, 160)).save(out, "PNG")
    return out.getvalue()


CALLS = [  # (boto3 method, valid params): the refusal does not depend on the request
    ("detect_protective_equipment", {"Image": {"Bytes": png()}}),
    ("recognize_celebrities", {"Image": {"Bytes": png()}}),
    ("get_celebrity_info", {"Id": "1a2B3c"}),
    ("create_face_liveness_session", {}),
    ("get_face_liveness_session_results", {"SessionId": "0" * 36}),
    ("detect_custom_labels", {"ProjectVersionArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1",
                              "Image": {"Bytes": png()}}),
    ("create_project", {"ProjectName": "widgets"}),
    ("describe_projects", {}),
    ("start_person_tracking", {"Video": {"S3Object": {"Bucket": "bucket", "Name": "clip.mp4"}}}),
    ("get_person_tracking", {"JobId": "0" * 64}),
]


@pytest.mark.parametrize("method, params", CALLS, ids=[c[0] for c in CALLS])
def test_unsupported_operation_says_which_and_why(server, rekognition, method, params):
    with pytest.raises(ClientError) as info:
        getattr(rekognition, method)(**params)
    error = info.value.response["Error"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "UnsupportedOperationException"
    operation = info.value.operation_name
    assert operation in UNSUPPORTED
    assert f"does not support {operation}: " in error["Message"]
    assert UNSUPPORTED[operation] in error["Message"]  # the why


def test_unsupported_refusals_are_recorded_and_keep_the_error_type_for_a_bad_request(server, rekognition):
    with pytest.raises(ClientError) as info:
        rekognition.recognize_celebrities(Image={"Bytes": b"not an image"})
    assert info.value.response["Error"]["Code"] == "UnsupportedOperationException"
    out = CliRunner().invoke(main, ["audit", "list", "--data", str(server.data_dir), "--json",
                                    "--operation", "RecognizeCelebrities"], catch_exceptions=False).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert rows and rows[-1]["result"] == "UnsupportedOperationException"


def test_every_unsupported_operation_is_in_botocores_model_and_in_the_docs():
    from pathlib import Path

    from faceledger.service import model

    api = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    for operation in UNSUPPORTED:
        assert operation in model.operation_names()
        assert operation in api
