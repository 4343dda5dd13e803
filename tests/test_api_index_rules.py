"""Rekognition's documented IndexFaces rules, through boto3 against a live server, on real photos:
no duplicate faces for the same image, collection and ExternalImageId; at most the 100 largest faces of
an image in DetectFaces, IndexFaces, CompareFaces and SearchUsersByImage."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import image_bytes, shared_data
from test_ledger import entries


def face_ids(response: dict) -> list[str]:
    return [r["Face"]["FaceId"] for r in response["FaceRecords"]]


def image_ids(response: dict) -> set[str]:
    return {r["Face"]["ImageId"] for r in response["FaceRecords"]}


def face_count(client, cid: str) -> int:
    return client.describe_collection(CollectionId=cid)["FaceCount"]


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def two_people() -> bytes:
    return image_bytes(shared_data("groups", "two_people.jpg"))


def put_object(server, bucket: str, key: str, data: bytes) -> None:
    path = Path(server.buckets_dir, bucket, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ---------------------------------------------------------------------------------------- duplicates


def test_the_same_image_indexed_twice_stores_no_duplicate(server, rekognition, collection_id, two_people):
    first = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                    ExternalImageId="pair.jpg", QualityFilter="NONE")
    assert len(first["FaceRecords"]) == 2
    again = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                    ExternalImageId="pair.jpg", QualityFilter="NONE")
    assert face_ids(again) == face_ids(first) and image_ids(again) == image_ids(first)
    assert [r["Face"] for r in again["FaceRecords"]] == [r["Face"] for r in first["FaceRecords"]]
    assert face_count(rekognition, collection_id) == 2
    # the ledger records the repeat: which faces were there, none added
    rows = [e for e in entries(server.data_dir, "--operation", "IndexFaces", "--collection", collection_id)]
    assert len(rows) == 2 and "Repeat" not in rows[0]["detail"]
    assert rows[1]["detail"]["Repeat"] == {"ImageId": image_ids(first).pop(), "FacesAlreadyIndexed": face_ids(first),
                                           "FacesAdded": []}


def test_an_image_is_its_pixels_however_it_was_sent(server, rekognition, collection_id, two_people):
    """The same decoded pixels are the same image: re-saved losslessly, or read from an S3Object; a lossy
    re-encoding is another image (other pixels)."""
    first = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                    ExternalImageId="pair", QualityFilter="NONE")
    pixels = np.asarray(Image.open(io.BytesIO(two_people)).convert("RGB"))
    same_pixels = [encode(pixels, "PNG"), encode(pixels, "PNG", compress_level=1)]
    assert len({two_people, *same_pixels}) == 3  # three different byte strings ...
    for data in same_pixels:
        r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": data}, ExternalImageId="pair",
                                    QualityFilter="NONE")
        assert face_ids(r) == face_ids(first)  # ... one image
    put_object(server, "dups", "pair.png", same_pixels[0])
    r = rekognition.index_faces(CollectionId=collection_id, ExternalImageId="pair", QualityFilter="NONE",
                                Image={"S3Object": {"Bucket": "dups", "Name": "pair.png"}})
    assert face_ids(r) == face_ids(first)
    assert face_count(rekognition, collection_id) == 2
    lossy = encode(pixels, "JPEG", quality=70)
    r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": lossy}, ExternalImageId="pair",
                                QualityFilter="NONE")
    assert len(r["FaceRecords"]) == 2 and not set(face_ids(r)) & set(face_ids(first))
    assert image_ids(r) != image_ids(first)
    assert face_count(rekognition, collection_id) == 4


def test_another_external_id_or_collection_or_none_is_not_a_repeat(rekognition, collection_id, two_people):
    first = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                    ExternalImageId="a", QualityFilter="NONE")
    other_id = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                       ExternalImageId="b", QualityFilter="NONE")
    assert not set(face_ids(other_id)) & set(face_ids(first))
    # without an ExternalImageId every call stores its faces (the documented condition is "the same external ID")
    for _ in range(2):
        rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people}, QualityFilter="NONE")
    assert face_count(rekognition, collection_id) == 8
    other = f"{collection_id}-x"
    rekognition.create_collection(CollectionId=other)
    try:
        r = rekognition.index_faces(CollectionId=other, Image={"Bytes": two_people}, ExternalImageId="a",
                                    QualityFilter="NONE")
        assert len(r["FaceRecords"]) == 2 and not set(face_ids(r)) & set(face_ids(first))
    finally:
        rekognition.delete_collection(CollectionId=other)


def test_a_repeat_with_other_max_faces_adds_only_the_faces_not_stored(rekognition, collection_id, two_people):
    """A repeat answers as a first call with its own MaxFaces/QualityFilter would, except that faces already
    stored come back as they were stored: never a second copy of a face."""
    one = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people}, ExternalImageId="p",
                                  QualityFilter="NONE", MaxFaces=1)
    assert len(one["FaceRecords"]) == 1 and len(one["UnindexedFaces"]) == 1
    two = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people}, ExternalImageId="p",
                                  QualityFilter="NONE", MaxFaces=2)
    assert len(two["FaceRecords"]) == 2 and two["UnindexedFaces"] == []
    assert face_ids(two)[0] == face_ids(one)[0] and image_ids(two) == image_ids(one)  # the largest, as stored
    assert face_count(rekognition, collection_id) == 2
    again = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people}, ExternalImageId="p",
                                    QualityFilter="NONE", MaxFaces=1)
    assert face_ids(again) == face_ids(one)
    assert [u["Reasons"] for u in again["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]]
    assert face_count(rekognition, collection_id) == 2
    # deleted faces are not "already stored": indexing the image again stores it again, under its ImageId
    rekognition.delete_faces(CollectionId=collection_id, FaceIds=face_ids(two)[1:])
    back = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": two_people}, ExternalImageId="p",
                                   QualityFilter="NONE")
    assert face_ids(back)[0] == face_ids(one)[0] and face_ids(back)[1] != face_ids(two)[1]
    assert image_ids(back) == image_ids(one)
    assert face_count(rekognition, collection_id) == 2


def test_a_repeat_with_a_looser_quality_filter(rekognition, collection_id):
    # a crowd of small faces (YuNet finds 12.jpg's five faces all large and sharp: HIGH keeps them all)
    crowd = image_bytes(shared_data("groups", "linzaer_imgs", "1.jpg"))
    high = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": crowd}, ExternalImageId="crowd",
                                   QualityFilter="HIGH")
    everything = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": crowd},
                                         ExternalImageId="crowd", QualityFilter="NONE")
    assert high["UnindexedFaces"] and everything["UnindexedFaces"] == []
    assert set(face_ids(high)) < set(face_ids(everything))
    assert face_count(rekognition, collection_id) == len(everything["FaceRecords"])
    strict = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": crowd}, ExternalImageId="crowd",
                                     QualityFilter="HIGH")
    assert face_ids(strict) == face_ids(high)
    assert face_count(rekognition, collection_id) == len(everything["FaceRecords"])


def test_concurrent_repeats_store_one_copy(server, collection_id, two_people):
    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        try:
            client = server.client()
            barrier.wait(30)
            results.append(client.index_faces(CollectionId=collection_id, Image={"Bytes": two_people},
                                              ExternalImageId="race", QualityFilter="NONE"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results) == 4 and all(face_ids(r) == face_ids(results[0]) for r in results)
    assert face_count(server.client(), collection_id) == 2


# ---------------------------------------------------------------------------------- the 100 largest


@pytest.fixture(scope="module")
def crowd_of_144() -> bytes:
    """144 real faces (the first photo of 144 LFW people), 12x12, each of another size (73 to 100 px
    tiles of the face's centre) so that "the largest" is well defined."""
    lfw = shared_data("lfw_dev")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:144]
    tile, grid = 100, Image.new("RGB", (1200, 1200))
    for i, person in enumerate(people):
        face = Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB").crop((50, 50, 200, 200))
        size = 75 + (i * 37) % 144 * 25 // 143
        grid.paste(face.resize((size, size)), ((i % 12) * tile + (tile - size) // 2,
                                               (i // 12) * tile + (tile - size) // 2))
    return encode(np.asarray(grid), "PNG")


def area(box: dict) -> float:
    return box["Width"] * box["Height"]


def boxes(faces: list[dict]) -> list[tuple]:
    return sorted(tuple(round(f["BoundingBox"][k], 6) for k in ("Left", "Top", "Width", "Height")) for f in faces)


@pytest.mark.slow
def test_more_than_100_faces(rekognition, collection_id, crowd_of_144):
    image = {"Bytes": crowd_of_144}
    indexed = rekognition.index_faces(CollectionId=collection_id, Image=image, QualityFilter="NONE", MaxFaces=1000)
    records, unindexed = indexed["FaceRecords"], indexed["UnindexedFaces"]
    assert len(records) + len(unindexed) > 120  # the detector finds (nearly) all 144 ...
    assert len(records) == 100  # ... IndexFaces indexes the 100 largest
    assert all(u["Reasons"] == ["EXCEEDS_MAX_FACES"] for u in unindexed)
    assert min(area(r["FaceDetail"]["BoundingBox"]) for r in records) >= \
        max(area(u["FaceDetail"]["BoundingBox"]) for u in unindexed)
    assert face_count(rekognition, collection_id) == 100
    # DetectFaces: the same 100 largest, the others are not returned
    detected = rekognition.detect_faces(Image=image)["FaceDetails"]
    assert boxes(detected) == boxes([r["FaceDetail"] for r in records])
    # CompareFaces: the source face against the 100 largest target faces
    source = image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))
    compared = rekognition.compare_faces(SourceImage={"Bytes": source}, TargetImage=image, SimilarityThreshold=0)
    assert len(compared["FaceMatches"]) + len(compared["UnmatchedFaces"]) == 100
    # SearchUsersByImage: the largest face searched, the next 99 unsearched
    users = rekognition.search_users_by_image(CollectionId=collection_id, Image=image)
    assert len(users["UnsearchedFaces"]) == 99


def test_a_database_of_an_earlier_version_opens_and_its_faces_are_kept(tmp_path, two_people):
    """Faces stored before image digests existed: the column is added, they stay searchable, and an image
    indexed again is stored (nothing to match it with) and is a repeat from then on."""
    import sqlite3

    import faceledger

    data = tmp_path / "old"
    with faceledger.Client(data_dir=data) as client:
        client.create_collection(CollectionId="c")
        first = client.index_faces(CollectionId="c", Image={"Bytes": two_people}, ExternalImageId="p",
                                   QualityFilter="NONE")
    con = sqlite3.connect(data / "faceledger.db")
    con.execute("ALTER TABLE faces DROP COLUMN image_digest")  # as an earlier version created it
    con.commit()
    con.close()
    with faceledger.Client(data_dir=data) as client:
        assert [f["FaceId"] for f in client.list_faces(CollectionId="c")["Faces"]] == sorted(face_ids(first))
        again = client.index_faces(CollectionId="c", Image={"Bytes": two_people}, ExternalImageId="p",
                                   QualityFilter="NONE")
        assert not set(face_ids(again)) & set(face_ids(first))
        third = client.index_faces(CollectionId="c", Image={"Bytes": two_people}, ExternalImageId="p",
                                   QualityFilter="NONE")
        assert face_ids(third) == face_ids(again)
        assert client.describe_collection(CollectionId="c")["FaceCount"] == 4
