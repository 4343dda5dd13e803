"""Rekognition's error codes, as exceptions the service raises and the transports render.

Every error a client can cause is one of these. The HTTP layer renders them as
AWS JSON 1.1 errors (``{"__type": code, "message": ...}`` with ``status``), the
in-process :class:`faceledger.Client` re-raises them as botocore ``ClientError``
subclasses, so callers see the same thing whichever way they talk to us.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

#: The longest message an error carries (characters); a longer one is cut, saying how long it was. Messages
#: that quote client values quote at most a short prefix of each (:func:`preview`), so this is a backstop.
MAX_MESSAGE_CHARS = 8192
#: How much of one value a message quotes (characters).
QUOTE_CHARS = 256


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how long it was: ``abc...(12345 characters)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


def preview(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A client value as an error message quotes it (Java's toString, roughly), in at most about ``limit``
    characters whatever its size: a long string is cut and its length given, a list or object stops at the
    first item that does not fit and gives its number of items. Costs O(limit), not O(size of value)."""
    if not isinstance(value, (list, tuple, dict)):
        return _text(value, limit)
    out: list[str] = []
    left, cut = limit, False

    def put(text: str) -> bool:
        nonlocal left
        if len(text) > left:
            return False
        out.append(text)
        left -= len(text)
        return True

    def walk(v: Any) -> bool:
        nonlocal cut
        if not isinstance(v, (list, tuple, dict)):
            return put(_text(v, max(left - 24, 16)))
        is_map = isinstance(v, dict)
        if not put("{" if is_map else "["):
            return False
        for i, item in enumerate(itertools.islice(v.items() if is_map else v, limit)):
            if not ((not i or put(", ")) and (walk(item[0]) and put("=") and walk(item[1]) if is_map
                                              else walk(item))):
                if not cut:
                    out.append(f"...({len(v)} items)")
                    cut = True
                return False
        return put("}" if is_map else "]")

    walk(value)
    return "".join(out)


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"  # str() of a huge int is slow, or refused
    return str(value)


class RekognitionError(Exception):
    """Base class: an error with an AWS error code, an HTTP status and a message (at most
    MAX_MESSAGE_CHARS characters: a longer one is cut, saying how long it was)."""

    code: str = "InternalServerError"
    status: int = 500

    def __init__(self, message: str) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        if len(json.dumps(message)) > MAX_MESSAGE_CHARS - 512:
            # as JSON (backslashes, quotes, lone surrogates, control characters: up to 6 characters each) the
            # answer would pass MAX_MESSAGE_CHARS: cut to what cannot, whatever the characters
            # (its head and its tail: the tail often says why)
            text = message.encode("ascii", "backslashreplace").decode("ascii")
            keep = (MAX_MESSAGE_CHARS - 512) // 12
            if len(text) > 2 * keep:
                text = f"{text[:keep]}...({len(text) - 2 * keep} characters left out)...{text[-keep:]}"
            message = text
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, str]:
        return {"__type": self.code, "message": self.message}


class ClientFault(RekognitionError):
    status = 400


def _error(name: str, status: int = 400, base: type[RekognitionError] = ClientFault) -> type[RekognitionError]:
    return type(name, (base,), {"code": name, "status": status, "__module__": __name__})


InvalidParameterException = _error("InvalidParameterException")
InvalidImageFormatException = _error("InvalidImageFormatException")
ImageTooLargeException = _error("ImageTooLargeException")
ResourceNotFoundException = _error("ResourceNotFoundException")
ResourceAlreadyExistsException = _error("ResourceAlreadyExistsException")
ResourceInUseException = _error("ResourceInUseException")
InvalidS3ObjectException = _error("InvalidS3ObjectException")
InvalidPaginationTokenException = _error("InvalidPaginationTokenException")
ValidationException = _error("ValidationException")
ConflictException = _error("ConflictException")
IdempotentParameterMismatchException = _error("IdempotentParameterMismatchException")
ServiceQuotaExceededException = _error("ServiceQuotaExceededException")
AccessDeniedException = _error("AccessDeniedException")
# The server lacks the memory for this request right now (a MemoryError while it ran): a capacity problem,
# not the request's fault. HTTP 400 as Rekognition sends it; botocore's retry handlers retry it.
ProvisionedThroughputExceededException = _error("ProvisionedThroughputExceededException")
# Protocol-level errors: what AWS answers for a request it cannot route or parse.
UnknownOperationException = _error("UnknownOperationException")
SerializationException = _error("SerializationException")
# A Rekognition operation this server knows and deliberately does not offer (no model for it ships here; see
# faceledger.service.unsupported): one code for all of them, the message naming the operation and saying why.
# A subclass of UnknownOperationException, so what handles an operation it cannot run handles these too.
UnsupportedOperationException = _error("UnsupportedOperationException", 400, UnknownOperationException)
InternalServerError = _error("InternalServerError", 500, RekognitionError)
# Too many image analyses at once (the server's queue is full): Rekognition's answer to a caller over its
# throughput, HTTP 400; botocore's retry handlers treat it as throttling and retry with backoff.
ProvisionedThroughputExceededException = _error("ProvisionedThroughputExceededException")
# Stored video: too many jobs queued or running; a video over 10 GB or 6 hours.
LimitExceededException = _error("LimitExceededException")
VideoTooLargeException = _error("VideoTooLargeException")
# The request body did not arrive in time (a slow or stalled client); AWS's code, HTTP 408, retried by botocore.
RequestTimeoutException = _error("RequestTimeoutException", 408)


class ServiceUnavailable(RekognitionError):
    """The server cannot serve the request now through no fault of the caller (its disk is full, its face
    models are not available): Rekognition's ``InternalServerError`` ("experienced a service issue, try your
    call again") with HTTP 503 and a message saying what is wrong; botocore retries it."""

    code = "InternalServerError"
    status = 503


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 answer to a storage failure (full disk, I/O error; see faceledger.store.errors), or None when
    ``exc`` is not one."""
    from ..store.errors import storage_failure

    failure = storage_failure(exc)
    if failure is None:
        return None
    retry = "retry when space has been freed" if failure.disk_full else "retry later"
    return ServiceUnavailable(f"faceledger cannot use its storage: {failure.reason}. The request was not carried "
                              f"out and nothing was changed; stored data is intact; {retry}")

__all__ = [
    "clip",
    "preview",
    "RekognitionError",
    "ClientFault",
    "InvalidParameterException",
    "InvalidImageFormatException",
    "ImageTooLargeException",
    "ResourceNotFoundException",
    "ResourceAlreadyExistsException",
    "ResourceInUseException",
    "InvalidS3ObjectException",
    "InvalidPaginationTokenException",
    "ValidationException",
    "ConflictException",
    "IdempotentParameterMismatchException",
    "ServiceQuotaExceededException",
    "AccessDeniedException",
    "ProvisionedThroughputExceededException",
    "UnknownOperationException",
    "SerializationException",
    "UnsupportedOperationException",
    "InternalServerError",
    "ProvisionedThroughputExceededException",
    "RequestTimeoutException",
    "LimitExceededException",
    "VideoTooLargeException",
    "ServiceUnavailable",
    "unavailable",
]
