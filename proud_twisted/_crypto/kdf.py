"""HKDF-SHA256, the key derivation of the handshake and the pair channels."""

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def hkdf(secret: bytes, info: bytes, length: int, salt: bytes | None = None) -> bytes:
    """C{length} bytes of HKDF-SHA256 output for C{info}."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)
