"""Search ranks by Similarity, each pair on its quality band's table: the nearest face is not always the best."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

MODEL = "faceledger-sface-v2"


def _at(d: float, axis: int) -> np.ndarray:
    """A unit vector ``d`` from e0, in the plane of e0 and e``axis``."""
    v = np.zeros(128, np.float32)
    v[0], v[axis] = 1 - d * d / 2, np.sqrt(1 - (1 - d * d / 2) ** 2)
    return v


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    """A turned probe face P; a turned face T (alice) nearer to it than a calibrated face K (bob), yet T scores
    under 80 on turned-both's table and K 80 or more on the main table."""
    from faceledger.client import Client
    from faceledger.store import CollectionRecord, FaceRecord
    from faceledger.vision.similarity import SimilarityScale

    main, both = SimilarityScale.load(MODEL), SimilarityScale.load(MODEL, "turned-both")
    dt, dk = both.max_distance(80) + 0.003, main.max_distance(80) - 0.003
    assert dt < dk and both.similarity(dt) < 80 <= main.similarity(dk)
    client = Client(tmp_path_factory.mktemp("bands") / "data")
    store, now = client._service.store, datetime(2026, 11, 30, tzinfo=timezone.utc)
    store.create_collection(CollectionRecord("c", "arn:aws:rekognition:us-east-1:000000000000:collection/c",
                                             MODEL, now), {})
    ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in (1, 2, 3)]
    store.add_faces([FaceRecord(fid, "c", f"img-{i}", None, (0.5, 0.5, 0.1, 0.1), 99.0, MODEL, now,
                                embedding=v, quality_band=band)
                     for i, (fid, v, band) in enumerate(zip(ids, (_at(0, 1), _at(dt, 1), _at(dk, 2)),
                                                            ("turned", "turned", "calibrated")))])
    for user, face in (("alice", ids[1]), ("bob", ids[2])):
        client._service.call("CreateUser", {"CollectionId": "c", "UserId": user})
        client._service.call("AssociateFaces", {"CollectionId": "c", "UserId": user, "FaceIds": [face]})
    return client._service, ids


@pytest.mark.parametrize("margin", [0, None])
def test_search_faces_and_users_find_the_best_scored_not_the_nearest(turned, margin):
    from faceledger.service import RequestContext

    service, ids = turned
    ctx = RequestContext(min_margin=margin) if margin is not None else RequestContext()
    faces = service.call("SearchFaces", {"CollectionId": "c", "FaceId": ids[0], "MaxFaces": 1,
                                         "FaceMatchThreshold": 80}, ctx)["FaceMatches"]
    users = service.call("SearchUsers", {"CollectionId": "c", "FaceId": ids[0], "MaxUsers": 1,
                                         "UserMatchThreshold": 80}, ctx)["UserMatches"]
    assert [m["Face"]["FaceId"] for m in faces] in ([ids[2]], [] if margin is None else None)
    assert [m["User"]["UserId"] for m in users] == (["bob"] if faces else [])
    assert all(m["Similarity"] >= 80 for m in faces + users)
