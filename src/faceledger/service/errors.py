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
# The server lacks the memory for this request right now (a MemoryError while it ran): a capacity problem,
# not the request's fault. HTTP 400 as Rekognition sends it; botocore's retry handlers retry it.
ProvisionedThroughputExceededException = _error("ProvisionedThroughputExceededException")
# Protocol-level errors: what AWS answers for a request it cannot route or parse.
UnknownOperationException = _error("UnknownOperationException")
SerializationException = _error("SerializationException")
InternalServerError = _error("InternalServerError", 500, RekognitionError)

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
    "ProvisionedThroughputExceededException",
    "UnknownOperationException",
    "SerializationException",
    "InternalServerError",
]
