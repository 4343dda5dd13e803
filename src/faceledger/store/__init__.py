"""Persistence of collections, faces, users and tags, behind one small interface.

The service layer talks to a :class:`FaceStore`; each backend lives in its own
module (``faceledger.store.sqlite`` is the embedded default). A store knows
nothing about images, models or AWS: it keeps records and embeddings, and finds
the nearest embeddings of a collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Iterable, Protocol, Sequence, TypeVar

import numpy as np


@dataclass(frozen=True)
class CollectionRecord:
    collection_id: str
    arn: str
    face_model_version: str
    created_at: datetime
    face_count: int | None = 0  # None: not counted (get_collection(counts=False))
    user_count: int | None = 0


@dataclass(frozen=True)
class FaceRecord:
    face_id: str
    collection_id: str
    image_id: str
    external_image_id: str | None
    bounding_box: tuple[float, float, float, float]  # Width, Height, Left, Top as ratios of the image
    confidence: float
    face_model_version: str
    created_at: datetime
    user_id: str | None = None
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    # What makes two IndexFaces calls "the same image" (see faceledger.service.operations.faces.image_digest);
    # kept for faces indexed with an ExternalImageId only. None: not recorded.
    image_digest: str | None = field(default=None, repr=False)
    # The face's quality band when it was indexed (faceledger.vision.face_quality.band: "calibrated", or
    # "degraded" for a face outside the range the Similarity tables were calibrated on, indexed with
    # QualityFilter NONE). None: not recorded (faces indexed before 2026-11-30), taken as "calibrated".
    quality_band: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UserRecord:
    collection_id: str
    user_id: str
    created_at: datetime
    face_count: int = 0


@dataclass(frozen=True)
class AccessKeyRecord:
    """An access key: ``secret`` is stored sealed by the service (the store never sees it in clear)."""

    access_key_id: str
    name: str
    secret: bytes
    policy: str  # the IAM-subset policy document, JSON
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Neighbour:
    """One search hit: a stored face and its distance to the query."""

    face: FaceRecord
    distance: float


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``cursor`` (opaque to callers) fetches the next, None at the end."""

    items: list[T]
    cursor: str | None


class FaceStore(Protocol):
    """What the service needs from a persistence backend.

    Writes that belong together (a face batch from one image, a collection and
    its tags) are atomic; a returned write is durable.
    """

    # collections
    def create_collection(
        self, collection: CollectionRecord, tags: dict[str, str]
    ) -> bool: ...  # False when it exists
    def get_collection(self, collection_id: str, *, counts: bool = True) -> CollectionRecord | None: ...
    def collection_by_arn(self, arn: str) -> CollectionRecord | None: ...
    def list_collections(self, after: str | None, limit: int) -> Page[CollectionRecord]: ...
    def delete_collection(self, collection_id: str) -> bool: ...

    # faces
    def add_faces(self, faces: Sequence[FaceRecord]) -> bool: ...  # False when a collection is gone
    def get_faces(
        self, collection_id: str, face_ids: Iterable[str], *, with_embeddings: bool = False
    ) -> dict[str, FaceRecord]: ...
    def list_faces(
        self,
        collection_id: str,
        *,
        after: str | None,
        limit: int,
        face_ids: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> Page[FaceRecord]: ...
    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]: ...
    def image_faces(
        self, collection_id: str, external_image_id: str, image_digest: str, *, lock: bool = False
    ) -> list[FaceRecord]: ...  # the faces an earlier IndexFaces stored for this image (lock: in the write)
    def nearest(
        self,
        collection_id: str,
        vector: np.ndarray,
        *,
        limit: int,
        max_distance: float,
        exclude_face_ids: Iterable[str] = (),
    ) -> list[Neighbour]: ...

    # users
    def create_user(self, user: UserRecord) -> bool: ...  # False when it exists
    def get_user(self, collection_id: str, user_id: str) -> UserRecord | None: ...
    def list_users(self, collection_id: str, after: str | None, limit: int) -> Page[UserRecord]: ...
    def delete_user(self, collection_id: str, user_id: str) -> bool: ...
    def set_face_user(self, collection_id: str, face_ids: Sequence[str], user_id: str | None) -> None: ...

    # tags
    def get_tags(self, collection_id: str) -> dict[str, str]: ...
    def put_tags(self, collection_id: str, tags: dict[str, str]) -> None: ...
    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None: ...

    # accountability: the unit of work, the ledger, access keys, collection policies, erasure
    # (see faceledger.store.sqlite.SQLiteStore for their contracts)
    def unit_of_work(self): ...
    def append_ledger(self, entry): ...
    def ledger_rows(self, **filters): ...
    def verify_ledger(self): ...
    def add_access_key(self, key: AccessKeyRecord, audit=None) -> None: ...
    def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None: ...
    def list_access_keys(self) -> list[AccessKeyRecord]: ...
    def revoke_access_key(self, access_key_id: str, when: datetime, audit=None) -> bool: ...
    def count_access_keys(self) -> int: ...
    def get_request_token(self, principal: str, operation: str, token: str, since: datetime) -> tuple[str, str] | None: ...
    def put_request_token(self, principal: str, operation: str, token: str, fingerprint: str, response: str,
                          when: datetime, forget_before: datetime) -> None: ...
    def get_collection_policy(self, collection_id: str) -> dict | None: ...
    def put_collection_policy(self, collection_id: str, policy: dict | None) -> bool: ...
    def collection_policies(self) -> dict[str, dict]: ...
    def delete_faces_created_before(self, collection_id: str, cutoff: datetime) -> list[FaceRecord]: ...
    def erase_external_image_id(
        self, external_image_id: str, *, face_ids: Sequence[str] | None = None, dry_run: bool = False
    ) -> list[FaceRecord]: ...
    def checkpoint(self) -> bool: ...

    def close(self) -> None: ...


__all__ = [
    "AccessKeyRecord",
    "CollectionRecord",
    "FaceRecord",
    "UserRecord",
    "Neighbour",
    "Page",
    "FaceStore",
]
