"""Stored-video jobs: the workers that run them in the server process, and what each kind of job computes.

A Start* call stores a job (``store.video_jobs``) and wakes the runner; ``config.video_workers`` worker
threads claim jobs in order and run them; a heartbeat renews their leases. Work is saved at checkpoints
(every shot cut for face search, at most every CHECKPOINT_MS of video for every job) so that a server
restart resumes an unfinished job from its last checkpoint, not from zero. A job whose worker died (the
server was SIGKILLed) is claimed again at once by the next server on the same host (its process is gone),
or when its lease runs out (LEASE_S) elsewhere; after MAX_ATTEMPTS claims it is FAILED, never left
IN_PROGRESS forever.

When a job ends, its results replace its saved work, a ledger entry records the outcome (persons found,
matches with Similarity, threshold used, expected false matches), and the NotificationChannel's webhook
(``serve --notify ARN=URL``) gets Rekognition's completion message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..store.video_jobs import VideoJob
from ..video import BlackFrames, FacePass, ShotDetector, Tracklet, VideoError, frames, merge_tracklets, probe, smpte
from ..video.decode import changed, first_frame_pts
from ..vision.face_quality import CALIBRATED
from .context import RequestContext
from .errors import RekognitionError
from .ledger import build_entry

log = logging.getLogger("faceledger.video")

#: Seconds a worker's claim on a job lasts without renewal (the heartbeat renews it every LEASE_S / 4).
LEASE_S = 60.0
#: Claims of one job at most (each start of a worker on it counts): past it the job is FAILED.
MAX_ATTEMPTS = 3
#: Work is saved at least every this many milliseconds of video (and at every shot cut for face jobs).
CHECKPOINT_MS = 10_000
#: Faces of each person used as search probes (its best ones by quality).
SEARCH_PROBES = 3
#: Face jobs analyse frames scaled down to at most this many pixels on their longer side (1080p stays whole).
FACE_FRAME_SIDE = 1920
#: The APIs, as Rekognition's completion message names them.
API_NAMES = {"FaceDetection": "FACE_DETECTION", "FaceSearch": "FACE_SEARCH", "SegmentDetection": "SEGMENT_DETECTION",
             "LabelDetection": "LABEL_DETECTION", "ContentModeration": "CONTENT_MODERATION",
             "TextDetection": "TEXT_DETECTION"}
#: Label, moderation and text jobs analyse this many frames per second when the server's config does not say
#: (``video_analysis_fps``): the image models cost about 0.1-0.4 s of CPU a frame (bench/video.py), so 1/s
#: keeps a label job near real time on one core; a label, moderation verdict or line of text is given at
#: 1-second resolution.
ANALYSIS_FPS = 1.0
#: Label, moderation and text jobs analyse frames scaled down to at most this many pixels on their longer side
#: (the classifiers take 224 px, NanoDet 416 px; text keeps 1280 px for small print).
ANALYSIS_SIDE = {"LabelDetection": 640, "ContentModeration": 640, "TextDetection": 1280}
#: Rekognition Video's limit on a stored video's duration ("the maximum duration for a stored video is 6 hours"):
#: checked at Start on the header and, since a header can understate it, on every decoded frame.
MAX_VIDEO_MS = 6 * 3600 * 1000
#: Segment detection analyses every frame of a video up to this rate: a frame less than 90 % of its period (15 ms)
#: after the last one analysed is decoded, not analysed, so at most about 67 frames a second of any video are (a
#: container stating 1,000 fps of 16x16 frames, 20 bytes a frame, cost 1.5 ms of CPU and 2 KB of memory a frame).
MAX_SEGMENT_FPS = 60
#: A segment detection job ends FAILED past this many segments (a real 6-hour video has a few thousand; a video
#: that alternates black and other frames has one cue every two frames), keeping the first ones.
MAX_SEGMENTS = 50_000
#: The gap (ms) under which a frame is not fed to a shot or black-frame detector (MAX_SEGMENT_FPS).
MIN_SEGMENT_GAP_MS = 0.9 * 1000.0 / MAX_SEGMENT_FPS
SHOT_MODEL = "pyscenedetect-content-0.7"
CUE_MODEL = "faceledger-blackframe-1"


class _Stopped(Exception):
    """The runner is stopping: the job is left as saved, for the next worker."""


class _Lost(Exception):
    """Another worker owns the job now (this one's lease ran out)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class VideoJobRunner:
    """The worker threads of one service (started by :meth:`start`, or by the first job)."""

    def __init__(self, service) -> None:
        self.service = service
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.running: set[str] = set()
        # job id -> (frames analysed, ms of video reached): what Get* says while a job runs here
        self.live: dict[str, tuple[int, int]] = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (once): unfinished jobs of a previous server are resumed at once."""
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            n = max(1, int(self.service.config.video_workers))
            for i in range(n):
                t = threading.Thread(target=self._work, name=f"faceledger-video-{i}", daemon=True)
                t.start()
                self._threads.append(t)
            t = threading.Thread(target=self._heartbeat, name="faceledger-video-lease", daemon=True)
            t.start()
            self._threads.append(t)
        self._wake.set()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a job being run stays IN_PROGRESS with its saved work, resumed by the next start."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def dead(self, owner: str) -> bool:
        """Whether the worker ``owner`` (host:pid:tag) is certainly gone: a process of this host that has
        exited, or an earlier runner of this process."""
        try:
            host, pid, tag = owner.rsplit(":", 2)
            pid_n = int(pid)
        except ValueError:
            return True
        if host != socket.gethostname():
            return False
        if pid_n == os.getpid():
            return owner != self.owner
        return not _pid_alive(pid_n)

    def _heartbeat(self) -> None:
        last_sweep = 0.0
        while not self._stop.wait(LEASE_S / 4):
            try:
                now = time.time()
                self.service.store.renew_video_leases(self.owner, sorted(self.running), now + LEASE_S)
                if now - last_sweep > 3600:
                    last_sweep = now
                    gone = self.service.store.delete_expired_video_jobs(now)
                    if gone:
                        log.info("deleted %d video jobs past their retention", gone)
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.exception("video job heartbeat failed")

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job, failed = self.service.store.claim_video_job(self.owner, time.time(), LEASE_S, MAX_ATTEMPTS,
                                                                 self.dead)
            except Exception:  # noqa: BLE001 - storage trouble: wait and retry
                log.exception("could not claim a video job")
                self._stop.wait(5)
                continue
            for f in failed:
                self._ended(f, None)
            if job is None:
                self._wake.wait(5)
                self._wake.clear()
                continue
            self.running.add(job.job_id)
            try:
                run_job(self, job)
            except _Stopped:
                log.info("video job %s left for the next start at its last checkpoint", job.job_id)
            except _Lost:
                log.warning("video job %s was taken over by another worker", job.job_id)
            except Exception as exc:  # noqa: BLE001 - a bug or a storage failure: the job fails, the worker lives
                log.exception("video job %s failed", job.job_id)
                try:
                    self.finish(job, "FAILED", f"Internal error while analysing the video ({type(exc).__name__})",
                                [])
                except Exception:  # noqa: BLE001 - its lease runs out and the job is claimed again (MAX_ATTEMPTS)
                    log.exception("could not mark video job %s FAILED", job.job_id)
            finally:
                self.running.discard(job.job_id)
                self.live.pop(job.job_id, None)

    def check(self) -> None:
        if self._stop.is_set():
            raise _Stopped()

    # -- saving and ending ----------------------------------------------------------

    def save(self, job: VideoJob, progress: dict, items: list, metadata: dict | None = None) -> None:
        if not self.service.store.save_video_checkpoint(job.job_id, self.owner, progress, time.time(), items,
                                                        metadata):
            raise _Lost()
        job.progress = progress

    def finish(self, job: VideoJob, status: str, message: str | None, results: list, *,
               metadata: dict | None = None, progress: dict | None = None, outcome: dict | None = None) -> None:
        now = time.time()
        expires = now + float(self.service.config.video_retention_days) * 86400
        if not self.service.store.finish_video_job(job.job_id, self.owner, status, message, now, expires, results,
                                                   metadata, progress):
            raise _Lost()
        job.status, job.status_message = status, message
        self._ended(job, outcome)

    def _ended(self, job: VideoJob, outcome: dict | None) -> None:
        """The end-of-job ledger entry and notification."""
        ctx = job.request.get("_context", {})
        context = RequestContext(transport="video-job", principal=job.principal, purpose=ctx.get("purpose"),
                                 case_reference=ctx.get("case"), source_ip=ctx.get("source"))
        response = {"JobId": job.job_id, **(outcome or {}).get("response", {})}
        notes = [f"JobId {job.job_id}", f"JobStatus {job.status}", f"Video SHA-256 {job.video_sha256}"]
        meta = dict((outcome or {}).get("meta", {}))
        try:
            entry = build_entry(when=datetime.now(timezone.utc), operation=f"Start{job.api}", context=context,
                                request={k: v for k, v in job.request.items() if not k.startswith("_")},
                                response=response, result=f"JOB_{job.status}", message=job.status_message,
                                notes=notes, meta=meta)
            self.service.store.append_ledger(entry)
        except Exception:  # noqa: BLE001
            log.exception("could not record the end of video job %s in the ledger", job.job_id)
        channel = job.request.get("NotificationChannel")
        if channel:
            url = dict(self.service.config.video_notify).get(channel.get("SNSTopicArn"))
            if url:
                message = {"JobId": job.job_id, "Status": job.status, "API": API_NAMES.get(job.api, job.api),
                           "JobTag": job.job_tag or "", "Message": job.status_message or "",
                           "Timestamp": int(time.time() * 1000),
                           "Video": {"S3ObjectName": job.video.get("Name"), "S3Bucket": job.video.get("Bucket")}}
                threading.Thread(target=_notify, args=(url, message), daemon=True,
                                 name="faceledger-video-notify").start()


def _notify(url: str, message: dict) -> None:
    """POST Rekognition's completion message (as JSON) to the webhook; three tries, then a log line (the URL in it
    without its password)."""
    import httpx

    from ..streams.source import redact

    shown = redact(url)
    for attempt in range(3):
        try:
            r = httpx.post(url, json=message, timeout=10, follow_redirects=False)  # a 3xx is a failure
            if r.status_code < 300:
                return
            log.warning("notification of job %s: %s answered %d", message["JobId"], shown, r.status_code)
        except httpx.HTTPError as exc:
            log.warning("notification of job %s to %s failed: %s", message["JobId"], shown, redact(str(exc)))
        time.sleep(1 + 2 * attempt)


# ---------------------------------------------------------------------------------------------- jobs


def video_path(service, job: VideoJob) -> Path:
    from .images import s3_object_path

    path, _ = s3_object_path(job.video, service.config)
    return path


def run_job(runner: VideoJobRunner, job: VideoJob) -> None:
    """Run (or resume) one job to its end."""
    service = runner.service
    try:
        path = video_path(service, job)
        st = path.stat()
    except (RekognitionError, OSError) as exc:
        message = exc.message if isinstance(exc, RekognitionError) else str(exc)
        runner.finish(job, "FAILED", f"The video can no longer be read: {message}", [])
        return
    if changed((job.progress or {}).get("file"), st):
        runner.finish(job, "FAILED", "The video was changed or replaced after the job started; start a new job", [])
        return
    try:
        info = probe(path, _limits(service)["max_pixels"])
    except VideoError as exc:
        runner.finish(job, "FAILED", f"The video cannot be analysed: {exc.message}", [])
        return
    limit = int(service.config.max_image_pixels)
    if info.width * info.height > limit:  # each decoded frame would cost memory in proportion to its size
        runner.finish(job, "FAILED", f"The video's frames are {info.width}x{info.height} pixels, over the "
                      f"{limit / 1e6:g} megapixel limit of this server's images", [], metadata=info.metadata())
        return
    progress = dict(job.progress or {})
    progress.setdefault("attempts", []).append({"from_ms": int(progress.get("resume_ms", 0)), "frames": 0})
    runner.save(job, progress, [], info.metadata())  # VideoMetadata as soon as the job runs
    kind = {"FaceDetection": _faces, "FaceSearch": _faces, "SegmentDetection": _segments,
            "LabelDetection": _analysis, "ContentModeration": _analysis, "TextDetection": _analysis}[job.api]
    kind(runner, job, path, info, progress)


def _limits(service, job: VideoJob | None = None) -> dict[str, Any]:
    """The limits every decoded frame of a job is held to (video.frames' ``max_pixels`` and ``max_ms``), and the
    file it was started on (``expect``: its size and modification time at Start; one that grows or is rewritten
    while the job reads it fails the job, which must not report frames other than those hashed)."""
    expect = ((job.progress or {}).get("file") or None) if job is not None else None
    return {"max_pixels": int(service.config.max_image_pixels), "max_ms": MAX_VIDEO_MS, "expect": expect}


def _sample_ms(service) -> float:
    return 1000.0 / max(0.01, float(service.config.video_sample_fps))


def _faces(runner: VideoJobRunner, job: VideoJob, path: Path, info, progress: dict) -> None:
    """FaceDetection and FaceSearch: detect in sampled frames, track (reset at cuts), save at checkpoints."""
    from .operations._common import face_details

    service = runner.service
    search = job.api == "FaceSearch"
    if search:
        collection = service.store.get_collection(job.collection_id)
        if collection is None:
            runner.finish(job, "FAILED", f"The collection {job.collection_id} was deleted while the job ran", [])
            return
        engine = service.engine_for(collection.face_model_version)
    else:
        engine = service.engine
    every = _sample_ms(service)
    attributes = None if search else [job.request.get("FaceAttributes", "DEFAULT")]
    resume = int(progress.get("resume_ms", 0))
    fp = FacePass(engine, 1000.0 / every, embed=search, first_track=int(progress.get("next_track", 0)))
    shots = ShotDetector(info.frame_rate) if search else None
    items: list = []
    last_saved = resume
    slot = int(progress.get("slot", -1))
    first_pts = first_frame_pts(path, _limits(service)["max_pixels"])
    error: VideoError | None = None
    last_ms = resume - 1
    shot_ms: int | None = None  # the last frame fed to the shot detector

    def close(at_ms: int) -> None:
        nonlocal items, last_saved
        for t in fp.cut():
            items.append(("track", {"track": t.track, "first_ms": t.first_ms, "last_ms": t.last_ms,
                                    "count": t.count}, None))
            for q, v, b in t.faces:
                items.append(("tface", {"track": t.track, "quality": q, "band": b},
                              np.asarray(v, np.float32).tobytes()))
        progress.update(resume_ms=at_ms, next_track=fp.next_track, slot=slot, frames=progress.get("frames", 0))
        runner.save(job, progress, items, info.metadata())
        items, last_saved = [], at_ms

    try:
        for frame in frames(path, start_ms=resume, first_pts=first_pts, every_ms=None if search else every,
                            **_limits(service, job),
                            max_side=FACE_FRAME_SIDE):
            runner.check()
            ms = last_ms = frame.timestamp_ms
            # the shot detector sees frames at MAX_SEGMENT_FPS at most, as segment detection's does
            fed = shots is not None and (shot_ms is None or ms - shot_ms >= MIN_SEGMENT_GAP_MS)
            cut = shots.feed(frame.index, frame) if fed else None
            shot_ms = ms if fed else shot_ms
            if cut is not None or ms - last_saved >= CHECKPOINT_MS:
                close(ms)  # the frame at ms is not analysed yet: a resume starts with it
            s = int(ms // every)
            if s == slot:
                continue
            slot = s
            sightings = fp.frame(frame)
            # the FaceDetail of DetectFaces, by the same function: Gender and Smile with FaceAttributes ALL (FaceDetection
            # only: FaceSearch's PersonDetail has no attributes), where the face clears the measured bars
            detail = face_details(frame.image, [s.face for s in sightings], frame.image.shape[1],
                                  frame.image.shape[0], attributes)
            for sighting in sightings:
                items.append(("obs", {"t": ms, "track": sighting.track, "face": detail(sighting.face)}, None))
            progress["frames"] = progress.get("frames", 0) + 1
            progress["attempts"][-1]["frames"] += 1
            runner.live[job.job_id] = (progress["frames"], ms)
    except VideoError as exc:
        error = exc
    close(last_ms + 1)  # past the last frame seen: a job killed before it is finished does not redo any frame
    observations = [body for body, _ in service.store.video_job_items(job.job_id, "obs")]
    message = None if error is None else _damage(error, "results")
    status = "FAILED" if error is not None else "SUCCEEDED"
    if not search:
        results = [(i, i, {"Timestamp": o["t"], "Face": o["face"]}) for i, o in enumerate(observations)]
        outcome = {"meta": {"Faces": len(results), "FramesAnalysed": progress.get("frames", 0)}}
        runner.finish(job, status, message, results, progress=progress, outcome=outcome)
        return
    _finish_search(runner, job, progress, observations, status, message)


def _tracklets(service, job: VideoJob) -> list[Tracklet]:
    tracks = {b["track"]: Tracklet(b["track"], b["first_ms"], b["last_ms"], b["count"])
              for b, _ in service.store.video_job_items(job.job_id, "track")}
    for body, vector in service.store.video_job_items(job.job_id, "tface"):
        t = tracks.get(body["track"])
        if t is not None and vector is not None:
            # a checkpoint saved before bands were kept: as if inside the range (as a stored face without one)
            t.faces.append((float(body["quality"]), np.frombuffer(vector, dtype=np.float32).copy(),
                            body.get("band") or CALIBRATED))
    for t in tracks.values():
        t.faces.sort(key=lambda qv: -qv[0])
    return list(tracks.values())


def band_similarity(service, face_model: str) -> Callable[[np.ndarray, str], np.ndarray]:
    """``similarity(distances, pair_band)`` for tracklet merging (video.track.merge_tracklets): ``face_model``'s
    Similarity of embedding distances on the table of the pair's quality band (Service.band_scale_for, its
    fallback, or the main table where the model has none), as search scores a pair."""
    main = service.scale_for(face_model)

    def similarity(distances: np.ndarray, pair_band: str) -> np.ndarray:
        scale = None if pair_band == CALIBRATED else service.band_scale_for(face_model, pair_band)
        return (scale or main).similarity(distances)

    return similarity


def _finish_search(runner: VideoJobRunner, job: VideoJob, progress: dict, observations: list, status: str,
                   message: str | None) -> None:
    """Merge tracklets into persons, search each person once with its best faces, write the results."""
    from .dispatch import Invocation
    from .operations.search import DEFAULT_THRESHOLD, face_matches
    from .risk import search_threshold

    service = runner.service
    collection = service.store.get_collection(job.collection_id)
    if collection is None:
        runner.finish(job, "FAILED", f"The collection {job.collection_id} was deleted while the job ran", [])
        return
    ctx = job.request.get("_context", {})
    context = RequestContext(transport="video-job", principal=job.principal, purpose=ctx.get("purpose"),
                             case_reference=ctx.get("case"),
                             max_expected_false_matches=ctx.get("max_expected_false_matches"),
                             min_margin=ctx.get("min_margin"))
    base = Invocation(service, context, {}).for_model(collection.face_model_version)
    tracklets = _tracklets(service, job)
    persons = merge_tracklets(tracklets, band_similarity(service, collection.face_model_version))
    requested = float(job.request.get("FaceMatchThreshold", DEFAULT_THRESHOLD))
    max_faces = int(job.request.get("MaxFaces", 80))
    index_of: dict[int, int] = {}
    matches_of: dict[int, list] = {}
    per_person = []
    total_expected = 0.0
    used_max = requested
    for index, group in enumerate(persons):
        for t in group:
            index_of[t.track] = index
        probes = sorted((qv for t in group for qv in t.faces), key=lambda qv: -qv[0])[:SEARCH_PROBES]
        if not probes:
            matches_of[index] = []
            continue
        sized = dataclasses.replace(base, meta={})
        threshold = search_threshold(sized, requested, collection.face_count, probes=len(probes))
        best: dict[str, dict] = {}
        ambiguous = False
        for _, vector, probe_band in probes:  # each pair scored with its quality band's table
            inv = dataclasses.replace(base, meta={})
            found = face_matches(inv, collection.collection_id, vector,
                                 {"FaceMatchThreshold": threshold, "MaxFaces": max_faces},
                                 face_count=collection.face_count, probe_band=probe_band)
            ambiguous = ambiguous or bool(inv.meta.get("Ambiguous"))
            for m in found:
                fid = m["Face"]["FaceId"]
                if fid not in best or m["Similarity"] > best[fid]["Similarity"]:
                    best[fid] = m
        matches = [] if ambiguous else sorted(best.values(), key=lambda m: -m["Similarity"])
        matches_of[index] = matches
        expected = float(sized.meta.get("ExpectedFalseMatches", 0.0))
        total_expected += expected
        used_max = max(used_max, threshold)
        per_person.append({"Index": index, "ThresholdUsed": round(threshold, 4), "Probes": len(probes),
                           "ExpectedFalseMatches": expected, "Ambiguous": ambiguous,
                           "Matches": [{"FaceId": m["Face"]["FaceId"], "Similarity": round(m["Similarity"], 4)}
                                       for m in matches]})
    rows = []
    for o in observations:
        index = index_of.get(o["track"])
        if index is None:
            continue
        body: dict[str, Any] = {"Timestamp": o["t"], "Person": {"Index": index, "BoundingBox": o["face"]["BoundingBox"],
                                                                "Face": o["face"]}}
        if matches_of.get(index):
            body["FaceMatches"] = matches_of[index]
        rows.append(body)
    by_time = sorted(range(len(rows)), key=lambda i: (rows[i]["Timestamp"], rows[i]["Person"]["Index"]))
    by_index = sorted(range(len(rows)), key=lambda i: (rows[i]["Person"]["Index"], rows[i]["Timestamp"]))
    index_pos = {i: p for p, i in enumerate(by_index)}
    results = [(p, index_pos[i], rows[i]) for p, i in enumerate(by_time)]
    summary = {"Persons": len(persons), "ThresholdUsed": round(used_max, 4), "ExpectedFalseMatches": total_expected,
               "Tracklets": len(tracklets), "PerPerson": per_person}
    progress["search"] = summary
    outcome = {"meta": {**summary, "FramesAnalysed": progress.get("frames", 0)},
               "response": {"Persons": [{"Index": p["Index"], "FaceMatches": [
                   {"Similarity": m["Similarity"], "Face": {"FaceId": m["FaceId"]}} for m in p["Matches"]]}
                   for p in per_person if p["Matches"]]}}
    runner.finish(job, status, message, results, progress=progress, outcome=outcome)


def _segments(runner: VideoJobRunner, job: VideoJob, path: Path, info, progress: dict) -> None:
    """SegmentDetection: shots and black frames over every frame (scaled down; at most MAX_SEGMENT_FPS a second),
    saved at checkpoints; at most MAX_SEGMENTS segments."""
    types = job.request.get("SegmentTypes") or ["SHOT", "TECHNICAL_CUE"]
    filters = job.request.get("Filters") or {}
    cue_filter = filters.get("TechnicalCueFilter") or {}
    black = cue_filter.get("BlackFrame") or {}
    fps = info.frame_rate or 25.0
    frame_ms = 1000.0 / fps
    shots = ShotDetector(fps)
    blacks = BlackFrames(float(black.get("MaxPixelThreshold", 0.2)), float(black.get("MinCoveragePercentage", 99.0)))
    resume = int(progress.get("resume_ms", 0))
    state = progress.setdefault("shot", None)  # [first index, first ms, confidence, shot index]
    if progress.get("black"):
        blacks.run = list(progress["black"])
    items: list = []
    last_saved = resume
    last = progress.get("last")  # [index, ms] of the last frame analysed
    error: VideoError | None = None
    min_gap_ms = MIN_SEGMENT_GAP_MS

    def segment(kind: str, first: int, last_i: int, start_ms: float, end_ms: float, confidence: float,
                index: int | None = None) -> dict:
        body: dict[str, Any] = {
            "Type": kind, "StartTimestampMillis": int(round(start_ms)), "EndTimestampMillis": int(round(end_ms)),
            "DurationMillis": max(0, int(round(end_ms - start_ms))), "StartTimecodeSMPTE": smpte(first, fps),
            "EndTimecodeSMPTE": smpte(last_i + 1, fps), "DurationSMPTE": smpte(last_i + 1 - first, fps),
            "StartFrameNumber": first, "EndFrameNumber": last_i, "DurationFrames": last_i - first + 1}
        if kind == "SHOT":
            body["ShotSegment"] = {"Index": index, "Confidence": round(confidence, 3)}
        else:
            body["TechnicalCueSegment"] = {"Type": "BlackFrames", "Confidence": round(confidence, 3)}
        return body

    def close_black(run) -> None:
        if run and "TECHNICAL_CUE" in types:
            first, last_i, a, b = run
            conf = 100.0
            if conf >= float(cue_filter.get("MinSegmentConfidence", 50)):
                items.append(("seg", segment("TECHNICAL_CUE", first, last_i, a, b + frame_ms, conf), None))

    try:
        for frame in frames(path, start_ms=resume, max_side=320, **_limits(runner.service, job)):
            runner.check()
            if last is not None and frame.timestamp_ms - last[1] < min_gap_ms:
                continue
            if progress.get("segments", 0) + len(items) >= MAX_SEGMENTS:
                error = VideoError(f"the video has more than {MAX_SEGMENTS} segments, the most one job reports "
                                   f"(frame {frame.index}, {frame.timestamp_ms} ms)")
                break
            if last is not None and frame.timestamp_ms - last_saved >= CHECKPOINT_MS:
                progress.update(resume_ms=frame.timestamp_ms, shot=state, black=blacks.run or None, last=last,
                                segments=progress.get("segments", 0) + len(items))
                runner.save(job, progress, items, info.metadata())
                items, last_saved = [], frame.timestamp_ms
            cut = shots.feed(frame.index, frame) if "SHOT" in types else None
            if state is None:
                state = [frame.index, frame.timestamp_ms, 100.0, 0]
            elif cut is not None:
                _shot(items, segment, state, last, frame_ms, filters)
                state = [frame.index, frame.timestamp_ms, shots.confidence(), state[3] + 1]
            close_black(blacks.feed(frame.index, frame.timestamp_ms, frame.image))
            last = [frame.index, frame.timestamp_ms]
            progress["frames"] = progress.get("frames", 0) + 1
            progress["attempts"][-1]["frames"] += 1
            runner.live[job.job_id] = (progress["frames"], frame.timestamp_ms)
    except VideoError as exc:
        error = exc
    if last is not None:
        if "SHOT" in types and state is not None:
            _shot(items, segment, state, last, frame_ms, filters)
        close_black(blacks.close())
    progress.update(shot=None, black=None, last=last, segments=progress.get("segments", 0) + len(items))
    runner.save(job, progress, items, info.metadata())
    segs = [body for body, _ in runner.service.store.video_job_items(job.job_id, "seg")]
    segs.sort(key=lambda s: (s["StartTimestampMillis"], s["Type"]))
    results = [(i, i, s) for i, s in enumerate(segs)]
    message = None if error is None else _damage(error, "segments")
    runner.finish(job, "FAILED" if error else "SUCCEEDED", message, results, progress=progress,
                  outcome={"meta": {"Segments": len(results), "FramesAnalysed": progress.get("frames", 0)}})


def _frame_analyser(api: str, request: dict) -> tuple[Any, str]:
    """(pixels -> what one sampled frame gives, the model version) for a label, moderation or text job."""
    from .operations import analysis as ops

    if api == "LabelDetection":
        min_confidence = float(request.get("MinConfidence", 50.0))
        general = (request.get("Settings") or {}).get("GeneralLabels") or {}

        def labels(pixels):
            found, _ = ops.general_labels(pixels, min_confidence, False, 0)
            return ops.filter_labels(found, general)

        return labels, f"{ops.label_classifier().model_version} + {ops.object_detector().model_version}"
    if api == "ContentModeration":
        min_confidence = float(request.get("MinConfidence", 50.0))
        return (lambda pixels: ops.moderation_labels(pixels, min_confidence)), ops.nsfw_classifier().model_version
    filters = request.get("Filters") or {}
    return (lambda pixels: ops.text_detections(pixels, filters)), ops.text_reader().model_version


def _analysis(runner: VideoJobRunner, job: VideoJob, path: Path, info, progress: dict) -> None:
    """LabelDetection, ContentModeration, TextDetection: the image model on one frame per sampling slot
    (``video_analysis_fps``, default ANALYSIS_FPS), each frame's findings saved as a work item at checkpoints."""
    from ..video.appearances import appearance_rows

    service = runner.service
    every = 1000.0 / max(0.01, float(getattr(service.config, "video_analysis_fps", ANALYSIS_FPS)))
    try:
        analyse, version = _frame_analyser(job.api, job.request)
    except RekognitionError as exc:  # a model package missing or altered: say what to install
        runner.finish(job, "FAILED", f"The {job.api} model cannot be loaded: {exc.message}", [])
        return
    resume = int(progress.get("resume_ms", 0))
    slot = int(progress.get("slot", -1))
    items: list = []
    last_saved = resume
    last_ms = resume - 1
    error: VideoError | None = None
    try:
        first_pts = first_frame_pts(path, _limits(service)["max_pixels"])
        for frame in frames(path, start_ms=resume, first_pts=first_pts, every_ms=every, **_limits(service, job),
                            max_side=ANALYSIS_SIDE[job.api]):
            runner.check()
            ms = last_ms = frame.timestamp_ms
            if ms - last_saved >= CHECKPOINT_MS:
                progress.update(resume_ms=ms, slot=slot)
                runner.save(job, progress, items, info.metadata())
                items, last_saved = [], ms
            s = int(ms // every)
            if s == slot:
                continue
            slot = s
            items.append(("afr", {"t": ms, "found": analyse(frame.image)}, None))
            progress["frames"] = progress.get("frames", 0) + 1
            progress["attempts"][-1]["frames"] += 1
            runner.live[job.job_id] = (progress["frames"], ms)
    except VideoError as exc:
        error = exc
    progress.update(resume_ms=last_ms + 1, slot=slot, model_version=version)
    runner.save(job, progress, items, info.metadata())
    analysed = [body for body, _ in service.store.video_job_items(job.job_id, "afr")]
    if job.api == "TextDetection":
        results = [(i, i, row) for i, row in enumerate(
            {"Timestamp": f["t"], "TextDetection": d} for f in analysed for d in f["found"])]
        meta = {"TextDetections": len(results),
                "Lines": sorted({d["DetectedText"] for f in analysed for d in f["found"] if d["Type"] == "LINE"})[:100]}
    else:
        member = "Label" if job.api == "LabelDetection" else "ModerationLabel"
        results = appearance_rows(analysed, member, int(info.duration_ms))
        if member == "ModerationLabel":
            for _, _, row in results:
                row["ContentTypes"] = []
        meta = {"Labels": sorted({label["Name"] for f in analysed for label in f["found"]})}
    status = "FAILED" if error else "SUCCEEDED"
    message = None if error is None else _damage(error, "results")
    runner.finish(job, status, message, results, progress=progress,
                  outcome={"meta": {**meta, "FramesAnalysed": progress.get("frames", 0), "ModelVersion": version}})


def _damage(error: VideoError, what: str) -> str:
    """A FAILED job's StatusMessage for a video damaged after some frames."""
    text = error.message[:1].upper() + error.message[1:]
    return f"{text}; the {what} cover the frames decoded before it"


def _shot(items, segment, state, last, frame_ms, filters) -> None:
    first, start_ms, confidence, index = state
    if confidence >= float((filters.get("ShotFilter") or {}).get("MinSegmentConfidence", 50)):
        items.append(("seg", segment("SHOT", first, last[0], start_ms, last[1] + frame_ms, confidence, index), None))


def job_json(value: Any) -> Any:
    """A request value as the job table keeps it (bytes never occur in a video request)."""
    return json.loads(json.dumps(value, default=str))
