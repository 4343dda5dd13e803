"""Opening a live source with PyAV, always with timeouts, and reading its frames.

A source is a URL or a path:

* ``rtsp://``/``rtsps://`` (a camera; read over TCP), ``rtmp://``/``rtmps://``, ``http://``/``https://`` (HLS
  playlists ``.m3u8`` or any stream FFmpeg reads over HTTP);
* a video file (a path, or ``file://``), played at its own frame rate, as if it were a camera;
* a local camera device, ``/dev/video<N>`` (Video4Linux2).

Every open and every read has a timeout (:data:`OPEN_TIMEOUT_S`, :data:`READ_TIMEOUT_S` by default): a source
that stops sending (a frozen camera, a half-open TCP connection) raises :class:`SourceError` instead of blocking
the reader for ever (FFmpeg's own socket ``timeout`` option, in microseconds, and PyAV's interrupt-callback
timeout, in seconds, for protocols without one). The end of a live source (the camera was switched off, the
file reached its end) is :class:`SourceEnded`: the caller treats it as a disconnect and reconnects.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..video.decode import pixel_refusal

#: Seconds to wait for a source to open (connect, handshake, first packets) before giving up.
OPEN_TIMEOUT_S = 10.0
#: Seconds without data after which a source counts as frozen.
READ_TIMEOUT_S = 5.0
#: How much of a source FFmpeg reads to find its streams (bytes and microseconds): small, so a camera is
#: opened in well under a second instead of FFmpeg's default 5 s of probing.
PROBE_SIZE, ANALYZE_DURATION_US = 500_000, 1_000_000
#: Seconds the decoder may fall behind a live source's clock before it decodes key frames only (13 to 42 times
#: cheaper), and how close it must be again, at a key frame, to decode every frame again.
BEHIND_S, CAUGHT_UP_S = 1.0, 0.25
MAX_URL_CHARS = 2048
#: The most pixels a source's frame may have (the server passes its image limit, ``max_image_pixels``): the decoder
#: refuses a larger frame before it allocates it (FFmpeg's ``max_pixels``), so a camera or file that claims
#: 16000x16000 frames cannot make the server allocate gigabytes; such a frame is a decode error (a disconnect).
MAX_SOURCE_PIXELS = 36_000_000

_NETWORK_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https"}
_DEVICE = re.compile(r"^/dev/video[0-9]{1,3}\Z")


#: The password of a URL's user part (``scheme://user:password@host``) wherever it appears in a text.
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*):[^/\s'\"]*@")  # to the netloc's last @


def redact(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***`` (cameras' URLs often carry one, and
    FFmpeg's errors quote the URL they could not open)."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


class SourceError(Exception):
    """The source cannot be opened or read (unreachable, refused, frozen, not a video): reconnect. Its message
    never holds a URL's password (it becomes a processor's StatusMessage, which DescribeStreamProcessor shows)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class SourceEnded(SourceError):
    """The source ended (a camera that went away looks the same as a file at its end): a disconnect."""


@dataclass(frozen=True)
class SourceUrl:
    """A checked source: its ``kind`` (rtsp, rtmp, http, file, device) and what PyAV opens."""

    kind: str
    target: str


def check_source_url(url: str) -> SourceUrl:
    """The source ``url`` stands for; ValueError (saying what is accepted) when it is none. A message that
    quotes the URL shows its password as ``***`` (it becomes an API error, and the ledger records it).

    Paths of files must exist and be files (checked now; a file removed later is a source that fails to
    open)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or any(c in url for c in "\r\n\x00"):
        raise ValueError(f"a source URL is 1 to {MAX_URL_CHARS} characters, without line breaks or NUL")
    if _DEVICE.match(url):
        return SourceUrl("device", url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _NETWORK_SCHEMES:
        if not parts.hostname:
            raise ValueError(f"source URL {redact(url)!r} has no host")
        kind = "rtsp" if scheme.startswith("rtsp") else "rtmp" if scheme.startswith("rtmp") else "http"
        return SourceUrl(kind, url)
    if scheme == "file":
        path = Path(parts.path)
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        path = Path(url)
    else:
        raise ValueError(f"source URL scheme {scheme!r} is not supported: use rtsp://, rtsps://, rtmp://, "
                         "rtmps://, http(s):// (HLS), a video file path (file://) or /dev/videoN")
    if not path.is_absolute():
        raise ValueError(f"a video file source must be an absolute path: {redact(url)!r}")
    if not path.is_file():
        raise ValueError(f"video file {str(path)!r} does not exist or is not a file")
    return SourceUrl("file", str(path))


def _options(source: SourceUrl, read_timeout_s: float) -> tuple[dict[str, str], str | None]:
    """FFmpeg options and input format for a source (socket timeouts in microseconds)."""
    us = str(int(read_timeout_s * 1_000_000))
    opts = {"probesize": str(PROBE_SIZE), "analyzeduration": str(ANALYZE_DURATION_US)}
    if source.kind == "rtsp":
        opts.update(rtsp_transport="tcp", timeout=us)
    elif source.kind == "rtmp":
        opts.update(rw_timeout=us)
    elif source.kind == "http":
        opts.update(rw_timeout=us, reconnect="0")
    if source.kind == "device":
        return opts, "v4l2"
    return opts, None


class OpenSource:
    """One connection to a source: its first video stream, decoded frame by frame."""

    def __init__(self, source: SourceUrl, *, open_timeout_s: float = OPEN_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S, max_pixels: int = MAX_SOURCE_PIXELS) -> None:
        self.source = source
        self.read_timeout_s = read_timeout_s
        self.max_pixels = max_pixels
        opts, fmt = _options(source, read_timeout_s)
        opts["max_pixels"] = str(int(max_pixels))  # also for the first frames FFmpeg decodes to probe the stream
        av = _av()
        try:
            self.container = av.open(source.target, format=fmt, options=opts, timeout=(open_timeout_s,
                                                                                        read_timeout_s))
        except av.error.ExitError as exc:  # the interrupt callback: nothing came in time
            raise SourceError(f"no answer within {open_timeout_s:g} s (open timeout)") from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open: {_describe(exc)}") from exc
        try:
            streams = self.container.streams.video
            if not streams or streams[0].codec_context is None:
                raise SourceError("the source has no video stream")
            self.stream = streams[0]
            self.stream.codec_context.options = {"max_pixels": str(int(max_pixels))}
            self.stream.thread_type = "AUTO"
        except (SourceError, IndexError, av.error.FFmpegError) as exc:
            self.close()
            raise exc if isinstance(exc, SourceError) else SourceError(f"unreadable: {_describe(exc)}") from exc
        rate = self.stream.average_rate or self.stream.guessed_rate
        #: Frames per second the source says it sends (None when it does not say).
        self.frame_rate = float(rate) if rate else None
        self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height
        self.codec = self.stream.codec_context.name
        self.keyframe_only_switches = 0

    def frames(self, *, paced: bool = False) -> Iterator[tuple[Any, float]]:
        """Decoded frames and their time (seconds of the source's clock, None-free: 0 when unknown).

        ``paced``: wait until each frame's time has come on the wall clock (a file played as a camera).
        Otherwise, a decoder that falls more than BEHIND_S behind the source's clock (a machine too busy to decode
        every frame of a large stream) decodes key frames only until it has caught up (``keyframe_only_switches``
        counts how often). Raises SourceEnded at the end, SourceError when the source freezes past the read
        timeout or its data cannot be decoded."""
        av = _av()
        start_wall = None
        start_t = None
        skipping = False
        try:
            for frame in self.container.decode(self.stream):
                t = float(frame.time) if frame.time is not None else 0.0
                now = time.monotonic()
                if start_wall is None:
                    start_wall, start_t = now, t
                behind = (now - start_wall) - (t - start_t)
                if paced:
                    if behind < 0:
                        time.sleep(min(-behind, 1.0))
                elif not skipping and behind > BEHIND_S:
                    skipping = True
                    self.keyframe_only_switches += 1
                    self.stream.codec_context.skip_frame = "NONKEY"
                elif skipping and frame.key_frame and behind < CAUGHT_UP_S:
                    skipping = False
                    self.stream.codec_context.skip_frame = "DEFAULT"
                yield frame, t
        except av.error.ExitError as exc:
            raise SourceError(f"no data for {self.read_timeout_s:g} s (read timeout): the source is frozen or "
                              "gone") from exc
        except av.error.EOFError as exc:
            raise SourceEnded("the stream ended") from exc
        except (av.error.FFmpegError, OSError) as exc:
            if "timed out" in str(exc).lower() or getattr(exc, "errno", None) in (110, 60):
                raise SourceError(f"no data for {self.read_timeout_s:g} s (read timeout): the source is frozen "
                                  "or gone") from exc
            refused = pixel_refusal(exc, self.stream.codec_context, self.max_pixels)
            if refused:
                raise SourceError(f"a frame {refused}") from exc
            raise SourceError(f"decode error: {_describe(exc)}") from exc
        raise SourceEnded("the stream ended")

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken connection: nothing more to learn
            pass


def _av():
    """PyAV, imported when a source is opened (the optional ``streams`` extra)."""
    try:
        import av
    except ImportError as exc:
        raise SourceError("PyAV is not installed: pip install 'faceledger[streams]'") from exc
    return av


def open_source(url: str | SourceUrl, **timeouts: float) -> OpenSource:
    """Open ``url`` (checked by :func:`check_source_url`); SourceError when it cannot be."""
    source = url if isinstance(url, SourceUrl) else check_source_url(url)
    return OpenSource(source, **timeouts)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]
