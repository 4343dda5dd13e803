"""Image input: Rekognition's ``Image`` member (``Bytes`` or ``S3Object``) to decoded pixels."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from dataclasses import dataclass, field
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
    data: bytes = field(repr=False)  # the bytes sent

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the bytes sent, computed when first asked for (the ledger hashes the request's
        Bytes itself)."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


_NO_OBJECT = "Unable to get object metadata from S3. Check object key, region and/or access permissions."


def _s3_refusal(where: str, why: str) -> InvalidS3ObjectException:
    return InvalidS3ObjectException(f"{_NO_OBJECT} {where}: {why}")


def _name_problem(bucket: str, name: str) -> str | None:
    """Why ``bucket``/``name`` cannot name a file in the buckets folder, judged before any file is touched."""
    if not isinstance(bucket, str) or not isinstance(name, str):
        return "Bucket and Name must be strings"
    if "\0" in bucket or "\0" in name:
        return "the name has a NUL character"
    if "/" in bucket or bucket in (".", ".."):
        return "not a bucket name"
    if name.startswith("/"):
        return "an absolute name leads out of the bucket"
    if ".." in name.split("/"):
        return "a '..' part leads out of the bucket"
    if name.endswith("/") or "//" in name or "." in name.split("/"):
        # S3 keys are plain strings: 'a.jpg/', 'x//a.jpg' and 'x/./a.jpg' are other keys than the file a path
        # reading would open, so they name no object here
        return "an empty or '.' part (a key ending in '/', '//' or '/./') names no file in the bucket folder"
    try:
        bucket.encode("utf-8")
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid Unicode (it has an unpaired surrogate)"
    return None


def _read_s3_object(s3: dict[str, Any], config: ServiceConfig) -> bytes:
    """The bytes of ``S3Object`` {Bucket, Name}: the file ``<buckets folder>/<Bucket>/<Name>``.

    Only a regular file inside the bucket's folder is read (see :func:`s3_object_path`), and at most
    ``config.max_s3_object_bytes`` of it (over that: ImageTooLargeException). A FIFO never blocks the call.
    """
    path, where = s3_object_path(s3, config)
    return _read_regular_file(path, where, config.max_s3_object_bytes)


def s3_object_path(s3: dict[str, Any], config: ServiceConfig) -> tuple[Path, str]:
    """(the resolved path of ``S3Object`` {Bucket, Name} in the buckets folder, its ``'s3://bucket/name'`` for
    messages). Everything but a name inside the bucket's folder is InvalidS3ObjectException, decided before
    anything is opened where possible: a missing bucket or object, a NUL, an absolute name or a '..' part,
    a name too long for the filesystem, a symbolic link that loops or leads out of the bucket (the bucket's
    own folder must not be a link out of the buckets folder). What the path is (a regular file, a directory,
    FIFO, socket or device) is for the reader to check."""
    bucket, name = s3.get("Bucket"), s3.get("Name")
    if not bucket or not name:
        raise InvalidParameterException("S3Object needs both Bucket and Name")
    if "Version" in s3:
        raise InvalidS3ObjectException("S3 object versions are not supported by the local buckets folder")
    if config.buckets_dir is None:
        raise InvalidS3ObjectException("This server has no buckets folder (start it with --buckets DIR)")
    where = repr(f"s3://{bucket}/{name}")  # bounded by the model (255 + 1024 characters), escaped
    problem = _name_problem(bucket, name)
    if problem:
        raise _s3_refusal(where, problem)
    try:
        root = Path(config.buckets_dir).resolve(strict=True)
        bucket_dir = (root / bucket).resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        raise _s3_refusal(where, f"bucket {bucket!r} does not exist") from None
    if bucket_dir.parent != root or not bucket_dir.is_dir():
        raise _s3_refusal(where, f"bucket {bucket!r} does not exist")
    try:
        path = (bucket_dir / name).resolve(strict=True)
    except RuntimeError:
        raise _s3_refusal(where, "a symbolic link loops") from None
    except OSError as exc:
        raise _s3_refusal(where, _os_problem(exc)) from None
    if not path.is_relative_to(bucket_dir):
        raise _s3_refusal(where, "a symbolic link leads out of the bucket")
    return path, where


def _os_problem(exc: OSError) -> str:
    return {
        errno.ENOENT: "the object does not exist",
        errno.ENOTDIR: "the object does not exist (a part of its name is a file, not a folder)",
        errno.ELOOP: "a symbolic link loops",
        errno.ENAMETOOLONG: "the name is too long for the buckets folder's filesystem",
        errno.EACCES: "the server may not read it",
        errno.EPERM: "the server may not read it",
    }.get(exc.errno, f"it cannot be read ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})")


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _read_regular_file(path: Path, where: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at resolved ``path`` (opened without following a link,
    without blocking, and checked to be the file that was inspected)."""
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            kind = next((k for test, k in _KINDS if test(before.st_mode)), "not a file")
            raise _s3_refusal(where, f"the object does not exist (it is {kind})")
        if before.st_size > limit:
            raise ImageTooLargeException(
                f"Image size {before.st_size} bytes exceeds the {limit // (1024 * 1024)} MB limit for S3 objects")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags), "rb") as f:
            now = os.fstat(f.fileno())
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
                raise _s3_refusal(where, "the object changed while it was read")
            data = f.read(limit + 1)
    except OSError as exc:
        raise _s3_refusal(where, _os_problem(exc)) from None
    if len(data) > limit:
        raise ImageTooLargeException(f"Image size exceeds the {limit // (1024 * 1024)} MB limit for S3 objects")
    return data


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
        source = f"{member}.Bytes"
    else:
        data = _read_s3_object(image["S3Object"], config)
        source = f"{member}.S3Object s3://{image['S3Object']['Bucket']}/{image['S3Object']['Name']}"
    try:
        decoded = decode_image(data, max_pixels=config.max_image_pixels, min_side=config.min_image_side,
                               working_pixels=config.working_pixels, working_side=config.working_side)
    except ImageTooLarge as exc:
        raise ImageTooLargeException(f"{source}: {exc}") from None
    except ImageTooSmall as exc:  # what Rekognition answers for an image under its 80-pixel minimum
        raise InvalidParameterException(f"Request has invalid parameters: {source}: {exc}") from None
    except InvalidImageFormat as exc:
        raise InvalidImageFormatException(f"{source}: {exc}") from None
    return InputImage(decoded, data)
