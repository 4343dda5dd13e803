"""Vector search for the store: derived state, rebuilt from the store's vectors (see docs/scale.md)."""

from .exact import exact_nearest, squared_norms

__all__ = ["exact_nearest", "squared_norms"]
