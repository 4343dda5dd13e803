"""Embeddings of a dataset's images through the service's engine, cached on disk.

One descriptor per image: the largest face found by :func:`faceledger.vision.default_engine`
(as IndexFaces with MaxFaces=1 would store it). Images with no face are *failures to enrol*.

The cache is one ``.npz`` per (dataset folder, engine model version, detector) under
``$FACELEDGER_CACHE`` (default ``~/.cache/faceledger/embeddings``); an entry is reused while the
file's size and modification time are unchanged. It is written every few hundred images, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def default_cache_dir() -> Path:
    env = os.environ.get("FACELEDGER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "faceledger" / "embeddings"


@dataclass
class Embeddings:
    """Descriptors of some images of a dataset: ``vectors[i]`` is the face of ``paths[i]``."""

    paths: list[str]  # relative to the dataset folder, "Person/Person_0001.jpg"
    vectors: np.ndarray  # (n, dim) float32
    failures: list[str]  # images without a face (failures to enrol)
    model_version: str
    detector: str

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def engine_key(engine) -> tuple[str, str]:
    detector = getattr(engine.detector, "name", type(engine.detector).__name__)
    return str(engine.model_version), str(detector)


def cache_file(cache_dir: Path, dataset: Path, model_version: str, detector: str) -> Path:
    tag = hashlib.sha256(f"{dataset.resolve()}|{model_version}|{detector}".encode()).hexdigest()[:16]
    return cache_dir / f"{dataset.resolve().name}-{tag}.npz"


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _load(file: Path) -> dict[str, tuple[str, np.ndarray | None]]:
    if not file.exists():
        return {}
    try:
        z = np.load(file, allow_pickle=False)
        out: dict[str, tuple[str, np.ndarray | None]] = {}
        for p, s, v in zip(z["paths"].tolist(), z["stamps"].tolist(), z["vectors"]):
            out[p] = (s, v.astype(np.float32))
        for p, s in zip(z["fail_paths"].tolist(), z["fail_stamps"].tolist()):
            out[p] = (s, None)
        return out
    except Exception:  # a damaged cache is rebuilt, never trusted
        return {}


def _save(file: Path, entries: dict[str, tuple[str, np.ndarray | None]], dim: int) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    ok = [(p, s, v) for p, (s, v) in entries.items() if v is not None]
    bad = [(p, s) for p, (s, v) in entries.items() if v is None]
    vectors = np.array([v for _, _, v in ok], np.float32).reshape(-1, dim)
    tmp = file.with_name(file.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, paths=np.array([p for p, _, _ in ok], dtype=str), stamps=np.array([s for _, s, _ in ok], dtype=str),
             vectors=vectors, fail_paths=np.array([p for p, _ in bad], dtype=str),
             fail_stamps=np.array([s for _, s in bad], dtype=str))
    os.replace(tmp, file)


def embed_image(engine, path: Path) -> np.ndarray | None:
    """The largest face's descriptor, or None when no face is found (or the file is unreadable)."""
    from ..vision import ImageError, decode_image

    try:
        decoded = decode_image(path.read_bytes())
    except ImageError:
        return None
    faces = engine.analyze(decoded.pixels, embed=True, max_faces=1)
    return None if not faces else np.asarray(faces[0].embedding, np.float32)


def embed_dataset(dataset: Path, images: Sequence[str], *, engine=None, cache_dir: Path | None = None,
                  progress: bool = True, save_every: int = 200,
                  embed: Callable[[Path], np.ndarray | None] | None = None) -> Embeddings:
    """Embed ``images`` (paths relative to ``dataset``), reusing and extending the cache."""
    if engine is None:
        from ..vision import default_engine

        engine = default_engine()
    model_version, detector = engine_key(engine)
    file = cache_file(cache_dir or default_cache_dir(), dataset, model_version, detector)
    entries = _load(file)
    stamps = {rel: _stamp(dataset / rel) for rel in images}
    todo = [rel for rel in images if rel not in entries or entries[rel][0] != stamps[rel]]
    embed = embed or (lambda p: embed_image(engine, p))
    dim = int(getattr(engine, "dim", 128)) if todo else 128
    if entries:
        dim = next((v.shape[0] for _, v in entries.values() if v is not None), dim)
    if todo:
        _run(todo, dataset, entries, stamps, embed, file, dim, progress, save_every)
    paths, vecs, failures = [], [], []
    for rel in images:
        v = entries[rel][1]
        if v is None:
            failures.append(rel)
        else:
            paths.append(rel)
            vecs.append(v)
    return Embeddings(paths, np.array(vecs, np.float32).reshape(-1, dim), failures, model_version, detector)


def _run(todo, dataset, entries, stamps, embed, file, dim, progress, save_every) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    last = time.monotonic()
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("embed", total=len(todo))
        for k, rel in enumerate(todo, 1):
            v = embed(dataset / rel)
            entries[rel] = (stamps[rel], v)
            if v is not None:
                dim = v.shape[0]
            bar.advance(task)
            if k % save_every == 0 or time.monotonic() - last > 60:
                _save(file, entries, dim)
                last = time.monotonic()
    _save(file, entries, dim)


def list_images(dataset: Path, people: Iterable[str] | None = None) -> list[str]:
    """``Person/file`` for every image of every person folder (sorted)."""
    out = []
    folders = sorted(p for p in dataset.iterdir() if p.is_dir()) if people is None else \
        [dataset / p for p in sorted(set(people))]
    for person in folders:
        for f in sorted(person.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                out.append(f"{person.name}/{f.name}")
    return out
