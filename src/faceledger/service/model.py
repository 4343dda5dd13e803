"""Rekognition's service model (botocore's), used to check what goes in and out.

Requests are validated against the operation's input shape the way AWS does it
(all problems collected into one ``ValidationException`` whose message names the
lowerCamelCase member path and the violated constraint); responses are walked
against the output shape to produce the AWS JSON 1.1 body.

The service layer sees plain Python values, as boto3 users do: ``bytes`` for
blobs and tz-aware UTC ``datetime`` for timestamps. On the wire (``wire=True``)
blobs are base64 strings and timestamps epoch seconds.

Request bodies are read with :func:`decode_body`: strict JSON (no NaN or Infinity, numbers within
range, nesting at most ``MAX_JSON_DEPTH`` deep, UTF-8 text without unpaired surrogates), anything else
``SerializationException``. Validation refuses strings with unpaired surrogates in-process too, and
integers outside the Java int/long range that the model's integer/long shapes stand for.

The model comes from the installed botocore; nothing is fetched.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import itertools
import json
import logging
import math
import re
import sys
import unicodedata
from typing import Any, Callable

import botocore.session
import numpy as np
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape
from botocore.utils import parse_timestamp

from faceledger.service.errors import (
    ImageTooLargeException,
    SerializationException,
    UnknownOperationException,
    ValidationException,
    preview,
)

__all__ = [
    "SERVICE_MODEL",
    "IMAGE_BLOB_SHAPE",
    "operation_names",
    "shape_of",
    "parse_request",
    "serialize_response",
    "check_response",
    "decode_body",
    "MAX_JSON_DEPTH",
]

log = logging.getLogger(__name__)

SERVICE_MODEL: ServiceModel = botocore.session.get_session().get_service_model("rekognition")

#: Blob shape of every request image (``Image.Bytes``, CompareFaces' Source/TargetImage);
#: exceeding its max length is ``ImageTooLargeException``, not a validation error.
IMAGE_BLOB_SHAPE = "ImageBlob"

_OPERATIONS: frozenset[str] = frozenset(SERVICE_MODEL.operation_names)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: Deepest nesting of arrays and objects a request body may have (Rekognition's deepest input is 4).
MAX_JSON_DEPTH = 32
#: Longest integer literal a request body may have (every integer of the model fits in 19 digits).
_MAX_INT_DIGITS = 40
# Java's int and long, the types the model's integer and long shapes stand for.
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: Problems spelled out in one ValidationException (the rest are counted): a request with a million bad list
#: items gets a message of a few KB, not a million lines.
MAX_LISTED_ERRORS = 10
#: faceledger's limit on a request list or map that the model leaves unbounded (IndexFaces'
#: DetectionAttributes, DetectFaces' Attributes: 15 values exist), so that validation costs what it would for
#: a bounded one; longer is a ValidationException like any length constraint.
MAX_UNBOUNDED_ITEMS = 1000


def operation_names() -> frozenset[str]:
    return _OPERATIONS


def _operation(operation: str) -> OperationModel:
    if operation not in _OPERATIONS:
        raise UnknownOperationException(f"Unknown operation: {operation!r}")
    return SERVICE_MODEL.operation_model(operation)


def shape_of(operation: str) -> tuple[Shape | None, Shape | None]:
    """(input shape, output shape) of an operation; raises UnknownOperationException."""
    op = _operation(operation)
    return op.input_shape, op.output_shape


# --------------------------------------------------------------------------- patterns
# The model's patterns are Java regexes. Python's ``re`` lacks ``\p{..}`` (used by
# the tag key/value patterns); those are translated to explicit code point ranges
# built from ``unicodedata``. A pattern that still does not compile is skipped
# (logged once) rather than failing every request that uses it. Patterns are
# compiled with re.ASCII because Java's \d, \w, \s are ASCII-only by default.

_PROP = re.compile(r"\\([pP])\{(?:Is)?([A-Z][a-z]?)\}")


@functools.cache
def _category_ranges() -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    category = unicodedata.category
    prev, start = category("\0"), 0
    for cp in range(1, sys.maxunicode + 1):
        cat = category(chr(cp))
        if cat != prev:
            ranges.setdefault(prev, []).append((start, cp - 1))
            prev, start = cat, cp
    ranges.setdefault(prev, []).append((start, sys.maxunicode))
    return ranges


def _class_body(prop: str) -> str:
    """Character-class body (no brackets) of the code points whose category starts with prop."""
    spans = sorted(span for cat, spans in _category_ranges().items() if cat.startswith(prop) for span in spans)
    if not spans:
        raise ValueError(f"unknown Unicode category {prop!r}")
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in spans
    )


def _translate(pattern: str) -> str:
    """Java regex -> Python regex, for the ``\\p{X}`` general-category escapes."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        m = _PROP.match(pattern, i)
        if m:
            negated, prop = m.group(1) == "P", m.group(2)
            if in_class and negated:
                raise ValueError("\\P{..} inside a character class")
            body = _class_body(prop)
            out.append(body if in_class else f"[{'^' if negated else ''}{body}]")
            i = m.end()
            continue
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if pattern.startswith("^", i + 1):  # negation, then a literal ']' may follow
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):
                out.append("\\]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        pass
    try:
        return re.compile(_translate(pattern), re.ASCII)
    except (re.error, ValueError) as exc:
        log.warning("skipping model pattern %r: Python's re cannot compile it (%s)", pattern, exc)
        return None


# --------------------------------------------------------------------------- requests


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    """A value as AWS quotes it in a validation message (Java's toString, roughly): at most about
    errors.QUOTE_CHARS characters, its length or number of items given when it is cut."""
    return preview(value)


def _max_length(shape: Shape) -> int:
    """The most items a list or map may have: the model's ``max``, else MAX_UNBOUNDED_ITEMS."""
    return shape.metadata.get("max", MAX_UNBOUNDED_ITEMS)


def _within_max(shape: Shape, items: Any) -> Any:
    """The items of a list or map to check one by one: those past its maximum length are not (the request is
    refused for its length already), so a list of a million items costs what 4096 do."""
    return itertools.islice(items, _max_length(shape))


def _unpaired_surrogate(text: str) -> bool:
    """Whether ``text`` has a lone UTF-16 surrogate (JSON's ``"\\ud800"``): no UTF-8, no SQLite text."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Parser:
    """One request's walk: converts values and collects validation problems."""

    def __init__(self, wire: bool) -> None:
        self.wire = wire
        self.errors: list[str] = []  # the first MAX_LISTED_ERRORS problems, spelled out
        self.count = 0  # all of them

    def problem(self, message: Callable[[], str]) -> None:
        """Count one problem; spell it out (``message()``) only while fewer than MAX_LISTED_ERRORS are."""
        self.count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(message())

    def fail(self, value: Any, path: str, constraint: str) -> None:
        def message() -> str:
            shown = "null" if value is None else f"'{_show(value)}'"
            return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"

        self.problem(message)

    # Each method returns the converted value (or the input as-is when it is bad).

    def value(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self.structure(shape, value, path)  # type: ignore[arg-type]
        if kind == "list":
            return self.sequence(shape, value, path)  # type: ignore[arg-type]
        if kind == "map":
            return self.mapping(shape, value, path)  # type: ignore[arg-type]
        converted, problems = self.scalar(shape, value, path)
        for problem in problems:
            self.fail(value, path, problem)
        return converted

    def structure(self, shape: StructureShape, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be of type structure")
            return value
        members = shape.members
        result: dict[str, Any] = {}
        where = f" at '{path}'" if path else ""
        for name, member_value in value.items():
            if name not in members:
                if len(self.errors) >= MAX_LISTED_ERRORS:  # counted only: the cheap path for many of them
                    self.count += 1
                    continue
                self.problem(lambda: f"Unknown parameter{where}: '{_show(name)}', must be one of: "
                                     f"{', '.join(members)}")
                continue
            if member_value is None:  # JSON null is absence
                continue
            result[name] = self.value(members[name], member_value, _join(path, _camel(name)))
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, _join(path, _camel(name)), "Member must not be null")
        return result

    def sequence(self, shape: ListShape, value: Any, path: str) -> Any:
        if not isinstance(value, (list, tuple)):
            self.fail(value, path, "Member must be of type list")
            return value
        for constraint in self.size(shape, len(value)):
            self.fail(value, path, constraint)
        items = []
        for index, item in enumerate(_within_max(shape, value), start=1):
            item_path = f"{path}.{index}.member"
            if item is None:
                self.fail(None, item_path, "Member must not be null")
                continue
            items.append(self.value(shape.member, item, item_path))
        return items

    def mapping(self, shape: MapShape, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(value, path, "Member must be of type map")
            return value
        for constraint in self.size(shape, len(value)):
            self.fail(value, path, constraint)
        result: dict[Any, Any] = {}
        for key, item in _within_max(shape, value.items()):
            key, key_problems = self.scalar(shape.key, key, path)
            if key_problems:
                self.fail(key, path, f"Map keys must satisfy constraint: [{', '.join(key_problems)}]")
            if item is None:
                self.fail(None, path, "Map value must satisfy constraint: [Member must not be null]")
                continue
            if shape.value.type_name in ("structure", "list", "map"):
                result[key] = self.value(shape.value, item, f"{path}.{_show(key)}")
                continue
            item, item_problems = self.scalar(shape.value, item, path)
            if item_problems:
                self.fail(item, path, f"Map value must satisfy constraint: [{', '.join(item_problems)}]")
            result[key] = item
        return result

    @staticmethod
    def size(shape: Shape, size: int) -> list[str]:
        problems = []
        if "min" in shape.metadata and size < shape.metadata["min"]:
            problems.append(f"Member must have length greater than or equal to {shape.metadata['min']}")
        if "max" in shape.metadata and size > shape.metadata["max"]:
            problems.append(f"Member must have length less than or equal to {shape.metadata['max']}")
        elif shape.type_name in ("list", "map") and size > _max_length(shape):
            problems.append(f"Member must have length less than or equal to {_max_length(shape)}")
        return problems

    def scalar(self, shape: Shape, value: Any, path: str) -> tuple[Any, list[str]]:
        """(converted value, violated constraints) for a scalar shape."""
        kind = shape.type_name
        meta = shape.metadata
        if kind == "string":
            if not isinstance(value, str):
                return value, ["Member must be of type string"]
            if _unpaired_surrogate(value):
                return value, ["Member must be a valid Unicode string (it has an unpaired surrogate)"]
            problems = self.size(shape, len(value))
            pattern = meta.get("pattern")
            if pattern is not None and (compiled := _compiled(pattern)) is not None:
                if compiled.fullmatch(value) is None:
                    problems.append(f"Member must satisfy regular expression pattern: {pattern}")
            if shape.enum and value not in shape.enum:
                problems.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
            return value, problems
        if kind == "boolean":
            return value, [] if isinstance(value, bool) else ["Member must be of type boolean"]
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                return value, [f"Member must be of type {kind}"]
            return value, self.range(shape, value, *_INT_RANGE[kind])
        if kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return value, [f"Member must be of type {kind}"]
            try:
                number = float(value)  # an int past 1.8e308 raises OverflowError
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                return value, ["Member must be a finite number"]
            return number, self.range(shape, value)
        if kind == "blob":
            return self.blob(shape, value, path)
        if kind == "timestamp":
            return self.timestamp(value)
        return value, []  # a type this model does not use (document, ...): passed through

    @staticmethod
    def range(shape: Shape, value: int | float, low: int | None = None, high: int | None = None) -> list[str]:
        """Problems with ``value`` against the shape's min/max (and, for integer and long, the range of
        Java's int and long that they stand for: ``low``..``high``)."""
        problems = []
        low = shape.metadata.get("min", low)
        high = shape.metadata.get("max", high)
        if low is not None and value < low:
            problems.append(f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            problems.append(f"Member must have value less than or equal to {high}")
        return problems

    def blob(self, shape: Shape, value: Any, path: str) -> tuple[Any, list[str]]:
        if self.wire:
            if not isinstance(value, str):
                raise SerializationException(f"Value at '{path}' must be a base64-encoded string")
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SerializationException(f"Value at '{path}' is not valid base64") from None
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str):  # as boto3 does: text blobs are sent UTF-8 encoded
            data = value.encode("utf-8")
        elif hasattr(value, "read"):  # file-like, as boto3 accepts
            data = value.read()
            if isinstance(data, str):
                data = data.encode("utf-8")
            if not isinstance(data, bytes):
                return value, ["Member must be of type blob"]
        else:
            return value, ["Member must be of type blob"]
        limit = shape.metadata.get("max")
        if shape.name == IMAGE_BLOB_SHAPE and limit is not None and len(data) > limit:
            raise ImageTooLargeException(
                f"Image size {len(data)} bytes at '{path}' exceeds the {limit // (1024 * 1024)} MB "
                f"({limit} bytes) limit"
            )
        return data, self.size(shape, len(data))

    def timestamp(self, value: Any) -> tuple[Any, list[str]]:
        if isinstance(value, dt.datetime):
            stamp = value
        elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return value, ["Member must be of type timestamp"]
        else:  # epoch seconds (the JSON protocol's format) or an ISO 8601 string
            try:
                stamp = parse_timestamp(value)
            except (ValueError, OverflowError, OSError):
                return value, ["Member must be of type timestamp"]
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc), []


def parse_request(operation: str, params: Any, *, wire: bool) -> dict[str, Any]:
    """Validate ``params`` against the operation's input shape; a new dict, values decoded.

    ``wire=True``: ``params`` came from the JSON body (blobs are base64 strings,
    timestamps epoch seconds). ``wire=False``: in-process Python values, as boto3
    accepts them (bytes/bytearray/str/file-like blobs; datetime/number/ISO timestamps).
    """
    op = _operation(operation)
    if not isinstance(params, dict):
        raise SerializationException(f"Request body for {operation} must be a JSON object")
    shape = op.input_shape
    if shape is None:
        shape = StructureShape("Empty", {"type": "structure", "members": {}})
    parser = _Parser(wire)
    result = parser.structure(shape, params, "")  # type: ignore[arg-type]
    if parser.count:
        count = parser.count
        noun = "error" if count == 1 else "errors"
        more = count - len(parser.errors)
        raise ValidationException(f"{count} validation {noun} detected: " + "; ".join(parser.errors)
                                  + (f"; and {more} more" if more else ""))
    return result


def shape_problems(shape_name: str, value: Any, path: str) -> list[str]:
    """Problems of one in-process value against a named shape of botocore's model ([] when it conforms): the
    same constraints (type, length, pattern, range, enum) and messages as a request member. For values that
    reach the store by another road than a request (an imported collection's faces and tags)."""
    parser = _Parser(wire=False)
    parser.value(SERVICE_MODEL.shape_for(shape_name), value, path)
    return parser.errors


# --------------------------------------------------------------------------- request bodies

_STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?')  # always matches from a quote: linear
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Unreadable(Exception):
    pass


def _nesting_over(raw: bytes, limit: int) -> bool:
    """Whether the arrays and objects of JSON text ``raw`` nest deeper than ``limit`` (brackets inside
    strings do not count). Linear in ``len(raw)``, and free for bodies with few brackets."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    skeleton = _STRING_LITERAL.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(skeleton) <= limit:
        return False
    brackets = np.frombuffer(skeleton, dtype=np.uint8)
    steps = ((brackets == ord("[")) | (brackets == ord("{"))).astype(np.int8) * 2 - 1
    return int(np.cumsum(steps, dtype=np.int32).max()) > limit


def _constant(name: str) -> Any:
    raise _Unreadable(f"{name} is not a JSON number")


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise _Unreadable(f"the number {text[:20]}... ({digits} digits) is out of range")
    return int(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unreadable(f"the number {text[:40]} is out of range")
    return number


def decode_body(raw: bytes) -> Any:
    """A request body as the JSON value it holds; ``SerializationException`` unless it is strict JSON.

    Empty (or all-whitespace) is ``{}``. Refused: text that is not UTF-8 (a BOM too), not JSON, ``NaN``,
    ``Infinity`` and numbers that overflow a double (``1e400``) or have over 40 digits, arrays and objects
    nested deeper than ``MAX_JSON_DEPTH``, and strings (member names too) with an unpaired UTF-16
    surrogate (``"\\ud800"``). Time and memory are linear in ``len(raw)``.
    """
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SerializationException(
            f"Request body is not valid JSON: it is not UTF-8 (byte 0x{raw[exc.start]:02x} at {exc.start})"
        ) from None
    if _nesting_over(raw, MAX_JSON_DEPTH):
        raise SerializationException(
            f"Request body is not valid JSON: arrays and objects nest deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_float)
    except _Unreadable as exc:
        raise SerializationException(f"Request body is not valid JSON: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SerializationException(f"Request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = "".join(f"\\u{ord(c):04x}" for c in exc.object[exc.start:exc.end])
            raise SerializationException(
                f"Request body is not valid JSON: a string has an unpaired UTF-16 surrogate ({bad})"
            ) from None
    return value


# --------------------------------------------------------------------------- responses


def _to_wire(shape: Shape, value: Any, path: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ValueError(f"{path or '<response>'}: expected a dict for {shape.name}, got {type(value).__name__}")
        members = shape.members  # type: ignore[attr-defined]
        body: dict[str, Any] = {}
        for name, item in value.items():
            if name not in members:
                raise ValueError(f"{_join(path, name)}: not a member of {shape.name}")
            if item is not None:
                body[name] = _to_wire(members[name], item, _join(path, name))
        return body
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
        return [_to_wire(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]  # type: ignore[attr-defined]
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a dict, got {type(value).__name__}")
        return {
            _to_wire(shape.key, k, f"{path} key"): _to_wire(shape.value, v, f"{path}[{k!r}]")  # type: ignore[attr-defined]
            for k, v in value.items()
        }
    problem = _scalar_problem(shape, value)
    if problem:
        raise ValueError(f"{path}: {problem}")
    if kind == "blob":
        return base64.b64encode(value).decode("ascii")
    if kind == "timestamp":
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return (stamp - _EPOCH) / dt.timedelta(seconds=1)
    if kind in ("float", "double"):
        return float(value)
    return value


def serialize_response(operation: str, response: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready AWS JSON 1.1 body of a service-layer response.

    Walks the output shape: bytes -> base64 text, datetime -> epoch seconds (float),
    ``None`` members dropped, ``ResponseMetadata`` dropped. Anything not in the
    model is a bug in faceledger, reported as ``ValueError``.
    """
    _, shape = shape_of(operation)
    response = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    if shape is None:
        if response:
            raise ValueError(f"{operation} has no output members, got {sorted(response)}")
        return {}
    return _to_wire(shape, response, "")


def _scalar_problem(shape: Shape, value: Any) -> str | None:
    kind = shape.type_name
    expected: tuple[type, ...]
    if kind == "string":
        expected = (str,)
    elif kind == "boolean":
        expected = (bool,)
    elif kind in ("integer", "long"):
        expected = (int,)
    elif kind in ("float", "double"):
        expected = (int, float)
    elif kind == "blob":
        expected = (bytes, bytearray)
    elif kind == "timestamp":
        expected = (dt.datetime,)
    else:
        return None
    if not isinstance(value, expected) or (isinstance(value, bool) and kind != "boolean"):
        return f"expected {kind} ({shape.name}), got {type(value).__name__} {_show(value)!r}"
    if kind == "string" and shape.enum and value not in shape.enum:
        return f"{value!r} is not one of {shape.name}'s values {shape.enum}"
    return None


def _check(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path or '<response>'}: expected a dict for {shape.name}, got {type(value).__name__}")
            return
        members = shape.members  # type: ignore[attr-defined]
        for name, item in value.items():
            if name not in members:
                problems.append(f"{_join(path, name)}: not a member of {shape.name}")
            elif item is not None:
                _check(members[name], item, _join(path, name), problems)
        for name in shape.required_members:  # type: ignore[attr-defined]
            if value.get(name) is None:
                problems.append(f"{_join(path, name)}: required member missing")
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]", problems)  # type: ignore[attr-defined]
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a dict, got {type(value).__name__}")
            return
        for k, v in value.items():
            _check(shape.key, k, f"{path} key {k!r}", problems)  # type: ignore[attr-defined]
            _check(shape.value, v, f"{path}[{k!r}]", problems)  # type: ignore[attr-defined]
    else:
        problem = _scalar_problem(shape, value)
        if problem:
            problems.append(f"{path}: {problem}")


def check_response(operation: str, response: dict[str, Any]) -> list[str]:
    """Problems with a Python-level response against the output shape ([] when it conforms).

    Checks member names, Python types (bool is not an int), enums and required
    members, recursively. ``ResponseMetadata`` is allowed at the top level.
    """
    _, shape = shape_of(operation)
    if not isinstance(response, dict):
        return [f"<response>: expected a dict, got {type(response).__name__}"]
    response = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    problems: list[str] = []
    if shape is None:
        problems.extend(f"{name}: {operation} has no output members" for name in response)
    else:
        _check(shape, response, "", problems)
    return problems
