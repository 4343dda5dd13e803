"""The HTTP transport: Rekognition's AWS JSON 1.1 protocol on Starlette.

``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` (or
``Faceledger.<Operation>`` for faceledger's own operations) and a JSON body;
answers with the operation's JSON, or an AWS error body
(``{"__type": ..., "message": ...}``) that botocore turns into ClientError.
Every request's SigV4 signature is checked against faceledger's keys first
(unless the app runs in development mode, loopback only); the signature must
cover Host, X-Amz-Date, X-Amz-Target, every X-Faceledger-* header and the body
(docs/accountability.md). Operations run in worker threads, so inference never
blocks the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .service import RequestContext, RekognitionError, Service
from .service import model
from .service import risk
from .service.auth import HttpRequest
from .service.dispatch import unauthenticated
from .service.errors import (
    ImageTooLargeException,
    InternalServerError,
    SerializationException,
    UnknownOperationException,
    preview,
)

log = logging.getLogger("faceledger.api")

TARGET_PREFIX = "RekognitionService."
FACELEDGER_PREFIX = "Faceledger."
CONTENT_TYPE = "application/x-amz-json-1.1"
# 5 MB of image bytes is about 7 MB of base64; a request body past this cannot be valid.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _json(body: Any, status: int, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id, **(headers or {})},
    )


def _limit(value: str | None) -> float | None:
    """X-Faceledger-Max-Expected-False-Matches or -Min-Margin: a number (NaN when unreadable: the search
    refuses it)."""
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        return float("nan")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ImageTooLargeException(f"Request body of {declared} bytes is over the {MAX_BODY_BYTES} byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ImageTooLargeException(f"Request body is over the {MAX_BODY_BYTES} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _context(request: Request, authenticate: bool) -> RequestContext:
    """The request's context before its signature is checked: with ``authenticate`` the principal is
    ``unauthenticated[:<claimed key>]`` until :meth:`Service.authenticate` replaces it with the verified key;
    the X-Faceledger-* headers read here are refused there unless signed."""
    headers = request.headers
    auth = headers.get("authorization", "")
    key_id = None
    if "Credential=" in auth:
        key_id = auth.split("Credential=", 1)[1].split("/", 1)[0][:128] or None
    return RequestContext(
        transport="http",
        source_ip=request.client.host if request.client else None,
        access_key_id=key_id,
        purpose=headers.get("x-faceledger-purpose"),
        case_reference=headers.get("x-faceledger-case"),
        principal=unauthenticated(headers) if authenticate else f"dev:{key_id or 'anonymous'}",
        max_expected_false_matches=_limit(headers.get(risk.HEADER_LIMIT)),
        min_margin=_limit(headers.get(risk.HEADER_MARGIN)),
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "timestamp"):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _operation(target: str) -> str:
    if target.startswith(TARGET_PREFIX):
        operation = target[len(TARGET_PREFIX) :]
        from .service.governance import EXTENSIONS

        if operation in EXTENSIONS:  # faceledger's operations only under their own prefix
            raise UnknownOperationException(f"Unknown operation: {preview(operation, 128)}")
        return operation  # an unknown one: Service.call answers UnknownOperationException, and records it
    if target.startswith(FACELEDGER_PREFIX):
        from .service.governance import EXTENSIONS

        operation = target[len(FACELEDGER_PREFIX) :]
        if operation in EXTENSIONS:
            return operation
        raise UnknownOperationException(f"Unknown faceledger operation: '{preview(operation, 128)}'")
    raise UnknownOperationException(f"Unknown or missing X-Amz-Target: '{preview(target, 128)}'")


def create_app(
    service: Service,
    *,
    preload_models: bool = True,
    authenticate: bool = True,
    retention_interval_s: float | None = 3600.0,
) -> Starlette:
    """The ASGI app over ``service``; models load once, at start-up unless ``preload_models`` is off.

    ``authenticate=False`` is development mode (no signature checks; the CLI allows it on loopback
    only). ``retention_interval_s``: how often the retention sweep runs (None: never).
    """

    async def sweep_forever() -> None:
        from .service import RequestContext as Ctx

        while True:
            try:
                context = Ctx(transport="retention", principal="faceledger:retention")
                await anyio.to_thread.run_sync(functools.partial(service.call, "ApplyRetention", {}, context))
            except Exception:
                log.exception("retention sweep failed")
            await anyio.sleep(retention_interval_s)

    async def flush_refusals_forever() -> None:
        while True:  # the aggregate rows of refused, unauthenticated requests, once a window
            await anyio.sleep(service.refusals.window_s)
            try:
                await anyio.to_thread.run_sync(service.flush_refusals)
            except Exception:
                log.exception("could not record refusal counts in the ledger")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload_models:
            await anyio.to_thread.run_sync(lambda: service.engine)
        async with anyio.create_task_group() as tasks:
            if retention_interval_s:
                tasks.start_soon(sweep_forever)
            tasks.start_soon(flush_refusals_forever)
            yield
            tasks.cancel_scope.cancel()
        await anyio.to_thread.run_sync(functools.partial(service.flush_refusals, force=True))

    async def rekognition(request: Request) -> Response:
        context = _context(request, authenticate)
        target = request.headers.get("x-amz-target", "")
        name = target.split(".", 1)[-1][:128] or "(none)"
        recorded = False  # authenticate and Service.call record what they refuse; the rest is recorded here
        try:
            raw = await _read_body(request)
            if authenticate:
                http = HttpRequest(request.method, request.url.path, request.url.query, request.headers, raw)
                recorded = True
                context = await anyio.to_thread.run_sync(service.authenticate, http, context, name)
                recorded = False
            operation = _operation(target)
            try:
                params = json.loads(raw) if raw.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SerializationException(f"Request body is not valid JSON: {exc}") from None
            call = functools.partial(service.call_with_meta, operation, params, context, wire=True)
            recorded = True
            response, meta = await anyio.to_thread.run_sync(call)
            if target.startswith(FACELEDGER_PREFIX):
                body = json.loads(json.dumps(response, default=_plain))
            else:
                body = model.serialize_response(operation, response)
            return _json(body, 200, context.request_id, risk.headers(meta))
        except RekognitionError as exc:
            if not recorded:
                await anyio.to_thread.run_sync(service.record_refusal, name, context, exc)
            return _json(exc.to_body(), exc.status, context.request_id)
        except Exception:  # a bug: log it, never show a traceback to the client
            log.exception("request %s failed", context.request_id)
            err = InternalServerError("Internal server error")
            return _json(err.to_body(), err.status, context.request_id)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "calibration": service.calibration_source(),
                             "max_expected_false_matches": service.config.max_expected_false_matches,
                             "min_margin": service.config.min_margin, "face_model": service.model_version})

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", rekognition, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
