"""ONNX Runtime implementations of the engine's model protocols.

:class:`OnnxResNetEmbedder` runs dlib's face recognition ResNet
(``dlib_face_recognition_resnet_model_v1.dat``), converted to ONNX by this project's
own reader (:mod:`faceledger.vision.dlib_dnn`), on batches of face chips.  It produces
the same 128-d vectors as dlib's ``compute_face_descriptor`` (cosine similarity to
dlib's vector >= 0.9999 for every face; measured: 1 - 4e-13 at worst, values within
4.5e-7; see
tests/test_onnx_embedder.py), so it keeps dlib's model version name
``dlib-resnet-v1`` and the shipped similarity calibration stays valid.

Alignment is dlib's: ``dlib.get_face_chips(image, shapes, size=150, padding=0.25)``,
exactly what ``compute_face_descriptor(image, shape)`` does internally.

The converted model is written on first use into a cache folder
(``$FACELEDGER_MODEL_CACHE``, else ``$XDG_CACHE_HOME/faceledger/models``, else
``~/.cache/faceledger/models``), named by the SHA-256 of the source file and the
converter version; nothing converted is shipped or committed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "CONVERTER_VERSION",
    "OnnxResNetEmbedder",
    "model_cache_dir",
    "resnet_onnx_path",
    "default_threads",
    "session_options",
]

#: Bumped whenever the converter's output changes, so stale cache files are not reused.
CONVERTER_VERSION = 1

#: Chip size and padding of dlib's face descriptor (``compute_face_descriptor`` defaults).
CHIP_SIZE = 150
CHIP_PADDING = 0.25

#: Faces per onnxruntime call (larger batches gain little and cost memory; measured in
#: bench/embedding.py).
DEFAULT_BATCH = 32

_convert_lock = threading.Lock()


def model_cache_dir() -> Path:
    """The model cache (the same folder as the npm files': :func:`faceledger.vision.npm.cache_dir`)."""
    from .npm import cache_dir

    return cache_dir()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resnet_onnx_target(source_sha256: str, cache_dir: Path | None = None) -> Path:
    """Where :func:`resnet_onnx_path` keeps the conversion of the dlib file with this SHA-256."""
    cache = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    return cache / f"dlib_resnet_v1-{source_sha256[:16]}-c{CONVERTER_VERSION}.onnx"


def resnet_onnx_path(source: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """The ONNX file of dlib's ResNet, converting ``source`` (default: the installed
    ``face_recognition_models`` file) into the cache on first use."""
    if source is None:
        from .dlib_models import model_paths

        source = model_paths()["resnet"]
    source = Path(source)
    digest = _sha256(source)
    cache = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    target = resnet_onnx_target(digest, cache)
    if target.is_file():
        return target
    with _convert_lock:
        if target.is_file():
            return target
        from .dlib_dnn import read_resnet_v1, to_onnx

        net = read_resnet_v1(source)
        if net.sha256 != digest:  # the file changed while we read it
            raise RuntimeError(f"{source} changed during conversion")
        model = to_onnx(net)
        cache.mkdir(parents=True, exist_ok=True)
        # atomic: another process converting at the same time writes the same bytes
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=cache)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model.SerializeToString())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    return target


def default_threads() -> int:
    """Intra-op threads for a session: ``$FACELEDGER_ONNX_THREADS``, else the number of
    CPUs this process may run on (so a process pinned to one CPU gets one thread)."""
    from .engine import usable_cpus

    return usable_cpus("FACELEDGER_ONNX_THREADS")


def session_options(threads: int | None = None):
    """onnxruntime session options: all graph optimisations, ``threads`` intra-op
    threads (None: :func:`default_threads`), sequential execution, and no spin-waiting
    in the thread pool.  Spinning threads cost 35-40% of the throughput when the cores
    are shared with other work (measured on this 2-core machine under load: 2 threads
    with spinning 252 faces/s, without 357, 1 thread 398)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads is not None else default_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxResNetEmbedder:
    """dlib's ResNet face descriptor on ONNX Runtime (128-d, Euclidean; same vectors as
    :class:`faceledger.vision.dlib_models.ResNetEmbedder`)."""

    name = "dlib-resnet-v1"
    dim = 128

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        import onnxruntime as ort

        model: str | bytes
        if model_path is not None:
            self.model_path: Path | None = Path(model_path)
            model = str(model_path)
        else:
            try:
                self.model_path = resnet_onnx_path()
                model = str(self.model_path)
            except OSError as exc:  # cache folder not writable: convert in memory, every start
                from .dlib_dnn import read_resnet_v1, to_onnx
                from .dlib_models import model_paths

                warnings.warn(f"model cache {model_cache_dir()} unusable ({exc}); converting in memory",
                              RuntimeWarning, stacklevel=2)
                self.model_path = None
                model = to_onnx(read_resnet_v1(model_paths()["resnet"])).SerializeToString()
        self.batch_size = max(1, int(batch_size))
        self._session = ort.InferenceSession(
            model, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )

    # ------------------------------------------------------------------ alignment

    @staticmethod
    def chips(image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """dlib's aligned 150x150 chips, (N, 150, 150, 3) uint8, for 5-point landmarks: exactly what
        ``compute_face_descriptor(image, shape)`` aligns."""
        from .dlib_models import aligned_chips

        return aligned_chips(image, landmarks, CHIP_SIZE, CHIP_PADDING)

    # ------------------------------------------------------------------ network

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors (N, 128) float32 for aligned chips (N, 150, 150, 3) uint8."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 chips, got {chips.shape} {chips.dtype}")
        out = np.empty((len(chips), self.dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(chips[start : start + self.batch_size])
            out[start : start + len(batch)] = self._session.run(["descriptors"], {"chips": batch})[0]
        return out

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """All faces of one image in one batch."""
        return self.embed_chips(self.chips(image, landmarks))
