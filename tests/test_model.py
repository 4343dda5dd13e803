"""faceledger.service.model against botocore's real Rekognition model (no mocks)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import botocore.parsers
import botocore.serialize
import pytest

from faceledger.service import errors, model
from faceledger.service.model import check_response, parse_request, serialize_response

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"
UTC = dt.timezone.utc


def wire_body(operation: str, params: dict[str, Any]) -> Any:
    """The JSON body boto3 itself would send for these params."""
    serializer = botocore.serialize.create_serializer("json")
    request = serializer.serialize_to_request(params, model.SERVICE_MODEL.operation_model(operation))
    return json.loads(request["body"])


def botocore_parse(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """What boto3 would hand its caller for this response body."""
    parser = botocore.parsers.create_parser("json")
    output_shape = model.SERVICE_MODEL.operation_model(operation).output_shape
    parsed = parser.parse({"status_code": 200, "headers": {}, "body": json.dumps(body).encode()}, output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def validation_message(operation: str, params: Any, wire: bool = False) -> str:
    with pytest.raises(errors.ValidationException) as info:
        parse_request(operation, params, wire=wire)
    return info.value.message


# ------------------------------------------------------------------ basics


def test_operations_and_shapes() -> None:
    names = model.operation_names()
    assert {"IndexFaces", "SearchFacesByImage", "CreateCollection", "CompareFaces"} <= names
    assert isinstance(names, frozenset)
    in_shape, out_shape = model.shape_of("DescribeCollection")
    assert in_shape is not None and out_shape is not None
    assert "CollectionId" in in_shape.members and "CreationTimestamp" in out_shape.members


# ------------------------------------------------------------------ wire round trips

ROUND_TRIPS: list[tuple[str, dict[str, Any]]] = [
    (
        "IndexFaces",
        {
            "CollectionId": "people-1",
            "Image": {"Bytes": JPEG},
            "ExternalImageId": "img_1.jpg",
            "DetectionAttributes": ["DEFAULT"],
            "MaxFaces": 3,
            "QualityFilter": "AUTO",
        },
    ),
    ("CreateCollection", {"CollectionId": "people", "Tags": {"team": "vision", "Zweck Ärger": "test 1"}}),
    (
        "ListFaces",
        {
            "CollectionId": "people",
            "FaceIds": ["11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"],
            "MaxResults": 10,
        },
    ),
    (
        "CompareFaces",
        {
            "SourceImage": {"Bytes": JPEG},
            "TargetImage": {"Bytes": JPEG[::-1]},
            "SimilarityThreshold": 80.5,
            "QualityFilter": "NONE",
        },
    ),
    (
        "SearchFacesByImage",
        {"CollectionId": "people", "Image": {"Bytes": JPEG}, "MaxFaces": 5, "FaceMatchThreshold": 92.5},
    ),
]


@pytest.mark.parametrize(("operation", "params"), ROUND_TRIPS, ids=[op for op, _ in ROUND_TRIPS])
def test_wire_round_trip(operation: str, params: dict[str, Any]) -> None:
    body = wire_body(operation, params)
    frozen = json.dumps(body, sort_keys=True)
    assert parse_request(operation, body, wire=True) == params
    assert json.dumps(body, sort_keys=True) == frozen  # input not mutated


@pytest.mark.parametrize(("operation", "params"), ROUND_TRIPS, ids=[op for op, _ in ROUND_TRIPS])
def test_in_process_params(operation: str, params: dict[str, Any]) -> None:
    parsed = parse_request(operation, params, wire=False)
    assert parsed == params
    assert parsed is not params


def test_in_process_blob_forms() -> None:
    for blob in (bytearray(JPEG), JPEG):
        parsed = parse_request("DetectFaces", {"Image": {"Bytes": blob}}, wire=False)
        assert parsed["Image"]["Bytes"] == JPEG and type(parsed["Image"]["Bytes"]) is bytes
    # boto3 sends a str blob UTF-8 encoded; so do we.
    assert parse_request("DetectFaces", {"Image": {"Bytes": "é"}}, wire=False)["Image"]["Bytes"] == b"\xc3\xa9"
    # On the wire a blob is base64 text, never raw bytes.
    with pytest.raises(errors.SerializationException):
        parse_request("DetectFaces", {"Image": {"Bytes": 12}}, wire=True)


def test_null_members_are_absent() -> None:
    assert parse_request("ListFaces", {"CollectionId": "c", "NextToken": None}, wire=True) == {"CollectionId": "c"}


def test_timestamps() -> None:
    # No Rekognition input carries a timestamp today; exercise the converter on the model's DateTime shape.
    stamp = dt.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    convert = model._Parser(wire=True).timestamp
    assert convert(stamp.timestamp()) == (stamp, [])
    assert convert(int(stamp.timestamp())) == (stamp.replace(microsecond=0), [])
    assert convert("2024-05-01T12:30:15.25Z") == (stamp, [])
    assert convert(dt.datetime(2024, 5, 1, 12, 30, 15, 250000)) == (stamp, [])  # naive is UTC
    assert convert(True)[1] == ["Member must be of type timestamp"]
    assert convert("yesterday")[1] == ["Member must be of type timestamp"]


# ------------------------------------------------------------------ validation errors


def test_protocol_errors() -> None:
    with pytest.raises(errors.UnknownOperationException):
        parse_request("FlyToTheMoon", {}, wire=True)
    for body in ([], "x", None, 3):
        with pytest.raises(errors.SerializationException):
            parse_request("ListCollections", body, wire=True)


def test_missing_required() -> None:
    message = validation_message("IndexFaces", {"Image": {"Bytes": JPEG}})
    assert message == (
        "1 validation error detected: Value null at 'collectionId' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_pattern() -> None:
    assert validation_message("DescribeCollection", {"CollectionId": "bad id!"}) == (
        "1 validation error detected: Value 'bad id!' at 'collectionId' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z0-9_.\-]+"
    )


def test_too_long() -> None:
    long_id = "a" * 256
    assert validation_message("DescribeCollection", {"CollectionId": long_id}) == (
        f"1 validation error detected: Value '{long_id}' at 'collectionId' failed to satisfy constraint: "
        "Member must have length less than or equal to 255"
    )
    assert parse_request("DescribeCollection", {"CollectionId": "a" * 255}, wire=True)


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        (0, "Member must have value greater than or equal to 1"),
        (4097, "Member must have value less than or equal to 4096"),
    ],
)
def test_integer_range(value: int, constraint: str) -> None:
    params = {"CollectionId": "c", "Image": {"Bytes": JPEG}, "MaxFaces": value}
    assert validation_message("SearchFacesByImage", params) == (
        f"1 validation error detected: Value '{value}' at 'maxFaces' failed to satisfy constraint: {constraint}"
    )
    for ok in (1, 4096):
        assert parse_request("SearchFacesByImage", {**params, "MaxFaces": ok}, wire=False)["MaxFaces"] == ok


def test_float_range() -> None:
    params = {"CollectionId": "c", "Image": {"Bytes": JPEG}, "FaceMatchThreshold": 101}
    assert validation_message("SearchFacesByImage", params) == (
        "1 validation error detected: Value '101' at 'faceMatchThreshold' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )
    parsed = parse_request("SearchFacesByImage", {**params, "FaceMatchThreshold": 100}, wire=False)
    assert parsed["FaceMatchThreshold"] == 100.0 and type(parsed["FaceMatchThreshold"]) is float


def test_enum() -> None:
    params = {"CollectionId": "c", "Image": {"Bytes": JPEG}, "QualityFilter": "BEST"}
    assert validation_message("IndexFaces", params) == (
        "1 validation error detected: Value 'BEST' at 'qualityFilter' failed to satisfy constraint: "
        "Member must satisfy enum value set: [NONE, AUTO, LOW, MEDIUM, HIGH]"
    )


@pytest.mark.parametrize(("value", "shown"), [("5", "5"), (True, "true"), (2.5, "2.5")])
def test_wrong_type(value: Any, shown: str) -> None:
    params = {"CollectionId": "c", "Image": {"Bytes": JPEG}, "MaxFaces": value}
    assert validation_message("SearchFacesByImage", params) == (
        f"1 validation error detected: Value '{shown}' at 'maxFaces' failed to satisfy constraint: "
        "Member must be of type integer"
    )


def test_wrong_container_types() -> None:
    message = validation_message("ListFaces", {"CollectionId": "c", "FaceIds": "not-a-list"})
    assert "at 'faceIds'" in message and "Member must be of type list" in message
    message = validation_message("DetectFaces", {"Image": "bytes please"})
    assert "at 'image'" in message and "Member must be of type structure" in message


def test_unknown_member() -> None:
    message = validation_message("DescribeCollection", {"CollectionId": "c", "Foo": 1})
    assert message.startswith("1 validation error detected: Unknown parameter: 'Foo'")
    message = validation_message("DetectFaces", {"Image": {"Bytes": JPEG, "Url": "http://x"}})
    assert "Unknown parameter at 'image': 'Url'" in message


def test_list_member_paths() -> None:
    params = {"CollectionId": "c", "FaceIds": ["11111111-2222-3333-4444-555555555555", "nope"]}
    message = validation_message("ListFaces", params)
    assert message.startswith("1 validation error detected: Value 'nope' at 'faceIds.2.member' failed to satisfy")
    assert "regular expression pattern" in message


def test_list_and_map_sizes() -> None:
    message = validation_message("CreateCollection", {"CollectionId": "c", "Tags": {f"k{i}": "v" for i in range(201)}})
    assert "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200" in message
    message = validation_message("CreateCollection", {"CollectionId": "c", "Tags": {"aws:reserved": "v"}})
    assert "at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy" in message


def test_unicode_property_patterns() -> None:
    # TagKey/TagValue use Java's \p{L}\p{Z}\p{N}, which Python's re lacks: translated, not skipped.
    ok = {"CollectionId": "c", "Tags": {"Größe": "日本 ١٢٣", "a b": "x\u00a0y"}}
    assert parse_request("CreateCollection", ok, wire=False) == ok
    message = validation_message("CreateCollection", {"CollectionId": "c", "Tags": {"k": "tab\there"}})
    assert "Map value must satisfy constraint" in message


def test_errors_are_collected() -> None:
    params = {"CollectionId": "bad id!", "Image": {"Bytes": JPEG}, "MaxFaces": 0}
    message = validation_message("SearchFacesByImage", params, wire=False)
    assert message.startswith("2 validation errors detected: ")
    assert "Value 'bad id!' at 'collectionId'" in message
    assert "; Value '0' at 'maxFaces' failed to satisfy constraint" in message


def test_empty_image_is_a_validation_error() -> None:
    message = validation_message("DetectFaces", {"Image": {"Bytes": b""}})
    assert "at 'image.bytes' failed to satisfy constraint: Member must have length greater than or equal to 1" in message


@pytest.mark.parametrize("wire", [True, False])
@pytest.mark.parametrize(
    ("operation", "where"), [("IndexFaces", "Image"), ("CompareFaces", "SourceImage"), ("CompareFaces", "TargetImage")]
)
def test_image_too_large(operation: str, where: str, wire: bool) -> None:
    big = b"\0" * (5 * 1024 * 1024 + 1)
    params: dict[str, Any] = {
        "IndexFaces": {"CollectionId": "c"},
        "CompareFaces": {"SourceImage": {"Bytes": JPEG}, "TargetImage": {"Bytes": JPEG}},
    }[operation]
    params = {**params, where: {"Bytes": big}}
    body = wire_body(operation, params) if wire else params
    with pytest.raises(errors.ImageTooLargeException) as info:
        parse_request(operation, body, wire=wire)
    assert "5242881" in info.value.message
    # exactly at the limit is fine
    ok = {**params, where: {"Bytes": big[:-1]}}
    parse_request(operation, wire_body(operation, ok) if wire else ok, wire=wire)


@pytest.mark.parametrize("bad", ["not base64!!", "abc", "QUJD\nRA=="])
def test_bad_base64(bad: str) -> None:
    with pytest.raises(errors.SerializationException) as info:
        parse_request("DetectFaces", {"Image": {"Bytes": bad}}, wire=True)
    assert "image.bytes" in info.value.message


# ------------------------------------------------------------------ request bodies (strict JSON)


def body_error(raw: bytes) -> str:
    with pytest.raises(errors.SerializationException) as info:
        model.decode_body(raw)
    return info.value.message


def test_decode_body_reads_json_objects() -> None:
    assert model.decode_body(b"") == {} and model.decode_body(b" \n") == {}
    assert model.decode_body(b'{"MaxResults": 2, "X": [1.5, "\\ud83d\\ude00", -0]}') == {
        "MaxResults": 2, "X": [1.5, "\U0001f600", 0]}
    nested = b"[" * model.MAX_JSON_DEPTH + b"]" * model.MAX_JSON_DEPTH
    assert model.decode_body(nested) == json.loads(nested)
    in_text = json.dumps({"ExternalImageId": "[" * 10_000 + "{" * 10_000}).encode()  # brackets in a string
    assert model.decode_body(in_text)["ExternalImageId"].startswith("[[[")


@pytest.mark.parametrize(("raw", "says"), [
    (b"NaN", "nan"),
    (b'{"FaceMatchThreshold": Infinity}', "infinity"),
    (b'{"FaceMatchThreshold": -Infinity}', "infinity"),
    (b'{"FaceMatchThreshold": 1e400}', "out of range"),
    (b'{"MaxFaces": ' + b"9" * 5000 + b"}", "5000 digits"),
    (b"[" * 100_000 + b"]" * 100_000, "nest deeper than 32"),
    (b'{"a":' * 33 + b"1" + b"}" * 33, "nest deeper than 32"),
    (b"[" * 100_000, "nest deeper"),
    (b'{"CollectionId": "\\ud800"}', "\\ud800"),
    (b'{"\\udc80x": 1}', "\\udc80"),
    (b'{"CollectionId": "\xff"}', "not utf-8"),
    ("\ufeff{}".encode(), "bom"),
    ("{}".encode("utf-16"), "not utf-8"),
    (b"{}x", "extra data"),
])
def test_decode_body_refuses_what_is_not_strict_json(raw: bytes, says: str) -> None:
    message = body_error(raw)
    assert message.startswith("Request body is not valid JSON")
    assert says in message.lower(), message


@pytest.mark.parametrize("raw", [
    b'"\\' * 1_000_000,  # a million unterminated strings, each after a quote: still one pass
    b"[" + b'"a",' * 500_000 + b"[]]",
    b"[" * 1_000_000 + b"]" * 1_000_000,
])
def test_decode_body_hostile_shapes_are_refused_or_read(raw: bytes) -> None:
    try:
        model.decode_body(raw)
    except errors.SerializationException as exc:
        assert exc.message.startswith("Request body is not valid JSON")


# ------------------------------------------------------------------ in-process values past the model's types


@pytest.mark.parametrize(("params", "says"), [
    ({"CollectionId": "c", "Image": {"Bytes": JPEG}, "MaxFaces": 2**31}, "less than or equal to 2147483647"),
    ({"CollectionId": "c", "Image": {"Bytes": JPEG}, "MaxFaces": -(2**70)}, "greater than or equal to 1"),
    ({"CollectionId": "c", "Image": {"Bytes": JPEG}, "FaceMatchThreshold": 10**400}, "finite"),
    ({"CollectionId": "c", "Image": {"Bytes": JPEG}, "FaceMatchThreshold": float("nan")}, "finite"),
    ({"CollectionId": "c\ud800", "Image": {"Bytes": JPEG}}, "unpaired surrogate"),
    ({"CollectionId": "c", "Image": {"S3Object": {"Bucket": "bucket", "Name": "\udc80.jpg"}}}, "unpaired surrogate"),
])
def test_values_past_the_model_types_are_validation_errors(params: dict, says: str) -> None:
    operation = "IndexFaces" if "MaxFaces" in params or "S3Object" in params["Image"] else "SearchFacesByImage"
    assert says in validation_message(operation, params)


def test_index_faces_max_faces_within_java_int() -> None:
    params = {"CollectionId": "c", "Image": {"Bytes": JPEG}, "MaxFaces": 2**31 - 1}
    assert parse_request("IndexFaces", params, wire=False)["MaxFaces"] == 2**31 - 1


def test_error_shape() -> None:
    with pytest.raises(errors.ValidationException) as info:
        parse_request("DescribeCollection", {}, wire=True)
    assert info.value.to_body()["__type"] == "ValidationException" and info.value.status == 400


# ------------------------------------------------------------------ responses


def test_serialize_describe_collection_round_trip() -> None:
    response = {
        "FaceCount": 3,
        "FaceModelVersion": "6.0",
        "CollectionARN": "arn:aws:rekognition:us-east-1:000000000000:collection/people",
        "CreationTimestamp": dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "UserCount": 0,
        "ResponseMetadata": {"RequestId": "x"},
    }
    body = serialize_response("DescribeCollection", response)
    assert "ResponseMetadata" not in body
    assert isinstance(body["CreationTimestamp"], float)
    json.dumps(body)  # JSON-ready
    expected = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    assert botocore_parse("DescribeCollection", body) == expected
    assert check_response("DescribeCollection", response) == []


def index_faces_response() -> dict[str, Any]:
    box = {"Width": 0.25, "Height": 0.5, "Left": 0.125, "Top": 0.0}
    return {
        "FaceRecords": [
            {
                "Face": {
                    "FaceId": "11111111-2222-3333-4444-555555555555",
                    "BoundingBox": box,
                    "ImageId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                    "ExternalImageId": "img_1.jpg",
                    "Confidence": 99.5,
                },
                "FaceDetail": {
                    "BoundingBox": box,
                    "Landmarks": [{"Type": "eyeLeft", "X": 0.3, "Y": 0.4}],
                    "Pose": {"Roll": 1.0, "Yaw": -2.5, "Pitch": 0.0},
                    "Quality": {"Brightness": 80.0, "Sharpness": 90.0},
                    "Confidence": 99.5,
                },
            }
        ],
        "OrientationCorrection": None,  # dropped
        "FaceModelVersion": "6.0",
        "UnindexedFaces": [{"Reasons": ["LOW_SHARPNESS", "SMALL_BOUNDING_BOX"], "FaceDetail": {"Confidence": 40.0}}],
    }


def test_serialize_index_faces_round_trip() -> None:
    response = index_faces_response()
    body = serialize_response("IndexFaces", response)
    assert "OrientationCorrection" not in body
    expected = {k: v for k, v in response.items() if v is not None}
    assert botocore_parse("IndexFaces", body) == expected
    assert check_response("IndexFaces", response) == []


def test_serialize_blobs_and_ints_as_floats() -> None:
    response = {"SessionId": "s", "Status": "SUCCEEDED", "Confidence": 99, "ReferenceImage": {"Bytes": b"\x00\xff"}}
    body = serialize_response("GetFaceLivenessSessionResults", response)
    assert body["ReferenceImage"]["Bytes"] == base64.b64encode(b"\x00\xff").decode()
    assert body["Confidence"] == 99.0 and type(body["Confidence"]) is float
    assert botocore_parse("GetFaceLivenessSessionResults", body)["ReferenceImage"]["Bytes"] == b"\x00\xff"


def test_serialize_rejects_what_the_model_lacks() -> None:
    with pytest.raises(ValueError, match="Bogus"):
        serialize_response("DescribeCollection", {"FaceCount": 1, "Bogus": 2})
    with pytest.raises(ValueError, match="FaceRecords"):
        serialize_response("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": 7}}]})
    assert serialize_response("DeleteFaces", {"DeletedFaces": [], "ResponseMetadata": {}}) == {"DeletedFaces": []}


def test_check_response_flags_problems() -> None:
    response = index_faces_response()
    response["Extra"] = 1
    response["FaceRecords"][0]["Face"]["Confidence"] = "high"
    response["FaceRecords"][0]["Face"]["Colour"] = "blue"
    response["UnindexedFaces"][0]["Reasons"].append("TOO_UGLY")
    response["FaceModelVersion"] = True
    problems = check_response("IndexFaces", response)
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "Extra: not a member" in joined
    assert "FaceRecords[0].Face.Confidence: expected float" in joined
    assert "FaceRecords[0].Face.Colour: not a member" in joined
    assert "UnindexedFaces[0].Reasons[2]: 'TOO_UGLY'" in joined
    assert "FaceModelVersion: expected string" in joined
    assert check_response("DescribeCollection", {"FaceCount": True}) != []  # bool is not an integer


# ------------------------------------------------------------------ the model as a whole


def test_every_model_pattern_compiles() -> None:
    service = model.SERVICE_MODEL
    patterns = {
        shape.metadata["pattern"]
        for shape in (service.shape_for(name) for name in service.shape_names)
        if "pattern" in shape.metadata
    }
    assert patterns
    assert [p for p in patterns if model._compiled(p) is None] == []


def test_patterns_follow_java_semantics() -> None:
    # Java's \d and \S are ASCII-only; Python's are Unicode unless told otherwise.
    assert model._compiled(r"\d+").fullmatch("١٢٣") is None  # type: ignore[union-attr]
    assert model._compiled(r"\S*").fullmatch("a\u00a0b") is not None  # type: ignore[union-attr]
    # \p{..} is translated, outside and inside character classes.
    assert model._compiled(r"\p{Lu}+").fullmatch("ÄB") is not None  # type: ignore[union-attr]
    assert model._compiled(r"\p{Lu}+").fullmatch("äb") is None  # type: ignore[union-attr]
    assert model._compiled(r"[\p{N}x]+").fullmatch("x٣") is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("wire", [True, False])
def test_every_operation_accepts_or_rejects_empty_params(wire: bool) -> None:
    for operation in sorted(model.operation_names()):
        try:
            assert parse_request(operation, {}, wire=wire) == {}
        except errors.ValidationException as exc:
            assert "Member must not be null" in exc.message
