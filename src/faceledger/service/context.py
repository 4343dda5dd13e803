"""What every operation runs with: the service's configuration and the caller's request context."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one faceledger service instance."""

    data_dir: Path
    buckets_dir: Path | None = None
    region: str = "us-east-1"
    account_id: str = "000000000000"
    detector_upsample: int | None = None  # None: the engine's measured default
    engine: str = "onnx"  # embedding runtime: "onnx" (default) or "dlib" (the reference)
    max_image_pixels: int = 36_000_000
    max_s3_object_bytes: int = 15 * 1024 * 1024

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
