"""Decode untrusted image bytes into an RGB pixel array.

Only JPEG and PNG are accepted (Rekognition's two formats).  The pixel count is
checked from the header *before* any pixel data is decoded, so a decompression
bomb is refused without allocating its pixels.  Truncated or corrupt files raise
:class:`InvalidImageFormat`: Pillow's ``LOAD_TRUNCATED_IMAGES`` is forced off and
the full decode happens inside the ``try``.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Never accept a truncated image silently (Pillow's default, made explicit in case
# another module flipped it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Pillow format name -> the format we report.  MPO is the multi-picture JPEG
#: container many phone cameras write; its first frame is a plain JPEG.
_ACCEPTED = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}

DEFAULT_MAX_PIXELS = 36_000_000

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageError",
    "ImageTooLarge",
    "InvalidImageFormat",
    "decode_image",
]


class ImageError(Exception):
    """Base class for image decoding errors."""


class InvalidImageFormat(ImageError):
    """Not an image, truncated or corrupt, or a format other than JPEG/PNG."""


class ImageTooLarge(ImageError):
    """The image's pixel count (from its header) is over the limit."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous, EXIF orientation applied
    width: int
    height: int
    format: str  # "JPEG" or "PNG"


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; alpha is composited over white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale PNG: scale to 8 bits instead of letting convert() clip.
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        g = np.clip(np.rint(a * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    ) or (mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF Orientation tag; a malformed EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # corrupt EXIF must not make a decodable photo unusable
        return img


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode JPEG/PNG bytes to RGB pixels with EXIF orientation applied.

    Raises :class:`ImageTooLarge` if ``width * height > max_pixels`` (checked from
    the header, before decoding), :class:`InvalidImageFormat` for anything that is
    not a complete, valid JPEG or PNG.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageFormat(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidImageFormat("empty image")
    try:
        with warnings.catch_warnings():
            # We apply our own (tighter) limit below; silence Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, ...
        if isinstance(exc, UnidentifiedImageError):  # Pillow names its buffer: "cannot identify image file <_io..."
            reason = "no image format recognised in its first bytes"
        else:
            reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "its bytes", str(exc))
        raise InvalidImageFormat(
            f"not a decodable image ({len(data)} bytes): {reason}; only complete JPEG and PNG files are accepted"
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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()  # the full decode: truncated data raises here
                pixels = _to_rgb(_apply_exif_orientation(img))
        except ImageError:
            raise
        except MemoryError as exc:
            raise ImageTooLarge(f"not enough memory to decode image: {exc}") from exc
        except Exception as exc:  # OSError("image file is truncated"), SyntaxError, zlib errors...
            raise InvalidImageFormat(f"corrupt or truncated {fmt}: {exc}") from exc
    finally:
        img.close()

    h, w = pixels.shape[:2]
    return DecodedImage(pixels=pixels, width=int(w), height=int(h), format=fmt)
