"""Stored video: StartFaceDetection/GetFaceDetection, StartFaceSearch/GetFaceSearch,
StartSegmentDetection/GetSegmentDetection, StartLabelDetection/GetLabelDetection,
StartContentModeration/GetContentModeration, StartTextDetection/GetTextDetection (asynchronous jobs, see
service/video_jobs.py).
StartPersonTracking/GetPersonTracking answer UnsupportedOperationException (service/unsupported.py):
Rekognition retired people pathing."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from typing import Any

from ...store.video_jobs import VideoJob
from ...video import VideoError, probe
from ...video.decode import changed, file_identity
from .. import auth, governance, tokens
from ..dispatch import Invocation, operation
from ..errors import (
    InvalidParameterException,
    InvalidS3ObjectException,
    LimitExceededException,
    ResourceNotFoundException,
    VideoTooLargeException,
)
from ..images import s3_object_path
from ...video.appearances import SEGMENTS_BASE
from ..video_jobs import MAX_VIDEO_MS, SHOT_MODEL, CUE_MODEL, job_json
from ._common import require_collection

#: Rekognition Video's limits: "the maximum file size for a stored video is 10GB", "the maximum duration
#: for a stored video is 6 hours".
MAX_VIDEO_BYTES = 10 * 1024 ** 3
#: A Get* page holds at most this many results, whatever MaxResults asks (Rekognition: "The largest value you
#: can specify is 1000. If you specify a value greater than 1000, a maximum of 1000 results is returned").
MAX_PAGE = DEFAULT_MAX_RESULTS = 1000



def _video(inv: Invocation, video: dict[str, Any]) -> tuple[dict, dict]:
    """(the S3Object, what the job keeps about the file); Rekognition's errors for what cannot be a job."""
    s3 = video.get("S3Object")
    if not s3:
        raise InvalidParameterException("Video must have an S3Object (Bucket and Name)")
    path, where = s3_object_path(s3, inv.config)
    try:  # opened once, without blocking (a FIFO put in its place), and hashed from what was opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidS3ObjectException(f"Unable to get object metadata from S3 {where}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidS3ObjectException(f"Unable to get object metadata from S3 {where}: it is not a file")
        if st.st_size > MAX_VIDEO_BYTES:
            raise VideoTooLargeException(f"The video {where} is {st.st_size} bytes, over the 10 GB limit")
        try:
            info = probe(path, int(inv.config.max_image_pixels))
            if info.duration_ms > MAX_VIDEO_MS:
                raise VideoTooLargeException(
                    f"The video {where} lasts {info.duration_ms / 3600000:.2f} hours, over the 6 hour limit")
        except VideoError:
            pass  # not a video, or damaged: the job runs and FAILS with a StatusMessage that says what is wrong
        digest = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        if changed(file_identity(st), os.fstat(fd)):
            raise InvalidS3ObjectException(f"The video {where} changed while it was read; start the job again")
    return dict(s3), {**file_identity(st), "sha256": digest.hexdigest()}


def _over_limit(inv: Invocation) -> LimitExceededException:
    return LimitExceededException(f"This server already has {inv.config.video_max_jobs} video jobs queued or "
                                  "running, its limit; start the job when one has finished")


def _start(inv: Invocation, req: dict[str, Any], api: str, collection_id: str | None = None) -> dict[str, Any]:
    channel = req.get("NotificationChannel")
    if channel and channel.get("SNSTopicArn") not in dict(inv.config.video_notify):
        raise InvalidParameterException(
            f"NotificationChannel.SNSTopicArn {channel.get('SNSTopicArn')} has no webhook on this server "
            "(start it with --notify ARN=URL)")
    if inv.store.count_active_video_jobs() >= int(inv.config.video_max_jobs):
        raise _over_limit(inv)
    s3, file = _video(inv, req["Video"])
    now = inv.now().timestamp()
    job_id = uuid.uuid4().hex + uuid.uuid4().hex[:16]
    ctx = inv.context
    request = job_json({k: v for k, v in req.items() if k != "ClientRequestToken"})
    request["_context"] = {"purpose": ctx.purpose, "case": ctx.case_reference, "source": ctx.source_ip,
                           "max_expected_false_matches": ctx.max_expected_false_matches,
                           "min_margin": ctx.min_margin}
    job = VideoJob(job_id=job_id, api=api, status="QUEUED", principal=ctx.who(), request=request, video=s3,
                   created_at=now, updated_at=now, collection_id=collection_id, video_sha256=file["sha256"],
                   job_tag=req.get("JobTag"),
                   progress={"file": {k: v for k, v in file.items() if k != "sha256"}})
    inv.store.create_video_job(job)
    # counted again inside the write (which holds the store's write lock until the call commits): two Starts at
    # once both saw room above, while this call hashed its video; the later one is refused and rolled back
    if inv.store.count_active_video_jobs() > int(inv.config.video_max_jobs):
        raise _over_limit(inv)
    inv.meta.update(JobId=job_id, Video=f"s3://{s3['Bucket']}/{s3['Name']}", VideoSHA256=file["sha256"])
    inv.after_commit(inv.service.video_jobs.wake)
    return {"JobId": job_id}


def _job(inv: Invocation, req: dict[str, Any], api: str) -> VideoJob:
    job = inv.store.get_video_job(req["JobId"])
    now = inv.now().timestamp()
    if job is None or job.api != api or (job.expires_at is not None and job.expires_at < now):
        raise ResourceNotFoundException(
            f"The job {req['JobId']} does not exist (or its results were deleted after "
            f"{inv.config.video_retention_days:g} days)")
    if job.collection_id:  # the results name the collection's faces: its key policy and its collection policy
        if inv.context.policy is not None:
            auth.authorize(inv.context.policy, inv.context.who(), f"rekognition:Get{api}",
                           inv.config.collection_arn(job.collection_id))
        governance.require_purpose(inv.store.get_collection_policy(job.collection_id), f"Get{api}", inv.context,
                                   job.collection_id)
    inv.meta["JobId"] = job.job_id
    return job


def _get(inv: Invocation, req: dict[str, Any], api: str, member: str, by_index: bool = False,
         segments: bool | None = None) -> dict[str, Any]:
    """The common Get* answer; ``segments`` (label jobs): page the SEGMENTS result set (True) or the
    TIMESTAMPS one (False) of the two the job keeps."""
    job = _job(inv, req, api)
    out: dict[str, Any] = {"JobStatus": "IN_PROGRESS" if job.status == "QUEUED" else job.status, "JobId": job.job_id,
                           "Video": {"S3Object": job.video}}
    if job.job_tag:
        out["JobTag"] = job.job_tag
    if job.status_message:
        out["StatusMessage"] = job.status_message
    if job.metadata:
        out["VideoMetadata"] = job.metadata
    scope = f"{job.job_id}:{'INDEX' if by_index else 'TIMESTAMP'}"
    low, high = -1, None
    if segments is not None:
        scope += ":SEGMENTS" if segments else ":TIMESTAMPS"
        low, high = (SEGMENTS_BASE - 1, None) if segments else (-1, SEGMENTS_BASE)
    # the token is checked whatever the job's state: another job's token is refused also while this one runs
    cursor = tokens.decode(inv.service.pagination_key, f"Get{api}", scope, req.get("NextToken"))
    if job.status in ("QUEUED", "IN_PROGRESS"):
        out[member] = []
        out["StatusMessage"] = _progress(inv, job)
        return out
    after = max(low, int(cursor)) if cursor is not None else low
    limit = min(int(req.get("MaxResults", DEFAULT_MAX_RESULTS)), MAX_PAGE)
    items, more = inv.store.video_job_results(job.job_id, after, limit, by_index=by_index, before=high)
    out[member] = items
    return tokens.with_next_token(inv.service.pagination_key, out, f"Get{api}", scope,
                                  None if more is None else str(more))


def _progress(inv: Invocation, job: VideoJob) -> str:
    """What an unfinished job has done: ``Analysed N frames, T of D ms of video`` (faceledger's StatusMessage
    while IN_PROGRESS; Rekognition leaves it empty then)."""
    if job.status == "QUEUED":
        return "Queued: waiting for a worker"
    runner = inv.service.__dict__.get("video_jobs")
    frames, ms = (runner.live.get(job.job_id) if runner is not None else None) or (
        int((job.progress or {}).get("frames", 0)), int((job.progress or {}).get("resume_ms", 0)))
    duration = (job.metadata or {}).get("DurationMillis")
    return f"Analysed {frames} frames, {ms} of {duration if duration is not None else '?'} ms of video"


@operation("StartFaceDetection")
def start_face_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    # FaceAttributes DEFAULT gives DetectFaces' DEFAULT FaceDetail (shapes.DEFAULT_ATTRIBUTES); ALL adds Gender and Smile
    # where DetectFaces with Attributes ALL would (the same function, operations/_common.face_details, on the sampled frame)
    return _start(inv, req, "FaceDetection")


@operation("GetFaceDetection")
def get_face_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    return _get(inv, req, "FaceDetection", "Faces")


@operation("StartFaceSearch")
def start_face_search(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    collection = require_collection(inv, req["CollectionId"])
    inv.for_model(collection.face_model_version)  # InvalidParameterException when this server lacks its model
    return _start(inv, req, "FaceSearch", collection.collection_id)


@operation("GetFaceSearch")
def get_face_search(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    out = _get(inv, req, "FaceSearch", "Persons", by_index=req.get("SortBy", "TIMESTAMP") == "INDEX")
    _drop_deleted_faces(inv, out["Persons"])
    job = inv.store.get_video_job(req["JobId"])
    summary = (job.progress or {}).get("search") if job is not None else None
    if summary:  # the x-faceledger-* headers: threshold used, expected false matches summed over persons
        inv.meta.update(ThresholdUsed=summary["ThresholdUsed"], ExpectedFalseMatches=summary["ExpectedFalseMatches"],
                        Persons=summary["Persons"])
    return out


def _drop_deleted_faces(inv: Invocation, persons: list[dict[str, Any]]) -> None:
    """Remove from the FaceMatches of ``persons`` the faces deleted since the job ran (DeleteFaces, `faceledger
    erase`, a retention sweep): the results are kept for days, an erased person must not stay in them. A person
    left without a match keeps its observations, as an unmatched person. (The ledger keeps its record.)"""
    ids = {m["Face"]["FaceId"] for p in persons for m in p.get("FaceMatches", [])}
    if not ids:
        return
    kept = set(inv.store.existing_face_ids(sorted(ids)))
    if kept == ids:
        return
    for p in persons:
        if "FaceMatches" in p:
            p["FaceMatches"] = [m for m in p["FaceMatches"] if m["Face"]["FaceId"] in kept]
            if not p["FaceMatches"]:
                del p["FaceMatches"]


@operation("StartSegmentDetection")
def start_segment_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    if not req.get("SegmentTypes"):
        raise InvalidParameterException("SegmentTypes must name at least one of SHOT, TECHNICAL_CUE")
    return _start(inv, req, "SegmentDetection")


@operation("GetSegmentDetection")
def get_segment_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    out = _get(inv, req, "SegmentDetection", "Segments")
    job = inv.store.get_video_job(req["JobId"])
    types = job.request.get("SegmentTypes") or ["SHOT", "TECHNICAL_CUE"]
    out["SelectedSegmentTypes"] = [{"Type": t, "ModelVersion": SHOT_MODEL if t == "SHOT" else CUE_MODEL}
                                   for t in types]
    if "VideoMetadata" in out:  # a list here (one entry a video stream), a structure in the other Get* results
        out["VideoMetadata"] = [out["VideoMetadata"]]
    out["AudioMetadata"] = []
    return out


# -- label, moderation and text jobs: the image models on sampled frames (service/video_jobs.py's _analysis) --


@operation("StartLabelDetection")
def start_label_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """DetectLabels' classifier and detector on one frame a second (MinConfidence default 50, as Rekognition
    Video; Settings.GeneralLabels filters as DetectLabels)."""
    for feature in req.get("Features") or []:
        if feature != "GENERAL_LABELS":
            raise InvalidParameterException(f"Features: {feature} is not a feature of label detection in video")
    return _start(inv, req, "LabelDetection")


def _labels_get(inv: Invocation, req: dict[str, Any], api: str, member: str, version: str) -> dict[str, Any]:
    aggregate = req.get("AggregateBy", "TIMESTAMPS")
    sort = req.get("SortBy", "TIMESTAMP")
    out = _get(inv, req, api, member, by_index=sort == "NAME", segments=aggregate == "SEGMENTS")
    job = inv.store.get_video_job(req["JobId"])
    model = (job.progress or {}).get("model_version") if job is not None else None
    if model:
        out[version] = model
    out["GetRequestMetadata"] = {"SortBy": sort, "AggregateBy": aggregate}
    return out


@operation("GetLabelDetection")
def get_label_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """Labels per sampled frame (AggregateBy TIMESTAMPS, the default) or per continuous appearance
    (SEGMENTS: StartTimestampMillis, EndTimestampMillis, DurationMillis), sorted by TIMESTAMP (default) or
    NAME; see faceledger.video.appearances."""
    return _labels_get(inv, req, "LabelDetection", "Labels", "LabelModelVersion")


@operation("StartContentModeration")
def start_content_moderation(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """DetectModerationLabels' model on one frame a second (MinConfidence default 50)."""
    return _start(inv, req, "ContentModeration")


@operation("GetContentModeration")
def get_content_moderation(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """As GetLabelDetection, with ModerationLabels; the categories no model here detects in
    x-faceledger-undetectable-categories, as DetectModerationLabels."""
    from .analysis import UNDETECTABLE_CATEGORIES

    out = _labels_get(inv, req, "ContentModeration", "ModerationLabels", "ModerationModelVersion")
    inv.meta["Undetectable"] = ", ".join(UNDETECTABLE_CATEGORIES)
    return out


@operation("StartTextDetection")
def start_text_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """DetectText's reader on one frame a second; Filters (WordFilter, RegionsOfInterest) as DetectText's."""
    from .analysis import region_polygons

    region_polygons((req.get("Filters") or {}).get("RegionsOfInterest") or [])  # bad regions refused now
    return _start(inv, req, "TextDetection")


@operation("GetTextDetection")
def get_text_detection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    """TextDetections of each sampled frame (Timestamp, TextDetection with that frame's Ids), in time order."""
    out = _get(inv, req, "TextDetection", "TextDetections")
    job = inv.store.get_video_job(req["JobId"])
    model = (job.progress or {}).get("model_version") if job is not None else None
    if model:
        out["TextModelVersion"] = model
    return out
