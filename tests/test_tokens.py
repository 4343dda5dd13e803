"""NextTokens: what the store's cursors become on the wire, and what comes back from a client."""

from __future__ import annotations

import base64

import pytest

from faceledger.service import model, tokens
from faceledger.service.errors import InvalidPaginationTokenException

KEY = tokens.pagination_key(bytes(32))

LONGEST_CURSOR = "u" * 128  # the longest UserId: ListUsers' cursor


@pytest.mark.parametrize("cursor", ["1", "9" * 19, "3fa85f64-5717-4562-b3fc-2c963f66afa6", LONGEST_CURSOR])
def test_round_trip_within_the_model_limit(cursor: str) -> None:
    token = tokens.encode(KEY, "ListUsers", "staff", cursor)
    assert token is not None and len(token) <= model.shape_of("ListUsers")[0].members["NextToken"].metadata["max"]
    assert tokens.decode(KEY, "ListUsers", "staff", token) == cursor
    assert tokens.encode(KEY, "ListUsers", "staff", None) is None
    assert tokens.decode(KEY, "ListUsers", "staff", None) is None


def test_a_token_is_bound_to_its_operation_and_collection() -> None:
    token = tokens.encode(KEY, "ListFaces", "staff", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    for operation, cid in (("ListUsers", "staff"), ("ListFaces", "guests"), ("ListCollections", None)):
        with pytest.raises(InvalidPaginationTokenException):
            tokens.decode(KEY, operation, cid, token)


def test_every_change_to_a_token_is_refused() -> None:
    token = tokens.encode(KEY, "ListCollections", None, "42")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    forged_cursor = base64.urlsafe_b64encode(raw[:16] + b"43").decode().rstrip("=")
    changed = {token[:-1] + ("A" if token[-1] != "A" else "B"), token[:-2], token + "A", forged_cursor,
               token.upper() if token.upper() != token else token.lower()}
    for bad in changed | {"", "!!!!", "a" * 21, "\x00" * 30, "é" * 30, "A" * 255}:
        with pytest.raises(InvalidPaginationTokenException) as info:
            tokens.decode(KEY, "ListCollections", None, bad)
        assert "token" in info.value.message


def test_a_next_token_outlives_a_restart_and_stays_bound_to_its_data_folder(tmp_path):
    """Tokens are keyed by the server key: a client paging through a listing across a server restart goes on
    where it was; a token from another data folder (another server key) is refused."""
    import faceledger

    first = faceledger.Client(data_dir=tmp_path / "a")
    for i in range(5):
        first.create_collection(CollectionId=f"c{i}")
    page = first.list_collections(MaxResults=2)
    token = page["NextToken"]
    first.close()

    again = faceledger.Client(data_dir=tmp_path / "a")  # a new process would open the same server.key
    rest = again.list_collections(MaxResults=10, NextToken=token)
    assert page["CollectionIds"] + rest["CollectionIds"] == [f"c{i}" for i in range(5)]

    other = faceledger.Client(data_dir=tmp_path / "b")
    other.create_collection(CollectionId="c0")
    with pytest.raises(other.exceptions.InvalidPaginationTokenException):
        other.list_collections(NextToken=token)
