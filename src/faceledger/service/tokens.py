"""Pagination tokens: opaque to clients, bound to the operation and collection that issued them.

A token is ``base64url(tag || cursor)``: the store's cursor (a rowid, FaceId or UserId: at most 128
bytes) after a 16-byte HMAC-SHA256 tag over (operation, collection, cursor) keyed with the service's
pagination key (derived from the server key: :func:`pagination_key`). So a client cannot forge or alter
one, nor move one to another listing or collection (each is ``InvalidPaginationTokenException``), and
what reaches the store is always a cursor the store issued. Tokens outlive a restart, and every server
sharing the server key (``FACELEDGER_SERVER_KEY``) accepts the others' tokens.
The longest token is 192 characters, within the model's 255.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from .errors import InvalidPaginationTokenException

_TAG_BYTES = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,340}")  # base64url without padding: a tag and a cursor


def pagination_key(server_key: bytes) -> bytes:
    """The key that tags NextTokens: HMAC-SHA256 of a fixed label under the 32-byte server key (so it is
    never the key that seals access-key secrets, and is the same on every server sharing that key)."""
    return hmac.new(server_key, b"faceledger pagination tokens v1", hashlib.sha256).digest()


def _tag(key: bytes, operation: str, collection_id: str | None, cursor: bytes) -> bytes:
    scope = f"{operation}\0{collection_id or ''}\0".encode("utf-8", "surrogatepass")
    return hmac.new(key, scope + cursor, hashlib.sha256).digest()[:_TAG_BYTES]


def encode(key: bytes, operation: str, collection_id: str | None, cursor: str | None) -> str | None:
    """The NextToken for the store's ``cursor`` of ``operation`` on ``collection_id`` (None: no more)."""
    if cursor is None:
        return None
    data = cursor.encode("utf-8")
    raw = _tag(key, operation, collection_id, data) + data
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(key: bytes, operation: str, collection_id: str | None, token: str | None) -> str | None:
    """The cursor a NextToken stands for; ``InvalidPaginationTokenException`` unless this server issued
    it for this operation and collection."""
    if token is None:
        return None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidPaginationTokenException("Invalid pagination token: it is not a token this service issued")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPaginationTokenException("Invalid pagination token: it is not a token this service issued") \
            from None
    tag, data = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if len(tag) < _TAG_BYTES or not hmac.compare_digest(tag, _tag(key, operation, collection_id, data)):
        raise InvalidPaginationTokenException(
            f"Invalid pagination token: it was not issued by this server for {operation}"
            + (f" of collection {collection_id}" if collection_id else "")
        )
    return data.decode("utf-8")  # the tag proves these are the bytes encode() wrote


def with_next_token(key: bytes, response: dict, operation: str, collection_id: str | None,
                    cursor: str | None) -> dict:
    """``response`` with ``NextToken`` added when the store says more remain."""
    token = encode(key, operation, collection_id, cursor)
    if token:
        response["NextToken"] = token
    return response
