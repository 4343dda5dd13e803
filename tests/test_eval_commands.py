"""`faceledger eval verify|identify|calibrate` on a small slice of lfw_dev (real images; cache in tmp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
    scale = load_calibration(tmp_path / "cal.json", "faceledger-sface-v2")  # the default engine's model
    assert 0.3 < scale.max_distance(80) < scale.max_distance(60) < 2.0  # unit vectors: distances 0-2
    with pytest.raises(ValueError, match="model"):
        load_calibration(tmp_path / "cal.json", "another-model")


@pytest.fixture(scope="module")
def with_faceless(tmp_path_factory) -> tuple[Path, Path]:
    """6 lfw_dev people and one "person" whose two images have no face (built here: flat grey and noise),
    with a pairs file (2 folds) that lists a matched and a mismatched pair of the faceless images."""
    import numpy as np
    from PIL import Image

    lfw = shared_data("lfw_dev")
    root = tmp_path_factory.mktemp("faceless")
    ds = root / "ds"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:6]
    for p in people:
        (ds / p.name).mkdir(parents=True)
        for f in sorted(p.glob("*.jpg"))[:2]:
            (ds / p.name / f.name).symlink_to(f)
    (ds / "No_Face").mkdir()
    rng = np.random.default_rng(0)
    Image.new("RGB", (250, 250), (128, 128, 128)).save(ds / "No_Face" / "No_Face_0001.jpg")
    Image.fromarray(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(ds / "No_Face" / "No_Face_0002.jpg")
    n = [p.name for p in people]
    fold0 = [f"{n[0]}\t1\t2", f"{n[1]}\t1\t2", "No_Face\t1\t2",
             f"{n[0]}\t1\t{n[1]}\t1", f"{n[2]}\t1\t{n[3]}\t1", f"{n[4]}\t1\t{n[5]}\t1"]
    fold1 = [f"{n[2]}\t1\t2", f"{n[3]}\t1\t2", f"{n[4]}\t1\t2",
             f"{n[1]}\t2\t{n[2]}\t2", "No_Face\t1\t" + f"{n[5]}\t2", f"{n[3]}\t2\t{n[0]}\t2"]
    (root / "pairs.txt").write_text("2\t3\n" + "\n".join(fold0 + fold1) + "\n")
    return ds, root / "pairs.txt"


def test_eval_verify_decides_every_pair(with_faceless, tmp_path):
    ds, pairs = with_faceless
    out = tmp_path / "v"
    text = _run(["eval", "verify", "--dataset", str(ds), "--pairs", str(pairs), "--out", str(out)],
                ds.parent / "cache")
    r = json.loads((out / "report.json").read_text())
    assert r["failures_to_enrol"] == 2
    assert r["pairs"]["total"] == 12 and r["pairs"]["failure_to_enrol"] == {"matched": 1, "mismatched": 1,
                                                                          "decided": "different"}
    assert r["pairs"]["matched"] == 5 and r["pairs"]["mismatched"] == 5  # enrolled: EER and TAR use these
    # the headline counts all 12 pairs: the faceless matched pair is an error, the mismatched one is right
    folds = r["accuracy_folds"]
    assert r["accuracy"] == pytest.approx(np.mean(folds["folds"]))
    enrolled_right = [round(a * 5) for a in folds["enrolled"]["folds"]]  # 5 enrolled pairs a fold
    assert folds["folds"] == pytest.approx([enrolled_right[0] / 6, (enrolled_right[1] + 1) / 6])
    assert folds["fte_as_error"]["folds"] == pytest.approx([enrolled_right[0] / 6, enrolled_right[1] / 6])
    assert r["accuracy_fte_as_error"] <= r["accuracy"] and r["accuracy"] < r["accuracy_enrolled_only"] + 1e-9
    assert "all 12 pairs; 2 with an image without a face, decided 'different'" in text
    assert "enrolled pairs only (10)" in text and "failures to enrol counted as errors" in text
    page = (out / "report.html").read_text()
    assert "decided &#x27;different&#x27;" in page or "decided 'different'" in page


def test_eval_fails_before_embedding_when_matplotlib_is_missing(with_faceless, tmp_path):
    """The report needs matplotlib: without it, eval says how to install it at once (no minutes of embedding
    first). The missing package is simulated in a subprocess by blocking its import."""
    import subprocess
    import sys

    ds, pairs = with_faceless
    cache = tmp_path / "cache"
    code = ("import sys; sys.modules['matplotlib'] = None; from faceledger.cli import main; "
            "main(sys.argv[1:], prog_name='faceledger')")
    for args in (["verify", "--pairs", str(pairs)], ["identify", "--gallery-size", "0", "--nonmated", "2"]):
        proc = subprocess.run([sys.executable, "-c", code, "eval", *args, "--dataset", str(ds), "--out",
                               str(tmp_path / "out"), "--cache", str(cache)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "pip install 'faceledger[eval]'" in proc.stderr and "Traceback" not in proc.stderr
        assert not cache.exists() and not (tmp_path / "out").exists()  # nothing embedded, nothing written
