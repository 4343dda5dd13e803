"""faceledger: self-hosted, Rekognition-compatible face recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from .client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":  # imported lazily: `import faceledger.vision` stays light
        from .client import Client

        return Client
    raise AttributeError(f"module 'faceledger' has no attribute {name!r}")
