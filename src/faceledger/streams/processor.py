"""One live processor: a reader thread that decodes a source and keeps only its newest frame, and an analysis
thread that takes the newest frame at the configured rate and drops the rest.

It never falls behind its source: the reader decodes every frame (H.264 needs them) but overwrites the one
waiting slot, so a frame is analysed at most ``1 / rate`` seconds after it arrived plus one analysis, whatever
the analysis costs; a frame overwritten before it was taken is *dropped* (counted). Invariant:
``frames_received == frames_analysed + frames_dropped`` once stopped (while running, plus at most two: one
waiting, one being analysed).

Connection failures (unreachable, refused, frozen past the read timeout, the stream ended) are disconnects: the
reader reconnects with exponential back-off (``backoff_s`` doubling to ``max_backoff_s``, back to the start once
frames flow again). Status, as Rekognition's StreamProcessorStatus: STARTING (connecting, or reconnecting after a
disconnect), RUNNING (frames flow), STOPPING, STOPPED, FAILED (the analysis or a sink cannot go on: not
retried); each change is reported to ``on_status(status, message)``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .records import frame_record
from .source import MAX_SOURCE_PIXELS, OPEN_TIMEOUT_S, READ_TIMEOUT_S, OpenSource, SourceError, SourceUrl

log = logging.getLogger("faceledger.streams")

#: Analysed frames per second by default (Rekognition does not publish its own rate).
DEFAULT_RATE_FPS = 5.0
#: Largest frame analysed, in pixels: larger frames are scaled down (aspect kept) before analysis.
MAX_ANALYSIS_PIXELS = 1920 * 1080


class ProcessorFailed(Exception):
    """The analysis cannot go on (the collection was deleted, a sink cannot be written): FAILED, not retried."""


@dataclass
class ProcessorStats:
    """Counters of one run (since StartStreamProcessor). Seconds for lags; lag: from the moment a frame was
    received to the moment its record was written."""

    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    connections: int = 0
    disconnects: int = 0
    records_written: int = 0
    faces_detected: int = 0
    faces_matched: int = 0
    labels_detected: int = 0
    lag_last_s: float = 0.0
    lag_max_s: float = 0.0
    lag_total_s: float = 0.0
    analysis_total_s: float = 0.0
    source_fps: float | None = None
    frame_size: str | None = None
    last_disconnect: str | None = None
    keyframe_only_switches: int = 0
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        """The counters as an API returns them (CamelCase), with mean lag and drop rate."""
        d = asdict(self)
        n = max(self.frames_analysed, 1)
        return {
            "FramesReceived": d["frames_received"], "FramesAnalysed": d["frames_analysed"],
            "FramesDropped": d["frames_dropped"], "Connections": d["connections"],
            "Disconnects": d["disconnects"], "RecordsWritten": d["records_written"],
            "FacesDetected": d["faces_detected"], "FacesMatched": d["faces_matched"],
            "LabelsDetected": d["labels_detected"],
            "LagLastSeconds": round(self.lag_last_s, 4), "LagMaxSeconds": round(self.lag_max_s, 4),
            "LagMeanSeconds": round(self.lag_total_s / n, 4) if self.frames_analysed else 0.0,
            "AnalysisMeanSeconds": round(self.analysis_total_s / n, 4) if self.frames_analysed else 0.0,
            "DropRate": round(self.frames_dropped / self.frames_received, 4) if self.frames_received else 0.0,
            "SourceFrameRate": self.source_fps, "FrameSize": self.frame_size,
            "LastDisconnect": self.last_disconnect, "KeyframeOnlySwitches": self.keyframe_only_switches,
            "UptimeSeconds": round(time.time() - self.started_at, 3),
        }


@dataclass
class FrameInfo:
    """Where an analysed frame sits in the live source (faceledger's Kinesis mapping, docs/streams.md)."""

    fragment_number: str
    producer_timestamp: float  # Unix seconds at which the fragment's first frame was received
    server_timestamp: float
    frame_offset_s: float  # the frame's time minus its fragment's first frame's, in the source's clock
    received_wall: float  # Unix seconds at which this frame was received


@dataclass
class _Waiting:
    """The newest decoded frame, not analysed yet."""

    frame: Any
    t: float
    received_mono: float
    received_wall: float
    fragment_number: str
    fragment_wall: float
    fragment_t0: float


class LiveProcessor:
    """Reads ``source`` and analyses its newest frame ``rate_fps`` times a second.

    ``analyse(pixels)`` gets an (H, W, 3) uint8 RGB frame and returns the FaceSearchResponse entries of
    :func:`faceledger.streams.records.frame_record`; ``emit(record)`` gets each frame record (a dict). Either may
    raise ProcessorFailed (FAILED); any other exception fails the processor too, with its message.
    ``handle(pixels, FrameInfo)``, instead of ``analyse`` (a ConnectedHome processor): the records of one frame
    (none, one or more) and the number of labelled boxes it holds.
    ``max_duration_s``: stop (STOPPED) after that many seconds (StopSelector.MaxDurationInSeconds).
    ``max_source_pixels``: the decoder refuses a larger frame of the source before allocating it (a disconnect
    whose message names the limit); ``max_pixels``: larger frames are scaled down to it before analysis."""

    def __init__(self, name: str, source: SourceUrl, *, stream_arn: str,
                 analyse: Callable[[np.ndarray], list[dict[str, Any]]] | None = None,
                 emit: Callable[[dict[str, Any]], None],
                 handle: Callable[[np.ndarray, FrameInfo], tuple[list[dict[str, Any]], int]] | None = None,
                 on_status: Callable[[str, str], None] = lambda status, message: None,
                 rate_fps: float = DEFAULT_RATE_FPS, open_timeout_s: float = OPEN_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 max_duration_s: float | None = None, fragment_base: int = 0,
                 max_pixels: int = MAX_ANALYSIS_PIXELS, max_source_pixels: int = MAX_SOURCE_PIXELS) -> None:
        if not rate_fps > 0:
            raise ValueError("rate_fps must be > 0")
        self.name, self.source, self.stream_arn = name, source, stream_arn
        if (analyse is None) == (handle is None):
            raise ValueError("give analyse or handle")
        self._analyse, self._handle, self._emit, self._on_status = analyse, handle, emit, on_status
        self.period = 1.0 / rate_fps
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_duration_s = max_duration_s
        self.max_pixels, self.max_source_pixels = max_pixels, max_source_pixels
        self.stats = ProcessorStats()
        self.status, self.message = "STARTING", f"connecting to {source.kind} source"
        self._fragment = fragment_base
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._waiting: _Waiting | None = None
        self._status_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, name=f"faceledger-read-{name}", daemon=True)
        self._analyser = threading.Thread(target=self._analysis_loop, name=f"faceledger-analyse-{name}",
                                          daemon=True)
        self._started = False
        self._got_frames = False
        #: True once it stopped by itself at ``max_duration_s`` (StopSelector.MaxDurationInSeconds)
        self.ran_out = False

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._set_status("STARTING", self.message)
        self._reader.start()
        self._analyser.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (STOPPING, then STOPPED unless FAILED); waits at most about ``timeout`` seconds."""
        if self.status != "FAILED":
            self._set_status("STOPPING", "stopping")
        self._halt()
        if self._started:
            deadline = time.monotonic() + timeout
            for thread in (self._analyser, self._reader):
                if thread is not threading.current_thread() and thread.ident is not None:  # started
                    thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            if self._waiting is not None:  # received, never analysed
                self.stats.frames_dropped += 1
                self._waiting = None
        if self.status != "FAILED":
            self._set_status("STOPPED", f"stopped; {self.counters()}")

    def _halt(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self._reader.is_alive() or self._analyser.is_alive()

    def counters(self) -> str:
        s = self.stats
        return (f"frames received {s.frames_received}, analysed {s.frames_analysed}, dropped {s.frames_dropped}; "
                f"lag last {s.lag_last_s:.3f} s, max {s.lag_max_s:.3f} s; disconnects {s.disconnects}")

    def _set_status(self, status: str, message: str) -> None:
        with self._status_lock:
            if self.status == "FAILED" and status != "FAILED":
                return
            changed = (status, message) != (self.status, self.message)
            self.status, self.message = status, message
        if changed or status in ("STARTING", "STOPPED"):
            try:
                self._on_status(status, message)
            except Exception:
                log.exception("stream processor %s: could not record status %s", self.name, status)

    def _fail(self, message: str) -> None:
        log.warning("stream processor %s failed: %s", self.name, message)
        self._set_status("FAILED", message)
        self._halt()

    # -- reader ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        delay = self.backoff_s
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            reason = None
            self._got_frames = False
            try:
                conn = OpenSource(self.source, open_timeout_s=self.open_timeout_s,
                                  read_timeout_s=self.read_timeout_s, max_pixels=self.max_source_pixels)
            except SourceError as exc:
                reason = str(exc)
            else:
                try:
                    self.stats.connections += 1
                    self.stats.source_fps = conn.frame_rate
                    self.stats.frame_size = f"{conn.width}x{conn.height}"
                    self._read_frames(conn)
                except SourceError as exc:  # SourceEnded too: a source that ends is a disconnect
                    reason = str(exc)
                finally:
                    self.stats.keyframe_only_switches += conn.keyframe_only_switches
                    conn.close()
            if self._stop.is_set():
                return
            if self._got_frames:
                self.stats.disconnects += 1
                delay, attempt = self.backoff_s, 1
            self.stats.last_disconnect = reason
            self._set_status("STARTING", f"source disconnected: {reason}; reconnecting (attempt {attempt}) in "
                                         f"{delay:g} s with back-off; {self.counters()}")
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.max_backoff_s)

    def _read_frames(self, conn: OpenSource) -> None:
        """Decode until the source fails or the processor stops (``_got_frames`` says whether frames came)."""
        fragment_wall = fragment_t0 = 0.0
        fragment = ""
        first = True
        for frame, t in conn.frames(paced=self.source.kind == "file"):
            if self._stop.is_set():
                return
            now_mono, now_wall = time.monotonic(), time.time()
            if first or frame.key_frame:  # a fragment starts at each key frame (and at each connection)
                self._fragment += 1
                fragment, fragment_wall, fragment_t0 = str(self._fragment), now_wall, t
            if first:
                first = False
                self._got_frames = True
                self._set_status("RUNNING", f"receiving {conn.codec} {conn.width}x{conn.height} from the "
                                            f"{self.source.kind} source")
            with self._cond:
                self.stats.frames_received += 1
                if self._waiting is not None:
                    self.stats.frames_dropped += 1
                self._waiting = _Waiting(frame, t, now_mono, now_wall, fragment, fragment_wall, fragment_t0)
                self._cond.notify()

    # -- analysis ----------------------------------------------------------------------------

    def _analysis_loop(self) -> None:
        started = time.monotonic()
        next_due = started
        try:
            while not self._stop.is_set():
                if self.max_duration_s is not None and time.monotonic() - started >= self.max_duration_s:
                    self.ran_out = True
                    threading.Thread(target=self.stop, daemon=True).start()  # StopSelector: a normal stop
                    return
                wait = next_due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                with self._cond:
                    while self._waiting is None and not self._stop.is_set():
                        self._cond.wait(0.5)
                        if self.max_duration_s is not None and \
                                time.monotonic() - started >= self.max_duration_s:
                            break
                    item, self._waiting = self._waiting, None
                if item is None:
                    continue
                began = time.monotonic()
                next_due = began + self.period
                self._process(item, began)
        except ProcessorFailed as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug or an unexpected failure: FAILED with what happened, never silent
            log.exception("stream processor %s: analysis failed", self.name)
            self._fail(f"analysis failed: {type(exc).__name__}: {str(exc)[:300]}")

    def _pixels(self, frame: Any) -> np.ndarray:
        w, h = frame.width, frame.height
        if w * h > self.max_pixels:
            scale = (self.max_pixels / (w * h)) ** 0.5
            return frame.to_ndarray(format="rgb24", width=max(1, int(w * scale)), height=max(1, int(h * scale)))
        return frame.to_ndarray(format="rgb24")

    def _process(self, item: _Waiting, began: float) -> None:
        pixels = self._pixels(item.frame)
        s = self.stats
        if self._handle is not None:
            records, boxes = self._handle(pixels, FrameInfo(item.fragment_number, item.fragment_wall,
                                                            item.fragment_wall, max(0.0, item.t - item.fragment_t0),
                                                            item.received_wall))
            s.labels_detected += boxes
        else:
            faces = self._analyse(pixels)
            records = [frame_record(stream_arn=self.stream_arn, fragment_number=item.fragment_number,
                                    producer_timestamp=item.fragment_wall, server_timestamp=item.fragment_wall,
                                    frame_offset_s=max(0.0, item.t - item.fragment_t0), status="RUNNING",
                                    faces=faces)]
            s.faces_detected += len(faces)
            s.faces_matched += sum(1 for f in faces if f.get("MatchedFaces"))
        for record in records:
            self._emit(record)
        done = time.monotonic()
        s.frames_analysed += 1
        s.records_written += len(records)
        s.lag_last_s = done - item.received_mono
        s.lag_max_s = max(s.lag_max_s, s.lag_last_s)
        s.lag_total_s += s.lag_last_s
        s.analysis_total_s += done - began
