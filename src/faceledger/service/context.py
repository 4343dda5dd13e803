"""What every operation runs with: the service's configuration and the caller's request context."""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def embedding_key_from_env() -> bytes | None:
    """``FACELEDGER_EMBEDDING_KEY``: base64 (or hex) of 32 bytes; unset: embeddings are stored in clear."""
    value = os.environ.get("FACELEDGER_EMBEDDING_KEY", "").strip()
    if not value:
        return None
    try:
        key = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("FACELEDGER_EMBEDDING_KEY must be 32 bytes as base64 or hex") from None
    if len(key) != 32:
        raise ValueError("FACELEDGER_EMBEDDING_KEY must be 32 bytes as base64 or hex")
    return key


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


#: The default search policy: at most 0.001 expected false matches per 1:N search (one in 1,000 searches) ...
DEFAULT_MAX_EXPECTED_FALSE_MATCHES = 1e-3
#: ... and the margin rule: the best identity must be 10x less likely to be a chance match than the runner-up.
DEFAULT_MIN_MARGIN = 1.0


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one faceledger service instance."""

    data_dir: Path
    buckets_dir: Path | None = None
    region: str = "us-east-1"
    account_id: str = "000000000000"
    detector_upsample: int | None = None  # None: the engine's measured default
    engine: str = "onnx"  # embedding runtime: "onnx" (default) or "dlib" (the reference)
    # The onnx engine's face detector (vision.engine.DETECTORS; None: engine.ONNX_DETECTOR, BlazeFace).
    detector: str | None = None
    # FaceModelVersion of new collections (None: faceledger-fusion-v1 with the onnx engine, dlib-resnet-v1
    # with the dlib one). Existing collections are always searched with the model they were created with.
    face_model: str | None = None
    max_image_pixels: int = 36_000_000
    # Rekognition's documented minimum: both sides at least 80 pixels (InvalidParameterException below).
    min_image_side: int = 80
    # Images are analysed at most this size (pixels, longest side): larger ones are scaled down while
    # decoding, so a request's time and memory after decoding do not depend on the image (docs/api.md).
    working_pixels: int = 1920 * 1080
    working_side: int = 4096
    max_s3_object_bytes: int = 15 * 1024 * 1024
    embedding_key: bytes | None = field(default_factory=embedding_key_from_env, repr=False)
    # Largest acceptable expected number of false matches per 1:N search (None: no limit); the search's
    # threshold is raised, for the collection's current size, until FMR x faces searched meets it.
    # Default: one false match per 1,000 searches (docs/evaluation.md, "Make 1:N search safe").
    max_expected_false_matches: float | None = DEFAULT_MAX_EXPECTED_FALSE_MATCHES
    # The margin rule, in decades of FMR between the best identity and the runner-up (0: off); see risk.py.
    min_margin: float = DEFAULT_MIN_MARGIN
    # A calibration table (faceledger eval calibrate) used instead of the packaged one (None: packaged).
    calibration: Path | None = None
    # Stored video (docs/video.md): frames analysed per second of video by face jobs; jobs queued or running
    # at most (LimitExceededException past it); days a finished job's results are kept; worker threads;
    # SNSTopicArn -> webhook URL for NotificationChannel (serve --notify ARN=URL).
    video_sample_fps: float = 5.0
    video_max_jobs: int = 20
    video_retention_days: float = 7.0
    video_workers: int = 1
    video_notify: tuple[tuple[str, str], ...] = ()
    # Where the records live (docs/distributed.md): None: the embedded SQLite file in data_dir; a
    # postgresql:// URL: that PostgreSQL database (serve --database, or $FACELEDGER_DATABASE for every command).
    database: str | None = field(default_factory=lambda: os.environ.get("FACELEDGER_DATABASE") or None)
    # Where vectors are searched: None: each node's own index; milvus://host:port or a Milvus Lite file
    # (serve --vector-store, or $FACELEDGER_VECTOR_STORE).
    vector_store: str | None = field(default_factory=lambda: os.environ.get("FACELEDGER_VECTOR_STORE") or None)
    # Frames analysed per second of video by label, moderation and text jobs (docs/video.md).
    video_analysis_fps: float = 1.0

    def collection_arn(self, collection_id: str) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.account_id}:collection/{collection_id}"


@dataclass(frozen=True)
class RequestContext:
    """Who asked, from where, and why: filled by the transport, read by policy and audit."""

    transport: str = "python"  # "http", "cli" or "python"
    source_ip: str | None = None
    access_key_id: str | None = None
    purpose: str | None = None
    case_reference: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Who the ledger records: the verified access key (HTTP), "dev:<key id>" in development mode,
    # or the OS user for local calls (None: filled in with the OS user).
    principal: str | None = None
    # The key's parsed IAM-subset policy (faceledger.service.auth.Policy); None: not restricted
    # (local calls, development mode).
    policy: Any = field(default=None, compare=False, repr=False)
    # X-Faceledger-Max-Expected-False-Matches: this request's limit (overrides the server's default).
    max_expected_false_matches: float | None = None
    # X-Faceledger-Min-Margin: this request's margin rule (overrides the server's default; 0: off).
    min_margin: float | None = None

    def who(self) -> str:
        return self.principal or f"local:{os_user()}"
