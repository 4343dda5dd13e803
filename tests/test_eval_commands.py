"""`faceledger eval verify|identify|calibrate` on a small slice of lfw_dev (real images; cache in tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceledger.cli import main

from conftest import shared_data

PEOPLE = 40


@pytest.fixture(scope="module")
def slice_(tmp_path_factory) -> tuple[Path, Path, Path]:
    """40 lfw_dev people (symlinked), a pairs file over them, a groups file; a shared embeddings cache."""
    lfw = shared_data("lfw_dev")
    root = tmp_path_factory.mktemp("evalslice")
    ds = root / "ds"
    ds.mkdir()
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:PEOPLE // 2]
    people += sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) == 1)[:PEOPLE // 2]
    for p in people:
        (ds / p.name).mkdir()
        for f in sorted(p.glob("*.jpg"))[:3]:
            (ds / p.name / f.name).symlink_to(f)
    multi = [p.name for p in people if len(list((ds / p.name).glob("*.jpg"))) >= 2]
    lines = [f"{n}\t1\t2" for n in multi[:10]] + [f"{a}\t1\t{b}\t1" for a, b in zip(multi[:10], multi[10:20])]
    lines += [f"{n}\t1\t2" for n in multi[10:20]] + [f"{a}\t1\t{b}\t1" for a, b in zip(multi[10:20], multi[:10])]
    (root / "pairs.txt").write_text("2\t10\n" + "\n".join(lines) + "\n")
    (root / "groups.csv").write_text("key,group\n" + "".join(f"{p.name},{'even' if i % 2 else 'odd'}\n"
                                                             for i, p in enumerate(people)))
    return ds, root / "pairs.txt", root / "groups.csv"


def _run(args, cache):
    r = CliRunner().invoke(main, [*args, "--cache", str(cache)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_eval_verify(slice_, tmp_path):
    ds, pairs, groups = slice_
    out = tmp_path / "v"
    text = _run(["eval", "verify", "--dataset", str(ds), "--pairs", str(pairs), "--impostors", "500",
                 "--groups", str(groups), "--out", str(out)], ds.parent / "cache")
    assert "TAR at FAR 1e-4" in text
    r = json.loads((out / "report.json").read_text())
    assert r["pairs"]["matched"] == 20 and r["pairs"]["extra_impostors"] == 500
    assert 0.8 <= r["accuracy"] <= 1.0 and 0.0 <= r["eer"] < 0.2
    assert set(r["tar_at_far"]) == {"1e-2", "1e-3", "1e-4"}
    assert r["tar_at_far_detail"]["1e-4"]["measurable"] is False  # 520 impostors cannot measure 1e-4
    assert set(r["groups"]["groups"]) == {"even", "odd"} and "80" in r["groups"]["differential"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    assert ".jpg\"" not in page and "<img alt=\"plot\"" in page  # plots only, no face images


def test_eval_identify_and_second_run_uses_the_cache(slice_, tmp_path):
    ds, _, groups = slice_
    args = ["eval", "identify", "--dataset", str(ds), "--gallery-size", "0", "--nonmated", "10",
            "--groups", str(groups), "--out", str(tmp_path / "i")]
    _run(args, ds.parent / "cache")
    r = json.loads((tmp_path / "i" / "report.json").read_text())
    assert r["gallery_size"] == 30 and r["nonmated_searches"] == 10
    assert set(r["fpir"]) >= {"80", "90", "95", "99", "default"} and set(r["fnir"]) == set(r["fpir"])
    assert r["at"]["80"]["expected_false_matches"] == pytest.approx(1e-4 * 30 * 10)
    assert r["fnir"]["99"] >= r["fnir"]["80"] and r["fpir"]["99"] <= r["fpir"]["80"]
    import time

    t = time.monotonic()
    _run(args, ds.parent / "cache")  # everything cached: seconds
    assert time.monotonic() - t < 20


def test_eval_calibrate_table_loads(slice_, tmp_path):
    from faceledger.service.dispatch import load_calibration

    ds, _, _ = slice_
    _run(["eval", "calibrate", "--dataset", str(ds), "--out", str(tmp_path / "cal.json")], ds.parent / "cache")
    scale = load_calibration(tmp_path / "cal.json", "faceledger-fusion-v1")  # the default engine's model
    assert 0.3 < scale.max_distance(80) < scale.max_distance(60) < 1.0
    with pytest.raises(ValueError, match="model"):
        load_calibration(tmp_path / "cal.json", "another-model")
