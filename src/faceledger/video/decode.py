"""Video decoding with PyAV (FFmpeg): container metadata and frames with their timestamps.

Timestamps are integer **milliseconds from the first frame shown** (the first frame in presentation
order is 0), whatever the container's start time: ``short_hamilton_clip.mp4`` starts at 0.852 s in its
container, its first frame is at 0 here. Frame numbers count decoded frames from 0 in the same order.

Damaged input never raises anything but :class:`VideoError`: PyAV's ``InvalidDataError`` (truncated or
byte-flipped files), a missing codec context and the ``IndexError``/``ValueError`` some damaged headers
give are all turned into it, with a message saying what is wrong. :func:`frames` yields every frame
decoded before the damage, then raises (see :attr:`VideoError.frames_decoded`).

A video is one regular file, read by FFmpeg as an open file with no protocol allowed: a playlist or list that
names other files (HLS, ffconcat, DASH) is refused, not followed (it would read files outside the bucket, or
the network). With ``max_pixels``, the decoder refuses a larger frame before allocating it: a small file whose
frames claim 16000x16000 pixels costs no more memory than the limit allows.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["Frame", "VideoError", "VideoInfo", "changed", "file_identity", "frames", "pixel_refusal", "probe"]

#: FFmpeg demuxers of still images: a JPEG or PNG renamed .mp4 opens as a one-frame "video"; it is not one.
_IMAGE_FORMATS = ("image2", "jpeg_pipe", "png_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe", "image2pipe")


#: Decoding that stops this long (ms, plus three frame periods) before the video stream's stated duration is
#: damage, not the end.
END_TOLERANCE_MS = 500


class VideoError(Exception):
    """The file is not a video faceledger can decode, or is damaged. ``frames_decoded``: how many frames
    were decoded before the problem (0 when the file could not be opened)."""

    def __init__(self, message: str, frames_decoded: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.frames_decoded = frames_decoded


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (Rekognition's VideoMetadata).

    ``format``: FFmpeg's long name of the container format; ``codec``: the codec's long name;
    ``frame_rate``: frames per second (average); ``duration_ms``: the stream's (else the container's)
    duration; ``color_range``: ``FULL``, ``LIMITED`` or None (unspecified); ``frames``: the frame count
    the container states, else estimated from duration and rate."""

    codec: str
    format: str
    frame_rate: float
    duration_ms: int
    width: int
    height: int
    color_range: str | None
    frames: int

    def metadata(self) -> dict:
        """Rekognition's ``VideoMetadata`` shape."""
        out = {"Codec": self.codec, "Format": self.format, "FrameRate": float(self.frame_rate),
               "DurationMillis": int(self.duration_ms), "FrameWidth": int(self.width),
               "FrameHeight": int(self.height)}
        if self.color_range:
            out["ColorRange"] = self.color_range
        return out


class Frame:
    """One decoded frame: ``index`` (from 0), ``timestamp_ms`` (from the first frame shown) and ``image``,
    RGB uint8 (height, width, 3), converted when first asked for (a frame only looked at small, by
    :meth:`scaled`, is never converted whole). Valid until the next frame is asked for."""

    def __init__(self, index: int, timestamp_ms: int, image: np.ndarray | None = None, *, source=None,
                 max_side: int | None = None) -> None:
        self.index, self.timestamp_ms = index, timestamp_ms
        self._image, self._source, self._max_side = image, source, max_side

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = _rgb(self._source, self._max_side)
        return self._image

    def scaled(self, max_side: int) -> np.ndarray:
        """The frame as RGB with its longer side at most ``max_side`` pixels."""
        if self._image is not None and max(self._image.shape[:2]) <= max_side:
            return self._image
        if self._source is None:
            import cv2

            h, w = self._image.shape[:2]
            s = max_side / max(h, w)
            return cv2.resize(self._image, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        return _rgb(self._source, max_side if self._max_side is None else min(max_side, self._max_side))


def _errors():
    import av

    return (av.error.FFmpegError, IndexError, ValueError, TypeError, AttributeError, OSError, EOFError)


def _describe(exc: BaseException) -> str:
    import av

    if isinstance(exc, av.error.FFmpegError):
        text = getattr(exc, "strerror", None) or str(exc)
        return f"{text} (FFmpeg error {getattr(exc, 'errno', '?')})"
    return f"{type(exc).__name__}: {exc}"


#: FFmpeg's protocol whitelist for stored videos: no protocol at all. The file is handed to FFmpeg as an open file
#: (:func:`_open`), so reading it needs none; what this refuses is a demuxer opening *other* files or URLs named
#: inside it (an HLS playlist's segments, an ffconcat list's files, a DASH manifest's), which would read outside
#: the bucket (through ``..`` or a symbolic link) or reach the network.
NO_PROTOCOL = "none"
#: The first bytes of files that only name other files (playlists, concat lists, manifests), for the message.
_LISTS = ((b"#EXTM3U", "an HLS playlist"), (b"ffconcat", "an ffconcat list"), (b"<?xml", "an XML manifest"))


class _Opened:
    """An opened video: the container, its first video stream and the file FFmpeg reads (closed together)."""

    def __init__(self, container, stream, file) -> None:
        self.container, self.stream, self.file = container, stream, file

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.file.close()


def _open(path: Path, max_pixels: int | None = None) -> _Opened:
    """The video at ``path``, opened; VideoError for what is not a decodable video.

    The file is opened here (not following a FIFO or a device: a regular file only) and FFmpeg reads it as an open
    file with no protocol allowed (NO_PROTOCOL): a playlist or a list of files is refused, never followed.
    ``max_pixels``: the decoder refuses a frame of more pixels before it allocates it (FFmpeg's ``max_pixels``):
    memory stays in proportion to the limit, not to what a frame header claims."""
    import av

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise VideoError(f"the video cannot be read: {exc.strerror}") from None
    file = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VideoError("the video is not a regular file")
        if st.st_size == 0:
            raise VideoError("the file is empty (0 bytes): not a video")
        head = file.read(16)
        file.seek(0)
        try:
            # PyAV passes these options to the decoders that FFmpeg's stream probe runs on the first frames too:
            # max_pixels holds them before a frame is decoded, as it holds the decoder below
            container = av.open(file, mode="r", metadata_errors="ignore", buffer_size=1 << 16,
                                options={"protocol_whitelist": NO_PROTOCOL,
                                         **({"max_pixels": str(int(max_pixels))} if max_pixels else {})})
        except _errors() as exc:
            kind = next((k for magic, k in _LISTS if head.lstrip(b"\xef\xbb\xbf").startswith(magic)), None)
            if kind:
                raise VideoError(f"the file is {kind}, which names other files: a stored video must hold its "
                                 "frames itself") from None
            raise VideoError(f"the file is not a video FFmpeg can read: {_describe(exc)}") from None
    except BaseException:
        file.close()
        raise
    try:
        names = set((container.format.name or "").split(","))
        if names & set(_IMAGE_FORMATS):
            raise VideoError(f"the file is a still image ({container.format.long_name}), not a video")
        if not container.streams.video:
            raise VideoError(f"the file ({container.format.long_name}) has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError("the video stream has no decoder (unknown or damaged codec header)")
        if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
            raise VideoError("the video stream states no frame size (damaged header)" if not max_pixels else
                             "the video stream states no frame size: its header is damaged, or its first frame is "
                             f"over the {max_pixels / 1e6:g} megapixel limit of this server's images (the decoder "
                             "refuses such a frame before it allocates it)")
        if max_pixels:
            stream.codec_context.options = {"max_pixels": str(int(max_pixels))}
        stream.thread_type = "AUTO"
    except VideoError:
        _Opened(container, None, file).close()
        raise
    except _errors() as exc:
        _Opened(container, None, file).close()
        raise VideoError(f"the video's header is damaged: {_describe(exc)}") from None
    return _Opened(container, stream, file)


def pixel_refusal(exc: BaseException, codec_context, max_pixels: int | None) -> str | None:
    """What to say of a decoding error raised by a decoder given ``max_pixels`` (FFmpeg's option): the frame it
    refused, when that is what happened, else None. FFmpeg itself says only "Invalid argument" or "Invalid data";
    the frame's size is named when the decoder kept it. Shared by stored videos and live sources."""
    import av

    if not max_pixels or not isinstance(exc, av.error.FFmpegError):
        return None
    limit = f"{max_pixels / 1e6:g} megapixel limit of this server's images"
    width, height = int(codec_context.width or 0), int(codec_context.height or 0)
    if width * height > max_pixels:
        return f"is {width}x{height} pixels, over the {limit}"
    if getattr(exc, "errno", None) == errno.EINVAL:
        return (f"was refused by the decoder ({_describe(exc)}): it is over the {limit}, which the decoder checks "
                "before it allocates a frame, or it is damaged")
    return None


def probe(path: Path, max_pixels: int | None = None) -> VideoInfo:
    """The container's metadata; VideoError when it is not a readable video. FFmpeg decodes the first frame(s) to
    learn the stream's parameters: ``max_pixels`` as :func:`frames`' (such a frame over it is refused first)."""
    opened = _open(path, max_pixels)
    container, stream = opened.container, opened.stream
    try:
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        if not math.isfinite(duration) or duration < 0:
            duration = 0.0
        count = int(stream.frames or round(duration * fps))
        color = {1: "LIMITED", 2: "FULL"}.get(int(getattr(ctx, "color_range", 0) or 0))
        codec = _codec_name(ctx)
        return VideoInfo(codec=codec, format=container.format.long_name or container.format.name,
                         frame_rate=round(fps, 3), duration_ms=int(round(duration * 1000)), width=int(ctx.width),
                         height=int(ctx.height), color_range=color, frames=count)
    except _errors() as exc:
        raise VideoError(f"the video's header is damaged: {_describe(exc)}") from None
    finally:
        opened.close()


def _codec_name(ctx) -> str:
    """The codec's long name (FFmpeg's native decoder's, e.g. "Alliance for Open Media AV1", not the name of
    the library that happens to decode it, "dav1d AV1 decoder by VideoLAN")."""
    import av

    if ctx.codec is None:
        return ctx.name or "unknown"
    try:
        return av.codec.Codec(ctx.codec.canonical_name, "r").long_name
    except Exception:  # noqa: BLE001 - no native decoder of that name
        return ctx.codec.long_name


#: Packets demuxed between two checks that the file is still the one expected (``frames``' ``expect``).
CHANGE_CHECK_PACKETS = 32


def file_identity(st: os.stat_result | Path) -> dict[str, int]:
    """What tells a file's content changed: its size, modification time, inode and status-change time (ns), of a
    stat result or a path. The status-change time cannot be set back as the modification time can (``touch -r``),
    and a file replaced by a rename has another inode: a same-size rewrite with its old time still shows."""
    if not isinstance(st, os.stat_result):
        st = os.stat(st)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}


def changed(expect: dict[str, int] | None, st: os.stat_result) -> bool:
    """Whether the file of ``st`` differs from ``expect`` (a :func:`file_identity`; the keys it has are compared:
    jobs saved before the inode and status-change time were kept have size and modification time only)."""
    now = file_identity(st)
    return bool(expect) and any(int(value) != now[key] for key, value in expect.items() if key in now)


def frames(path: Path, *, start_ms: int = 0, every_ms: float | None = None, first_pts: int | None = None,
           max_side: int | None = None, max_pixels: int | None = None, max_ms: int | None = None,
           expect: dict[str, int] | None = None) -> Iterator[Frame]:
    """The video's frames in presentation order, from ``start_ms`` (ms from the first frame shown).

    ``every_ms``: keep only the first frame of each ``every_ms`` slot of time (``every_ms=200``: 5 frames a
    second), the others are decoded (needed for the next ones) but not converted; None keeps every frame.
    ``max_side``: frames are scaled down (by FFmpeg) so their longer side is at most this.
    Frame ``index`` counts every decoded frame from the first one shown, also when starting later
    (a seek to ``start_ms`` decodes from the keyframe before it). Raises :class:`VideoError` after the
    frames decoded before a damage, or at once when the file is not a video.
    ``max_pixels``, ``max_ms``: limits checked on every decoded frame, not only on what the header states (a
    stream may change its frame size midway, a header may understate the duration): a frame of more pixels,
    or one shown later than ``max_ms``, ends the frames with a :class:`VideoError` saying so.
    Timestamps are the frames' best-effort ones (:class:`_BestEffort`) and never go back: the decoder gives
    frames in presentation order, so a timestamp (and frame number) before the previous frame's is held at it.
    ``expect``: the file's :func:`file_identity` when the caller hashed it; the open file is checked against it
    at the start, every CHANGE_CHECK_PACKETS packets and at the end, and a file that grew, shrank or was
    rewritten meanwhile ends the frames with a :class:`VideoError` (its frames are not the ones hashed).
    """
    opened = _open(path, max_pixels)
    fd = opened.file.fileno()

    def check_unchanged(decoded: int) -> None:
        st = os.fstat(fd)
        if changed(expect, st):
            raise VideoError(f"the video was changed while it was read (it is {st.st_size} bytes, it was "
                             f"{expect['size']} bytes when the job started): it is not the video whose SHA-256 was "
                             "recorded; start a new job", decoded)

    try:
        check_unchanged(0)
    except VideoError:
        opened.close()
        raise
    container, stream = opened.container, opened.stream
    tb = float(stream.time_base) if stream.time_base else None
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 25.0
    decoded = 0
    last_ms = last_index = -1
    stated_ms = float(stream.duration * tb * 1000) if stream.duration is not None and tb else None
    stated_size = f"{stream.codec_context.width}x{stream.codec_context.height}"
    try:
        if first_pts is None:
            first_pts = first_frame_pts(path, max_pixels) if start_ms > 0 else None
        if start_ms > 0 and first_pts is not None and tb:
            target = first_pts + int(start_ms / 1000 / tb)
            container.seek(max(0, target), stream=stream, backward=True, any_frame=False)
        slot = -1
        when = _BestEffort()
        for packets, packet in enumerate(container.demux(stream), start=1):
            if packets % CHANGE_CHECK_PACKETS == 0:
                check_unchanged(decoded)
            for frame in packet.decode():
                pts = when(frame)
                if first_pts is None:
                    first_pts = pts if pts is not None else 0
                if pts is not None and tb:
                    ms = int(round((pts - first_pts) * tb * 1000))
                    index = int(round((pts - first_pts) * tb * fps))
                else:
                    index = decoded
                    ms = int(round(index * 1000 / fps))
                decoded += 1
                if max_pixels is not None and frame.width * frame.height > max_pixels:
                    raise VideoError(f"frame {index} ({ms} ms) is {frame.width}x{frame.height} pixels, over the "
                                     f"{max_pixels / 1e6:g} megapixel limit of this server's images (the video's "
                                     f"header stated {stated_size})",
                                     decoded - 1)
                if max_ms is not None and ms > max_ms:
                    raise VideoError(f"the video runs past {max_ms / 3600000:g} hours (frame {index} is shown at "
                                     f"{ms} ms, though its header states {int(stated_ms or 0)} ms): over the "
                                     "limit of a stored video", decoded - 1)
                # the decoder gives frames in presentation order: a timestamp that goes back (damaged, hostile, or an
                # AVI's flushed B-frames) is a wrong label, held at the one before so times and numbers never go back
                ms, index = max(ms, last_ms, 0), max(index, last_index)
                last_ms, last_index = ms, index
                if ms < start_ms:
                    continue
                if every_ms:
                    s = int(ms // every_ms)
                    if s == slot:
                        continue
                    slot = s
                yield Frame(index, ms, source=frame, max_side=max_side)
        check_unchanged(decoded)
    except _errors() as exc:
        refused = pixel_refusal(exc, stream.codec_context, max_pixels)
        raise VideoError(f"frame {decoded} (after {max(last_ms, 0)} ms) {refused} (the video's header stated "
                         f"{stated_size})" if refused else
                         f"the video is damaged after {decoded} decoded frame(s): {_describe(exc)}", decoded) from None
    finally:
        opened.close()
    if decoded == 0 and start_ms == 0:
        raise VideoError("no frame of the video could be decoded (damaged or empty stream)")
    if stated_ms is not None and last_ms >= 0 and last_ms + 3 * 1000 / fps + END_TOLERANCE_MS < stated_ms:
        # FFmpeg's demuxer stops without an error at some damage (a byte-flipped sample table): the video then
        # looks short, as OpenCV makes every damaged video look; its stated duration tells
        raise VideoError(f"the video is damaged: decoding stopped at {last_ms} ms of its stated "
                         f"{int(stated_ms)} ms ({decoded} frames decoded)", decoded)


class _BestEffort:
    """A decoded frame's presentation timestamp as FFmpeg's ``guess_correct_pts`` (its frames'
    ``best_effort_timestamp``, which PyAV does not expose) chooses it: the frame's pts unless the pts have gone
    back more often than the dts (an AVI of H.264 with B-frames stores no pts: its frames' "pts" come out of order,
    their dts in order), else its dts."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None

    def __call__(self, frame) -> int | None:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


def _rgb(frame, max_side: int | None) -> np.ndarray:
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        return frame.to_ndarray(format="rgb24", width=max(2, int(w * scale)) & ~1,
                                height=max(2, int(h * scale)) & ~1)
    return frame.to_ndarray(format="rgb24")


def first_frame_pts(path: Path, max_pixels: int | None = None) -> int | None:
    """The presentation timestamp of the first frame shown (the 0 ms of :func:`frames`), or None.
    ``max_pixels``: as :func:`frames` (a first frame over it is not decoded: None)."""
    opened = _open(path, max_pixels)
    try:
        for frame in opened.container.decode(opened.stream):
            return frame.pts if frame.pts is not None else frame.dts
    except _errors():
        return None
    finally:
        opened.close()
    return None
