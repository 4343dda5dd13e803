"""DetectText through boto3 and the CLI on real images: scikit-image's page() and text rendered here."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from botocore.exceptions import ClientError
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

from faceledger.analysis.text import character_accuracy
from faceledger.cli import main
from faceledger.service.model import check_response

from conftest import create_key

pytest.importorskip("rapidocr")

PAGE_LINES = ["Region-based segmentation", "Let us first determine markers of the coins and the",
              "background. These markers are pixels that we can label",
              "unambiguously as either object or background. Here,",
              "the markers are found at the two extreme parts of the", "histogram of grey values:",
              ">>> markers = np.zeros_like(coins)"]


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def font() -> str:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):  # Debian's fonts-dejavu-core
        if Path(path).exists():
            return path
    import matplotlib  # the same font, as matplotlib ships it

    return str(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")


def rendered(text: str, size: int, angle: float, ink: tuple, paper: tuple) -> bytes:
    face = ImageFont.truetype(font(), size)
    left, top, right, bottom = face.getbbox(text)
    mask = Image.new("L", (right - left + 2 * size, bottom - top + 2 * size), 0)
    ImageDraw.Draw(mask).text((size - left, size - top), text, font=face, fill=255)
    mask = mask.rotate(angle, expand=True, resample=Image.BICUBIC)
    canvas = Image.new("RGB", (max(mask.width, 240), max(mask.height, 240)), paper)
    canvas.paste(Image.new("RGB", mask.size, ink), ((canvas.width - mask.width) // 2,
                                                    (canvas.height - mask.height) // 2), mask)
    return png(np.asarray(canvas))


@pytest.fixture(scope="module")
def page() -> bytes:
    return png(skimage.data.page())


@pytest.fixture(scope="module")
def page_answer(rekognition, page) -> dict:
    return rekognition.detect_text(Image={"Bytes": page})


def test_page_lines_words_ids_and_geometry(page_answer):
    r = page_answer
    assert check_response("DetectText", r) == []
    assert "PP-OCRv6" in r["TextModelVersion"]
    lines = [d for d in r["TextDetections"] if d["Type"] == "LINE"]
    words = [d for d in r["TextDetections"] if d["Type"] == "WORD"]
    # lines first, Ids 0.., then words whose ParentId is their line's Id
    assert [d["Id"] for d in r["TextDetections"]] == list(range(len(r["TextDetections"])))
    assert r["TextDetections"][:len(lines)] == lines
    assert all("ParentId" not in d for d in lines)
    by_line = {line["Id"]: [] for line in lines}
    for word in words:
        by_line[word["ParentId"]].append(word["DetectedText"])
    for line in lines:
        assert " ".join(by_line[line["Id"]]) == line["DetectedText"]
    # through the default WordFilter (80): the clean lines whole, the faint fifth line's doubtful words dropped
    read = "\n".join(line["DetectedText"] for line in lines)
    assert character_accuracy(read, "\n".join(PAGE_LINES)) > 0.75, read
    for clean in PAGE_LINES[:4] + PAGE_LINES[5:6]:
        assert clean in read
    for d in r["TextDetections"]:
        assert d["Confidence"] >= 80  # the default WordFilter
        box, polygon = d["Geometry"]["BoundingBox"], d["Geometry"]["Polygon"]
        assert len(polygon) == 4
        assert all(0 <= p["X"] <= 1 and 0 <= p["Y"] <= 1 for p in polygon)
        assert box["Left"] == pytest.approx(min(p["X"] for p in polygon))
        assert box["Top"] + box["Height"] == pytest.approx(max(p["Y"] for p in polygon))
    title = next(d for d in lines if d["DetectedText"] == "Region-based segmentation")
    assert title["Geometry"]["BoundingBox"]["Top"] < 0.1 and title["Geometry"]["BoundingBox"]["Width"] > 0.6


def test_regions_of_interest_and_word_filter(rekognition, page, page_answer):
    top = rekognition.detect_text(Image={"Bytes": page}, Filters={
        "RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 0.2}}]})
    assert [d["DetectedText"] for d in top["TextDetections"] if d["Type"] == "LINE"] == ["Region-based segmentation"]
    # a polygon region: the left half of the page keeps only the words more than half inside it
    left = rekognition.detect_text(Image={"Bytes": page}, Filters={"RegionsOfInterest": [{"Polygon": [
        {"X": 0, "Y": 0}, {"X": 0.5, "Y": 0}, {"X": 0.5, "Y": 1}, {"X": 0, "Y": 1}]}]})
    words = [d for d in left["TextDetections"] if d["Type"] == "WORD"]
    assert words and all(d["Geometry"]["BoundingBox"]["Left"] + d["Geometry"]["BoundingBox"]["Width"] / 2 < 0.5
                         for d in words)
    # tall words only: the title's letters are the tallest on the page
    tall = rekognition.detect_text(Image={"Bytes": page}, Filters={"WordFilter": {"MinBoundingBoxHeight": 0.13}})
    assert all(d["Geometry"]["BoundingBox"]["Height"] >= 0.13 for d in tall["TextDetections"])
    # MinConfidence 0 keeps at least what the default keeps, and reads page() as bench/text_accuracy.py does
    every = rekognition.detect_text(Image={"Bytes": page}, Filters={"WordFilter": {"MinConfidence": 0}})
    assert len(every["TextDetections"]) >= len(page_answer["TextDetections"])
    read = "\n".join(d["DetectedText"] for d in every["TextDetections"] if d["Type"] == "LINE")
    assert character_accuracy(read, "\n".join(PAGE_LINES)) > 0.85, read  # measured 0.870


@pytest.mark.parametrize("text, size, angle, ink, paper", [
    ("PLEASE KEEP THIS DOOR CLOSED", 22, 25, (250, 250, 210), (30, 40, 70)),  # rotated, light on dark
    ("Invoice No. 55-1830 due 07/12", 12, 0, (20, 20, 20), (255, 255, 255)),  # small
], ids=["rotated-on-dark", "small"])
def test_rendered_text_is_read(rekognition, text, size, angle, ink, paper):
    r = rekognition.detect_text(Image={"Bytes": rendered(text, size, angle, ink, paper)})
    read = " ".join(d["DetectedText"] for d in r["TextDetections"] if d["Type"] == "LINE")
    assert character_accuracy(read, text) >= 0.9, read


@pytest.mark.parametrize("filters, says", [
    ({"RegionsOfInterest": [{}]}, "exactly one of BoundingBox or Polygon"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1},
                             "Polygon": [{"X": 0, "Y": 0}] * 3}]}, "exactly one"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}]}]}, "at least 3 points"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0.5, "Top": 0, "Width": 0, "Height": 1}}]}, "lie in the image"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": -2, "Top": 0, "Width": 1, "Height": 1}}]}, "lie in the image"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0}}]}, "needs Width, Height"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 2, "Y": 0}, {"X": 0, "Y": 1}]}]}, "[0, 1]"),
], ids=["empty-region", "both", "two-points", "no-area", "outside", "partial-box", "point-outside"])
def test_bad_filters_are_invalid_parameters(rekognition, filters, says):
    small = png(np.full((100, 100, 3), 255, np.uint8))
    with pytest.raises(ClientError) as info:
        rekognition.detect_text(Image={"Bytes": small}, Filters=filters)
    assert info.value.response["Error"]["Code"] == "InvalidParameterException"
    assert says in info.value.response["Error"]["Message"]


@pytest.mark.parametrize("image, code", [
    ({"Bytes": b"this is not an image"}, "InvalidImageFormatException"),
    ({"Bytes": png(np.zeros((40, 300, 3), np.uint8))}, "InvalidParameterException"),  # under 80 px
    ({"S3Object": {"Bucket": "nope", "Name": "x.png"}}, "InvalidS3ObjectException"),
], ids=["not-an-image", "too-small", "no-bucket"])
def test_bad_images(rekognition, image, code):
    with pytest.raises(ClientError) as info:
        rekognition.detect_text(Image=image)
    assert info.value.response["Error"]["Code"] == code


def test_ledger_records_the_text_and_the_policy_applies(server, page_answer):
    out = CliRunner().invoke(main, ["audit", "list", "--data", str(server.data_dir), "--json",
                                    "--operation", "DetectText"], catch_exceptions=False).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    ok = [r for r in rows if r["result"] == "OK" and "Region-based segmentation" in r["detail"].get("Found", {}).get(
        "Text", [])]
    assert ok and ok[-1]["detail"]["Images"][0]["SHA256"]
    key = create_key(server.data_dir, "faces-only", {"Statement": [
        {"Effect": "Allow", "Action": "rekognition:DetectFaces", "Resource": "*"}]})
    with pytest.raises(ClientError) as info:
        server.client(key).detect_text(Image={"Bytes": png(np.full((100, 100, 3), 255, np.uint8))})
    assert info.value.response["Error"]["Code"] == "AccessDeniedException"


def test_cli_text(server, tmp_path):
    path = tmp_path / "page.png"
    Image.fromarray(skimage.data.page()).save(path)
    result = CliRunner().invoke(main, ["text", str(path), "--endpoint", server.url, "--json"],
                                env={"AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [d["DetectedText"] for d in json.loads(result.stdout)["TextDetections"] if d["Type"] == "LINE"]
    assert "Region-based segmentation" in lines
    table = CliRunner().invoke(main, ["text", str(path), "--endpoint", server.url],
                               env={"AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret})
    assert table.exit_code == 0 and "Region-based segmentation" in table.stdout and "lines of text" in table.stdout
