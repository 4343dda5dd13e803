"""CreateCollection, DescribeCollection, ListCollections, DeleteCollection."""

from __future__ import annotations

from typing import Any

from ...store import CollectionRecord
from .. import tokens
from ..dispatch import Invocation, operation
from ..errors import ResourceAlreadyExistsException, ResourceNotFoundException, ServiceQuotaExceededException
from ._common import require_collection
from .tags import MAX_TAGS

DEFAULT_LIST_SIZE = 1000


@operation("CreateCollection")
def create_collection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = req["CollectionId"]
    tags = req.get("Tags", {})
    if len(tags) > MAX_TAGS:
        raise ServiceQuotaExceededException(f"A resource can have at most {MAX_TAGS} tags; the request has {len(tags)}")
    record = CollectionRecord(
        collection_id=cid,
        arn=inv.config.collection_arn(cid),
        face_model_version=inv.service.model_version,
        created_at=inv.now(),
    )
    if not inv.store.create_collection(record, tags):
        raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
    return {"StatusCode": 200, "CollectionArn": record.arn, "FaceModelVersion": record.face_model_version}


@operation("DescribeCollection")
def describe_collection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    c = require_collection(inv, req["CollectionId"])
    return {
        "FaceCount": c.face_count,
        "FaceModelVersion": c.face_model_version,
        "CollectionARN": c.arn,
        "CreationTimestamp": c.created_at,
        "UserCount": c.user_count,
    }


@operation("ListCollections")
def list_collections(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    after = tokens.decode(inv.service.pagination_key, "ListCollections", None, req.get("NextToken"))
    page = inv.store.list_collections(after, req.get("MaxResults", DEFAULT_LIST_SIZE))
    out: dict[str, Any] = {
        "CollectionIds": [c.collection_id for c in page.items],
        "FaceModelVersions": [c.face_model_version for c in page.items],
    }
    return tokens.with_next_token(inv.service.pagination_key, out, "ListCollections", None, page.cursor)


@operation("DeleteCollection")
def delete_collection(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    cid = req["CollectionId"]
    if not inv.store.delete_collection(cid):
        raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
    return {"StatusCode": 200}
