"""TagResource, UntagResource, ListTagsForResource on collection ARNs (and stream processor ARNs: .streams)."""

from __future__ import annotations

from typing import Any

from ...store import CollectionRecord
from ..dispatch import Invocation, operation
from ..errors import ResourceNotFoundException, ServiceQuotaExceededException
from . import streams

MAX_TAGS = 50  # Rekognition's limit per resource


def require_resource(inv: Invocation, arn: str) -> CollectionRecord:
    collection = inv.store.collection_by_arn(arn)
    if collection is None:
        raise ResourceNotFoundException(f"The resource {arn} does not exist")
    return collection


@operation("TagResource")
def tag_resource(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    if streams.is_processor_arn(req["ResourceArn"]):
        streams.set_processor_tags(inv, req["ResourceArn"], add=req["Tags"])
        return {}
    cid = require_resource(inv, req["ResourceArn"]).collection_id
    merged = {**inv.store.get_tags(cid), **req["Tags"]}
    if len(merged) > MAX_TAGS:
        raise ServiceQuotaExceededException(f"A resource can have at most {MAX_TAGS} tags; this would make {len(merged)}")
    inv.store.put_tags(cid, req["Tags"])
    return {}


@operation("UntagResource")
def untag_resource(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    if streams.is_processor_arn(req["ResourceArn"]):
        streams.set_processor_tags(inv, req["ResourceArn"], remove=req["TagKeys"])
        return {}
    cid = require_resource(inv, req["ResourceArn"]).collection_id
    inv.store.remove_tags(cid, req["TagKeys"])
    return {}


@operation("ListTagsForResource")
def list_tags_for_resource(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    if streams.is_processor_arn(req["ResourceArn"]):
        return {"Tags": streams.processor_tags(inv, req["ResourceArn"])}
    cid = require_resource(inv, req["ResourceArn"]).collection_id
    return {"Tags": inv.store.get_tags(cid)}
