"""Helpers shared by the operation modules."""

from __future__ import annotations

from ...store import CollectionRecord
from ..dispatch import Invocation
from ..errors import ResourceNotFoundException


def require_collection(inv: Invocation, collection_id: str) -> CollectionRecord:
    collection = inv.store.get_collection(collection_id)
    if collection is None:
        raise ResourceNotFoundException(f"The collection id: {collection_id} does not exist")
    return collection
