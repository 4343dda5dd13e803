"""Image input: Rekognition's ``Image`` member (``Bytes`` or ``S3Object``) to decoded pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..vision import DecodedImage, ImageTooLarge, ImageTooSmall, InvalidImageFormat, decode_image
from .context import ServiceConfig
from .errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
    InvalidS3ObjectException,
)

MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class InputImage:
    image: DecodedImage
    sha256: str  # what the ledger keeps instead of the image

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _read_s3_object(s3: dict[str, Any], config: ServiceConfig) -> bytes:
    bucket, name = s3.get("Bucket"), s3.get("Name")
    if not bucket or not name:
        raise InvalidParameterException("S3Object needs both Bucket and Name")
    if "Version" in s3:
        raise InvalidS3ObjectException("S3 object versions are not supported by the local buckets folder")
    if config.buckets_dir is None:
        raise InvalidS3ObjectException("This server has no buckets folder (start it with --buckets DIR)")
    root = Path(config.buckets_dir).resolve()
    bucket_dir = (root / bucket).resolve()
    path = (bucket_dir / name).resolve()
    if bucket_dir.parent != root or not path.is_relative_to(bucket_dir):
        raise InvalidS3ObjectException(f"Invalid S3 object name: {name!r}")
    if not bucket_dir.is_dir():
        raise InvalidS3ObjectException(f"Unable to get object metadata from S3. Bucket {bucket!r} does not exist")
    if not path.is_file():
        raise InvalidS3ObjectException(f"Unable to get object metadata from S3. Object s3://{bucket}/{name} does not exist")
    size = path.stat().st_size
    if size > config.max_s3_object_bytes:
        raise ImageTooLargeException(
            f"Image size {size} bytes exceeds the {config.max_s3_object_bytes // (1024 * 1024)} MB limit for S3 objects"
        )
    return path.read_bytes()


def load_image(image: dict[str, Any], config: ServiceConfig, member: str = "Image") -> InputImage:
    """Bytes or S3Object to pixels at the working size (``config.working_pixels``/``working_side``), with
    Rekognition's errors for everything that can go wrong: ``ImageTooLargeException`` (over 5 MB of Bytes,
    15 MB of S3 object, or ``config.max_image_pixels``), ``InvalidParameterException`` (a side under
    ``config.min_image_side``), ``InvalidImageFormatException`` (not a complete JPEG or PNG).  Sizes are
    judged from the header, before any pixel is decoded (vision.image.decode_image)."""
    has_bytes, has_s3 = "Bytes" in image, "S3Object" in image
    if has_bytes == has_s3:
        raise InvalidParameterException(f"{member} must have exactly one of Bytes or S3Object")
    if has_bytes:
        data = image["Bytes"]
        if len(data) > MAX_BYTES:
            raise ImageTooLargeException(f"{member}.Bytes is {len(data)} bytes, over the 5 MB limit")
    else:
        data = _read_s3_object(image["S3Object"], config)
    try:
        decoded = decode_image(data, max_pixels=config.max_image_pixels, min_side=config.min_image_side,
                               working_pixels=config.working_pixels, working_side=config.working_side)
    except ImageTooLarge as exc:
        raise ImageTooLargeException(f"{member}: {exc}") from None
    except ImageTooSmall as exc:  # what Rekognition answers for an image under its 80-pixel minimum
        raise InvalidParameterException(f"Request has invalid parameters: {member}: {exc}") from None
    except InvalidImageFormat as exc:
        raise InvalidImageFormatException(f"{member}: {exc}") from None
    return InputImage(decoded, hashlib.sha256(data).hexdigest())
