"""The HTTP transport: Rekognition's AWS JSON 1.1 protocol on Starlette.

``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` (or
``Faceledger.<Operation>`` for faceledger's own operations) and a JSON body;
answers with the operation's JSON, or an AWS error body
(``{"__type": ..., "message": ...}``) that botocore turns into ClientError.
Every request's SigV4 signature is checked against faceledger's keys first
(unless the app runs in development mode, loopback only); the signature must
cover Host, X-Amz-Date, X-Amz-Target, every X-Faceledger-* header and the body
(docs/accountability.md). Operations run in worker threads, so inference never
blocks the event loop; image analyses (the operations that take an ``Image``) on a pool of their own, bounded
(:class:`AnalysisQueue`), so that they never hold up cheap calls.

``GET /health``: ``{"status": "ok" | "unavailable", "reasons": [...], "storage": {...},
"models": {...}, ...}``, HTTP 200 when ok, else 503 (a full disk, models not loaded).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
from typing import Any, AsyncIterator, Iterator

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .httpserver import ServerLimits
from .service import RequestContext, RekognitionError, Service
from .service import model
from .service import risk
from .service.auth import HttpRequest
from .service.dispatch import unauthenticated
from .service.errors import (
    ImageTooLargeException,
    InternalServerError,
    ProvisionedThroughputExceededException,
    RequestTimeoutException,
    UnknownOperationException,
    preview,
    unavailable,
)

log = logging.getLogger("faceledger.api")

TARGET_PREFIX = "RekognitionService."
FACELEDGER_PREFIX = "Faceledger."
CONTENT_TYPE = "application/x-amz-json-1.1"
# 5 MB of image bytes is about 7 MB of base64; a request body past this cannot be valid.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: A refusal made before the body is parsed (Service.precheck) names and records the collection when the body
#: is at most this long and reads as JSON; a longer one is never parsed for it.
PRECHECK_BYTES = 64 * 1024


def _small_params(raw: bytes) -> object:
    """A small body's params, read leniently to name a refusal's collection (Service.precheck), else None."""
    if len(raw) > PRECHECK_BYTES:
        return None
    try:
        return json.loads(raw)
    except Exception:  # any body at all: this only names the collection of a refusal
        return None


def _json(body: Any, status: int, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id, **(headers or {})},
    )


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _limit(value: str | None) -> float | None:
    """X-Faceledger-Max-Expected-False-Matches or -Min-Margin: a decimal number (NaN when it is not one, or
    is not finite: the search refuses it)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if len(text) > 64 or not _NUMBER.fullmatch(text):  # float() would take "1_000", "nan", "inf", "١"
        return float("nan")
    number = float(text)
    return number if math.isfinite(number) else float("nan")


#: An over-limit body up to this size is read and discarded before the refusal is sent, so that the client
#: (still sending) receives the AWS error instead of a connection reset; a longer one is refused at once and
#: its connection closed. Reading costs time in proportion to what was sent, and no memory.
DRAIN_BYTES = 4 * MAX_BODY_BYTES


async def _read_body(request: Request, timeout: float | None = None) -> bytes:
    """The request body, at most MAX_BODY_BYTES, all of it within ``timeout`` seconds (None: no limit), else
    RequestTimeoutException (the answer then closes the connection: a slow client cannot hold it).

    Over MAX_BODY_BYTES: ImageTooLargeException, after the rest of the body (up to DRAIN_BYTES in all) has been
    read and thrown away, so the answer reaches a client that is still sending (answering mid-body and closing
    reset the connection under load: the client saw no error code at all)."""
    declared = request.headers.get("content-length")
    declared_size = int(declared) if declared is not None and declared.isdigit() else None
    if declared_size is not None and declared_size > DRAIN_BYTES:
        raise ImageTooLargeException(f"Request body of {declared} bytes is over the {MAX_BODY_BYTES} byte limit")
    too_large = declared_size is not None and declared_size > MAX_BODY_BYTES
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    too_large = True
                    chunks.clear()
                if too_large:
                    if size > DRAIN_BYTES:
                        break
                    continue
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutException(
            f"The request body was not received within {timeout:g} s ({size} bytes arrived); closing the "
            "connection") from None
    if too_large:
        said = f"of {declared} bytes " if declared_size is not None else ""
        raise ImageTooLargeException(f"Request body {said}is over the {MAX_BODY_BYTES} byte limit")
    return b"".join(chunks)


def _image_operations() -> frozenset[str]:
    """The operations that analyse an image: those with a member of botocore's ``Image`` shape."""
    sm = model.SERVICE_MODEL
    ops = set()
    for name in sm.operation_names:
        shape = sm.operation_model(name).input_shape
        if shape is not None and any(m.name == "Image" for m in shape.members.values()):
            ops.add(name)
    return frozenset(ops)


IMAGE_OPERATIONS = _image_operations()


class AnalysisQueue:
    """At most ``workers`` image analyses run at once (on threads of their own) and at most ``queue`` wait;
    one more is refused at once with ProvisionedThroughputExceededException, which botocore retries with
    backoff. Other operations pass through (anyio's default thread pool)."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers, self.queue = max(1, int(workers)), max(0, int(queue))
        self.limiter = anyio.CapacityLimiter(self.workers)
        self.admitted = 0  # running or waiting; only touched on the event loop

    @contextlib.contextmanager
    def admit(self, operation: str) -> Iterator[anyio.CapacityLimiter | None]:
        if operation not in IMAGE_OPERATIONS:
            yield None
            return
        if self.admitted >= self.workers + self.queue:
            raise ProvisionedThroughputExceededException(
                f"This server is analysing {self.workers} image(s) with {self.queue} more waiting, the most it "
                "takes at once; retry later")
        self.admitted += 1
        try:
            yield self.limiter
        finally:
            self.admitted -= 1


#: A body with more JSON separators than this (``,`` ``[`` ``{``) costs much more memory to parse than its size
#: (up to about 25 times): no valid request comes near it (the longest list of the model is 4096 FaceIds).
EXPENSIVE_PARSE_ITEMS = 50_000


class ParseGate:
    """Bodies whose parse is expensive (more than EXPENSIVE_PARSE_ITEMS separators, counted in C for about a
    millisecond a megabyte) are handled one at a time, at most ``waiting`` more waiting; one more is refused at
    once with ProvisionedThroughputExceededException. The slot is held from the parse to the end of the call
    (:meth:`admit`), so the parsed body is gone before the next expensive one is parsed: concurrent hostile
    bodies cost the memory of one parse, not of one per connection (nor of two, one parsed while the last one's
    call still held its objects); a valid request never waits here."""

    def __init__(self, waiting: int = 2) -> None:
        self.limiter = anyio.CapacityLimiter(1)
        self.waiting = waiting
        self.admitted = 0  # only touched on the event loop

    @staticmethod
    def expensive(raw: bytes) -> bool:
        return raw.count(b",") + raw.count(b"[") + raw.count(b"{") > EXPENSIVE_PARSE_ITEMS

    @contextlib.asynccontextmanager
    async def admit(self, raw: bytes):
        """Hold the slot of an expensive body for the block (parse and call); ProvisionedThroughputExceeded-
        Exception when too many wait. A cheap body passes at once. Yields whether the body is expensive."""
        if not self.expensive(raw):
            yield False
            return
        if self.admitted > self.waiting:
            raise ProvisionedThroughputExceededException(
                "This server is already parsing request bodies of more than "
                f"{EXPENSIVE_PARSE_ITEMS} JSON values; retry later")
        self.admitted += 1
        try:
            async with self.limiter:
                yield True
        finally:
            self.admitted -= 1

    async def decode(self, raw: bytes) -> Any:
        """The body's parameters (strict JSON, depth-bounded), parsed on a worker thread."""
        return await anyio.to_thread.run_sync(model.decode_body, raw)


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
    limits: ServerLimits | None = None,
) -> Starlette:
    """The ASGI app over ``service``; models load once, at start-up unless ``preload_models`` is off.

    ``authenticate=False`` is development mode (no signature checks; the CLI allows it on loopback
    only). ``retention_interval_s``: how often the retention sweep runs (None: never). ``limits``: the
    body timeout and the image-analysis queue (:class:`faceledger.httpserver.ServerLimits`; its defaults).
    Start-up fails (the lifespan raises) when a face model cannot be loaded.
    """
    from .vision.models import face_models_for
    from .vision.npm import cache_dir

    limits = (limits or ServerLimits()).resolved()
    analysis = AnalysisQueue(limits.analysis_workers, limits.analysis_queue)
    parsing = ParseGate()
    # the server's model first (it may be an engine given to the Service), then the others collections may use
    face_models = list(dict.fromkeys([service.model_version, *face_models_for(service.config.engine)]))
    models_state: dict[str, Any] = {"ready": None if not preload_models else False, "face_models": face_models,
                                    "cache": str(cache_dir()), "error": None}

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

    from .service import streams as live_streams

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload_models:
            def load() -> None:
                for face_model in face_models:
                    service.engine_for(face_model)  # fetched, converted, run once; or ServiceUnavailable

            try:
                await anyio.to_thread.run_sync(load)
            except RekognitionError as exc:
                models_state["error"] = exc.message
                log.error("%s", exc.message)
                raise
            models_state["ready"] = True
        await anyio.to_thread.run_sync(live_streams.host, service)  # runs stream processors; resumes RUNNING ones
        service.video_jobs.start()  # stored-video workers: unfinished jobs resume from their last checkpoint
        async with anyio.create_task_group() as tasks:
            if retention_interval_s:
                tasks.start_soon(sweep_forever)
            tasks.start_soon(flush_refusals_forever)
            yield
            tasks.cancel_scope.cancel()
        await anyio.to_thread.run_sync(live_streams.shutdown, service)
        await anyio.to_thread.run_sync(service.video_jobs.stop)
        await anyio.to_thread.run_sync(functools.partial(service.flush_refusals, force=True))
        save_indexes = getattr(getattr(service.store, "indexes", None), "save_all", None)
        if save_indexes is not None:  # a clean stop saves the vector indexes: the next start re-reads nothing
            await anyio.to_thread.run_sync(save_indexes)

    async def rekognition(request: Request) -> Response:
        context = _context(request, authenticate)
        target = request.headers.get("x-amz-target", "")
        name = target.split(".", 1)[-1][:128] or "(none)"
        recorded = False  # authenticate and Service.call record what they refuse; the rest is recorded here
        try:
            raw = await _read_body(request, limits.body_timeout)
            if authenticate:
                http = HttpRequest(request.method, request.url.path, request.url.query, request.headers, raw)
                recorded = True
                context = await anyio.to_thread.run_sync(service.authenticate, http, context, name)
                recorded = False
            operation = _operation(target)
            # a key that may not call it anywhere: refused (and recorded) before the body is parsed or validated
            recorded = True
            await anyio.to_thread.run_sync(service.precheck, operation, context, lambda: _small_params(raw))
            recorded = False
            async with parsing.admit(raw) as expensive:  # expensive bodies one at a time, parse and call
                params = await parsing.decode(raw)
                call = functools.partial(service.call_with_meta, operation, params, context, wire=True)
                try:
                    with analysis.admit(operation) as limiter:  # image analyses: bounded, else refused (recorded)
                        recorded = True
                        response, meta = await anyio.to_thread.run_sync(call, limiter=limiter)
                except RekognitionError as exc:
                    if expensive:  # its traceback's frames hold the parsed body: not past the slot
                        exc.__traceback__ = exc.__context__ = exc.__cause__ = None
                    raise
                finally:
                    params = call = None
            if target.startswith(FACELEDGER_PREFIX):
                body = json.loads(json.dumps(response, default=_plain))
            else:
                body = model.serialize_response(operation, response)
            return _json(body, 200, context.request_id, risk.headers(meta))
        except RekognitionError as exc:
            if not recorded:
                await anyio.to_thread.run_sync(service.record_refusal, name, context, exc)
            close = {"Connection": "close"} if isinstance(exc, RequestTimeoutException) else None
            return _json(exc.to_body(), exc.status, context.request_id, close)
        except Exception as exc:
            down = unavailable(exc)  # the storage failed (full disk): a 503 that says so; the cause in the log
            if down is not None:
                log.error("request refused, storage unavailable: %s", exc)
                return _json(down.to_body(), down.status, context.request_id)
            log.exception("request %s failed", context.request_id)  # a bug: never a traceback to the client
            err = InternalServerError("Internal server error")
            return _json(err.to_body(), err.status, context.request_id)

    async def health(request: Request) -> Response:
        status_of = getattr(service.store, "storage_status", None)
        storage = await anyio.to_thread.run_sync(status_of) if status_of is not None else {"ok": True}
        reasons = []
        if not storage.get("ok", True):
            reasons.append(f"storage: {storage.get('reason')}")
        vector_status = getattr(getattr(service.store, "indexes", None), "status", None)
        vectors = await anyio.to_thread.run_sync(vector_status) if vector_status is not None else None
        if vectors is not None and not vectors["ok"]:
            reasons.append(f"vector store: {vectors['reason']}")
        if models_state["ready"] is False:
            reasons.append(f"models: {models_state['error'] or 'not loaded yet'}")
        body = {"status": "unavailable" if reasons else "ok", "reasons": reasons, "storage": storage,
                "vector_store": vectors,
                "models": models_state, "calibration": service.calibration_source(),
                "max_expected_false_matches": service.config.max_expected_false_matches,
                "min_margin": service.config.min_margin, "face_model": service.model_version,
                "analysis": {"workers": analysis.workers, "queue": analysis.queue, "admitted": analysis.admitted},
                "streams": live_streams.summary(service)}
        return JSONResponse(body, status_code=503 if reasons else 200)

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", rekognition, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
