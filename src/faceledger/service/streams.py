"""Running stream processors inside the server: the glue between :mod:`faceledger.streams` (threads, sources,
records, sinks) and the service (collections, the search policy, the ledger).

Processors run in the process that hosts the HTTP server (:func:`host`, called by the server at start-up, which
also resumes every processor left RUNNING by the previous run, killed or not). A process that does not host
(the CLI on a local data folder) records StartStreamProcessor as wanted (Status STARTING, "waiting for a
server") and the next server on that data folder runs it.

Each analysed frame: faces detected by the collection's face model (:class:`faceledger.vision.FaceEngine`),
each searched through the same search policy as SearchFacesByImage
(:func:`faceledger.service.operations.search.face_matches`: size-aware threshold, margin rule, expected false
matches), every match recorded in the ledger (operation ``StreamProcessorMatch``, with the processor's creator,
purpose and case) before its record is written to the sinks.

A ConnectedHome processor (:mod:`faceledger.streams.connected_home`) runs DetectLabels' object detector on the
same newest frames instead: the first PERSON and the first PET of a session each give a LABEL_DETECTED
notification (the frame and crops written as JPEG objects of its S3 destination; a ledger entry, operation
``StreamProcessorLabelDetected``), and its end a STREAM_PROCESSING_COMPLETE one (``StreamProcessorSessionComplete``).
Notifications go to the webhook of its NotificationChannel's SNS topic (``serve --notify ARN=URL``), to the
S3 destination's JSON Lines objects and to its Kinesis data stream's sinks when it has one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..store.streams import StreamProcessorRecord, StreamTables
from ..streams.connected_home import ConnectedHomeSession
from ..streams.processor import DEFAULT_RATE_FPS, LiveProcessor, ProcessorFailed
from ..streams.records import encode_record
from ..streams.sinks import (WEBHOOK_TIMEOUT_S, JsonLinesSink, S3Sink, SinkError, WebhookSink, bucket_folder,
                             contained_file)
from ..streams.source import check_source_url
from . import shapes
from .context import RequestContext
from .errors import RekognitionError
from .ledger import build_entry

log = logging.getLogger("faceledger.streams")

#: The operation name of the ledger entry each reported match gets.
MATCH_OPERATION = "StreamProcessorMatch"
#: The ledger operations of a ConnectedHome processor's notifications.
LABEL_OPERATION = "StreamProcessorLabelDetected"
COMPLETE_OPERATION = "StreamProcessorSessionComplete"
#: Faces of one frame looked at, largest first (as DetectFaces).
MAX_FACES_PER_FRAME = 100
KINESIS_STREAM = re.compile(r"^arn:[a-z\d-]+:kinesis:[a-z\d-]+:\d{12}:stream/([a-zA-Z0-9_.\-]{1,128})\Z")
KINESIS_VIDEO_STREAM = re.compile(r"^arn:[a-z\d-]+:kinesisvideo:[a-z\d-]+:\d{12}:stream/([a-zA-Z0-9_.\-]{1,256})"
                                  r"(/[0-9]{1,20})?\Z")


def kinesis_stream_name(arn: str) -> str | None:
    """The stream name of a Kinesis data stream ARN (``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME``), or None."""
    m = KINESIS_STREAM.match(arn)
    return m.group(1) if m else None


def kinesis_video_stream_name(arn: str) -> str | None:
    """The stream name of a Kinesis video stream ARN (``...:kinesisvideo:REGION:ACCOUNT:stream/NAME[/CREATED]``):
    the name of the faceledger source it stands for; None when it is not one."""
    m = KINESIS_VIDEO_STREAM.match(arn)
    return m.group(1) if m else None


def records_file(data_dir: Path, stream_name: str) -> Path:
    """The JSON Lines file of a Kinesis data stream: ``<data>/streams/<name>.jsonl``."""
    return Path(data_dir) / "streams" / f"{stream_name}.jsonl"


#: Environment variables a server reads at start-up (docs/streams.md): analysed frames per second, the open and
#: read timeouts of sources, and the back-off between reconnections (first wait, longest wait), in seconds.
ENV_SETTINGS = {
    "FACELEDGER_STREAM_FPS": "rate_fps",
    "FACELEDGER_STREAM_OPEN_TIMEOUT": "open_timeout_s",
    "FACELEDGER_STREAM_READ_TIMEOUT": "read_timeout_s",
    "FACELEDGER_STREAM_BACKOFF": "backoff_s",
    "FACELEDGER_STREAM_MAX_BACKOFF": "max_backoff_s",
}


#: Stream processors one server (one store) holds at most, unless FACELEDGER_STREAM_MAX_PROCESSORS says otherwise:
#: each running one decodes its source all the time (a 640x360 camera takes about a core at 5 analysed frames a
#: second), so an unbounded number is a way to exhaust the machine. CreateStreamProcessor past it is
#: LimitExceededException, as Rekognition's per-account quota.
DEFAULT_MAX_PROCESSORS = 20


def max_processors(env: dict[str, str] | None = None) -> int:
    """The processor limit (FACELEDGER_STREAM_MAX_PROCESSORS, default DEFAULT_MAX_PROCESSORS); ValueError when
    the variable is not a positive whole number."""
    value = (os.environ if env is None else env).get("FACELEDGER_STREAM_MAX_PROCESSORS")
    if not value:
        return DEFAULT_MAX_PROCESSORS
    if not value.isdigit() or int(value) < 1:
        raise ValueError("FACELEDGER_STREAM_MAX_PROCESSORS must be a whole number of processors, at least 1")
    return int(value)


def settings_from_env(env: dict[str, str] | None = None) -> tuple[float, dict[str, float]]:
    """(analysed frames per second, LiveProcessor timeouts) from ENV_SETTINGS; ValueError naming a bad one."""
    env = os.environ if env is None else env
    max_processors(env)  # a bad limit stops `serve` at start, as a bad timeout does
    rate, timeouts = DEFAULT_RATE_FPS, {}
    for var, key in ENV_SETTINGS.items():
        if not env.get(var):
            continue
        try:
            value = float(env[var])
        except ValueError:
            value = float("nan")
        if not (0 < value <= 3600):
            raise ValueError(f"{var} must be a number of seconds (frames per second) above 0 and at most 3600")
        if key == "rate_fps":
            rate = value
        else:
            timeouts[key] = value
    return rate, timeouts


def _duration_left(record: StreamProcessorRecord) -> float | None:
    """Seconds left of a ConnectedHome session's MaxDurationInSeconds (None: a face search processor, which runs
    until stopped unless its StopSelector said otherwise, and is resumed without it)."""
    last = record.definition.get("LastStart")
    if "ConnectedHome" not in record.definition["Settings"] or not last:
        return None
    return float(last["MaxDurationInSeconds"]) - (time.time() - float(last["At"]))


class _Running:
    """One started processor and what it writes to."""

    def __init__(self, live: LiveProcessor, sinks: list[Any], session_id: str) -> None:
        self.live, self.sinks, self.session_id = live, sinks, session_id


class StreamRuntime:
    """The processors running in this process."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.tables = StreamTables(service.store)
        self.hosting = False
        self.running: dict[str, _Running] = {}
        self._lock = threading.RLock()
        # one lock a processor name: its launch and its halt never interleave (a halt never finds threads that are
        # registered but not started, a launch never starts what a Stop that came first has halted)
        self._controls: dict[str, threading.Lock] = {}
        self.rate_fps, self.timeouts = settings_from_env()

    # -- lifecycle ---------------------------------------------------------------------------

    def host(self) -> list[str]:
        """Run processors in this process from now on; resume those left RUNNING. Their names."""
        with self._lock:
            self.hosting = True
            resumed = []
            for name in self.tables.desired_running():
                record = self.tables.get_processor(name)
                if record is not None and name not in self.running:
                    try:
                        left = _duration_left(record)
                        if left is not None and left <= 0:  # a ConnectedHome session that ended meanwhile
                            self.tables.update_processor(name, status="STOPPED", desired="STOPPED",
                                                         status_message="stopped: its session's MaxDurationInSeconds "
                                                                        "ran out while no server ran it")
                            continue
                        self.launch(record, record.session_id or str(uuid.uuid4()), max_duration_s=left,
                                    start=(record.definition.get("LastStart") or {}).get("Request"),
                                    resumed=record.session_id is not None)
                        resumed.append(name)
                    except Exception as exc:  # a source removed since: FAILED with why, the others go on
                        log.warning("stream processor %s cannot resume: %s", name, exc)
                        self.tables.update_processor(name, status="FAILED",
                                                     status_message=f"cannot resume: {exc}", desired="STOPPED")
            return resumed

    def shutdown(self) -> None:
        """Stop every processor (the server is stopping); they stay wanted and resume at the next start."""
        with self._lock:
            names = list(self.running)
        closed: list[Any] = []
        for name in names:
            with self._lock:
                run = self.running.get(name)
            closed.extend(run.sinks if run is not None else [])
            self.halt(name, wanted=True)
        deadline = time.monotonic() + WEBHOOK_TIMEOUT_S  # webhooks' last notifications: one timeout in all
        for sink in closed:
            if isinstance(sink, WebhookSink):
                sink.finish(max(0.0, deadline - time.monotonic()))
        self.hosting = False

    def is_running(self, name: str) -> bool:
        with self._lock:
            run = self.running.get(name)
            return run is not None and run.live.alive()

    def live(self, name: str) -> LiveProcessor | None:
        with self._lock:
            run = self.running.get(name)
            return None if run is None else run.live

    # -- start and stop ----------------------------------------------------------------------

    def _control(self, name: str) -> threading.Lock:
        with self._lock:
            return self._controls.setdefault(name, threading.Lock())

    def launch_started(self, name: str, session_id: str, **options: Any) -> bool:
        """After StartStreamProcessor committed session ``session_id``: start the processor's threads if it is still
        wanted RUNNING in that session (False when a Stop, a Delete or another Start came first: nothing starts);
        the threads and sinks of an earlier run that failed are closed first. ``options``: as :meth:`launch`."""
        with self._control(name):
            record = self.tables.get_processor(name)
            if record is None or record.desired != "RUNNING" or record.session_id != session_id:
                return False
            self._halt(name)
            self._launch(record, session_id, **options)
            return True

    def launch(self, record: StreamProcessorRecord, session_id: str, max_duration_s: float | None = None,
               start: dict[str, Any] | None = None, resumed: bool = False) -> None:
        """Start ``record``'s threads (the caller has checked policy and state). ``start``: the
        StartStreamProcessor request (a ConnectedHome processor's StartSelector, and its notifications echo it).
        ``resumed``: the session ``session_id`` ran before (a server restarted): a ConnectedHome session does not
        notify again the labels it already notified."""
        with self._control(record.name):
            self._launch(record, session_id, max_duration_s, start, resumed)

    def _launch(self, record: StreamProcessorRecord, session_id: str, max_duration_s: float | None = None,
                start: dict[str, Any] | None = None, resumed: bool = False) -> None:
        d = record.definition
        source = self.tables.get_source(d["SourceName"])
        if source is None:
            raise ProcessorFailed(f"source {d['SourceName']} was removed")
        url = check_source_url(source.url)
        sinks = self._sinks(record, session_id)
        context = RequestContext(transport="stream", principal=d.get("Principal"), purpose=d.get("Purpose"),
                                 case_reference=d.get("Case"), request_id=session_id)
        name = record.name
        try:
            home = self._home_session(record, context, session_id, start or {"Name": name}, sinks, resumed) \
                if "ConnectedHome" in d["Settings"] else None
        except BaseException:
            for sink in sinks:
                sink.close()
            raise

        def on_status(status: str, message: str) -> None:
            values: dict[str, Any] = {"status": status, "status_message": message}
            live = self.live(name)
            if live is not None:
                values["stats"] = live.stats.as_dict()
            if status == "FAILED" or (status == "STOPPED" and live is not None and live.ran_out):
                values["desired"] = "STOPPED"  # FAILED is not retried, nor resumed; a StopSelector's stop is final
            self.tables.update_processor(name, **values)
            if home is not None and status in ("STOPPED", "FAILED"):
                self._complete(record, context, home, sinks, message)

        live = LiveProcessor(
            name, url, stream_arn=d["Input"]["KinesisVideoStream"]["Arn"],
            analyse=None if home else (lambda pixels: self._analyse(record, context, session_id, pixels)),
            handle=home.frame if home else None,
            emit=lambda r: _write(sinks, encode_record(r)), on_status=on_status,
            rate_fps=self.rate_fps, max_duration_s=max_duration_s,
            max_source_pixels=int(self.service.config.max_image_pixels),
            fragment_base=int(time.time()) * 1_000_000, **self.timeouts)
        with self._lock:
            self.running[name] = _Running(live, sinks, session_id)
        live.start()

    def halt(self, name: str, *, wanted: bool = False) -> dict[str, Any] | None:
        """Stop ``name``'s threads if they run here; its counters (None when it was not running here).
        ``wanted``: it stays RUNNING-wanted (a server shutting down)."""
        with self._control(name):
            return self._halt(name, wanted=wanted)

    def halt_stopped(self, name: str) -> None:
        """After StopStreamProcessor committed: stop ``name``'s threads (Status STOPPED), unless a Start that came
        after the Stop has made it wanted RUNNING again (its new session is left running)."""
        with self._control(name):
            record = self.tables.get_processor(name)
            if record is not None and record.desired == "RUNNING":
                return
            if self._halt(name) is None:
                self.tables.update_processor(name, status="STOPPED", status_message="stopped")

    def _halt(self, name: str, *, wanted: bool = False) -> dict[str, Any] | None:
        with self._lock:
            run = self.running.pop(name, None)
        if run is None:
            return None
        run.live.stop()
        for sink in run.sinks:
            try:
                sink.close()
            except Exception:
                log.warning("closing a sink of %s failed", name, exc_info=True)
        stats = run.live.stats.as_dict()
        message = run.live.message if run.live.status == "FAILED" else \
            f"stopped{' (server shut down; resumes at its next start)' if wanted else ''}; {run.live.counters()}"
        self.tables.update_processor(name, status=run.live.status if run.live.status == "FAILED" else "STOPPED",
                                     status_message=message, stats=stats)
        return stats

    # -- what a processor does with a frame ---------------------------------------------------

    def _sinks(self, record: StreamProcessorRecord, session_id: str) -> list[Any]:
        out = record.definition["Output"]
        sinks: list[Any] = []
        try:
            kds = out.get("KinesisDataStream")
            if kds:
                stream = kinesis_stream_name(kds["Arn"])
                sinks.append(JsonLinesSink(records_file(self.service.config.data_dir, stream)))
                webhook = self.tables.get_sink(kds["Arn"])
                if webhook:
                    sinks.append(WebhookSink(webhook))
            s3 = out.get("S3Destination")
            if s3:
                buckets = self.service.config.buckets_dir
                if buckets is None:
                    raise SinkError("this server has no buckets folder for S3Destination")
                sinks.append(S3Sink(Path(buckets), s3["Bucket"], s3.get("KeyPrefix", ""),
                                    f"{record.name}/{session_id}"))
        except SinkError as exc:
            for sink in sinks:
                sink.close()
            raise ProcessorFailed(str(exc)) from exc
        return sinks

    # -- ConnectedHome: labels PERSON and PET ----------------------------------------------------

    def _home_session(self, record: StreamProcessorRecord, context: RequestContext, session_id: str,
                      start: dict[str, Any], sinks: list[Any], resumed: bool = False) -> ConnectedHomeSession:
        from .operations.analysis import object_detector

        d = record.definition
        settings = d["Settings"]["ConnectedHome"]
        channel = d.get("NotificationChannel")
        if channel:  # the SNS topic's webhook (serve --notify ARN=URL), checked at CreateStreamProcessor
            url = dict(self.service.config.video_notify).get(channel["SNSTopicArn"])
            if url is None:
                raise ProcessorFailed(f"NotificationChannel.SNSTopicArn {channel['SNSTopicArn']} has no webhook on "
                                      "this server (start it with --notify ARN=URL)")
            sinks.append(WebhookSink(url))
        s3 = d["Output"]["S3Destination"]
        buckets = self.service.config.buckets_dir
        if buckets is None:
            raise ProcessorFailed("this server has no buckets folder for S3Destination")
        base = f"{s3.get('KeyPrefix', '')}{record.name}/{session_id}"
        try:
            detector = object_detector()
        except RekognitionError as exc:  # ModelsUnavailable: FAILED saying which model, not a 5xx after the fact
            raise ProcessorFailed(f"the object detector cannot be loaded: {exc}") from exc
        selector = (start.get("StartSelector") or {}).get("KVSStreamStartSelector") or {}
        regions = d.get("RegionsOfInterest")

        def put_object(key: str, data: bytes) -> str:
            try:  # held to the bucket as the JSON Lines objects are: no link out of it, checked at each write
                write_object(contained_file(bucket_folder(Path(buckets), s3["Bucket"]), f"{base}/{key}"), data)
            except SinkError as exc:
                raise ProcessorFailed(f"cannot write s3://{s3['Bucket']}/{base}/{key}: {exc}") from exc
            except OSError as exc:
                raise ProcessorFailed(f"cannot write s3://{s3['Bucket']}/{base}/{key}: {exc.strerror or exc}") \
                    from exc
            return f"s3://{s3['Bucket']}/{base}/{key}"

        def record_event(message: dict[str, Any], frame_sha256: str, frame_uri: str) -> None:
            body = message["Message"]
            bucket, key = frame_uri[len("s3://"):].split("/", 1)
            entry = build_entry(
                when=self.service.clock(), operation=LABEL_OPERATION, context=context,
                request={"Name": record.name, "Image": {"S3Object": {"Bucket": bucket, "Name": key}}},
                response={"Labels": [{"Name": e["name"], "Confidence": e["confidence"]} for e in body["labels"]]},
                notes=[f"StreamProcessor {record.name}", f"SessionId {session_id}", f"Source {d['SourceName']}",
                       f"EventId {body['eventId']}", f"Frame SHA-256 {frame_sha256}",
                       f"Label {body['labels'][0]['name']}", f"Confidence {body['labels'][0]['confidence']:.3f}"])
            self.service.store.append_ledger(entry)

        return ConnectedHomeSession(
            first_seen=self._notified_labels(session_id) if resumed else {},
            stream_arn=d["Input"]["KinesisVideoStream"]["Arn"], session_id=session_id,
            labels=tuple(d["LabelsInForce"]), min_confidence=float(settings["MinConfidence"]),
            detect=lambda pixels, min_score: detector.detect(pixels, min_score=min_score),
            put_object=put_object, record=record_event, tags=dict(record.tags),
            start_request={k: v for k, v in start.items()},
            keep=(lambda box: in_regions(box, regions)) if regions else None,
            start_after_ms=selector.get("ProducerTimestamp"),
            start_after_fragment=int(selector["FragmentNumber"]) if "FragmentNumber" in selector else None)

    def _notified_labels(self, session_id: str) -> dict[str, dict[str, Any]]:
        """The labels a ConnectedHome session already notified, from its LABEL_DETECTED ledger entries (written
        before each notification leaves), as ConnectedHomeSession.first_seen: a resumed session does not notify
        them again.  One pass over the ledger's entries of that operation, at resume only."""
        seen: dict[str, dict[str, Any]] = {}
        for row in self.service.store.ledger_rows(operation=LABEL_OPERATION, contains=[f"SessionId {session_id}"]):
            notes = dict(n.split(" ", 1) for n in json.loads(row["detail"]).get("Notes", []) if " " in n)
            if notes.get("SessionId") == session_id and "Label" in notes:
                seen.setdefault(notes["Label"], {"eventId": notes.get("EventId"), "at": None,
                                                 "confidence": float(notes.get("Confidence", 0))})
        return seen

    def _complete(self, record: StreamProcessorRecord, context: RequestContext, home: ConnectedHomeSession,
                  sinks: list[Any], how: str) -> None:
        """The end of a ConnectedHome session: its ledger entry and STREAM_PROCESSING_COMPLETE notification."""
        message = home.complete(how)
        if message is None:
            return
        try:
            self.service.store.append_ledger(build_entry(
                when=self.service.clock(), operation=COMPLETE_OPERATION, context=context,
                request={"Name": record.name}, response=None, message=message["Message"]["streamProcessingResults"][
                    "message"], notes=[f"StreamProcessor {record.name}", f"SessionId {home.session_id}",
                                       f"EventId {message['Message']['eventId']}"]))
        except Exception:  # noqa: BLE001 - the notification still leaves
            log.exception("stream processor %s: could not record the end of its session", record.name)
        try:
            _write(sinks, encode_record(message))
        except ProcessorFailed as exc:
            log.warning("stream processor %s: end-of-session notification not written: %s", record.name, exc)

    def _analyse(self, record: StreamProcessorRecord, context: RequestContext, session_id: str,
                 pixels: np.ndarray) -> list[dict[str, Any]]:
        from .dispatch import Invocation
        from .operations.search import face_matches
        from .quality import face_band

        d = record.definition
        cid = d["Settings"]["FaceSearch"]["CollectionId"]
        collection = self.service.store.get_collection(cid)
        if collection is None:
            raise ProcessorFailed(f"collection {cid} was deleted")
        inv = Invocation(self.service, context, {}).for_model(collection.face_model_version)
        height, width = pixels.shape[:2]
        faces = inv.engine.analyze(pixels, embed=True, max_faces=MAX_FACES_PER_FRAME)
        regions = d.get("RegionsOfInterest")
        request = {"FaceMatchThreshold": d["Settings"]["FaceSearch"]["FaceMatchThreshold"],
                   "MaxFaces": d.get("MaxFaces", 80)}
        out = []
        for face in faces:
            detail = shapes.face_detail(face, width, height)
            if regions and not in_regions(detail["BoundingBox"], regions):
                continue
            search = Invocation(self.service, context, {}, collection.face_model_version)
            # scored with the table of the pair's quality band, the frame's face's band included (a blurred face
            # from a camera is as out of range as a blurred photo: service.quality.face_band)
            matches = face_matches(search, cid, face.embedding, request, face_count=collection.face_count,
                                   probe_band=face_band(face))
            if matches:
                self._record_matches(record, context, session_id, cid, request, matches, search.meta)
            out.append({"DetectedFace": detail, "MatchedFaces": matches})
        return out

    def _record_matches(self, record: StreamProcessorRecord, context: RequestContext, session_id: str, cid: str,
                        request: dict[str, Any], matches: list, meta: dict[str, Any]) -> None:
        entry = build_entry(when=self.service.clock(), operation=MATCH_OPERATION, context=context,
                            request={"CollectionId": cid, "FaceMatchThreshold": request["FaceMatchThreshold"],
                                     "Name": record.name},
                            response={"FaceMatches": matches},
                            notes=[f"StreamProcessor {record.name}", f"SessionId {session_id}",
                                   f"Source {record.definition['SourceName']}"], meta=meta)
        self.service.store.append_ledger(entry)


def write_object(path: Path, data: bytes) -> None:
    """An object of the buckets folder, written whole or not at all (a temporary file renamed; folders 0700,
    the file 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write(sinks: list[Any], data: bytes) -> None:
    for sink in sinks:
        try:
            sink.write(data)
        except SinkError as exc:
            raise ProcessorFailed(str(exc)) from exc


def in_regions(box: dict[str, float], regions: list[dict[str, Any]]) -> bool:
    """Whether a face box's centre lies in any RegionsOfInterest entry (a BoundingBox or a Polygon, ratios)."""
    x = box["Left"] + box["Width"] / 2
    y = box["Top"] + box["Height"] / 2
    for region in regions:
        b = region.get("BoundingBox")
        if b and b.get("Left", 0) <= x <= b.get("Left", 0) + b.get("Width", 0) and \
                b.get("Top", 0) <= y <= b.get("Top", 0) + b.get("Height", 0):
            return True
        polygon = region.get("Polygon")
        if polygon and _inside(x, y, [(p.get("X", 0.0), p.get("Y", 0.0)) for p in polygon]):
            return True
    return False


def _inside(x: float, y: float, points: list[tuple[float, float]]) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


_RUNTIMES_LOCK = threading.Lock()


def runtime_of(service: Any) -> StreamRuntime:
    """The stream runtime of ``service`` (created on first use)."""
    runtime = getattr(service, "_stream_runtime", None)
    if runtime is None:
        with _RUNTIMES_LOCK:
            runtime = getattr(service, "_stream_runtime", None)
            if runtime is None:
                runtime = StreamRuntime(service)
                service._stream_runtime = runtime
    return runtime


def host(service: Any) -> list[str]:
    """Called by the server at start-up: this process runs stream processors; resumes those left RUNNING."""
    return runtime_of(service).host()


def summary(service: Any) -> dict[str, dict[str, Any]]:
    """The processors running in this process, for ``GET /health``: Status and the frame counters of each."""
    runtime = getattr(service, "_stream_runtime", None)
    if runtime is None:
        return {}
    with runtime._lock:
        running = dict(runtime.running)
    keys = ("FramesReceived", "FramesAnalysed", "FramesDropped", "DropRate", "LagLastSeconds", "LagMaxSeconds",
            "Disconnects")
    out = {}
    for name, run in running.items():
        stats = run.live.stats.as_dict()
        out[name] = {"Status": run.live.status, **{k: stats[k] for k in keys}}
    return out


def shutdown(service: Any) -> None:
    """Called by the server as it stops."""
    runtime = getattr(service, "_stream_runtime", None)
    if runtime is not None:
        runtime.shutdown()
