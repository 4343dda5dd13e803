"""Similarity stays honest on degraded photos, through boto3 against a live server (docs/similarity.md,
"Validity range"; issue 10 point 5).

Real LFW photos, degraded inside the test (faceledger.evaluation.degradations, as bench/degradation.py
measures them). The stranger pairs below are photos of two different people that, both blurred (Gaussian
radius 5), reached Similarity 99 on the main table, like the issue's pair (sharp 58, blurred 99.3): 3.9% of
blurred stranger pairs reach 80 (bench/degradation.py; the test checks it again in-process, so the pairs
stay hostile for the model they are run with). About 1e-4 of blurred stranger pairs still reach 80 on the
degraded-both table, as 80 says: these are typical, not the rare closest ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data
from faceledger.evaluation.degradations import degrade, encode
from faceledger.vision import default_engine
from faceledger.vision.engine import DEFAULT_FACE_MODEL
from faceledger.vision.face_quality import band, pair_band
from faceledger.vision.image import decode_image
from faceledger.vision.similarity import SimilarityScale

BAND = "x-faceledger-quality-band"
DEGRADED = "x-faceledger-degradations"
EFM = "x-faceledger-expected-false-matches"

#: different people whose photos, both blurred at radius 5, reached Similarity >= 80 on the main table of each
#: model (found by bench/degradation.py's blur r5 pairs; the Similarity of the sharp photos, then the blurred)
STRANGERS_BY_MODEL = {
    "faceledger-fusion-v1": [
        ("Howard_Schultz/Howard_Schultz_0001.jpg", "Ray_Romano/Ray_Romano_0004.jpg"),  # sharp 62, blurred 99.0
        ("Garry_Kasparov/Garry_Kasparov_0001.jpg", "Gregory_Geoffroy/Gregory_Geoffroy_0001.jpg"),  # 60 -> 99.3
        ("Carson_Daly/Carson_Daly_0001.jpg", "Matthew_Broderick/Matthew_Broderick_0004.jpg"),  # 39 -> 99.1
    ],
    # of blur r5's ~700,000 stranger pairs, 544 reach 99 on SFace's main table; these three are typical of them
    # (their degraded-both Similarity is 70); the rarest few still reach 80 on that table too, at its FMR
    "faceledger-sface-v1": [
        ("Hugh_Grant/Hugh_Grant_0002.jpg", "Ruth_Harlow/Ruth_Harlow_0002.jpg"),  # sharp 53, blurred 99.05
        ("Fayssal_Mekdad/Fayssal_Mekdad_0003.jpg",
         "Jean-Marc_de_La_Sabliere/Jean-Marc_de_La_Sabliere_0001.jpg"),  # 47 -> 99.05
        ("Robert_Fico/Robert_Fico_0001.jpg", "Shaukat_Aziz/Shaukat_Aziz_0001.jpg"),  # 47 -> 99.05
    ],
    # the same three pairs with SFace aligned on dlib's points: both blurred, 99.3 / 94.1 / 85.7 on the main table,
    # 69 / 63 / 60 on degraded-both; sharp 46 / 47 / 44
    "faceledger-sface-v2": [
        ("Hugh_Grant/Hugh_Grant_0002.jpg", "Ruth_Harlow/Ruth_Harlow_0002.jpg"),
        ("Fayssal_Mekdad/Fayssal_Mekdad_0003.jpg", "Jean-Marc_de_La_Sabliere/Jean-Marc_de_La_Sabliere_0001.jpg"),
        ("Robert_Fico/Robert_Fico_0001.jpg", "Shaukat_Aziz/Shaukat_Aziz_0001.jpg"),
    ],
}
STRANGERS = STRANGERS_BY_MODEL[DEFAULT_FACE_MODEL]
#: different people whose photos, each with a band over the eyes, reach Similarity 95-99 on the main table and
#: read COVERED (bench/degradation.py's `band eyes` pairs; the sharp photos' Similarity, then the covered ones')
COVERED_STRANGERS_BY_MODEL = {
    "faceledger-sface-v1": [
        ("Aaron_Peirsol/Aaron_Peirsol_0004.jpg", "Raymond_Odierno/Raymond_Odierno_0002.jpg"),  # sharp 27, covered 95.6
        ("David_Heyman/David_Heyman_0001.jpg", "Joe_Calzaghe/Joe_Calzaghe_0002.jpg"),  # 51 -> 99.0
        ("John_Abizaid/John_Abizaid_0006.jpg", "Robert_Witt/Robert_Witt_0002.jpg"),  # 53 -> 99.1
    ],
    # SFace on dlib's points (bench/degradation.py's band-eyes cache, measured again with the strips' flat):
    # sharp 22 / 14 / 5, covered 98.0 on the main table, 64.5 on covered-both
    "faceledger-sface-v2": [
        ("Frank_Griswold/Frank_Griswold_0001.jpg", "Nicholas_Byron/Nicholas_Byron_0001.jpg"),
        ("Anwar_Ibrahim/Anwar_Ibrahim_0002.jpg", "Johnson_Panjaitan/Johnson_Panjaitan_0001.jpg"),
        ("Debra_Brown/Debra_Brown_0002.jpg", "Sarah_Hughes/Sarah_Hughes_0004.jpg"),
    ],
}
#: different people whose photos, each with a band over the eyes, reached Similarity 99 on the main table because
#: the measure missed the band on both: the detector found only the face under the band, and the landmarks located
#: on its box fell under it too, off the eye strip (the strips' flat read 0.10 / 0.00 and 0.33 / 0.03;
#: bench/degradation.py's band-eyes cache; sharp photos ~10-30)
MISSED_STRANGERS_BY_MODEL = {
    "faceledger-sface-v2": [
        ("Bob_Graham/Bob_Graham_0003.jpg", "William_Martin/William_Martin_0001.jpg"),  # covered 99.85 on the main table
        ("Albrecht_Mentz/Albrecht_Mentz_0002.jpg", "Frank_Cassell/Frank_Cassell_0003.jpg"),  # 99.7
    ],
}
#: one person's two photos (a mated pair): the second, underexposed (x0.15), still matches the first
MATED = ("Angelina_Jolie/Angelina_Jolie_0016.jpg", "Angelina_Jolie/Angelina_Jolie_0007.jpg")


@pytest.fixture(scope="module")
def lfw():
    return shared_data("lfw_dev")


@pytest.fixture(scope="module")
def engine():
    return default_engine()


def _pixels(lfw, rel):
    return decode_image((lfw / rel).read_bytes()).pixels


def _degraded(lfw, engine, rel, kind, p, seed=0):
    """(file bytes, decoded pixels) of ``rel`` degraded the way bench/degradation.py does."""
    img = _pixels(lfw, rel)
    face = engine.analyze(img, embed=False, max_faces=1)[0]
    data = encode(degrade(img, kind, p, face, np.random.default_rng(seed)), kind, p)
    return data, decode_image(data).pixels


def _distance(engine, a, b):
    fa = engine.analyze(a, max_faces=1)[0]
    fb = engine.analyze(b, max_faces=1)[0]
    return float(engine.distance(fa.embedding, fb.embedding[None, :])[0]), fa, fb


def _headers(r):
    return r["ResponseMetadata"]["HTTPHeaders"]


def test_blurred_strangers_no_longer_reach_80(rekognition, lfw, engine):
    main = SimilarityScale.load(engine.model_version)
    both = SimilarityScale.load(engine.model_version, "degraded-both")
    for a, b in STRANGERS:
        da, pa = _degraded(lfw, engine, a, "blur", 5)
        db, pb = _degraded(lfw, engine, b, "blur", 5)
        d, fa, fb = _distance(engine, pa, pb)
        assert band(fa.quality.measures) == band(fb.quality.measures) == "degraded"
        assert main.similarity(d) >= 80  # the fault: the main table calls two blurred strangers a match
        r = rekognition.compare_faces(SourceImage={"Bytes": da}, TargetImage={"Bytes": db}, QualityFilter="NONE")
        assert r["FaceMatches"] == [] and len(r["UnmatchedFaces"]) >= 1  # blur can add a spurious box
        assert _headers(r)[BAND] == "degraded-both"
        r = rekognition.compare_faces(SourceImage={"Bytes": da}, TargetImage={"Bytes": db}, QualityFilter="NONE",
                                      SimilarityThreshold=0)
        s = r["FaceMatches"][0]["Similarity"]
        assert s < 80 and s == pytest.approx(both.similarity(d), abs=0.05)
        # the same strangers, sharp: the main table and no band reported, unless both faces are turned (then the
        # turned-both table: tests/test_api_pose.py)
        r = rekognition.compare_faces(SourceImage={"Bytes": (lfw / a).read_bytes()},
                                      TargetImage={"Bytes": (lfw / b).read_bytes()}, SimilarityThreshold=0)
        d, fa, fb = _distance(engine, _pixels(lfw, a), _pixels(lfw, b))
        pair = pair_band(band(fa.quality.measures, fa.pose.yaw), band(fb.quality.measures, fb.pose.yaw))
        assert pair in ("calibrated", "turned-both")
        sharp = main if pair == "calibrated" else SimilarityScale.load(engine.model_version, pair)
        assert r["FaceMatches"][0]["Similarity"] == pytest.approx(sharp.similarity(d), abs=0.05)
        if len(r["FaceMatches"]) + len(r["UnmatchedFaces"]) == 1:  # other faces in the target have their own band
            assert _headers(r).get(BAND) == (None if pair == "calibrated" else pair)


def test_auto_refuses_blurred_faces_and_searching_one_at_auto_fails(rekognition, collection_id, lfw, engine):
    for a, _ in STRANGERS:
        data, _ = _degraded(lfw, engine, a, "blur", 5)
        r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": data}, QualityFilter="AUTO")
        assert r["FaceRecords"] == []
        assert "LOW_SHARPNESS" in r["UnindexedFaces"][0]["Reasons"]
        with pytest.raises(rekognition.exceptions.InvalidParameterException, match="LOW_SHARPNESS"):
            rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": data},
                                              QualityFilter="AUTO")
    # the sharp photos are indexed as before
    for a, b in STRANGERS:
        r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": (lfw / b).read_bytes()},
                                    QualityFilter="AUTO", MaxFaces=1)
        assert len(r["FaceRecords"]) == 1


def test_a_dark_probe_searched_anyway_gets_its_bands_similarity(rekognition, collection_id, lfw, engine):
    """QualityFilter NONE (SearchFacesByImage's default): an underexposed probe of an enrolled person is scored
    with the degraded-one table (the gallery face, indexed at AUTO, is inside the range): never a higher
    Similarity than the main table gives for the same distance (the band's table takes, at each FMR, the
    smallest distance of the main table and of every degraded condition; for faceledger-sface-v2 a sharp photo
    against a degraded one keeps the main table's FMR, so the two may agree), and the band and the degradation
    in the headers."""
    main = SimilarityScale.load(engine.model_version)
    one = SimilarityScale.load(engine.model_version, "degraded-one")
    rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": (lfw / MATED[0]).read_bytes()}, MaxFaces=1)
    data, probe = _degraded(lfw, engine, MATED[1], "dark", 0.15)
    d, _, _ = _distance(engine, probe, _pixels(lfw, MATED[0]))
    r = rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": data}, FaceMatchThreshold=0)
    h = _headers(r)
    assert h[BAND] == "degraded-one" and "LOW_CONTRAST" in h[DEGRADED].split(",")
    s = r["FaceMatches"][0]["Similarity"]
    assert s == pytest.approx(one.similarity(d), abs=0.05)
    # never more lenient than the main table (to the interpolation between table points: 1e-5 here), at this
    # pair's distance and at 80
    assert s <= main.similarity(d) + 1e-3
    assert one.similarity(d) <= main.similarity(d) + 1e-3 and one.max_distance(80) <= main.max_distance(80)
    # the sharp probe: the main table, no band
    r = rekognition.search_faces_by_image(CollectionId=collection_id,
                                          Image={"Bytes": (lfw / MATED[1]).read_bytes()}, FaceMatchThreshold=0)
    d, _, _ = _distance(engine, _pixels(lfw, MATED[1]), _pixels(lfw, MATED[0]))
    assert r["FaceMatches"][0]["Similarity"] == pytest.approx(main.similarity(d), abs=0.05)
    assert BAND not in _headers(r) and EFM in _headers(r)


def test_a_blurred_face_indexed_anyway_keeps_its_band_in_searches(rekognition, plain_rekognition, collection_id,
                                                                  lfw, engine):
    """The issue's search: a blurred stranger indexed with QualityFilter NONE, searched for with another
    blurred stranger at the default policy. The stored face keeps its band, so the pair is degraded-both:
    no match at 80 (the main table said 99)."""
    both = SimilarityScale.load(engine.model_version, "degraded-both")
    a, b = STRANGERS[0]
    da, pa = _degraded(lfw, engine, a, "blur", 5)
    db, pb = _degraded(lfw, engine, b, "blur", 5)
    r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": da}, QualityFilter="NONE", MaxFaces=1)
    assert len(r["FaceRecords"]) == 1
    r = rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": db})
    assert r["FaceMatches"] == [] and _headers(r)[BAND] == "degraded-both"
    d, _, _ = _distance(engine, pa, pb)
    # threshold 0 without the default policy's limit on expected false matches: the score itself
    r = plain_rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": db},
                                                FaceMatchThreshold=0)
    assert r["FaceMatches"][0]["Similarity"] == pytest.approx(both.similarity(d), abs=0.05)
    assert r["FaceMatches"][0]["Similarity"] < 80


def test_a_database_without_quality_bands_opens_and_its_faces_count_as_calibrated(tmp_path, lfw, engine):
    """Faces stored before bands were recorded: the column is added, the faces stay (band None: counted as
    calibrated, search.face_matches), and a face indexed afterwards has its band again."""
    import sqlite3

    import faceledger

    a, b = STRANGERS[0]
    da, _ = _degraded(lfw, engine, a, "blur", 5)
    data = tmp_path / "old"
    with faceledger.Client(data_dir=data) as client:
        client.create_collection(CollectionId="c")
        client.index_faces(CollectionId="c", Image={"Bytes": da}, QualityFilter="NONE", MaxFaces=1)
    con = sqlite3.connect(data / "faceledger.db")
    con.execute("ALTER TABLE faces DROP COLUMN quality_band")  # as an earlier version created it
    con.commit()
    con.close()
    sharp = (lfw / MATED[0]).read_bytes()  # inside the calibrated range
    with faceledger.Client(data_dir=data) as client:
        assert client.describe_collection(CollectionId="c")["FaceCount"] == 1
        r = client.compare_faces(SourceImage={"Bytes": sharp}, TargetImage={"Bytes": sharp})  # a live pair
        assert BAND not in _headers(r)
        client.index_faces(CollectionId="c", Image={"Bytes": da}, QualityFilter="NONE", MaxFaces=1)
        con = sqlite3.connect(data / "faceledger.db")
        bands = sorted(str(x) for (x,) in con.execute("SELECT quality_band FROM faces"))
        con.close()
        assert bands == ["None", "degraded"]


def test_strangers_both_covered_are_scored_on_the_covered_table(rekognition, plain_rekognition, collection_id,
                                                                 lfw, engine):
    """Two strangers' photos, each with a band over the eyes (bench/degradation.py's `band eyes`): the main table
    calls them a match at 95-99 (a band over both photos' eyes: 113x nominal at 80; the degraded-both table still
    gave 3.9x at 90 and 12x at 99); both faces read COVERED, so the pair is scored with the covered-both table, and
    the search's expected false matches are the threshold's FMR on that table's scale."""
    if engine.model_version not in COVERED_STRANGERS_BY_MODEL:
        pytest.skip(f"no covered stranger pairs listed for {engine.model_version} (bench/degradation.py finds them)")
    COVERED_STRANGERS = COVERED_STRANGERS_BY_MODEL[engine.model_version]
    main = SimilarityScale.load(engine.model_version)
    covered = SimilarityScale.load(engine.model_version, "covered-both")
    for a, b in COVERED_STRANGERS:
        da, pa = _degraded(lfw, engine, a, "occlude", 0)
        db, pb = _degraded(lfw, engine, b, "occlude", 0)
        d, fa, fb = _distance(engine, pa, pb)
        assert band(fa.quality.measures) == band(fb.quality.measures) == "covered"
        assert main.similarity(d) >= 95  # the fault: a band over both pairs' eyes makes strangers alike
        r = rekognition.compare_faces(SourceImage={"Bytes": da}, TargetImage={"Bytes": db}, QualityFilter="NONE",
                                      SimilarityThreshold=0)
        assert _headers(r)[BAND] == "covered-both"
        s = r["FaceMatches"][0]["Similarity"]
        assert s < 80 and s == pytest.approx(covered.similarity(d), abs=0.05)
    # searched: the stored covered face keeps its band; no match at the default policy, and the expected false
    # matches stated are the threshold's FMR times the faces searched
    a, b = COVERED_STRANGERS[0]
    da, _ = _degraded(lfw, engine, a, "occlude", 0)
    db, _ = _degraded(lfw, engine, b, "occlude", 0)
    rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": da}, QualityFilter="NONE", MaxFaces=1)
    r = rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": db})
    h = _headers(r)
    assert r["FaceMatches"] == [] and h[BAND] == "covered-both" and "COVERED" in h[DEGRADED].split(",")
    used = float(h["x-faceledger-threshold-used"])
    faces = rekognition.describe_collection(CollectionId=collection_id)["FaceCount"]
    assert float(h[EFM]) == pytest.approx(covered.fmr(used) * faces, rel=1e-3)
    r = plain_rekognition.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": db},
                                                FaceMatchThreshold=0)
    assert r["FaceMatches"][0]["Similarity"] < 80


def test_eye_bands_the_landmarks_miss_are_covered_and_auto_refuses_them(rekognition, collection_id, lfw, engine):
    """The eye band's remaining fault (issue 10 point 5): on about 1 eye-banded face in 30 the landmarks fall off
    the band (the detector's box moves under it), so the landmarks' strips read the face as uncovered and two
    such strangers were scored on the main table at 99. The band scan from the box's top (vision.face_quality's
    ``flat``) finds the band whatever the landmarks: both faces read COVERED, AUTO refuses them, and compared
    anyway (QualityFilter NONE) the pair is scored with the covered-both table, under 80."""
    from faceledger.vision.face_quality import RANGE, _flat

    if engine.model_version not in MISSED_STRANGERS_BY_MODEL:
        pytest.skip(f"no missed-band stranger pairs listed for {engine.model_version} (bench/degradation.py finds them)")
    main = SimilarityScale.load(engine.model_version)
    covered = SimilarityScale.load(engine.model_version, "covered-both")
    for a, b in MISSED_STRANGERS_BY_MODEL[engine.model_version]:
        da, pa = _degraded(lfw, engine, a, "occlude", 0)
        db, pb = _degraded(lfw, engine, b, "occlude", 0)
        d, fa, fb = _distance(engine, pa, pb)
        for img, f in ((pa, fa), (pb, fb)):
            assert _flat(img, f.points) <= RANGE.max_flat  # the fault's kind: the landmarks' strips miss the band
            assert band(f.quality.measures) == "covered", f.quality.measures
        assert main.similarity(d) >= 99  # what the main table said
        r = rekognition.compare_faces(SourceImage={"Bytes": da}, TargetImage={"Bytes": db}, QualityFilter="NONE",
                                      SimilarityThreshold=0)
        assert _headers(r)[BAND] == "covered-both"
        s = r["FaceMatches"][0]["Similarity"]
        assert s < 80 and s == pytest.approx(covered.similarity(d), abs=0.05)
        for data in (da, db):
            r = rekognition.index_faces(CollectionId=collection_id, Image={"Bytes": data}, QualityFilter="AUTO",
                                        MaxFaces=1)
            assert r["FaceRecords"] == [] and "LOW_FACE_QUALITY" in r["UnindexedFaces"][0]["Reasons"]
