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
"""

from __future__ import annotations

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
from ..streams.processor import DEFAULT_RATE_FPS, LiveProcessor, ProcessorFailed
from ..streams.records import encode_record
from ..streams.sinks import JsonLinesSink, S3Sink, SinkError, WebhookSink
from ..streams.source import check_source_url
from . import shapes
from .context import RequestContext
from .ledger import build_entry

log = logging.getLogger("faceledger.streams")

#: The operation name of the ledger entry each reported match gets.
MATCH_OPERATION = "StreamProcessorMatch"
#: Faces of one frame looked at, largest first (as DetectFaces).
MAX_FACES_PER_FRAME = 100
KINESIS_STREAM = re.compile(r"^arn:[a-z\d-]+:kinesis:[a-z\d-]+:\d{12}:stream/([a-zA-Z0-9_.\-]{1,128})$")
KINESIS_VIDEO_STREAM = re.compile(r"^arn:[a-z\d-]+:kinesisvideo:[a-z\d-]+:\d{12}:stream/([a-zA-Z0-9_.\-]{1,256})"
                                  r"(/[0-9]{1,20})?$")


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
                        self.launch(record, record.session_id or str(uuid.uuid4()))
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
        for name in names:
            self.halt(name, wanted=True)
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

    def launch(self, record: StreamProcessorRecord, session_id: str, max_duration_s: float | None = None) -> None:
        """Start ``record``'s threads (the caller has checked policy and state)."""
        d = record.definition
        source = self.tables.get_source(d["SourceName"])
        if source is None:
            raise ProcessorFailed(f"source {d['SourceName']} was removed")
        url = check_source_url(source.url)
        sinks = self._sinks(record, session_id)
        context = RequestContext(transport="stream", principal=d.get("Principal"), purpose=d.get("Purpose"),
                                 case_reference=d.get("Case"), request_id=session_id)
        name = record.name

        def on_status(status: str, message: str) -> None:
            values: dict[str, Any] = {"status": status, "status_message": message}
            live = self.live(name)
            if live is not None:
                values["stats"] = live.stats.as_dict()
            if status == "FAILED":  # not retried, not resumed: StartStreamProcessor again once fixed
                values["desired"] = "STOPPED"
            self.tables.update_processor(name, **values)

        live = LiveProcessor(
            name, url, stream_arn=d["Input"]["KinesisVideoStream"]["Arn"],
            analyse=lambda pixels: self._analyse(record, context, session_id, pixels),
            emit=lambda r: _write(sinks, encode_record(r)), on_status=on_status,
            rate_fps=self.rate_fps, max_duration_s=max_duration_s,
            fragment_base=int(time.time()) * 1_000_000, **self.timeouts)
        with self._lock:
            self.running[name] = _Running(live, sinks, session_id)
        live.start()

    def halt(self, name: str, *, wanted: bool = False) -> dict[str, Any] | None:
        """Stop ``name``'s threads if they run here; its counters (None when it was not running here).
        ``wanted``: it stays RUNNING-wanted (a server shutting down)."""
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

    def _analyse(self, record: StreamProcessorRecord, context: RequestContext, session_id: str,
                 pixels: np.ndarray) -> list[dict[str, Any]]:
        from .dispatch import Invocation
        from .operations.search import face_matches

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
            matches = face_matches(search, cid, face.embedding, request, face_count=collection.face_count)
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
