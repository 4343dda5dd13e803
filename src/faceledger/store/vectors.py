"""Vector stores outside the database (Milvus, docs/distributed.md): their failures, as the transports see them."""

from __future__ import annotations


class VectorStoreUnavailable(RuntimeError):
    """The external vector store cannot be reached: ``reason`` (a sentence for people), ``detail`` (its error)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason} ({detail})")
        self.reason, self.detail = reason, detail
