"""Label, moderation and text jobs on stored video through boto3 against a live server (docs/video.md): clips
made here with PyAV from scikit-image photographs and from text rendered with Pillow, and the shared hamilton
clip; job semantics (JobTag, idempotency, paging, aggregation, sorting)."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError

from test_api_text import font
from test_video import TOPIC, _ledger, _put, _wait, hamilton, rek, srv, webhook  # noqa: F401 - the same server fixtures

FPS = 5
CHANNEL = {"SNSTopicArn": TOPIC, "RoleArn": "arn:aws:iam::000000000000:role/notify"}


def _encode(images: list[np.ndarray], fps: int = FPS) -> bytes:
    """An H.264 MP4 made with PyAV, one frame per image (RGB uint8, all the same even size)."""
    import av

    buf = io.BytesIO()
    h, w = images[0].shape[:2]
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _fit(image: np.ndarray, w: int = 400, h: int = 300) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("RGB").resize((w, h)))


def _text_frame(text: str, w: int = 480, h: int = 240) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (w, h), (250, 250, 245))
    ImageDraw.Draw(img).text((30, 90), text, font=ImageFont.truetype(font(), 44), fill=(10, 10, 10))
    return np.asarray(img)


@pytest.fixture(scope="module")
def pets_clip(srv):
    """2 s of coffee(), 2 s of chelsea() (a cat), 1 s of coffee() again, at 5 frames/s."""
    from skimage import data

    coffee, cat = _fit(data.coffee()), _fit(data.chelsea())
    return _put(srv, "coffee-cat.mp4", _encode([coffee] * 10 + [cat] * 10 + [coffee] * 5))


@pytest.fixture(scope="module")
def labels_job(rek, pets_clip):
    job = rek.start_label_detection(Video=pets_clip, JobTag="coffee-cat", ClientRequestToken="labels-1",
                                    NotificationChannel=CHANNEL)
    return job["JobId"], _wait(lambda: rek.get_label_detection(JobId=job["JobId"]))


def test_label_detection_timestamps_and_continuous_appearances(rek, srv, pets_clip, labels_job, webhook):
    job_id, done = labels_job
    deadline = time.monotonic() + 10
    while not any(m["JobId"] == job_id for m in webhook[1]) and time.monotonic() < deadline:
        time.sleep(0.1)
    note = next(m for m in webhook[1] if m["JobId"] == job_id)
    assert (note["API"], note["Status"], note["JobTag"]) == ("LABEL_DETECTION", "SUCCEEDED", "coffee-cat")
    assert done["JobStatus"] == "SUCCEEDED" and done["JobTag"] == "coffee-cat"
    assert done["GetRequestMetadata"] == {"SortBy": "TIMESTAMP", "AggregateBy": "TIMESTAMPS"}
    assert "EfficientNet" in done["LabelModelVersion"] or done["LabelModelVersion"]
    assert done["VideoMetadata"]["DurationMillis"] == 5000
    rows = done["Labels"]
    stamps = [r["Timestamp"] for r in rows]
    assert stamps == sorted(stamps) and set(stamps) <= {0, 1000, 2000, 3000, 4000}  # one frame a second
    names_at = {t: {r["Label"]["Name"] for r in rows if r["Timestamp"] == t} for t in set(stamps)}
    cats = {t for t, names in names_at.items() if any("cat" in n.casefold() for n in names)}
    assert cats == {2000, 3000}, names_at
    assert all(r["Label"]["Confidence"] >= 50 for r in rows)
    # SEGMENTS: the cat is one continuous appearance 2000-4000 ms; the coffee's label comes back after it
    segs = rek.get_label_detection(JobId=job_id, AggregateBy="SEGMENTS")
    assert segs["GetRequestMetadata"]["AggregateBy"] == "SEGMENTS"
    cat_segs = [s for s in segs["Labels"] if s["Label"]["Name"] == "Cat"]
    assert [(s["StartTimestampMillis"], s["EndTimestampMillis"], s["DurationMillis"]) for s in cat_segs] == \
        [(2000, 4000, 2000)]
    coffee_names = names_at[0] & names_at[4000]
    assert coffee_names, names_at
    name = sorted(coffee_names)[0]
    runs = [(s["StartTimestampMillis"], s["EndTimestampMillis"]) for s in segs["Labels"] if s["Label"]["Name"] == name]
    assert runs == [(0, 2000), (4000, 5000)]
    # SortBy NAME; paging with NextToken gives the same rows as one page
    by_name = rek.get_label_detection(JobId=job_id, SortBy="NAME")["Labels"]
    assert [r["Label"]["Name"] for r in by_name] == sorted(r["Label"]["Name"] for r in by_name)
    paged, token = [], None
    while True:
        page = rek.get_label_detection(JobId=job_id, MaxResults=3, **({"NextToken": token} if token else {}))
        paged += page["Labels"]
        token = page.get("NextToken")
        if not token:
            break
    assert paged == rows
    with pytest.raises(ClientError) as err:  # a TIMESTAMPS token does not page SEGMENTS
        first = rek.get_label_detection(JobId=job_id, MaxResults=1)
        rek.get_label_detection(JobId=job_id, MaxResults=1, AggregateBy="SEGMENTS", NextToken=first["NextToken"])
    assert err.value.response["Error"]["Code"] == "InvalidPaginationTokenException"
    # idempotency, and the job is another API's unknown job
    assert rek.start_label_detection(Video=pets_clip, JobTag="coffee-cat", ClientRequestToken="labels-1",
                                     NotificationChannel=CHANNEL)["JobId"] == job_id
    with pytest.raises(ClientError) as err:
        rek.start_label_detection(Video=pets_clip, JobTag="other", ClientRequestToken="labels-1")
    assert err.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    with pytest.raises(ClientError) as err:
        rek.get_text_detection(JobId=job_id)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # the ledger: the start (with the video's SHA-256) and the end (the labels found, the frames analysed)
    entries = [e for e in _ledger(srv, "StartLabelDetection") if job_id in json.dumps(e)]
    assert [e["result"] for e in entries] == ["OK", "JOB_SUCCEEDED"]
    started, ended = (e["detail"] for e in entries)
    assert len(started["Search"]["VideoSHA256"]) == 64
    assert "Cat" in ended["Search"]["Labels"] and ended["Search"]["FramesAnalysed"] == 5


def test_label_detection_settings_filter_labels(rek, pets_clip, labels_job):
    job = rek.start_label_detection(Video=pets_clip, MinConfidence=60, Features=["GENERAL_LABELS"],
                                    Settings={"GeneralLabels": {"LabelInclusionFilters": ["Cat"]}})
    done = _wait(lambda: rek.get_label_detection(JobId=job["JobId"]))
    assert done["JobStatus"] == "SUCCEEDED"
    assert {r["Label"]["Name"] for r in done["Labels"]} == {"Cat"}
    assert all(r["Label"]["Confidence"] >= 60 for r in done["Labels"])


def test_content_moderation_on_safe_clip_gives_no_label_and_says_what_it_cannot_see(rek, srv, pets_clip):
    job = rek.start_content_moderation(Video=pets_clip, JobTag="safe")
    done = _wait(lambda: rek.get_content_moderation(JobId=job["JobId"]))
    assert done["JobStatus"] == "SUCCEEDED" and done["JobTag"] == "safe"
    assert done["ModerationLabels"] == [] and done["ModerationModelVersion"]
    assert "Violence" in done["ResponseMetadata"]["HTTPHeaders"]["x-faceledger-undetectable-categories"]
    # MinConfidence 0: every label of every sampled frame, both sets, with ContentTypes
    job = rek.start_content_moderation(Video=pets_clip, MinConfidence=0)
    done = _wait(lambda: rek.get_content_moderation(JobId=job["JobId"]))
    assert {r["Timestamp"] for r in done["ModerationLabels"]} == {0, 1000, 2000, 3000, 4000}
    assert all(r["ContentTypes"] == [] and r["ModerationLabel"]["TaxonomyLevel"] == 1
               for r in done["ModerationLabels"])
    segs = _wait(lambda: rek.get_content_moderation(JobId=job["JobId"], AggregateBy="SEGMENTS"))["ModerationLabels"]
    assert {(s["ModerationLabel"]["Name"], s["StartTimestampMillis"], s["EndTimestampMillis"]) for s in segs} == \
        {("Explicit", 0, 5000), ("Suggestive", 0, 5000)}


def test_text_detection_reads_rendered_text_per_second(rek, srv):
    clip = _put(srv, "text.mp4", _encode([_text_frame("HELLO WORLD")] * 10 + [_text_frame("GOODBYE")] * 5))
    job = rek.start_text_detection(Video=clip, Filters={"WordFilter": {"MinConfidence": 70}})
    done = _wait(lambda: rek.get_text_detection(JobId=job["JobId"]))
    assert done["JobStatus"] == "SUCCEEDED" and done["TextModelVersion"]
    lines = {(r["Timestamp"], r["TextDetection"]["DetectedText"]) for r in done["TextDetections"]
             if r["TextDetection"]["Type"] == "LINE"}
    assert lines == {(0, "HELLO WORLD"), (1000, "HELLO WORLD"), (2000, "GOODBYE")}
    words = [r for r in done["TextDetections"] if r["TextDetection"]["Type"] == "WORD" and r["Timestamp"] == 0]
    words.sort(key=lambda w: w["TextDetection"]["Geometry"]["BoundingBox"]["Left"])  # the reader's word split
    assert "".join(w["TextDetection"]["DetectedText"] for w in words) == "HELLOWORLD"
    # RegionsOfInterest: only the left half of the frame ("HELLO" lies there, "WORLD" does not)
    job = rek.start_text_detection(Video=clip, Filters={"RegionsOfInterest": [
        {"BoundingBox": {"Left": 0, "Top": 0, "Width": 0.45, "Height": 1}}]})
    done = _wait(lambda: rek.get_text_detection(JobId=job["JobId"]))
    kept = {r["TextDetection"]["DetectedText"] for r in done["TextDetections"] if r["Timestamp"] == 0}
    assert "HELLO" in kept and not any("ORLD" in t for t in kept), kept
    with pytest.raises(ClientError) as err:
        rek.start_text_detection(Video=clip, Filters={"RegionsOfInterest": [{}]})
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_analysis_jobs_on_damaged_and_missing_video(rek, srv):
    with pytest.raises(ClientError) as err:
        rek.start_label_detection(Video={"S3Object": {"Bucket": "videos", "Name": "absent.mp4"}})
    assert err.value.response["Error"]["Code"] == "InvalidS3ObjectException"
    video = _put(srv, "not-a-video.mp4", b"\xff\xd8\xff\xe0 not a video")
    job = rek.start_content_moderation(Video=video)
    done = _wait(lambda: rek.get_content_moderation(JobId=job["JobId"]))
    assert done["JobStatus"] == "FAILED" and done["StatusMessage"] and done["ModerationLabels"] == []


def test_collection_limited_key_gets_its_own_face_search_jobs_only(rek, srv, labels_job):
    """Get* names only a JobId: the key's policy is checked on the job's collection, not on "*"."""
    from conftest import create_key
    from test_video import _clip

    mine, other = f"lim-{uuid.uuid4().hex[:8]}", f"lim-{uuid.uuid4().hex[:8]}"
    clip = _put(srv, "grey.mp4", _clip([128] * 5))
    jobs = {}
    for cid in (mine, other):
        rek.create_collection(CollectionId=cid)
        jobs[cid] = rek.start_face_search(CollectionId=cid, Video=clip)["JobId"]
    arn = f"arn:aws:rekognition:us-east-1:000000000000:collection/{mine}"
    policy = {"Statement": [{"Effect": "Allow", "Action": ["rekognition:StartFaceSearch",
                                                           "rekognition:GetFaceSearch"], "Resource": arn}]}
    limited = srv.client(key=create_key(srv.data_dir, "one-collection", policy))
    done = _wait(lambda: limited.get_face_search(JobId=jobs[mine]))
    assert done["JobStatus"] == "SUCCEEDED" and done["Persons"] == []
    own = limited.start_face_search(CollectionId=mine, Video=clip)["JobId"]
    assert _wait(lambda: limited.get_face_search(JobId=own))["JobStatus"] == "SUCCEEDED"
    for job_id, where in ((jobs[other], f"collection/{other}"), (labels_job[0], "resource: *"),
                          ("0" * 64, "resource: *")):
        with pytest.raises(ClientError) as err:
            (limited.get_label_detection if job_id == labels_job[0] else limited.get_face_search)(JobId=job_id)
        assert err.value.response["Error"]["Code"] == "AccessDeniedException"
        assert where in err.value.response["Error"]["Message"]


@pytest.mark.slow
def test_label_detection_on_the_hamilton_clip_sees_the_person_in_the_close_shot(rek, hamilton):
    """The shared clip: Miranda faces the camera in a medium shot 2.74-7.01 s (test_video.MIRANDA_SHOT_MS,
    checked by eye): every analysed frame of that shot has Person, with a box (NanoDet's Instances)."""
    from test_video import MIRANDA_SHOT_MS

    job = rek.start_label_detection(Video=hamilton, Settings={"GeneralLabels": {"LabelInclusionFilters": ["Person"]}})
    done = _wait(lambda: rek.get_label_detection(JobId=job["JobId"]))
    assert done["JobStatus"] == "SUCCEEDED" and done["VideoMetadata"]["FrameWidth"] == 640
    seen = {r["Timestamp"] for r in done["Labels"] if r["Label"]["Instances"]}
    shot = {t for t in range(0, 9200, 1000) if MIRANDA_SHOT_MS[0] <= t < MIRANDA_SHOT_MS[1]}
    # the first frame of each second of the shot, within one frame period (29.97 fps) of the whole second
    assert all(any(abs(s - t) <= 34 for s in seen) for t in shot if t - 34 >= MIRANDA_SHOT_MS[0]), (seen, shot)
    for row in done["Labels"]:
        box = row["Label"]["Instances"][0]["BoundingBox"] if row["Label"]["Instances"] else None
        assert box is None or (0 <= box["Left"] <= 1 and 0 < box["Width"] <= 1)
