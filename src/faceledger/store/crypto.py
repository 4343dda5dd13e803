"""Optional encryption of embeddings at rest: AES-256-GCM, bound to the face id."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"FLE1"  # an encrypted blob: MAGIC + 12-byte nonce + ciphertext + 16-byte tag


class EmbeddingKeyError(Exception):
    """Embeddings cannot be read: encrypted without a key, or under another key."""


class EmbeddingCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the embedding key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def encrypt(self, face_id: str, plain: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, plain, face_id.encode("utf-8"))

    def decrypt(self, face_id: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[4:16], blob[16:], face_id.encode("utf-8"))
        except InvalidTag:
            raise EmbeddingKeyError(f"the embedding of face {face_id} does not decrypt with this key") from None


def is_encrypted(blob: bytes) -> bool:
    # As a float32, MAGIC reads 2.9e-9: a plain embedding starting with exactly that value does not occur.
    return blob[:4] == MAGIC
