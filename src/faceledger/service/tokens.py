"""Pagination tokens: opaque to clients, bound to the operation and collection that issued them.

A token is ``base64url(tag || cursor)``: the store's cursor (a rowid, FaceId or UserId: at most 128
bytes) after a 16-byte HMAC-SHA256 tag over (operation, collection, cursor) keyed with a secret drawn when
the process starts. So a client cannot forge or alter one, nor move one to another listing or collection
(each is ``InvalidPaginationTokenException``), and what reaches the store is always a cursor the store
issued. Tokens end with the server process: after a restart, listing starts again from the first page.
The longest token is 192 characters, within the model's 255.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from .errors import InvalidPaginationTokenException

_KEY = os.urandom(32)
_TAG_BYTES = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,340}")  # base64url without padding: a tag and a cursor


def _tag(operation: str, collection_id: str | None, cursor: bytes) -> bytes:
    scope = f"{operation}\0{collection_id or ''}\0".encode("utf-8", "surrogatepass")
    return hmac.new(_KEY, scope + cursor, hashlib.sha256).digest()[:_TAG_BYTES]


def encode(operation: str, collection_id: str | None, cursor: str | None) -> str | None:
    """The NextToken for the store's ``cursor`` of ``operation`` on ``collection_id`` (None: no more)."""
    if cursor is None:
        return None
    data = cursor.encode("utf-8")
    raw = _tag(operation, collection_id, data) + data
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(operation: str, collection_id: str | None, token: str | None) -> str | None:
    """The cursor a NextToken stands for; ``InvalidPaginationTokenException`` unless this process issued
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
    if len(tag) < _TAG_BYTES or not hmac.compare_digest(tag, _tag(operation, collection_id, data)):
        raise InvalidPaginationTokenException(
            f"Invalid pagination token: it was not issued by this server process for {operation}"
            + (f" of collection {collection_id}" if collection_id else "")
        )
    return data.decode("utf-8")  # the tag proves these are the bytes encode() wrote


def with_next_token(response: dict, operation: str, collection_id: str | None, cursor: str | None) -> dict:
    """``response`` with ``NextToken`` added when the store says more remain."""
    token = encode(operation, collection_id, cursor)
    if token:
        response["NextToken"] = token
    return response
