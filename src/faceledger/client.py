"""``faceledger.Client``: the service in-process, with boto3's Rekognition client's methods.

>>> client = Client(data_dir="./data")
>>> client.create_collection(CollectionId="staff")["StatusCode"]
200

Method names, parameters, response dicts and exceptions are those of
``boto3.client("rekognition")``: errors raise the same botocore ``ClientError``
subclasses, reachable as ``client.exceptions.ResourceNotFoundException``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from botocore.errorfactory import ClientExceptionsFactory
from botocore import xform_name

from .service import RequestContext, RekognitionError, Service, ServiceConfig
from .service import model

from .service import risk
from .service.errors import unavailable
from .service.governance import EXTENSIONS

_METHODS = {xform_name(name): name for name in model.operation_names()}
# faceledger's own operations (collection policies, erasure, retention), as snake_case methods too
_METHODS.update({xform_name(name): name for name in EXTENSIONS})


class Client:
    """An in-process Rekognition client over a local data folder (or a given Service)."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        buckets_dir: str | Path | None = None,
        service: Service | None = None,
        context: RequestContext | None = None,
    ) -> None:
        if service is None:
            if data_dir is None:
                raise TypeError("Client needs data_dir or service")
            service = Service(
                ServiceConfig(Path(data_dir), Path(buckets_dir) if buckets_dir is not None else None)
            )
        self._service = service
        self._context = context or RequestContext(transport="python")
        self.exceptions = ClientExceptionsFactory().create_client_exceptions(model.SERVICE_MODEL)

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        operation = _METHODS.get(name) or {xform_name(n): n for n in EXTENSIONS}.get(name)
        if operation is None:
            raise AttributeError(f"'Client' object has no attribute {name!r}")

        def call(**params: Any) -> dict[str, Any]:
            return self._call(operation, params)

        call.__name__ = name
        call.__doc__ = (f"faceledger's {operation}." if operation in EXTENSIONS
                        else f"Rekognition {operation}, as boto3's ``{name}``.")
        return call

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        context = RequestContext(
            transport=self._context.transport,
            source_ip=self._context.source_ip,
            access_key_id=self._context.access_key_id,
            purpose=self._context.purpose,
            case_reference=self._context.case_reference,
            principal=self._context.principal,
            policy=self._context.policy,
            max_expected_false_matches=self._context.max_expected_false_matches,
            min_margin=self._context.min_margin,
        )
        try:
            response, meta = self._service.call_with_meta(operation, params, context)
        except Exception as exc:
            # a storage failure (full disk) is a 503 InternalServerError, as over HTTP
            err = exc if isinstance(exc, RekognitionError) else unavailable(exc)
            if err is None:
                raise
            error = {
                "Error": {"Code": err.code, "Message": err.message},
                "ResponseMetadata": {"RequestId": context.request_id, "HTTPStatusCode": err.status},
                "message": err.message,
            }
            raise self.exceptions.from_code(err.code)(error, operation) from (None if err is exc else exc)
        response = copy.deepcopy(response)
        response["ResponseMetadata"] = {
            "RequestId": context.request_id,
            "HTTPStatusCode": 200,
            "HTTPHeaders": risk.headers(meta),
            "RetryAttempts": 0,
        }
        return response

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_METHODS))
