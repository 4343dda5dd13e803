"""The HTTP transport: Rekognition's AWS JSON 1.1 protocol on Starlette.

``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and a JSON
body; answers with the operation's JSON, or an AWS error body
(``{"__type": ..., "message": ...}``) that botocore turns into ClientError.
Operations run in worker threads, so inference never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from typing import Any, AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .service import RequestContext, RekognitionError, Service
from .service import model
from .service.errors import (
    ImageTooLargeException,
    InternalServerError,
    SerializationException,
    UnknownOperationException,
)

log = logging.getLogger("faceledger.api")

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
# 5 MB of image bytes is about 7 MB of base64; a request body past this cannot be valid.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _json(body: Any, status: int, request_id: str) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id},
    )


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


def _context(request: Request) -> RequestContext:
    headers = request.headers
    auth = headers.get("authorization", "")
    key_id = None
    if "Credential=" in auth:
        key_id = auth.split("Credential=", 1)[1].split("/", 1)[0] or None
    return RequestContext(
        transport="http",
        source_ip=request.client.host if request.client else None,
        access_key_id=key_id,
        purpose=headers.get("x-faceledger-purpose"),
        case_reference=headers.get("x-faceledger-case"),
    )


def create_app(service: Service, *, preload_models: bool = True) -> Starlette:
    """The ASGI app over ``service``; models load once, at start-up unless ``preload_models`` is off."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload_models:
            await anyio.to_thread.run_sync(lambda: service.engine)
        yield

    async def rekognition(request: Request) -> Response:
        context = _context(request)
        try:
            target = request.headers.get("x-amz-target", "")
            if not target.startswith(TARGET_PREFIX):
                raise UnknownOperationException(f"Unknown or missing X-Amz-Target: {target!r}")
            operation = target[len(TARGET_PREFIX) :]
            raw = await _read_body(request)
            try:
                params = json.loads(raw) if raw.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SerializationException(f"Request body is not valid JSON: {exc}") from None
            call = functools.partial(service.call, operation, params, context, wire=True)
            response = await anyio.to_thread.run_sync(call)
            return _json(model.serialize_response(operation, response), 200, context.request_id)
        except RekognitionError as exc:
            return _json(exc.to_body(), exc.status, context.request_id)
        except Exception:  # a bug: log it, never show a traceback to the client
            log.exception("request %s failed", context.request_id)
            err = InternalServerError("Internal server error")
            return _json(err.to_body(), err.status, context.request_id)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", rekognition, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
