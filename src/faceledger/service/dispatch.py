"""The one dispatch point every operation passes through, whatever the transport.

``Service.call(operation, params, context)`` validates the request against
botocore's Rekognition model, runs the operation's function and returns its
response dict. Transports (HTTP, CLI, the in-process Client) call nothing else,
so authorization, collection policies and the audit ledger wrap this one method:

* the caller's key policy is checked first (``rekognition:<Op>`` / ``faceledger:<Op>`` on the
  collection's ARN, or ``*``), on a cheap look at the parameters (``CollectionId`` or
  ``ResourceArn``), before anything that costs in proportion to the request (validation, image
  decoding); then the request is validated; then the collection's policy;
* the operation runs inside the store's unit of work: its writes share one transaction, and the
  ledger entry is appended to that transaction before it commits (a failed or denied call rolls
  its writes back and is recorded in a small transaction of its own).

Signatures (HTTP) are checked before, by :meth:`Service.authenticate`. Refusals of requests that
are not authenticated are recorded through a per-source limit (:mod:`faceledger.service.refusals`).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from ..store import FaceStore
from ..store.sqlite import SQLiteStore
from ..vision import FaceEngine
from ..vision.models import ModelsUnavailable, prepare_engine
from ..vision.engine import FACE_MODELS, default_face_model
from ..vision.face_quality import CALIBRATED, FALLBACK, PAIR_BANDS
from ..vision.similarity import SimilarityScale
from . import auth, governance, model, tokens, unsupported
from .context import RequestContext, ServiceConfig
from .errors import (
    IdempotentParameterMismatchException,
    InvalidParameterException,
    ProvisionedThroughputExceededException,
    RekognitionError,
    ServiceUnavailable,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
    preview,
)
from .ledger import build_entry, collection_of
from .refusals import AGGREGATE_OPERATION, AGGREGATE_RESULT, Aggregate, RefusalLimiter

log = logging.getLogger("faceledger.service")

Handler = Callable[["Invocation", dict[str, Any]], dict[str, Any]]

#: How long a ClientRequestToken makes a repeated call return the first call's response.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
OPERATIONS: dict[str, Handler] = {}


def out_of_memory(operation_name: str) -> ProvisionedThroughputExceededException:
    """What a request answers when the server runs out of memory while running it (a MemoryError): a
    retryable capacity error, as Rekognition answers a request it has no capacity for, never a 500."""
    return ProvisionedThroughputExceededException(
        f"The server does not have the memory to run {operation_name} right now; try again later"
    )


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register the function implementing the Rekognition operation ``name``."""

    def register(fn: Handler) -> Handler:
        if name not in model.operation_names():
            raise ValueError(f"{name} is not an operation of botocore's Rekognition model")
        OPERATIONS[name] = fn
        return fn

    return register


def _lookup_key(value: Any) -> bool:
    """Whether an id of an unvalidated request may be looked up in the store (before validation, for the key's
    policy): a string without a NUL or a lone surrogate, which no stored id holds and which a store cannot take
    as a parameter (PostgreSQL refuses a NUL, neither SQLite nor PostgreSQL can encode a lone surrogate)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value[:2048].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Stream processor operations that name a processor (``Name``): authorized on the ARN of the collection it
#: searches, as CreateStreamProcessor is (resource_of); faceledger's GetStreamProcessorStatus too, so that a key
#: limited to one collection reads its own processors' counters and no other's.
PROCESSOR_OPERATIONS = frozenset({"StartStreamProcessor", "StopStreamProcessor", "DescribeStreamProcessor",
                                  "UpdateStreamProcessor", "DeleteStreamProcessor", "GetStreamProcessorStatus"})


@dataclass(frozen=True)
class Invocation:
    """One call of one operation: the service it runs in and who asked."""

    service: "Service"
    context: RequestContext
    # Side channel: what an operation reports about itself beyond Rekognition's response body
    # (ExpectedFalseMatches, ThresholdUsed). Transports send it as x-faceledger-* headers; the ledger
    # records it. Never added to the response body.
    meta: dict[str, Any] = field(default_factory=dict)
    # The face model this call computes and compares vectors with (a collection's FaceModelVersion);
    # None: the server's model for new collections.
    face_model: str | None = None

    @property
    def store(self) -> FaceStore:
        return self.service.store

    @property
    def config(self) -> ServiceConfig:
        return self.service.config

    @property
    def engine(self) -> FaceEngine:
        """The engine of this call's face model (see :meth:`for_model`; default: the server's model, used by
        new collections, DetectFaces and CompareFaces)."""
        if self.face_model is None:
            return self.service.engine
        return self.service.engine_for(self.face_model)

    @property
    def scale(self) -> SimilarityScale:
        if self.face_model is None:
            return self.service.scale
        return self.service.scale_for(self.face_model)

    def band_scale(self, band: str) -> SimilarityScale:
        """The Similarity scale of this call's face model for a pair of faces in quality ``band``
        (vision.face_quality.PAIR_BANDS). A band other than "calibrated" is reported in ``meta`` (QualityBand: the
        worst band this call scored a pair in; "... (uncalibrated)" when the model has no table for it)."""
        if band == CALIBRATED:
            return self.scale
        scale = self.service.band_scale_for(self.face_model or self.service.model_version, band)
        previous = str(self.meta.get("QualityBand", CALIBRATED)).split(" ")[0]
        if PAIR_BANDS.index(band) >= PAIR_BANDS.index(previous):
            self.meta["QualityBand"] = band if scale is not None else f"{band} (uncalibrated)"
        return self.scale if scale is None else scale

    def for_model(self, face_model: str) -> "Invocation":
        """This call, computing and comparing vectors with ``face_model`` (a collection's FaceModelVersion):
        a collection is always searched with the model it was created with. Shares ``meta``."""
        self.service.check_model(face_model)
        return replace(self, face_model=face_model)

    def now(self) -> datetime:
        return self.service.clock()

    def after_commit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once this call's transaction has committed (never if it rolls back)."""
        with self.store.unit_of_work() as unit:
            unit.after_commit.append(fn)


def open_store(config: ServiceConfig) -> FaceStore:
    """The store ``config`` names: PostgreSQL (``config.database``) or the data folder's SQLite file; its vectors
    searched in Milvus when ``config.vector_store`` names one (store/milvus.py)."""
    store = _open_records(config)
    if config.vector_store:
        from ..store.milvus import attach

        attach(store, config.vector_store)
    return store


def _open_records(config: ServiceConfig) -> FaceStore:
    if config.database:
        from ..store.postgres import PostgresStore, is_postgres_url

        if not is_postgres_url(config.database):
            raise ValueError(f"--database must be a postgresql:// URL, not {config.database.split(':')[0]!r}")
        # this node's approximate indexes are saved in its data folder (derived state: caught up on start)
        return PostgresStore(config.database, embedding_key=config.embedding_key,
                             index_dir=Path(config.data_dir) / "postgresql.index"
                             if Path(config.data_dir).is_dir() else None)
    return SQLiteStore(Path(config.data_dir) / "faceledger.db", embedding_key=config.embedding_key)


class Service:
    """A faceledger service over one store and one face engine."""

    def __init__(
        self,
        config: ServiceConfig,
        store: FaceStore | None = None,
        *,
        engine: FaceEngine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        from . import operations  # noqa: F401  (registers the operation functions)

        self.config = config
        self.store = store if store is not None else open_store(config)
        self.clock = clock
        self._engines: dict[str, FaceEngine] = {}
        if engine is not None:
            self._engines[engine.model_version] = engine
        self._model = engine.model_version if engine is not None else (
            config.face_model or default_face_model(config.engine))
        self._scales: dict[str, SimilarityScale] = {}
        self._lock = threading.Lock()
        self.refusals = RefusalLimiter()

    @property
    def engine(self) -> FaceEngine:
        """The engine of the server's face model, loaded on first use (collection operations never need it)."""
        return self.engine_for(self._model)

    def engine_for(self, face_model: str) -> FaceEngine:
        """The engine computing ``face_model``'s vectors: a collection is always searched with the model it
        was created with, whatever the server's model for new collections is."""
        eng = self._engines.get(face_model)
        if eng is None:
            self.check_model(face_model)
            with self._lock:
                eng = self._engines.get(face_model)
                if eng is None:
                    try:  # fetched, converted, loaded and run once (vision.models), or a clear 503
                        eng = prepare_engine(self.config.detector_upsample, self.config.engine, face_model,
                                             detector=self.config.detector)
                    except ModelsUnavailable as exc:
                        raise ServiceUnavailable(str(exc)) from exc
                    self._engines[face_model] = eng
        return eng

    @property
    def scale(self) -> SimilarityScale:
        """The Similarity scale of the server's face model."""
        return self.scale_for(self._model)

    def scale_for(self, face_model: str) -> SimilarityScale:
        """``face_model``'s scale: the user calibration (--calibration) when it is for that model, else
        the packaged table."""
        sc = self._scales.get(face_model)
        if sc is None:
            cal = self.config.calibration
            if cal is not None and (face_model == self._model or calibration_model(cal) == face_model):
                sc = load_calibration(cal, face_model)
            else:
                sc = SimilarityScale.load(face_model)
            self._scales[face_model] = sc
        return sc

    def band_scale_for(self, face_model: str, band: str) -> SimilarityScale | None:
        """``face_model``'s packaged table for pairs in quality ``band`` (bench/degradation.py), or, where it
        has none, the table of the band's fallback (vision.face_quality.FALLBACK: covered-both -> degraded-both),
        or None (then its main table is all there is, and the band is reported uncalibrated)."""
        key = f"{face_model}.{band}"
        if key not in self._scales:
            try:
                self._scales[key] = SimilarityScale.load(face_model, band)
            except ValueError:
                fallback = FALLBACK.get(band)
                self._scales[key] = (  # type: ignore[assignment]
                    self.band_scale_for(face_model, fallback) if fallback else None)
        return self._scales[key]

    def calibration_source(self) -> str:
        """Which calibration Similarity comes from (the packaged table, or --calibration FILE)."""
        if self.config.calibration is not None:
            return f"{self.config.calibration} ({self.scale.meta.get('source', 'user calibration')})"
        return f"packaged table similarity-{self.model_version}.json"

    @property
    def model_version(self) -> str:
        """FaceModelVersion of new collections (without loading any weights)."""
        return self._model

    def check_model(self, face_model: str) -> None:
        """InvalidParameterException unless this server can compute ``face_model``'s vectors."""
        if face_model in self._engines:
            return
        if face_model not in FACE_MODELS:
            raise InvalidParameterException(
                f"Face model {face_model} is unknown to this server (it knows {', '.join(FACE_MODELS)})")
        if self.config.engine == "dlib" and face_model != "dlib-resnet-v1":
            raise InvalidParameterException(
                f"Face model {face_model} needs the onnx engine; this server runs --engine dlib")

    @functools.cached_property
    def video_jobs(self):
        """The stored-video job workers (service/video_jobs.py), started by the server or by the first job."""
        from .video_jobs import VideoJobRunner

        return VideoJobRunner(self)

    # -- the dispatch point -----------------------------------------------------------------

    def _handler(self, operation_name: str) -> tuple[str, Handler]:
        """(IAM namespace, the operation's function); UnknownOperationException. Cheap: no look at the params."""
        if operation_name in governance.EXTENSIONS:
            return "faceledger", governance.EXTENSIONS[operation_name]
        handler = OPERATIONS.get(operation_name)
        if handler is None:
            if operation_name in unsupported.UNSUPPORTED:  # refused by design, saying why (before any parsing)
                raise UnsupportedOperationException(unsupported.message(operation_name))
            if operation_name in model.operation_names():
                raise UnknownOperationException(f"faceledger does not implement {operation_name}")
            raise UnknownOperationException(f"Unknown operation: {preview(operation_name, 128)}")
        return "rekognition", handler

    def _validate(self, operation_name: str, namespace: str, params: Any, wire: bool) -> Any:
        """The request, validated against the model (faceledger's operations check their own members)."""
        if namespace == "faceledger":
            if params is not None and not isinstance(params, dict):
                raise ValidationException("Request must be a JSON object")
            return dict(params or {})
        return model.parse_request(operation_name, params, wire=wire)

    def _resolve(self, operation_name: str, params: Any, wire: bool) -> tuple[str, Handler, Any]:
        namespace, handler = self._handler(operation_name)
        return namespace, handler, self._validate(operation_name, namespace, params, wire)

    def resource_of(self, request: Any, operation: str | None = None) -> str:
        """The IAM resource a request acts on: its collection's ARN (``CollectionId``, or the collection of a
        ``ResourceArn``, or -- for a video Get* that names only a ``JobId`` -- the collection of that job, as
        GetFaceSearch's; for a stream processor named by ``Name`` or by its ARN, the collection it searches),
        else ``*``. Cheap on unvalidated params: an id past the model's 255 characters (an
        invalid one, refused by validation next) is cut to 256 before it is matched against policies."""
        cid = self.collection_named(request, operation)
        return self.config.collection_arn(cid[:256]) if cid is not None else "*"

    def collection_named(self, request: Any, operation: str | None = None) -> str | None:
        """The collection a request acts on, also through a JobId or a stream processor (:meth:`resource_of`);
        the ledger records it, so `audit list --collection` shows who read a face search job's results or
        started a processor searching that collection."""
        cid = collection_of(request)
        if cid is None and isinstance(request, dict) and _lookup_key(request.get("JobId")):
            job = self.store.get_video_job(request["JobId"][:256])
            cid = job.collection_id if job is not None else None
        if cid is None and isinstance(request, dict):
            cid = self._processor_collection(request, operation)
        return cid

    def _processor_collection(self, request: dict, operation: str | None) -> str | None:
        """The collection a stream processor searches, for a request naming the processor (Start, Stop, Describe,
        Update, Delete by ``Name``; the tag operations by its ARN): starting one is a live search of it."""
        from ..store.streams import StreamTables

        name, arn = request.get("Name"), request.get("ResourceArn")
        if operation in PROCESSOR_OPERATIONS and _lookup_key(name):
            record = StreamTables(self.store).get_processor(name[:256])
        elif _lookup_key(arn) and ":streamprocessor/" in arn:
            record = StreamTables(self.store).processor_by_arn(arn[:2048])
        else:
            return None
        search = ((record.definition.get("Settings") or {}).get("FaceSearch") or {}) if record else {}
        cid = search.get("CollectionId")
        return cid if isinstance(cid, str) else None

    def precheck(self, operation_name: str, context: RequestContext,
                 small_params: Callable[[], Any] | None = None) -> None:
        """Before a request body is parsed: AccessDeniedException (recorded) when the caller's policy allows the
        operation on no resource at all, so that a key that may not call it cannot make the server parse or
        validate its body. ``small_params()``, called only for a refusal, gives the body's params when they are
        cheap to read (a small body), so that the refusal names and records its collection. An unknown
        operation passes (:meth:`call` answers it)."""
        if context.policy is None:
            return
        try:
            namespace, _ = self._handler(operation_name)
        except UnknownOperationException:
            return
        seen: dict[str, Any] = {}

        def resource() -> str | None:
            seen["params"] = small_params() if small_params is not None else None
            return self.resource_of(seen["params"], operation_name) if isinstance(seen["params"], dict) else None

        try:
            auth.authorize_anywhere(context.policy, context.who(), f"{namespace}:{operation_name}", resource)
        except RekognitionError as exc:
            params = seen.get("params")
            cid = self.collection_named(params, operation_name) if isinstance(params, dict) else None
            request = {"CollectionId": cid[:256]} if cid else None
            try:
                self.store.append_ledger(self._entry(operation_name, context, request, None, exc.code, exc.message,
                                                     []))
            except Exception:
                log.exception("could not record a refused %s in the ledger", operation_name)
            raise

    def call(
        self, operation_name: str, params: Any, context: RequestContext | None = None, *, wire: bool = False
    ) -> dict[str, Any]:
        """Run one operation: validate, authorize, apply the collection's policy, run, record."""
        return self.call_with_meta(operation_name, params, context, wire=wire)[0]

    def call_with_meta(
        self, operation_name: str, params: Any, context: RequestContext | None = None, *, wire: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`call`, and the operation's side-channel metadata (``Invocation.meta``) for the transport."""
        context = context or RequestContext()
        meta: dict[str, Any] = {}
        request: Any = params
        validated = False
        notes: list[str] = []
        with self.store.unit_of_work() as unit:
            try:
                namespace, handler = self._handler(operation_name)
                if context.policy is not None:  # before any work in proportion to the request's size
                    auth.authorize(context.policy, context.who(), f"{namespace}:{operation_name}",
                                   self.resource_of(params, operation_name))
                request = self._validate(operation_name, namespace, params, wire)
                validated = True
                cid = collection_of(request)
                if cid is not None and operation_name in governance.SEARCHES:
                    notes = governance.enforce(self.store.get_collection_policy(cid), operation_name, request,
                                               context, cid)
                response = self._run_idempotent(operation_name, handler, Invocation(self, context, meta), request)
            except BaseException as exc:
                unit.rollback()
                if isinstance(exc, MemoryError):  # the server's capacity, not the request: never a 500
                    log.warning("%s ran out of memory; answered ProvisionedThroughputExceededException",
                                operation_name)
                    exc = out_of_memory(operation_name)
                if isinstance(exc, RekognitionError):
                    result, message = exc.code, exc.message
                elif isinstance(exc, Exception):
                    result, message = "InternalServerError", f"{type(exc).__name__}"
                else:
                    raise
                try:
                    unit.commit(self._entry(operation_name, context, request, None, result, message, notes,
                                            validated=validated))
                except Exception:  # never hide the call's own error behind the ledger's
                    log.exception("could not record %s %s in the ledger", operation_name, result)
                raise exc
            unit.commit(self._entry(operation_name, context, request, response, "OK", None, notes, meta))
        return response, meta

    def _run_idempotent(self, operation: str, handler: Handler, inv: "Invocation", request: Any) -> dict[str, Any]:
        """Run ``handler``; for a request with a ClientRequestToken (CreateUser, DeleteUser, AssociateFaces,
        DisassociateFaces), a repeat of the same request with the same token within IDEMPOTENCY_WINDOW returns
        the first call's response without running it again (a retried CreateUser does not fail with
        ConflictException); the same token with other parameters is IdempotentParameterMismatchException.
        Tokens are per caller and operation."""
        import hashlib
        import json

        token = request.get("ClientRequestToken") if isinstance(request, dict) else None
        if token is None:
            return handler(inv, request)
        who = inv.context.who()
        params = {k: v for k, v in request.items() if k != "ClientRequestToken"}
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        now = self.clock()
        seen = self.store.get_request_token(who, operation, token, now - IDEMPOTENCY_WINDOW)
        if seen is not None:
            if seen[0] != fingerprint:
                raise IdempotentParameterMismatchException(
                    f"ClientRequestToken {token} was used with other parameters for {operation}")
            inv.meta["IdempotentReplay"] = True
            return json.loads(seen[1])
        response = handler(inv, request)
        self.store.put_request_token(who, operation, token, fingerprint, json.dumps(response, default=str), now,
                                     now - IDEMPOTENCY_WINDOW)
        return response

    def _entry(self, operation: str, context: RequestContext, request: Any, response: Any, result: str,
               message: str | None, notes: list[str], meta: dict[str, Any] | None = None, *, validated: bool = True):
        try:
            collection = self.collection_named(request, operation)
        except Exception:  # noqa: BLE001 - the store cannot be read: the entry names what the request names
            collection = collection_of(request)
        return build_entry(when=self.clock(), operation=operation, context=context, request=request,
                           response=response, result=result, message=message, notes=notes, meta=meta,
                           validated=validated, collection_id=collection)

    def record_refusal(self, operation: str, context: RequestContext, exc: RekognitionError) -> None:
        """Record a request refused before dispatch (unreadable body, unknown target, bad signature, ...).

        A request that is not authenticated (principal ``unauthenticated[:<claimed key>]``) goes through the
        per-source limit (:mod:`faceledger.service.refusals`): recorded in full, or counted into its source's
        aggregate row. Never raises: a refusal the ledger cannot take is logged."""
        try:
            if (context.principal or "").startswith(UNAUTHENTICATED):
                full, closed = self.refusals.admit(self.clock().timestamp(), context.source_ip, context.who(),
                                                   exc.code, operation)
                self._write_aggregates(closed)
                if not full:
                    return
            self.store.append_ledger(self._entry(operation, context, None, None, exc.code, exc.message, []))
        except Exception:
            log.exception("could not record a refused %s in the ledger", preview(operation, 128))

    def flush_refusals(self, *, force: bool = False) -> int:
        """Write the aggregate rows of refusal windows that are over (``force``: of the current one too, as at
        shutdown); the number of rows written. The server calls it once a window."""
        closed = self.refusals.flush(self.clock().timestamp(), force=force)
        self._write_aggregates(closed)
        return len(closed)

    def _write_aggregates(self, aggregates: list[Aggregate]) -> None:
        for aggregate in aggregates:
            context = RequestContext(transport="http", source_ip=aggregate.source, principal=UNAUTHENTICATED)
            entry = build_entry(when=self.clock(), operation=AGGREGATE_OPERATION, context=context, request=None,
                                response=None, result=AGGREGATE_RESULT)
            detail = {**entry.detail, **aggregate.detail(self.refusals.max_reasons)}
            self.store.append_ledger(replace(entry, detail=detail))

    # -- authentication and keys -------------------------------------------------------------

    def _server_key(self) -> bytes:
        return auth.server_key(Path(self.config.data_dir))

    @functools.cached_property
    def pagination_key(self) -> bytes:
        """The key NextTokens are tagged with (see :mod:`.tokens`): derived from the server key, so tokens
        outlive a restart and are accepted by every server sharing that key."""
        return tokens.pagination_key(self._server_key())

    def authenticate(self, http: auth.HttpRequest, context: RequestContext, operation: str) -> RequestContext:
        """Check the request's SigV4 signature; the context of the verified key, or raise (recorded)."""
        key = self._server_key()
        found: dict[str, Any] = {}

        def lookup(key_id: str) -> str | None:
            record = self.store.get_access_key(key_id)
            if record is None or record.revoked_at is not None:
                return None
            found["record"] = record
            return auth.open_secret(key, key_id, record.secret)

        try:
            key_id, _ = auth.verify_signature(http, lookup, self.clock())
            policy = auth.Policy.parse(found["record"].policy)
        except RekognitionError as exc:
            self.record_refusal(operation, replace(context, principal=unauthenticated(http.headers)), exc)
            raise
        return replace(context, access_key_id=key_id, principal=key_id, policy=policy)

    def create_access_key(self, name: str, policy: str | dict | None = None,
                          context: RequestContext | None = None) -> tuple[str, str]:
        """A new key (id, secret); the secret is sealed in the store and never shown again."""
        from ..store import AccessKeyRecord

        document = auth.ADMIN_POLICY if policy is None else policy
        auth.Policy.parse(document)  # refuse what the key could never be checked against
        text = document if isinstance(document, str) else json_dumps(document)
        key_id, secret = auth.new_key_pair()
        context = context or RequestContext(transport="cli")
        record = AccessKeyRecord(key_id, name, auth.seal_secret(self._server_key(), key_id, secret), text,
                                 self.clock())
        entry = build_entry(when=self.clock(), operation="CreateAccessKey", context=context, request=None,
                            response={"AccessKey": {"UserId": name}}, notes=[f"AccessKeyId {key_id}", f"Name {name}"])
        self.store.add_access_key(record, audit=entry)
        return key_id, secret

    def revoke_access_key(self, key_id: str, context: RequestContext | None = None) -> bool:
        context = context or RequestContext(transport="cli")
        entry = build_entry(when=self.clock(), operation="RevokeAccessKey", context=context, request=None,
                            response=None, notes=[f"AccessKeyId {key_id}"])
        return self.store.revoke_access_key(key_id, self.clock(), audit=entry)

    def list_access_keys(self):
        return self.store.list_access_keys()

    def ensure_admin_key(self) -> tuple[str, str] | None:
        """On first start (no key at all): an admin key, to be shown once. None when keys exist."""
        if self.store.count_access_keys():
            return None
        return self.create_access_key("admin", None, RequestContext(transport="serve", principal="faceledger"))

    # -- the ledger ---------------------------------------------------------------------------

    def verify_ledger(self):
        return self.store.verify_ledger()

    def ledger(self, *, face_id: str | None = None, external_image_id: str | None = None, **filters: Any):
        """Ledger entries (dicts, ``detail`` parsed), filtered by principal, collection_id, operation,
        since/until (ISO 8601), a face id or an ExternalImageId they mention."""
        import json

        contains = []
        if face_id:
            contains.append(json.dumps(face_id))
        if external_image_id:
            contains.append(json.dumps(external_image_id))
        for row in self.store.ledger_rows(contains=contains, **filters):
            row["detail"] = json.loads(row["detail"])
            if face_id and not any(f.get("FaceId") == face_id for f in row["detail"].get("Faces", [])) and \
                    row["detail"].get("Request", {}).get("FaceId") != face_id and \
                    face_id not in row["detail"].get("Request", {}).get("FaceIds", []):
                continue
            yield row

    def close(self) -> None:
        if "video_jobs" in self.__dict__:
            self.video_jobs.stop()
        try:
            self.flush_refusals(force=True)
        except Exception:
            log.exception("could not record the last refusal counts in the ledger")
        self.store.close()


#: The principal of a request whose signature is missing, wrong, or not checked yet.
UNAUTHENTICATED = "unauthenticated"


def unauthenticated(headers: Any) -> str:
    """``unauthenticated:<the key id the Authorization header claims>`` (cut to 128 characters), or
    ``unauthenticated``."""
    header = headers.get("authorization") or ""
    claimed = header.split("Credential=", 1)[1].split("/", 1)[0][:128] if "Credential=" in header else ""
    return f"{UNAUTHENTICATED}:{claimed}" if claimed else UNAUTHENTICATED


def calibration_model(path: Path) -> str | None:
    """The face model a calibration file is for (None when unreadable: load_calibration reports it)."""
    import json

    try:
        return json.loads(Path(path).read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def load_calibration(path: Path, model_version: str) -> SimilarityScale:
    """A calibration table written by ``faceledger eval calibrate``, checked against the engine's model."""
    import json

    try:
        scale = SimilarityScale.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"calibration {path} cannot be used: {exc}") from None
    if scale.model != model_version:
        raise ValueError(f"calibration {path} is for model {scale.model!r}, the engine is {model_version!r}")
    return scale


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
