"""Rekognition's error codes, as exceptions the service raises and the transports render.

Every error a client can cause is one of these. The HTTP layer renders them as
AWS JSON 1.1 errors (``{"__type": code, "message": ...}`` with ``status``), the
in-process :class:`faceledger.Client` re-raises them as botocore ``ClientError``
subclasses, so callers see the same thing whichever way they talk to us.
"""

from __future__ import annotations


class RekognitionError(Exception):
    """Base class: an error with an AWS error code, an HTTP status and a message."""

    code: str = "InternalServerError"
    status: int = 500

    def __init__(self, message: str) -> None:
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
# Protocol-level errors: what AWS answers for a request it cannot route or parse.
UnknownOperationException = _error("UnknownOperationException")
SerializationException = _error("SerializationException")
InternalServerError = _error("InternalServerError", 500, RekognitionError)
# Too many image analyses at once (the server's queue is full): Rekognition's answer to a caller over its
# throughput, HTTP 400; botocore's retry handlers treat it as throttling and retry with backoff.
ProvisionedThroughputExceededException = _error("ProvisionedThroughputExceededException")
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
    "UnknownOperationException",
    "SerializationException",
    "InternalServerError",
    "ProvisionedThroughputExceededException",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "unavailable",
]
