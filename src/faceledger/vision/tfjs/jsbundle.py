"""TF.js models shipped as JavaScript bundles (npm ``nsfwjs``' ``dist/models/<model>/*.min.js``).

Such a package wraps its graph model in browserify bundles: ``model.min.js`` exports the model.json document
as a JavaScript object literal (``{format:"graph-model",...}``: bare keys, ``.5`` numbers, ``!0``), and each
``group1-shardNofM.min.js`` exports one weight shard as a base64 string. Nothing is executed: the one
``exports=`` value of a bundle is read by a small parser of JavaScript literals (objects, arrays, strings,
numbers, true/false/null, ``!0``/``!1``), which refuses anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["BundleError", "bundle_value", "parse_literal", "load_bundled_model"]

# browserify's module table: {1:[function(require,module,exports){module.exports=<literal>},{}]}
_EXPORT = re.compile(r"\{\s*1\s*:\s*\[\s*function\s*\([\w$,\s]*\)\s*\{\s*[\w$]+\.exports\s*=\s*")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_MAX_DEPTH = 64


class BundleError(ValueError):
    """A bundle that is not a literal export of the expected kind."""


def parse_literal(text: str, start: int = 0) -> tuple[Any, int]:
    """The JavaScript literal at ``text[start:]`` as Python values, and the index after it."""
    pos = start

    def skip() -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1

    def closed(close: str) -> bool:
        """After an item: past a ',' (False: another item follows) or past ``close`` (True)."""
        nonlocal pos
        skip()
        if text.startswith(",", pos) or text.startswith(close, pos):
            pos += 1
            return text[pos - 1] == close
        raise BundleError(f"',' or '{close}' expected at {pos}")

    def value(depth: int) -> Any:
        nonlocal pos
        if depth > _MAX_DEPTH:
            raise BundleError("literal nested too deeply")
        skip()
        if pos >= len(text):
            raise BundleError("literal ends early")
        c = text[pos]
        if c == "{":
            pos += 1
            out: dict[str, Any] = {}
            skip()
            if text.startswith("}", pos):
                pos += 1
                return out
            while True:
                skip()
                if text.startswith(('"', "'"), pos):
                    key = string()
                else:
                    m = _IDENT.match(text, pos) or _NUMBER.match(text, pos)
                    if not m:
                        raise BundleError(f"bad key at {pos}")
                    key, pos = m.group(), m.end()
                skip()
                if not text.startswith(":", pos):
                    raise BundleError(f"':' expected at {pos}")
                pos += 1
                out[key] = value(depth + 1)
                if closed("}"):
                    return out
        if c == "[":
            pos += 1
            items: list[Any] = []
            skip()
            if text.startswith("]", pos):
                pos += 1
                return items
            while True:
                items.append(value(depth + 1))
                if closed("]"):
                    return items
        if c in "\"'":
            return string()
        if text.startswith("!0", pos) or text.startswith("!1", pos):
            pos += 2
            return text[pos - 1] == "0"
        m = _NUMBER.match(text, pos)
        if m:
            pos = m.end()
            number = m.group()
            return float(number) if any(ch in number for ch in ".eE") else int(number)
        m = _IDENT.match(text, pos)
        if m and m.group() in ("true", "false", "null"):
            pos = m.end()
            return {"true": True, "false": False, "null": None}[m.group()]
        raise BundleError(f"not a literal at {pos}: {text[pos:pos + 20]!r}")

    def string() -> str:
        nonlocal pos
        quote = text[pos]
        end = pos + 1
        while True:
            end = text.find(quote, end)
            if end < 0:
                raise BundleError("unterminated string")
            backslashes = len(text[pos + 1:end]) - len(text[pos + 1:end].rstrip("\\"))
            if backslashes % 2 == 0:
                break
            end += 1
        body = text[pos + 1:end]
        pos = end + 1
        if "\\" not in body:
            return body
        if quote == "'":
            body = body.replace("\\'", "'").replace('"', '\\"')
        return json.loads(f'"{body}"')

    result = value(0)
    return result, pos


def bundle_value(path: Path) -> Any:
    """The literal a browserify bundle's module 1 exports (``{1:[function(t,e,a){e.exports=<literal>}``)."""
    text = Path(path).read_text(encoding="utf-8")
    m = _EXPORT.search(text)
    if not m:
        raise BundleError(f"{path}: not a browserify bundle whose module 1 exports a literal")
    return parse_literal(text, m.end())[0]


def load_bundled_model(model_js: Path, out_dir: Path) -> Path:
    """Write ``model_js``'s graph model as ``out_dir/model.json`` and its shards (the ``*.min.js`` beside it
    named in the weights manifest) as binary files; the path of model.json, for the TF.js converter."""
    doc = bundle_value(model_js)
    if not isinstance(doc, dict) or doc.get("format") != "graph-model":
        raise BundleError(f"{model_js}: not a TF.js graph model")
    out_dir.mkdir(parents=True, exist_ok=True)
    for group in doc.get("weightsManifest", []):
        for name in group["paths"]:
            shard = bundle_value(Path(model_js).parent / f"{Path(name).name}.min.js")
            if not isinstance(shard, str):
                raise BundleError(f"{name}: the bundle does not export a base64 string")
            try:
                (out_dir / Path(name).name).write_bytes(base64.b64decode(shard, validate=True))
            except binascii.Error as exc:
                raise BundleError(f"{name}: bad base64 ({exc})") from None
        group["paths"] = [Path(p).name for p in group["paths"]]
    (out_dir / "model.json").write_text(json.dumps(doc))
    return out_dir / "model.json"
