"""Hostile images against DetectText, DetectModerationLabels and DetectLabels: refused up front with the face
operations' errors, or answered from the working-size image with bounded memory (a fresh server of its own,
so its peak RSS is this module's)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import serve_in
from test_hostile_images import ACCEPTED, REFUSED, peak_rss_mib

pytest.importorskip("rapidocr")

#: The face operations' bound (test_hostile_images.PEAK_RSS_MIB, 1 GiB) plus room for the four analysis models and
#: the OCR detector's working memory on a 2-megapixel working image (measured: 1,025 MiB after these calls; the
#: detector alone adds about 500 MiB on 1754x1318, docs/analysis.md "Cost").
PEAK_RSS_MIB = 1536
CALLS = {
    "DetectText": lambda c, img: c.detect_text(Image=img),
    "DetectModerationLabels": lambda c, img: c.detect_moderation_labels(Image=img),
    "DetectLabels": lambda c, img: c.detect_labels(Image=img, Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"]),
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_in(tmp_path_factory.mktemp("analysis-hostile"))


def answer(srv, operation: str, data: bytes):
    try:
        return CALLS[operation](srv.client(), {"Bytes": data})
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400, exc.response
        return exc.response["Error"]["Code"]


@pytest.mark.slow
@pytest.mark.parametrize("shape", REFUSED)
def test_refused_up_front(srv, shape):
    build, code = REFUSED[shape]
    data = build()
    for operation in CALLS:
        assert answer(srv, operation, data) == code, operation


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["RGBA 6000x6000 PNG", "60000x600 1-bit PNG", "4 MB of EXIF in a PNG"])
def test_accepted_shapes_answer_with_bounded_memory(srv, shape):
    data = ACCEPTED[shape]()
    for operation in CALLS:
        result = answer(srv, operation, data)
        assert isinstance(result, dict), (operation, result)
        assert result.get("TextDetections", []) == [] and result.get("ModerationLabels", []) == []
    peak = peak_rss_mib(srv)
    assert peak < PEAK_RSS_MIB, f"the server's peak RSS reached {peak:.0f} MiB"
