"""Video decoding with PyAV (FFmpeg): container metadata and frames with their timestamps.

Timestamps are integer **milliseconds from the first frame shown** (the first frame in presentation
order is 0), whatever the container's start time: ``short_hamilton_clip.mp4`` starts at 0.852 s in its
container, its first frame is at 0 here. Frame numbers count decoded frames from 0 in the same order.

Damaged input never raises anything but :class:`VideoError`: PyAV's ``InvalidDataError`` (truncated or
byte-flipped files), a missing codec context and the ``IndexError``/``ValueError`` some damaged headers
give are all turned into it, with a message saying what is wrong. :func:`frames` yields every frame
decoded before the damage, then raises (see :attr:`VideoError.frames_decoded`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["Frame", "VideoError", "VideoInfo", "frames", "probe"]

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


def _open(path: Path):
    """(container, video stream); VideoError for what is not a decodable video."""
    import av

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"the video cannot be read: {exc.strerror}") from None
    if size == 0:
        raise VideoError("the file is empty (0 bytes): not a video")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except _errors() as exc:
        raise VideoError(f"the file is not a video FFmpeg can read: {_describe(exc)}") from None
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
            raise VideoError("the video stream states no frame size (damaged header)")
        stream.thread_type = "AUTO"
    except VideoError:
        container.close()
        raise
    except _errors() as exc:
        container.close()
        raise VideoError(f"the video's header is damaged: {_describe(exc)}") from None
    return container, stream


def probe(path: Path) -> VideoInfo:
    """The container's metadata (no frame is decoded); VideoError when it is not a readable video."""
    container, stream = _open(path)
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
        container.close()


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


def frames(path: Path, *, start_ms: int = 0, every_ms: float | None = None, first_pts: int | None = None,
           max_side: int | None = None, max_pixels: int | None = None, max_ms: int | None = None) -> Iterator[Frame]:
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
    """
    container, stream = _open(path)
    tb = float(stream.time_base) if stream.time_base else None
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 25.0
    decoded = 0
    last_ms = -1
    stated_ms = float(stream.duration * tb * 1000) if stream.duration is not None and tb else None
    stated_size = f"{stream.codec_context.width}x{stream.codec_context.height}"
    try:
        if first_pts is None:
            first_pts = first_frame_pts(path) if start_ms > 0 else None
        if start_ms > 0 and first_pts is not None and tb:
            target = first_pts + int(start_ms / 1000 / tb)
            container.seek(max(0, target), stream=stream, backward=True, any_frame=False)
        slot = -1
        for packet in container.demux(stream):
            for frame in packet.decode():
                pts = frame.pts if frame.pts is not None else frame.dts
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
                last_ms = ms
                if ms < start_ms:
                    continue
                if every_ms:
                    s = int(ms // every_ms)
                    if s == slot:
                        continue
                    slot = s
                yield Frame(index, ms, source=frame, max_side=max_side)
    except _errors() as exc:
        raise VideoError(f"the video is damaged after {decoded} decoded frame(s): {_describe(exc)}",
                         decoded) from None
    finally:
        container.close()
    if decoded == 0 and start_ms == 0:
        raise VideoError("no frame of the video could be decoded (damaged or empty stream)")
    if stated_ms is not None and last_ms >= 0 and last_ms + 3 * 1000 / fps + END_TOLERANCE_MS < stated_ms:
        # FFmpeg's demuxer stops without an error at some damage (a byte-flipped sample table): the video then
        # looks short, as OpenCV makes every damaged video look; its stated duration tells
        raise VideoError(f"the video is damaged: decoding stopped at {last_ms} ms of its stated "
                         f"{int(stated_ms)} ms ({decoded} frames decoded)", decoded)


def _rgb(frame, max_side: int | None) -> np.ndarray:
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        return frame.to_ndarray(format="rgb24", width=max(2, int(w * scale)) & ~1,
                                height=max(2, int(h * scale)) & ~1)
    return frame.to_ndarray(format="rgb24")


def first_frame_pts(path: Path) -> int | None:
    """The presentation timestamp of the first frame shown (the 0 ms of :func:`frames`), or None."""
    container, stream = _open(path)
    try:
        for frame in container.decode(stream):
            return frame.pts if frame.pts is not None else frame.dts
    except _errors():
        return None
    finally:
        container.close()
    return None
