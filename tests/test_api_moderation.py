"""DetectModerationLabels through boto3 and the CLI on real, safe photographs (no unsafe corpus is available
here: docs/analysis.md), and the honest header about what the server cannot detect."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import skimage.data
from botocore.exceptions import ClientError
from click.testing import CliRunner
from PIL import Image

from faceledger.cli import main
from faceledger.service.model import check_response
from faceledger.service.operations.analysis import UNDETECTABLE_CATEGORIES, moderation_scores

from conftest import image_bytes, shared_data

HEADER = "x-faceledger-undetectable-categories"


def jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut"])
def test_safe_photographs_get_no_label_and_the_header_says_what_is_not_checked(rekognition, name):
    r = rekognition.detect_moderation_labels(Image={"Bytes": jpeg(getattr(skimage.data, name)())})
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert check_response("DetectModerationLabels", r) == []
    assert r["ModerationLabels"] == []
    assert r["ModerationModelVersion"] == "nsfwjs-4.4.0-mobilenet_v2_mid"
    assert r["ContentTypes"] == []  # photographs, not drawings
    for category in ("Violence", "Drugs & Tobacco", "Alcohol", "Hate Symbols", "Gambling", "Rude Gestures"):
        assert category in headers[HEADER]


def test_min_confidence_zero_returns_each_label_with_its_level(rekognition):
    face = image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))
    r = rekognition.detect_moderation_labels(Image={"Bytes": face}, MinConfidence=0)
    assert {label["Name"] for label in r["ModerationLabels"]} == {"Explicit", "Suggestive"}
    for label in r["ModerationLabels"]:
        assert label["TaxonomyLevel"] == 1 and label["ParentName"] == "" and 0 <= label["Confidence"] < 50
    confidences = [label["Confidence"] for label in r["ModerationLabels"]]
    assert confidences == sorted(confidences, reverse=True)


def test_mapping_from_the_models_classes():
    scores = moderation_scores({"Drawing": 0.05, "Hentai": 0.6, "Neutral": 0.05, "Porn": 0.2, "Sexy": 0.1})
    assert scores["Explicit"] == pytest.approx(80) and scores["Suggestive"] == pytest.approx(10)
    assert scores["ContentType:Illustrated"] == pytest.approx(65)
    assert not set(UNDETECTABLE_CATEGORIES) & set(scores)


@pytest.mark.parametrize("params, code, says", [
    ({"ProjectVersion": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1"},
     "InvalidParameterException", "ProjectVersion"),
    ({"HumanLoopConfig": {"HumanLoopName": "h", "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:0:flow-definition/x"}},
     "InvalidParameterException", "HumanLoopConfig"),
], ids=["adapter", "human-loop"])
def test_unsupported_parameters(rekognition, params, code, says):
    with pytest.raises(ClientError) as info:
        rekognition.detect_moderation_labels(Image={"Bytes": jpeg(skimage.data.coffee())}, **params)
    assert info.value.response["Error"]["Code"] == code and says in info.value.response["Error"]["Message"]


@pytest.mark.parametrize("image, code", [
    ({"Bytes": b"\x89PNG\r\n\x1a\n truncated"}, "InvalidImageFormatException"),
    ({"Bytes": jpeg(np.zeros((60, 60, 3), np.uint8))}, "InvalidParameterException"),
], ids=["truncated-png", "too-small"])
def test_bad_images(rekognition, image, code):
    with pytest.raises(ClientError) as info:
        rekognition.detect_moderation_labels(Image=image)
    assert info.value.response["Error"]["Code"] == code


def test_ledger_and_cli(server, tmp_path):
    path = tmp_path / "chelsea.jpg"
    path.write_bytes(jpeg(skimage.data.chelsea()))
    env = {"AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret}
    result = CliRunner().invoke(main, ["moderation", str(path), "--endpoint", server.url, "--min-confidence", "0"],
                                env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Explicit" in result.stdout and "Suggestive" in result.stdout
    assert "not checked (no model on this server): Violence" in result.stdout
    out = CliRunner().invoke(main, ["audit", "list", "--data", str(server.data_dir), "--json",
                                    "--operation", "DetectModerationLabels"], catch_exceptions=False).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    last = [r for r in rows if r["result"] == "OK"][-1]
    assert {label["Name"] for label in last["detail"]["Found"]["ModerationLabels"]} == {"Explicit", "Suggestive"}
    assert last["detail"]["Images"][0]["SHA256"]
