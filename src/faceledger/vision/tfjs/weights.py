"""TensorFlow.js weight manifests: groups of shard files holding named tensors.

A manifest is a list of groups ``{"paths": [shard, ...], "weights": [entry, ...]}``;
the shards of a group are concatenated and the entries read from that buffer in
order.  An entry is ``{"name", "shape", "dtype"}`` plus, for quantised weights,
``"quantization": {"dtype": "uint8"|"uint16", "scale", "min"}`` (value =
``q * scale + min``) or ``{"dtype": "float16"}`` (IEEE half floats).  Both graph
models (``model.json``'s ``weightsManifest``) and face-api's
``*-weights_manifest.json`` files use this format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["read_manifest", "read_manifest_file"]

_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
    "int8": np.int8,
    "int16": np.int16,
    "uint16": np.uint16,
    "float16": np.float16,
    "int64": np.int64,
}


def _decode(entry: dict, buf: memoryview, offset: int) -> tuple[np.ndarray, int]:
    shape = [int(s) for s in entry.get("shape", [])]
    count = int(np.prod(shape)) if shape else 1
    dtype = entry["dtype"]
    if dtype == "string":
        raise ValueError(f"{entry['name']}: string weights are not supported")
    q = entry.get("quantization")
    if q:
        qdtype = q["dtype"]
        raw_t = _DTYPES[qdtype]
        nbytes = count * np.dtype(raw_t).itemsize
        raw = np.frombuffer(buf[offset:offset + nbytes], dtype=np.dtype(raw_t).newbyteorder("<"))
        if len(raw) != count:
            raise ValueError(f"{entry['name']}: weight data is truncated")
        if qdtype == "float16":
            val = raw.astype(np.float32)
        else:
            if "scale" not in q:
                raise ValueError(f"{entry['name']}: {qdtype} quantization without scale/min")
            val = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
        val = val.astype(_DTYPES[dtype]) if dtype != "float32" else val.astype(np.float32)
        return val.reshape(shape), offset + nbytes
    t = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    nbytes = count * t.itemsize
    raw = np.frombuffer(buf[offset:offset + nbytes], dtype=t)
    if len(raw) != count:
        raise ValueError(f"{entry['name']}: weight data is truncated")
    return raw.astype(t.newbyteorder("=")).reshape(shape), offset + nbytes


def read_manifest(manifest: list, folder: Path) -> dict[str, np.ndarray]:
    """Decode every tensor of a weights manifest whose shard files are in ``folder``."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join(Path(folder, p).read_bytes() for p in group["paths"])
        buf = memoryview(data)
        offset = 0
        for entry in group["weights"]:
            out[entry["name"]], offset = _decode(entry, buf, offset)
        if offset != len(data):
            raise ValueError(
                f"weights of {group['paths']}: {len(data)} bytes, manifest describes {offset}"
            )
    return out


def read_manifest_file(path: Path) -> dict[str, np.ndarray]:
    """A face-api style ``*-weights_manifest.json`` (shards next to it)."""
    path = Path(path)
    return read_manifest(json.loads(path.read_text()), path.parent)
