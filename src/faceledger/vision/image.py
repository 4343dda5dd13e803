"""Decode untrusted image bytes into an RGB pixel array of bounded size.

Only JPEG and PNG are accepted (Rekognition's two formats).  Everything that can be
judged from the header is judged before any pixel is decoded: the format, the size
(:class:`ImageTooLarge` over ``max_pixels``, :class:`ImageTooSmall` under ``min_side`` on
either side), and for a JPEG the number of scans (a progressive JPEG of thousands of
near-empty scans costs time in proportion to scans x pixels: :class:`InvalidImageFormat`
over :data:`MAX_JPEG_SCANS`).  Truncated or corrupt files raise
:class:`InvalidImageFormat`: Pillow's ``LOAD_TRUNCATED_IMAGES`` is forced off and the full
decode happens inside the ``try``.

The result is a **working image**: an image larger than ``working_pixels`` pixels or
``working_side`` pixels on its longest side is scaled down (aspect ratio kept) as early as
the format allows -- a JPEG is decoded directly at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
scaling (Pillow's ``draft``), then resampled -- so that everything after decoding (detection,
landmarks, alignment, quality) costs a bounded amount whatever was sent.  Face coordinates
are reported as ratios of the image, which a uniform scaling does not change.

Cost of one decode (``n`` = the pixels declared in the header, at most ``max_pixels``): the
full-resolution decode holds at most 4 bytes a pixel (RGBA or CMYK; 1 for grey, 2 for 16-bit
grey, 3 for RGB), plus the same again while a palette, alpha or colour-key image is converted
or resampled, and a progressive JPEG's coefficient buffer (2 bytes a pixel per component); a
JPEG decoded with DCT scaling holds 1/4 to 1/64 of its pixels.  Nothing else depends on ``n``.
Time is linear in ``n`` and in the bytes sent.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# Never accept a truncated image silently (Pillow's default, made explicit in case
# another module flipped it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Pillow format name -> the format we report.  MPO is the multi-picture JPEG
#: container many phone cameras write; its first frame is a plain JPEG.  Only the first
#: frame of a multi-frame file (MPO, animated PNG) is decoded.
_ACCEPTED = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}

#: Largest image accepted, in pixels (width x height from the header).
DEFAULT_MAX_PIXELS = 36_000_000
#: Rekognition's documented minimum: 80 pixels for both height and width ("Guidelines and
#: quotas in Amazon Rekognition").  decode_image's default is 1; the service passes this.
MIN_IMAGE_SIDE = 80
#: The working image: at most 1920 x 1080 pixels' worth (2,073,600) ...
WORKING_PIXELS = 1920 * 1080
#: ... and at most 4096 pixels on its longest side (a thin panorama is scaled by its length).
WORKING_SIDE = 4096
#: A JPEG with more scans than this is refused before decoding (libjpeg-turbo's djpeg offers
#: the same guard, ``-maxscans``).  Encoders write 1 (baseline) to about 10-20 (progressive).
MAX_JPEG_SCANS = 100

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_JPEG_SCANS",
    "MIN_IMAGE_SIDE",
    "WORKING_PIXELS",
    "WORKING_SIDE",
    "DecodedImage",
    "ImageError",
    "ImageTooLarge",
    "ImageTooSmall",
    "InvalidImageFormat",
    "decode_image",
    "jpeg_scan_count",
    "jpeg_segments",
    "working_size",
]


class ImageError(Exception):
    """Base class for image decoding errors."""


class InvalidImageFormat(ImageError):
    """Not an image, truncated or corrupt, or a format other than JPEG/PNG."""


class ImageTooLarge(ImageError):
    """The image's pixel count (from its header) is over the limit."""


class ImageTooSmall(ImageError):
    """The image's width or height (from its header) is under the minimum."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous, EXIF orientation applied, the working size
    width: int  # of ``pixels``
    height: int
    format: str  # "JPEG" or "PNG"
    source_width: int = 0  # the image as sent (after EXIF orientation); 0: same as width
    source_height: int = 0

    @property
    def scale(self) -> float:
        """``width / source_width``: 1.0 when the image was not scaled down."""
        return self.width / self.source_width if self.source_width else 1.0


def working_size(width: int, height: int, max_pixels: int | None = WORKING_PIXELS,
                 max_side: int | None = WORKING_SIDE) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is analysed at: itself when it has at most
    ``max_pixels`` pixels and ``max_side`` on its longest side, else scaled down uniformly until
    both hold (sides rounded down, at least 1).  ``None``: no limit."""
    s = 1.0
    if max_pixels is not None and width * height > max_pixels:
        s = math.sqrt(max_pixels / (width * height))
    if max_side is not None and max(width, height) > max_side:
        s = min(s, max_side / max(width, height))
    if s >= 1.0:
        return width, height
    return max(1, math.floor(width * s)), max(1, math.floor(height * s))


# a marker that ends entropy-coded data: 0xFF followed by anything but 0x00 (a stuffed byte)
# or a restart marker (0xD0-0xD7)
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment of a JPEG's marker structure after SOI, up to EOI, found by
    walking segment lengths; a scan's segment (marker 0xDA, SOS) runs on to the end of its entropy-coded
    data.  Bytes inside segments (an EXIF thumbnail, scan data) are never taken for markers.  Linear in
    ``len(data)``; a malformed structure ends the walk (the decoder then judges the file)."""
    n, i = len(data), 2
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            yield marker, i, i + 2
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            m = _ENTROPY_END.search(data, end)
            end = m.start() if m is not None else n
        yield marker, i, end
        i = end


def jpeg_scan_count(data: bytes, stop_after: int | None = None) -> int:
    """The number of scans (SOS segments, :func:`jpeg_segments`) in a JPEG; stops counting once
    ``stop_after`` is exceeded."""
    scans = 0
    for marker, _, _ in jpeg_segments(data):
        if marker == 0xDA:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
    return scans


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF Orientation tag (1-8); 1 when absent or when the EXIF block is malformed."""
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if int(value) in _TRANSPOSE else 1
    except MemoryError:
        raise
    except Exception:  # corrupt EXIF must not make a decodable photo unusable
        return 1


def _to_rgb(img: Image.Image, grey_max: float) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; alpha (or a tRNS colour key) is composited over white;
    high-depth grey (I;16*, I, F) is scaled by ``255 / grey_max`` instead of being clipped."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float32)
        g = np.clip(np.rint(a * np.float32(255.0 / grey_max)), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _grey_max(img: Image.Image) -> float:
    """What full white is for a grey image's values: 65535 for 16-bit, 65535 or 255 for 32-bit integers
    (whichever the values fit), 255 otherwise (floats are clipped to 0-255)."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode == "I":
        return 65535.0 if img.getextrema()[1] > 255 else 255.0
    return 255.0


#: Pixels converted at a time: the full-resolution image is converted to RGB tile by tile, each tile
#: box-reduced at once, so no full-resolution copy beyond the decoded image itself is made.
_TILE_PIXELS = 1 << 20
#: Integer box reduction first, by the largest factor that leaves at least this much bilinear
#: downscaling to do (Pillow's ``reducing_gap``).
_REDUCING_GAP = 2.0


def _to_working_rgb(img: Image.Image, size: tuple[int, int], box: tuple[float, ...] | None) -> np.ndarray:
    """A loaded image of any mode -> (size[1], size[0], 3) uint8 RGB.

    An image larger than ``size`` (``box``: the region of it that ``size`` covers, as Pillow's
    ``draft`` reports it) is converted to RGB tile by tile (about 1 Mpx each), each tile reduced by an
    integer box filter as soon as it is converted, and the reduced image resampled to ``size``
    (bilinear, antialiased).  Compositing and scaling commute with averaging, so this is the same as
    converting the whole image first; it holds the decoded image, one tile and the reduced image.
    """
    grey_max = _grey_max(img)
    w, h = img.size
    if (w, h) == tuple(size) and box is None:
        return np.ascontiguousarray(_to_rgb(img, grey_max))
    bx0, by0, bx1, by1 = box if box is not None else (0.0, 0.0, float(w), float(h))
    fx = max(1, int((bx1 - bx0) / size[0] / _REDUCING_GAP))
    fy = max(1, int((by1 - by0) / size[1] / _REDUCING_GAP))
    reduced = Image.new("RGB", (-(-w // fx), -(-h // fy)))
    th = min(h, fy * max(1, 1024 // fy))  # tile height: a multiple of fy (or the whole height)
    tw = min(w, fx * max(1, (_TILE_PIXELS // th) // fx))
    for y in range(0, h, th):
        for x in range(0, w, tw):
            tile = Image.fromarray(_to_rgb(img.crop((x, y, min(w, x + tw), min(h, y + th))), grey_max))
            reduced.paste(tile.reduce((fx, fy)) if fx > 1 or fy > 1 else tile, (x // fx, y // fy))
    out = reduced.resize(size, Image.Resampling.BILINEAR, box=(bx0 / fx, by0 / fy, bx1 / fx, by1 / fy))
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):  # Pillow names its buffer: "cannot identify image file <_io..."
        return "no image format recognised in its first bytes"
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "its bytes", str(exc))


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
                 working_pixels: int | None = WORKING_PIXELS, working_side: int | None = WORKING_SIDE,
                 max_jpeg_scans: int | None = MAX_JPEG_SCANS) -> DecodedImage:
    """Decode JPEG/PNG bytes to RGB pixels at the working size, EXIF orientation applied.

    Raises, from the header and before any pixel is decoded: :class:`ImageTooLarge` if
    ``width * height > max_pixels``; :class:`ImageTooSmall` if the width or height is under
    ``min_side``; :class:`InvalidImageFormat` for anything that is not a JPEG or PNG, or a JPEG
    of more than ``max_jpeg_scans`` scans (None: any).  Then :class:`InvalidImageFormat` for a
    file that does not decode completely.  ``MemoryError`` propagates (the caller decides what
    a lack of memory means).

    The pixels are at most ``working_pixels`` pixels and ``working_side`` pixels on a side (see
    :func:`working_size`; None: no limit, the full resolution); ``source_width`` and
    ``source_height`` give the size sent.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageFormat(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidImageFormat("empty image")
    raw = data if isinstance(data, bytes) else bytes(data)
    try:
        with warnings.catch_warnings():
            # We apply our own (tighter) limit below; silence Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, ...
        raise InvalidImageFormat(
            f"not a decodable image ({len(raw)} bytes): {_describe(exc)}; only complete JPEG and PNG files "
            "are accepted"
        ) from exc

    try:
        fmt = _ACCEPTED.get(img.format or "")
        if fmt is None:
            raise InvalidImageFormat(
                f"unsupported image format {img.format!r}; only JPEG and PNG are accepted"
            )
        width, height = img.size
        if width <= 0 or height <= 0:
            raise InvalidImageFormat(f"invalid image size {width}x{height}")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        if min(width, height) < min_side:
            raise ImageTooSmall(
                f"image is {width}x{height} pixels; the minimum is {min_side} pixels for both height and width"
            )
        if fmt == "JPEG" and max_jpeg_scans is not None:
            scans = jpeg_scan_count(raw, stop_after=max_jpeg_scans)
            if scans > max_jpeg_scans:
                raise InvalidImageFormat(
                    f"JPEG has more than {max_jpeg_scans} scans; refused before decoding (a progressive JPEG "
                    "of many scans costs time in proportion to scans x pixels)"
                )
        target = working_size(width, height, working_pixels, working_side)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                box = None
                if fmt == "JPEG" and target != (width, height):
                    drafted = img.draft(img.mode, target)  # DCT scaling: decode at 1/2, 1/4 or 1/8
                    if drafted is not None and img.size != (width, height):
                        box = drafted[1]
                img.load()  # the full decode: truncated data raises here
                orientation = _exif_orientation(img)
                pixels = _to_working_rgb(img, target, box)
        except (ImageError, MemoryError):
            raise
        except Exception as exc:  # OSError("image file is truncated"), SyntaxError, zlib errors...
            raise InvalidImageFormat(f"corrupt or truncated {fmt}: {_describe(exc)}") from exc
    finally:
        img.close()

    if orientation != 1:
        pixels = np.ascontiguousarray(np.asarray(Image.fromarray(pixels).transpose(_TRANSPOSE[orientation])))
        if orientation >= 5:  # the transposing orientations swap width and height
            width, height = height, width
    h, w = pixels.shape[:2]
    return DecodedImage(pixels=pixels, width=int(w), height=int(h), format=fmt,
                        source_width=int(width), source_height=int(height))
