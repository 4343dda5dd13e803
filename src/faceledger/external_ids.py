"""File paths as ExternalImageIds and back: an injective, documented mapping (docs/cli.md, "index").

Rekognition allows an ExternalImageId of 1 to 255 characters from ``[a-zA-Z0-9_.\\-:]``. ``faceledger index``
names each image by its path relative to the folder given, encoded so that two different paths never get
the same id and the id gives the path back:

* the path is taken in Unicode NFC (macOS stores names decomposed: the same name typed on two systems is
  one id) and as UTF-8 bytes (a name that is not valid UTF-8 keeps its bytes);
* ``A-Z a-z 0-9 _ . -`` stand for themselves and ``/`` (the folder separator) becomes ``:``;
* every other byte (space, ``:``, accented letters, CJK, Cyrillic, Greek, Arabic, ...) becomes ``::`` and two
  upper-case hex digits: ``Zoë Li.jpg`` -> ``Zo::C3::AB::20Li.jpg``, ``李娜.jpg`` -> ``::E6::9D::8E::E5::A8::9C.jpg``;
* an id that would be longer than 255 characters is shortened to 32 hex digits of the path's SHA-256,
  ``::-`` and as much of the end of the encoding as fits (whole characters): such an id cannot be decoded
  back (:func:`path_of` answers None); ``::-`` never occurs in an id that is not shortened.

Decoding reads left to right: ``::`` followed by two hex digits is a byte, any other ``:`` is ``/``. Paths
have no empty folder names, so a folder separator before an escaped byte (``:::E6``) reads one way only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_LENGTH = 255
SHORTENED = "::-"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_HEX2 = re.compile(r"[0-9A-F]{2}")
_ID = re.compile(r"[a-zA-Z0-9_.\-:]+")
_PLAIN = re.compile(r"[a-zA-Z0-9_.\-/]+")  # paths whose bytes are all safe or '/'; NFC leaves ASCII as it is


def _path_bytes(relative: str) -> bytes:
    return unicodedata.normalize("NFC", relative).encode("utf-8", "surrogateescape")


def _byte(byte: int) -> str:
    if byte in _SAFE:
        return chr(byte)
    return ":" if byte == 0x2F else f"::{byte:02X}"  # 0x2F: '/'


def _tokens(relative: str) -> list[str]:
    """The encoding of each character of the path (NFC), in order."""
    return ["".join(_byte(b) for b in c.encode("utf-8", "surrogateescape"))
            for c in unicodedata.normalize("NFC", relative)]


def external_image_id(relative: str) -> str:
    """The ExternalImageId of a relative path (``/``-separated, no empty, ``.`` or ``..`` parts).

    Injective: different paths (in NFC) give different ids, up to a collision of 128 bits of SHA-256 for
    paths whose encoding is over 255 characters. Raises ValueError for a path with an empty part (empty,
    absolute, ``a//b``, a trailing ``/``): no file has one, and the decoding relies on it.
    """
    if "" in relative.split("/"):
        raise ValueError(f"{relative!r} is not a relative file path: it has no ExternalImageId")
    if len(relative) <= MAX_LENGTH and _PLAIN.fullmatch(relative):  # every character its own byte, kept
        return relative.replace("/", ":")  # the same id, 10x faster (a folder of millions of such names)
    tokens = _tokens(relative)
    text = "".join(tokens)
    if len(text) <= MAX_LENGTH:
        return text
    head = hashlib.sha256(_path_bytes(relative)).hexdigest()[:32] + SHORTENED
    tail: list[str] = []
    room = MAX_LENGTH - len(head)
    for token in reversed(tokens):
        if len(token) > room:
            break
        tail.append(token)
        room -= len(token)
    return head + "".join(reversed(tail))


def _decode(text: str) -> str | None:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == ":":
            if text[i + 1:i + 2] == ":" and _HEX2.fullmatch(text[i + 2:i + 4]):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out.append(0x2F)
        elif ord(c) < 128 and ord(c) in _SAFE:
            out.append(ord(c))
        else:
            return None
        i += 1
    return out.decode("utf-8", "surrogateescape")


def path_of(external_id: str) -> str | None:
    """The relative path whose :func:`external_image_id` is ``external_id`` (NFC), or None when no path
    gives it: a shortened id, or one written by something else (``faceledger index`` before this mapping
    mapped names lossily: ``Zoe_Li.jpg`` decodes, as ``Zoe_Li.jpg``, whatever file it came from)."""
    if not external_id or SHORTENED in external_id or not _ID.fullmatch(external_id):
        return None
    path = _decode(external_id)
    if path is None or "" in path.split("/") or external_image_id(path) != external_id:
        return None
    return path


def describe(external_id: str) -> str:
    """A human reading of an id: its path; the end of the path of a shortened id (``…/tail``); else the id."""
    path = path_of(external_id)
    if path is None and SHORTENED in external_id:
        tail = _decode(external_id.split(SHORTENED, 1)[1])
        path = None if tail is None else "…" + tail
    if path is None:
        return external_id
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # printable
