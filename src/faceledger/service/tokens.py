"""Pagination tokens: opaque to clients, bound to the operation and collection that issued them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from .errors import InvalidPaginationTokenException


def _scope(operation: str, collection_id: str | None) -> str:
    return hashlib.sha256(f"{operation}\0{collection_id or ''}".encode()).hexdigest()[:8]


def encode(operation: str, collection_id: str | None, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    raw = json.dumps([_scope(operation, collection_id), cursor], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(operation: str, collection_id: str | None, token: str | None) -> str | None:
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        scope, cursor = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidPaginationTokenException(f"Invalid pagination token: {token[:40]!r}") from None
    if scope != _scope(operation, collection_id) or not isinstance(cursor, str):
        raise InvalidPaginationTokenException(
            "The pagination token was not issued for this operation and collection"
        )
    return cursor


def with_next_token(response: dict, operation: str, collection_id: str | None, cursor: str | None) -> dict:
    """``response`` with ``NextToken`` added when the store says more remain."""
    token = encode(operation, collection_id, cursor)
    if token:
        response["NextToken"] = token
    return response
