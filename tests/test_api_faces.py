"""IndexFaces, ListFaces, DeleteFaces through boto3 against a live `faceledger serve`, on real photos."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from conftest import image_bytes, shared_data

BACKENDS = ("sqlite", "postgresql")  # tests/conftest.py: these tests run on both stores

LANDMARKS = {"eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"}
# five different people, one frontal face each
LFW_FIVE = [
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Aaron_Guiel/Aaron_Guiel_0001.jpg",
    "AJ_Lamas/AJ_Lamas_0001.jpg",
    "George_W_Bush/George_W_Bush_0001.jpg",
    "Colin_Powell/Colin_Powell_0001.jpg",
]


def jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    return jpeg(skimage_data.astronaut())


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    return jpeg(skimage_data.chelsea())


def lfw_image(relative: str) -> bytes:
    return image_bytes(shared_data("lfw_dev", relative))


def face_count(rekognition, cid: str) -> int:
    return rekognition.describe_collection(CollectionId=cid)["FaceCount"]


def all_faces(rekognition, cid: str, **kwargs) -> list[dict]:
    faces, token = [], None
    while True:
        page = rekognition.list_faces(CollectionId=cid, **kwargs, **({"NextToken": token} if token else {}))
        faces += page["Faces"]
        token = page.get("NextToken")
        if not token:
            return faces


def index_five(rekognition, cid: str) -> list[str]:
    ids = []
    for n, rel in enumerate(LFW_FIVE):
        response = rekognition.index_faces(CollectionId=cid, Image={"Bytes": lfw_image(rel)}, ExternalImageId=f"lfw-{n}")
        assert len(response["FaceRecords"]) == 1, rel
        ids.append(response["FaceRecords"][0]["Face"]["FaceId"])
    return ids


def area(box: dict) -> float:
    return box["Width"] * box["Height"]


def assert_box(box: dict) -> None:
    assert set(box) == {"Width", "Height", "Left", "Top"}
    assert 0 < box["Width"] <= 1 and 0 < box["Height"] <= 1
    # a face box may stick out of the image a little, as Rekognition's do
    assert -0.25 < box["Left"] < 1 and -0.25 < box["Top"] < 1
    assert box["Left"] + box["Width"] < 1.25 and box["Top"] + box["Height"] < 1.25


# --------------------------------------------------------------------------- IndexFaces


def test_index_faces_returns_face_and_face_detail(rekognition, collection_id, astronaut):
    response = rekognition.index_faces(
        CollectionId=collection_id, Image={"Bytes": astronaut}, ExternalImageId="astronaut.jpg"
    )
    assert response["FaceModelVersion"] == "faceledger-sface-v2"
    assert len(response["FaceRecords"]) == 1
    record = response["FaceRecords"][0]
    # the detector also fires, weakly, on the suit's lower left; the default filter (AUTO) keeps it out
    for unindexed in response["UnindexedFaces"]:
        assert unindexed["Reasons"] and unindexed["FaceDetail"]["Confidence"] < record["Face"]["Confidence"]

    face = record["Face"]
    assert str(uuid.UUID(face["FaceId"])) == face["FaceId"]
    assert str(uuid.UUID(face["ImageId"])) == face["ImageId"]
    assert face["ExternalImageId"] == "astronaut.jpg"
    assert face["IndexFacesModelVersion"] == "faceledger-sface-v2"
    assert 50 < face["Confidence"] <= 100
    assert_box(face["BoundingBox"])
    # the astronaut's face is in the upper middle of the 512x512 portrait
    box = face["BoundingBox"]
    assert 0.3 < box["Left"] + box["Width"] / 2 < 0.7 and box["Top"] < 0.5

    detail = record["FaceDetail"]
    assert detail["BoundingBox"] == face["BoundingBox"]
    assert detail["Confidence"] == pytest.approx(face["Confidence"])
    points = {lm["Type"]: (lm["X"], lm["Y"]) for lm in detail["Landmarks"]}
    assert LANDMARKS <= set(points)
    for x, y in points.values():
        assert box["Left"] - 0.05 <= x <= box["Left"] + box["Width"] + 0.05
        assert box["Top"] - 0.05 <= y <= box["Top"] + box["Height"] + 0.05
    # Rekognition's eyeLeft is the eye on the image's left
    assert points["eyeLeft"][0] < points["nose"][0] < points["eyeRight"][0]
    assert points["mouthLeft"][0] < points["mouthRight"][0]
    assert max(points["eyeLeft"][1], points["eyeRight"][1]) < points["nose"][1]
    assert points["nose"][1] < max(points["mouthLeft"][1], points["mouthRight"][1])
    assert set(detail["Pose"]) == {"Roll", "Yaw", "Pitch"}
    assert all(-180 <= v <= 180 for v in detail["Pose"].values())
    assert abs(detail["Pose"]["Yaw"]) < 45  # a near-frontal portrait
    assert set(detail["Quality"]) == {"Brightness", "Sharpness"}
    assert all(0 <= v <= 100 for v in detail["Quality"].values())

    # the stored face is what IndexFaces answered
    listed = rekognition.list_faces(CollectionId=collection_id)["Faces"]
    assert listed == [face]
    assert face_count(rekognition, collection_id) == 1


def test_index_faces_each_call_gets_new_image_id(rekognition, collection_id):
    photo = image_bytes(shared_data("groups", "two_people.jpg"))
    first = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": photo}, QualityFilter="NONE")
    second = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": photo}, QualityFilter="NONE")
    assert len(first["FaceRecords"]) == len(second["FaceRecords"]) == 2
    first_images = {r["Face"]["ImageId"] for r in first["FaceRecords"]}
    second_images = {r["Face"]["ImageId"] for r in second["FaceRecords"]}
    assert len(first_images) == len(second_images) == 1  # one ImageId per call
    assert first_images != second_images
    ids = [r["Face"]["FaceId"] for r in first["FaceRecords"] + second["FaceRecords"]]
    assert len(set(ids)) == 4
    assert "ExternalImageId" not in first["FaceRecords"][0]["Face"]
    assert face_count(rekognition, collection_id) == 4


def test_index_faces_max_faces_keeps_the_largest(rekognition, collection_id):
    photo = image_bytes(shared_data("groups", "facenet_pytorch_multiface.jpg"))
    response = rekognition.index_faces(
        CollectionId=collection_id, Image={"Bytes": photo}, MaxFaces=2, QualityFilter="NONE"
    )
    indexed, unindexed = response["FaceRecords"], response["UnindexedFaces"]
    assert len(indexed) == 2
    assert len(unindexed) == 4  # the photo has 6 faces
    assert all(u["Reasons"] == ["EXCEEDS_MAX_FACES"] for u in unindexed)
    smallest_indexed = min(area(r["Face"]["BoundingBox"]) for r in indexed)
    largest_unindexed = max(area(u["FaceDetail"]["BoundingBox"]) for u in unindexed)
    assert smallest_indexed >= largest_unindexed
    for u in unindexed:
        assert_box(u["FaceDetail"]["BoundingBox"])
        assert LANDMARKS <= {lm["Type"] for lm in u["FaceDetail"]["Landmarks"]}
    assert face_count(rekognition, collection_id) == 2
    assert {f["FaceId"] for f in all_faces(rekognition, collection_id)} == {r["Face"]["FaceId"] for r in indexed}


def test_index_faces_quality_filter_high_indexes_fewer_with_reasons(rekognition, collection_id):
    # a crowd of small faces (the default detector, YuNet, finds 52; 12.jpg's five are all large and sharp)
    crowd = image_bytes(shared_data("groups", "linzaer_imgs", "1.jpg"))
    everything = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": crowd}, QualityFilter="NONE")
    high = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": crowd}, QualityFilter="HIGH")
    total = len(everything["FaceRecords"])
    assert total >= 3 and everything["UnindexedFaces"] == []
    assert len(high["FaceRecords"]) < total
    assert len(high["FaceRecords"]) + len(high["UnindexedFaces"]) == total
    known = {"EXTREME_POSE", "LOW_BRIGHTNESS", "LOW_SHARPNESS", "LOW_CONFIDENCE", "SMALL_BOUNDING_BOX", "LOW_FACE_QUALITY"}
    for u in high["UnindexedFaces"]:
        assert u["Reasons"] and set(u["Reasons"]) <= known
    assert face_count(rekognition, collection_id) == total + len(high["FaceRecords"])


def test_index_faces_image_without_face_indexes_nothing(rekognition, collection_id, chelsea):
    response = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": chelsea}, ExternalImageId="cat")
    assert response["FaceRecords"] == [] and response["UnindexedFaces"] == []
    assert response["FaceModelVersion"] == "faceledger-sface-v2"
    assert face_count(rekognition, collection_id) == 0
    assert rekognition.list_faces(CollectionId=collection_id)["Faces"] == []


# --------------------------------------------------------------------------- S3Object input


def put_object(server, bucket: str, key: str, data: bytes) -> Path:
    path = Path(server.buckets_dir, bucket, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_index_faces_from_s3_object(rekognition, server, collection_id, astronaut):
    put_object(server, "faces-bucket", "people/astronaut.jpg", astronaut)
    from_s3 = rekognition.index_faces(
        CollectionId=collection_id,
        Image={"S3Object": {"Bucket": "faces-bucket", "Name": "people/astronaut.jpg"}},
        ExternalImageId="s3-astronaut",
    )
    from_bytes = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": astronaut})
    assert len(from_s3["FaceRecords"]) == 1
    assert from_s3["FaceRecords"][0]["Face"]["ExternalImageId"] == "s3-astronaut"
    # the same pixels give the same detection, whichever way they came
    assert from_s3["FaceRecords"][0]["FaceDetail"] == from_bytes["FaceRecords"][0]["FaceDetail"]
    assert face_count(rekognition, collection_id) == 2


@pytest.mark.parametrize(
    "bucket, name, says",
    [
        ("faces-bucket", "people/nobody.jpg", "does not exist"),
        ("no-such-bucket", "astronaut.jpg", "no-such-bucket"),
    ],
)
def test_index_faces_missing_s3_object(rekognition, server, collection_id, astronaut, bucket, name, says):
    put_object(server, "faces-bucket", "people/astronaut.jpg", astronaut)
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException) as info:
        rekognition.index_faces(CollectionId=collection_id, Image={"S3Object": {"Bucket": bucket, "Name": name}})
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert says in info.value.response["Error"]["Message"]
    assert face_count(rekognition, collection_id) == 0


@pytest.mark.parametrize("name", ["../x", "../other-bucket/astronaut.jpg", "a/../../other-bucket/astronaut.jpg"])
def test_index_faces_s3_path_traversal_is_refused(rekognition, server, collection_id, astronaut, name):
    put_object(server, "faces-bucket", "people/astronaut.jpg", astronaut)
    put_object(server, "other-bucket", "astronaut.jpg", astronaut)  # exists, but outside faces-bucket
    Path(server.buckets_dir).parent.joinpath("x").write_bytes(astronaut)  # exists, outside the buckets folder
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException) as info:
        rekognition.index_faces(
            CollectionId=collection_id, Image={"S3Object": {"Bucket": "faces-bucket", "Name": name}}
        )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert face_count(rekognition, collection_id) == 0


def test_index_faces_s3_absolute_name_is_refused(rekognition, server, collection_id, astronaut):
    outside = Path(server.buckets_dir).parent / "absolute.jpg"
    outside.write_bytes(astronaut)
    put_object(server, "faces-bucket", "people/astronaut.jpg", astronaut)
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException):
        rekognition.index_faces(
            CollectionId=collection_id, Image={"S3Object": {"Bucket": "faces-bucket", "Name": str(outside)}}
        )
    assert face_count(rekognition, collection_id) == 0


def test_index_faces_s3_object_errors(rekognition, server, collection_id, astronaut):
    put_object(server, "faces-bucket", "people/astronaut.jpg", astronaut)
    put_object(server, "faces-bucket", "notes.txt", b"not an image at all\n" * 100)
    put_object(server, "faces-bucket", "huge.jpg", astronaut + bytes(16 * 1024 * 1024))  # over the 15 MB S3 limit

    def refused(s3object: dict) -> ClientError:
        with pytest.raises(ClientError) as info:
            rekognition.index_faces(CollectionId=collection_id, Image={"S3Object": s3object})
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return info.value

    versioned = refused({"Bucket": "faces-bucket", "Name": "people/astronaut.jpg", "Version": "3"})
    assert versioned.response["Error"]["Code"] == "InvalidS3ObjectException"
    assert "version" in versioned.response["Error"]["Message"].lower()
    folder = refused({"Bucket": "faces-bucket", "Name": "people"})
    assert folder.response["Error"]["Code"] == "InvalidS3ObjectException"
    text = refused({"Bucket": "faces-bucket", "Name": "notes.txt"})
    assert text.response["Error"]["Code"] == "InvalidImageFormatException"
    huge = refused({"Bucket": "faces-bucket", "Name": "huge.jpg"})
    assert huge.response["Error"]["Code"] == "ImageTooLargeException"
    assert "15 MB" in huge.response["Error"]["Message"]
    assert face_count(rekognition, collection_id) == 0


# --------------------------------------------------------------------------- ListFaces


def test_list_faces_pages_two_at_a_time(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    seen, pages, token = [], 0, None
    while True:
        page = rekognition.list_faces(
            CollectionId=collection_id, MaxResults=2, **({"NextToken": token} if token else {})
        )
        pages += 1
        assert len(page["Faces"]) <= 2
        assert page["FaceModelVersion"] == "faceledger-sface-v2"
        seen += [f["FaceId"] for f in page["Faces"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids)  # every face exactly once
    externals = {f["ExternalImageId"] for f in all_faces(rekognition, collection_id)}
    assert externals == {f"lfw-{n}" for n in range(5)}


def test_list_faces_token_is_bound_to_its_collection(rekognition, collection_id):
    index_five(rekognition, collection_id)
    page = rekognition.list_faces(CollectionId=collection_id, MaxResults=2)
    other = f"other-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=other)
    try:
        with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
            rekognition.list_faces(CollectionId=other, NextToken=page["NextToken"])
        with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
            rekognition.list_collections(NextToken=page["NextToken"])
        with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
            rekognition.list_faces(CollectionId=collection_id, NextToken="not-a-token")
    finally:
        rekognition.delete_collection(CollectionId=other)


def test_list_faces_filtered_by_face_ids(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    wanted = [ids[1], ids[3]]
    listed = rekognition.list_faces(CollectionId=collection_id, FaceIds=wanted + [str(uuid.uuid4())])["Faces"]
    assert sorted(f["FaceId"] for f in listed) == sorted(wanted)


def test_list_faces_filtered_by_user_id(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    rekognition.create_user(CollectionId=collection_id, UserId="aaron")
    rekognition.create_user(CollectionId=collection_id, UserId="nobody")
    associated = rekognition.associate_faces(CollectionId=collection_id, UserId="aaron", FaceIds=[ids[0]])
    assert [f["FaceId"] for f in associated["AssociatedFaces"]] == [ids[0]]
    listed = rekognition.list_faces(CollectionId=collection_id, UserId="aaron")["Faces"]
    assert [f["FaceId"] for f in listed] == [ids[0]]
    assert listed[0]["UserId"] == "aaron"
    assert rekognition.list_faces(CollectionId=collection_id, UserId="nobody")["Faces"] == []
    # both filters: the faces that pass both
    both = rekognition.list_faces(CollectionId=collection_id, UserId="aaron", FaceIds=[ids[0], ids[1]])["Faces"]
    assert [f["FaceId"] for f in both] == [ids[0]]
    assert rekognition.list_faces(CollectionId=collection_id, UserId="aaron", FaceIds=[ids[1]])["Faces"] == []
    # the unfiltered listing shows the association too, and only on that face
    by_id = {f["FaceId"]: f for f in all_faces(rekognition, collection_id)}
    assert by_id[ids[0]]["UserId"] == "aaron"
    assert all("UserId" not in by_id[i] for i in ids[1:])


def test_list_faces_of_missing_collection(rekognition):
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.list_faces(CollectionId=f"missing-{uuid.uuid4().hex[:8]}")


# --------------------------------------------------------------------------- DeleteFaces


def test_delete_faces(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    unknown = str(uuid.uuid4())
    response = rekognition.delete_faces(CollectionId=collection_id, FaceIds=[ids[0], ids[2], unknown])
    assert sorted(response["DeletedFaces"]) == sorted([ids[0], ids[2]])
    assert response["UnsuccessfulFaceDeletions"] == [{"FaceId": unknown, "Reasons": ["FACE_NOT_FOUND"]}]
    assert face_count(rekognition, collection_id) == 3
    assert sorted(f["FaceId"] for f in all_faces(rekognition, collection_id)) == sorted([ids[1], ids[3], ids[4]])
    # deleting again: now not found
    again = rekognition.delete_faces(CollectionId=collection_id, FaceIds=[ids[0]])
    assert again["DeletedFaces"] == []
    assert again["UnsuccessfulFaceDeletions"] == [{"FaceId": ids[0], "Reasons": ["FACE_NOT_FOUND"]}]
    assert face_count(rekognition, collection_id) == 3


def test_delete_faces_of_another_collection_is_not_found(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    other = f"other-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=other)
    try:
        response = rekognition.delete_faces(CollectionId=other, FaceIds=[ids[0]])
        assert response["DeletedFaces"] == []
        assert response["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    finally:
        rekognition.delete_collection(CollectionId=other)
    assert face_count(rekognition, collection_id) == 5


def test_delete_face_associated_to_user_is_refused(rekognition, collection_id):
    ids = index_five(rekognition, collection_id)
    rekognition.create_user(CollectionId=collection_id, UserId="keeper")
    rekognition.associate_faces(CollectionId=collection_id, UserId="keeper", FaceIds=[ids[4]])
    response = rekognition.delete_faces(CollectionId=collection_id, FaceIds=[ids[4], ids[3]])
    assert response["DeletedFaces"] == [ids[3]]
    assert response["UnsuccessfulFaceDeletions"] == [
        {"FaceId": ids[4], "UserId": "keeper", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
    ]
    assert face_count(rekognition, collection_id) == 4


def test_delete_collection_removes_its_faces(rekognition):
    cid = f"gone-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=cid)
    index_five(rekognition, cid)
    rekognition.delete_collection(CollectionId=cid)
    rekognition.create_collection(CollectionId=cid)
    try:
        assert face_count(rekognition, cid) == 0
        assert rekognition.list_faces(CollectionId=cid)["Faces"] == []
    finally:
        rekognition.delete_collection(CollectionId=cid)
