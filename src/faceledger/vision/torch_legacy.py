"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without torch.

That format is five pickles in a row followed by the raw storages: the magic number, the protocol version
(1001), system information (byte order, type sizes), the object itself (here an ``OrderedDict`` of tensors
whose storages are *persistent ids*), and the list of storage keys; then, for each key in that order, the
storage's element count (int64, little endian) and its bytes.

Only what a state dict of float tensors needs is unpickled: ``collections.OrderedDict`` and
``torch._utils._rebuild_tensor_v2`` (mapped to numpy here), storage types by name. Any other global in the
pickle is refused (:class:`LegacyFormatError`), so a crafted file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LegacyFormatError", "load_state_dict"]

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
             "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class LegacyFormatError(ValueError):
    """Not a legacy torch file this reader understands (or one that asks for anything but tensors)."""


class _Storage:
    def __init__(self, dtype: type, key: str, size: int) -> None:
        self.dtype, self.key, self.size = np.dtype(dtype), key, size
        self.data: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise LegacyFormatError(f"storage {self.storage.key} was never read")
        item = data.itemsize
        if not self.size:
            return data[self.offset].copy()
        end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if end > data.size or self.offset < 0 or any(s < 0 for s in self.stride):
            raise LegacyFormatError(f"tensor of storage {self.storage.key} reaches past it")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, [s * item for s in self.stride])
        return np.array(view)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return name
        raise LegacyFormatError(f"the file asks for {module}.{name}, which a state dict of tensors never needs")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise LegacyFormatError(f"unknown persistent id {pid!r:.80}")
        _, kind, key, _location, size = pid[:5]
        if kind not in _STORAGES or not isinstance(size, int) or size < 0:
            raise LegacyFormatError(f"storage {key!r:.40}: unsupported type {kind!r:.40}")
        if len(pid) > 5 and pid[5] is not None:
            raise LegacyFormatError("storage views are not supported")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(_STORAGES[kind], key, size)
        return storage


def load_state_dict(path: str | Path) -> "collections.OrderedDict[str, np.ndarray]":
    """{name: numpy array} of a legacy-format ``torch.save(state_dict)`` file (see the module's docstring);
    LegacyFormatError for a zip-format file, a truncated one, or one that is anything but tensors."""
    raw = Path(path).read_bytes()
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        try:
            return _Unpickler(f, storages).load()
        except LegacyFormatError:
            raise
        except Exception as exc:
            raise LegacyFormatError(f"{path}: not a legacy torch file ({type(exc).__name__}: {exc})") from None

    if load() != MAGIC:
        raise LegacyFormatError(f"{path}: no legacy torch magic number (a zip-format file needs torch.load)")
    if load() != PROTOCOL:
        raise LegacyFormatError(f"{path}: unknown legacy protocol version")
    info = load()
    if isinstance(info, dict) and not info.get("little_endian", True):
        raise LegacyFormatError(f"{path}: big-endian files are not supported")
    obj = load()
    keys = load()
    if not isinstance(keys, list):
        raise LegacyFormatError(f"{path}: no storage key list")
    for key in keys:
        storage = storages.get(key)
        header = f.read(8)
        if storage is None or len(header) != 8:
            raise LegacyFormatError(f"{path}: storage {key!r:.40} is missing or truncated")
        (count,) = struct.unpack("<q", header)
        if count != storage.size:
            raise LegacyFormatError(f"{path}: storage {key!r:.40} has {count} elements, expected {storage.size}")
        nbytes = count * storage.dtype.itemsize
        start = f.tell()
        if start + nbytes > len(raw):
            raise LegacyFormatError(f"{path}: storage {key!r:.40} is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"), count=count, offset=start)
        f.seek(start + nbytes)
    if not isinstance(obj, dict):
        raise LegacyFormatError(f"{path}: not a state dict")
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if isinstance(value, _Tensor):
            out[str(name)] = value.array()
    return out
