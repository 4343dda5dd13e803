"""SearchFacesByImage, SearchFaces and CompareFaces: boto3 against a live server, real photographs.

Similarity is defined by the false match rate (80 = FMR 1e-4, see vision/similarity.py), so
"the same person scores >= 80, strangers score < 80" is what these tests hold the service to.
"""

from __future__ import annotations

import math

import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from faceledger.service.model import check_response

from conftest import image_bytes, shared_data

BACKENDS = ("sqlite", "postgresql")  # tests/conftest.py: these tests run on both stores

N_PEOPLE = 4
N_STRANGERS = 20


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def lfw_people(lfw: Path, n: int, min_images: int) -> list[Path]:
    """The first ``n`` LFW people (by name) with at least ``min_images`` photographs."""
    out = []
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        if len(list(person.glob("*.jpg"))) >= min_images:
            out.append(person)
            if len(out) == n:
                break
    return out


def lfw_strangers(lfw: Path, n: int) -> list[Path]:
    """``n`` people with exactly one LFW photograph (so never in the gallery below), spread over the alphabet."""
    singles = [p for p in sorted(lfw.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) == 1]
    step = max(1, len(singles) // n)
    return [next(p.glob("*.jpg")) for p in singles[::step][:n]]


def photos(person: Path) -> list[Path]:
    return sorted(person.glob("*.jpg"))


def assert_conforms(operation: str, response: dict) -> None:
    assert check_response(operation, response) == [], operation


def assert_box(box: dict) -> None:
    assert set(box) == {"Width", "Height", "Left", "Top"}
    for key in ("Width", "Height"):
        assert 0 < box[key] <= 1
    assert -0.5 < box["Left"] < 1 and -0.5 < box["Top"] < 1


@pytest.fixture(scope="module")
def gallery(rekognition, lfw):
    """A collection with one photograph each of N_PEOPLE LFW people (ExternalImageId = the name)."""
    cid = f"search-{uuid.uuid4().hex[:10]}"
    rekognition.create_collection(CollectionId=cid)
    people = lfw_people(lfw, N_PEOPLE, 2)
    face_ids = {}
    for person in people:
        response = rekognition.index_faces(
            CollectionId=cid, Image={"Bytes": image_bytes(photos(person)[0])}, ExternalImageId=person.name, MaxFaces=1
        )
        assert_conforms("IndexFaces", response)
        assert len(response["FaceRecords"]) == 1, person.name
        face_ids[person.name] = response["FaceRecords"][0]["Face"]["FaceId"]
    yield cid, people, face_ids
    rekognition.delete_collection(CollectionId=cid)


# ---------------------------------------------------------------- SearchFacesByImage


def test_search_by_image_finds_each_person_with_another_photo(rekognition, gallery):
    cid, people, face_ids = gallery
    for person in people:
        response = rekognition.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(photos(person)[1])})
        assert_conforms("SearchFacesByImage", response)
        matches = response["FaceMatches"]
        assert matches, f"{person.name}: no match for a second photograph"
        top = matches[0]
        assert top["Face"]["ExternalImageId"] == person.name
        assert top["Face"]["FaceId"] == face_ids[person.name]
        assert 80 <= top["Similarity"] <= 100
        assert_box(response["SearchedFaceBoundingBox"])
        assert 0 <= response["SearchedFaceConfidence"] <= 100
        assert response["FaceModelVersion"]
        assert top["Face"]["IndexFacesModelVersion"] == response["FaceModelVersion"]


def test_search_by_image_strangers_get_no_match_at_default_threshold(rekognition, gallery, lfw):
    cid, people, _ = gallery
    strangers = lfw_strangers(lfw, N_STRANGERS)
    assert len(strangers) == N_STRANGERS
    in_gallery = {p.name for p in people}
    false_matches = []
    for photo in strangers:
        assert photo.parent.name not in in_gallery
        response = rekognition.search_faces_by_image(CollectionId=cid, Image={"Bytes": image_bytes(photo)})
        false_matches += [(photo.name, m["Face"]["ExternalImageId"], m["Similarity"]) for m in response["FaceMatches"]]
    assert false_matches == []


def test_search_by_image_threshold_zero_sorted_and_max_faces(rekognition, plain_rekognition, gallery):
    cid, people, _ = gallery
    probe = {"Bytes": image_bytes(photos(people[0])[1])}
    # the default policy never searches below the threshold that keeps expected false matches <= 0.001
    default = rekognition.search_faces_by_image(CollectionId=cid, Image=probe, FaceMatchThreshold=0)
    used = float(default["ResponseMetadata"]["HTTPHeaders"]["x-faceledger-threshold-used"])
    assert used == pytest.approx(40 - 10 * math.log10(1e-3 / len(people)), abs=1e-3)
    assert all(m["Similarity"] >= used for m in default["FaceMatches"])
    # Rekognition's behaviour, asked for explicitly: no limit, no margin rule
    rekognition = plain_rekognition
    response = rekognition.search_faces_by_image(CollectionId=cid, Image=probe, FaceMatchThreshold=0)
    similarities = [m["Similarity"] for m in response["FaceMatches"]]
    assert len(similarities) == len(people)  # every face of the collection at threshold 0
    assert similarities == sorted(similarities, reverse=True)
    assert all(0 <= s <= 100 for s in similarities)
    assert response["FaceMatches"][0]["Face"]["ExternalImageId"] == people[0].name
    assert similarities[0] > similarities[1]

    capped = rekognition.search_faces_by_image(CollectionId=cid, Image=probe, FaceMatchThreshold=0, MaxFaces=2)
    assert [m["Face"]["FaceId"] for m in capped["FaceMatches"]] == [
        m["Face"]["FaceId"] for m in response["FaceMatches"][:2]
    ]


def test_search_by_image_without_a_face_is_invalid_parameter(rekognition, gallery):
    import skimage.data

    cid, _, _ = gallery
    cat = jpeg(Image.fromarray(skimage.data.chelsea()))
    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.search_faces_by_image(CollectionId=cid, Image={"Bytes": cat})


def test_search_by_image_quality_filter_high_rejects_a_blurred_face(rekognition, gallery):
    cid, people, _ = gallery
    original = Image.open(photos(people[0])[1]).convert("RGB")
    blurred = jpeg(original.resize((32, 32), Image.BILINEAR).resize(original.size, Image.BICUBIC))
    with pytest.raises(rekognition.exceptions.InvalidParameterException) as info:
        rekognition.search_faces_by_image(CollectionId=cid, Image={"Bytes": blurred}, QualityFilter="HIGH")
    assert "QualityFilter" in info.value.response["Error"]["Message"]
    response = rekognition.search_faces_by_image(CollectionId=cid, Image={"Bytes": blurred}, QualityFilter="NONE")
    assert_box(response["SearchedFaceBoundingBox"])
    assert isinstance(response["FaceMatches"], list)


def test_search_by_image_unknown_collection(rekognition, lfw):
    person = lfw_people(lfw, 1, 1)[0]
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.search_faces_by_image(CollectionId="no-such-collection", Image={"Bytes": image_bytes(photos(person)[0])})


# ---------------------------------------------------------------- SearchFaces


def test_search_faces_by_face_id_finds_the_other_photo_not_itself(rekognition, plain_rekognition, collection_id,
                                                                  lfw):
    person, other = lfw_people(lfw, 2, 2)
    ids = []
    for photo in photos(person)[:2] + photos(other)[:1]:
        response = rekognition.index_faces(
            CollectionId=collection_id, Image={"Bytes": image_bytes(photo)}, ExternalImageId=photo.stem, MaxFaces=1
        )
        ids.append(response["FaceRecords"][0]["Face"]["FaceId"])
    response = rekognition.search_faces(CollectionId=collection_id, FaceId=ids[0])
    assert_conforms("SearchFaces", response)
    assert response["SearchedFaceId"] == ids[0]
    assert response["FaceModelVersion"]
    found = [m["Face"]["FaceId"] for m in response["FaceMatches"]]
    assert found == [ids[1]]
    assert 80 <= response["FaceMatches"][0]["Similarity"] <= 100

    # the default policy raises threshold 0 for 2 faces searched to Similarity 73.0; without it, everything
    everything = plain_rekognition.search_faces(CollectionId=collection_id, FaceId=ids[0], FaceMatchThreshold=0)
    assert [m["Face"]["FaceId"] for m in everything["FaceMatches"]] == ids[1:]


def test_search_faces_unknown_face_id_is_an_error(rekognition, collection_id):
    with pytest.raises(rekognition.exceptions.ClientError) as info:
        rekognition.search_faces(CollectionId=collection_id, FaceId=str(uuid.uuid4()))
    assert info.value.response["Error"]["Code"] in {"InvalidParameterException", "ResourceNotFoundException"}


# ---------------------------------------------------------------- a crowd, face by face


def test_crowd_photo_indexed_face_by_face_then_found_from_a_crop(rekognition, collection_id):
    path = shared_data("groups", "linzaer_imgs", "11.jpg")
    data = image_bytes(path)
    response = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": data}, QualityFilter="NONE")
    assert_conforms("IndexFaces", response)
    records = response["FaceRecords"]
    assert len(records) >= 10
    assert response["UnindexedFaces"] == []

    photo = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = photo.size
    by_size = sorted(records, key=lambda r: r["Face"]["BoundingBox"]["Width"])
    checked = 0
    for record in (by_size[0], by_size[len(by_size) // 2], by_size[-1]):  # smallest, median, largest
        box = record["Face"]["BoundingBox"]
        left, top = box["Left"] * w, box["Top"] * h
        bw, bh = box["Width"] * w, box["Height"] * h
        # half a box of margin: a wider crop of a crowd also holds neighbours' faces as large as this one
        crop = photo.crop((
            max(0, int(left - bw / 2)), max(0, int(top - bh / 2)),
            min(w, int(left + 1.5 * bw)), min(h, int(top + 1.5 * bh)),
        ))
        x0, y0, cw, ch = (max(0, int(left - bw / 2)), max(0, int(top - bh / 2)), crop.width, crop.height)
        if crop.width < 300:
            scale = 300 / crop.width
            crop = crop.resize((300, round(crop.height * scale)), Image.BICUBIC)
        found = rekognition.search_faces_by_image(
            CollectionId=collection_id, Image={"Bytes": jpeg(crop)}, FaceMatchThreshold=0, MaxFaces=3
        )
        # The crop takes in the face's neighbours: SearchFacesByImage searches the largest face in it, which may
        # be a neighbour's nearer the camera. Whichever it is, the match is the face indexed at that place.
        searched = found["SearchedFaceBoundingBox"]
        sx, sy = x0 + searched["Left"] * cw, y0 + searched["Top"] * ch
        sw, sh = searched["Width"] * cw, searched["Height"] * ch

        def overlap(face_box: dict) -> float:
            fx, fy, fw, fh = face_box["Left"] * w, face_box["Top"] * h, face_box["Width"] * w, face_box["Height"] * h
            ix = max(0.0, min(sx + sw, fx + fw) - max(sx, fx))
            iy = max(0.0, min(sy + sh, fy + fh) - max(sy, fy))
            return ix * iy / (sw * sh + fw * fh - ix * iy)

        there = max(records, key=lambda r: overlap(r["Face"]["BoundingBox"]))
        assert overlap(there["Face"]["BoundingBox"]) > 0.5
        if there is record:
            checked += 1
        assert found["FaceMatches"][0]["Face"]["FaceId"] == there["Face"]["FaceId"]
        assert found["FaceMatches"][0]["Similarity"] >= 80
    assert checked >= 2  # at least two of the three were the face the crop was centred on


# ---------------------------------------------------------------- CompareFaces


def test_compare_faces_same_person(rekognition, lfw):
    person = lfw_people(lfw, 1, 2)[0]
    a, b = photos(person)[:2]
    response = rekognition.compare_faces(SourceImage={"Bytes": image_bytes(a)}, TargetImage={"Bytes": image_bytes(b)})
    assert_conforms("CompareFaces", response)
    assert len(response["FaceMatches"]) == 1
    assert 80 <= response["FaceMatches"][0]["Similarity"] <= 100
    assert response["UnmatchedFaces"] == []
    assert_box(response["SourceImageFace"]["BoundingBox"])
    assert 0 < response["SourceImageFace"]["Confidence"] <= 100
    assert_box(response["FaceMatches"][0]["Face"]["BoundingBox"])


def test_compare_faces_different_people(rekognition, lfw):
    first, second = lfw_people(lfw, 2, 1)
    response = rekognition.compare_faces(
        SourceImage={"Bytes": image_bytes(photos(first)[0])}, TargetImage={"Bytes": image_bytes(photos(second)[0])}
    )
    assert response["FaceMatches"] == []
    assert len(response["UnmatchedFaces"]) == 1
    assert_box(response["UnmatchedFaces"][0]["BoundingBox"])


def test_compare_faces_finds_the_right_face_in_a_group(rekognition):
    knn = shared_data("small_identities", "face_recognition_knn_examples")
    group = {"Bytes": image_bytes(knn / "test" / "obama_and_biden.jpg")}
    matched_left = {}
    for name, photo in (("biden", "biden.jpg"), ("obama", "obama.jpg")):
        response = rekognition.compare_faces(SourceImage={"Bytes": image_bytes(knn / "train" / name / photo)}, TargetImage=group)
        assert len(response["FaceMatches"]) == 1, name
        assert len(response["UnmatchedFaces"]) >= 1, name
        box = response["FaceMatches"][0]["Face"]["BoundingBox"]
        matched_left[name] = box["Left"] + box["Width"] / 2
    # Biden stands on the left of the photograph, Obama to his right.
    assert 0.3 < matched_left["biden"] < 0.5 < matched_left["obama"] < 0.75

    everyone = rekognition.compare_faces(
        SourceImage={"Bytes": image_bytes(knn / "train" / "biden" / "biden.jpg")}, TargetImage=group, SimilarityThreshold=0
    )
    assert everyone["UnmatchedFaces"] == []
    assert len(everyone["FaceMatches"]) == len(response["FaceMatches"]) + len(response["UnmatchedFaces"])
    similarities = [m["Similarity"] for m in everyone["FaceMatches"]]
    assert similarities == sorted(similarities, reverse=True)


def test_compare_faces_no_face_in_source_or_target(rekognition, lfw):
    import skimage.data

    cat = {"Bytes": jpeg(Image.fromarray(skimage.data.chelsea()))}
    face = {"Bytes": image_bytes(photos(lfw_people(lfw, 1, 1)[0])[0])}
    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.compare_faces(SourceImage=cat, TargetImage=face)
    response = rekognition.compare_faces(SourceImage=face, TargetImage=cat)
    assert response["FaceMatches"] == []
    assert response["UnmatchedFaces"] == []
    assert_box(response["SourceImageFace"]["BoundingBox"])
