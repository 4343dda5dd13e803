"""The one dispatch point every operation passes through, whatever the transport.

``Service.call(operation, params, context)`` validates the request against
botocore's Rekognition model, runs the operation's function and returns its
response dict. Transports (HTTP, CLI, the in-process Client) call nothing else,
so authentication, policy and the audit ledger wrap this one method.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..store import FaceStore
from ..store.sqlite import SQLiteStore
from ..vision import FaceEngine, default_engine
from ..vision.similarity import SimilarityScale
from . import model
from .context import RequestContext, ServiceConfig
from .errors import UnknownOperationException

Handler = Callable[["Invocation", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register the function implementing the Rekognition operation ``name``."""

    def register(fn: Handler) -> Handler:
        if name not in model.operation_names():
            raise ValueError(f"{name} is not an operation of botocore's Rekognition model")
        OPERATIONS[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Invocation:
    """One call of one operation: the service it runs in and who asked."""

    service: "Service"
    context: RequestContext

    @property
    def store(self) -> FaceStore:
        return self.service.store

    @property
    def config(self) -> ServiceConfig:
        return self.service.config

    @property
    def engine(self) -> FaceEngine:
        return self.service.engine

    @property
    def scale(self) -> SimilarityScale:
        return self.service.scale

    def now(self) -> datetime:
        return self.service.clock()


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
        self.store = store if store is not None else SQLiteStore(Path(config.data_dir) / "faceledger.db")
        self.clock = clock
        self._engine = engine
        self._scale: SimilarityScale | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> FaceEngine:
        """The face engine, loaded on first use (collection operations never need it)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = default_engine(self.config.detector_upsample, self.config.engine)
        return self._engine

    @property
    def scale(self) -> SimilarityScale:
        if self._scale is None:
            self._scale = SimilarityScale.load(self.engine.model_version)
        return self._scale

    @property
    def model_version(self) -> str:
        """FaceModelVersion of new collections: the engine's embedder, without loading its weights."""
        if self._engine is not None:
            return self._engine.model_version
        from ..vision.dlib_models import ResNetEmbedder  # the default engine's embedder

        return ResNetEmbedder.name

    def call(
        self, operation_name: str, params: Any, context: RequestContext | None = None, *, wire: bool = False
    ) -> dict[str, Any]:
        """Run one Rekognition operation: validate, dispatch, return the response dict."""
        handler = OPERATIONS.get(operation_name)
        if handler is None:
            if operation_name in model.operation_names():
                raise UnknownOperationException(f"faceledger does not implement {operation_name}")
            raise UnknownOperationException(f"Unknown operation: {operation_name}")
        request = model.parse_request(operation_name, params, wire=wire)
        return handler(Invocation(self, context or RequestContext()), request)

    def close(self) -> None:
        self.store.close()
