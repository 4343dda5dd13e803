"""The readers behind the analysis models: JavaScript-bundled TF.js models and legacy torch state dicts, on
hostile input (nothing is executed, anything unexpected is refused)."""

from __future__ import annotations

import base64
import json
import os
import pickle

import numpy as np
import pytest

from faceledger.vision.tfjs.jsbundle import BundleError, bundle_value, load_bundled_model, parse_literal
from faceledger.vision.torch_legacy import MAGIC, PROTOCOL, LegacyFormatError, load_state_dict

UMD = ('!function(t){if("object"==typeof exports&&"undefined"!=typeof module)module.exports=t();else{}}'
       '(function(){return function t(e,a,l){return e}({1:[function(t,e,a){e.exports=%s},{}]},{},[1])(1)});')


def test_js_literals():
    value, end = parse_literal('{a:1,b:.5,c:-.2e3,"d":"x\\"y",e:[!0,!1,null,true],f:\'it\\\'s\',g:{}} rest')
    assert value == {"a": 1, "b": 0.5, "c": -200.0, "d": 'x"y', "e": [True, False, None, True], "f": "it's", "g": {}}
    for bad in ("{a:alert(1)}", "{a:1", "[1,,2]", "{a:`x`}", "[" * 100 + "]" * 100):
        with pytest.raises(BundleError):
            parse_literal(bad)


def test_a_bundled_graph_model_becomes_model_json_and_shards(tmp_path):
    weights = np.arange(6, dtype=np.float32)
    doc = ('{format:"graph-model",modelTopology:{node:[]},weightsManifest:[{paths:["group1-shard1of1"],'
           'weights:[{name:"w",shape:[2,3],dtype:"float32"}]}]}')
    (tmp_path / "model.min.js").write_text(UMD % doc)
    (tmp_path / "group1-shard1of1.min.js").write_text(UMD % json.dumps(base64.b64encode(weights.tobytes()).decode()))
    out = load_bundled_model(tmp_path / "model.min.js", tmp_path / "out")
    assert json.loads(out.read_text())["weightsManifest"][0]["paths"] == ["group1-shard1of1"]
    assert np.frombuffer((tmp_path / "out" / "group1-shard1of1").read_bytes(), np.float32).tolist() == weights.tolist()
    (tmp_path / "evil.min.js").write_text("module.exports=require('child_process').execSync('id')")
    with pytest.raises(BundleError):
        bundle_value(tmp_path / "evil.min.js")


def legacy_file(path, obj_pickle: bytes, keys=(), storages=b"") -> None:
    with open(path, "wb") as f:
        for value in (MAGIC, PROTOCOL, {"little_endian": True}):
            pickle.dump(value, f, protocol=2)
        f.write(obj_pickle)
        pickle.dump(list(keys), f, protocol=2)
        f.write(storages)


def test_a_legacy_file_that_asks_for_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    legacy_file(path, pickle.dumps(os.system, protocol=2))
    with pytest.raises(LegacyFormatError, match="never needs"):
        load_state_dict(path)
    with pytest.raises(LegacyFormatError):  # a zip-format (new) torch file, or anything else
        (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + b"\0" * 100)
        load_state_dict(tmp_path / "zip.pth")


def test_a_handmade_legacy_state_dict_is_read(tmp_path):
    # the opcodes torch.save writes for {"w": tensor of shape (2, 3) over a 6-float storage "0"}
    obj = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02"
           b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05"
           b"X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x06Ntq\x08QK\x00K\x02K\x03\x86q\tK\x03K\x01\x86q\n"
           b"\x89ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0es.")
    data = np.arange(6, dtype="<f4")
    legacy_file(tmp_path / "ok.pth", obj, ["0"], np.int64(6).astype("<i8").tobytes() + data.tobytes())
    state = load_state_dict(tmp_path / "ok.pth")
    assert list(state) == ["w"] and state["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    legacy_file(tmp_path / "short.pth", obj, ["0"], np.int64(6).astype("<i8").tobytes() + data.tobytes()[:-4])
    with pytest.raises(LegacyFormatError, match="truncated"):
        load_state_dict(tmp_path / "short.pth")


@pytest.mark.slow
def test_models_fetch_analysis_readies_every_analysis_model():
    from click.testing import CliRunner

    from faceledger.cli import main

    pytest.importorskip("rapidocr")
    result = CliRunner().invoke(main, ["models", "fetch", "--analysis"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for version in ("PP-OCRv6-small", "nsfwjs-4.4.0-mobilenet_v2_mid", "efficientnet-lite0-imagenet1k", "nanodet-m-coco"):
        assert f"ready: {version}" in result.output


def test_word_pieces_are_joined_into_space_separated_words():
    """rapidocr splits letter-spaced capitals ("R" + "OYAL", seen on the shared crowd video's "ROYAL OPERA
    HOUSE" sign); DetectText's WORDs are the line's space-separated tokens."""
    from faceledger.analysis.text import TextWord, words_of

    def piece(text, x0, x1, confidence=0.99):
        return TextWord(text, confidence, np.array([[x0, 0], [x1, 0], [x1, 10], [x0, 10]], dtype=float))

    joined = words_of("ROYAL OPERA", (piece("R", 0, 8), piece("OYAL", 10, 50, 0.9), piece("OPER", 60, 95),
                                      piece("A", 97, 105)))
    assert [w.text for w in joined] == ["ROYAL", "OPERA"]
    assert joined[0].polygon[:, 0].tolist() == [0, 50, 50, 0] and joined[0].confidence == 0.9
    same = (piece("a", 0, 5), piece("b", 8, 12))
    assert words_of("a b", same) == same
    odd = (piece("ab", 0, 5), piece("c", 8, 12))  # pieces that do not spell the tokens: kept as they are
    assert words_of("a bc", odd) == odd
