"""The server's long-term Ed25519 identity and its PEM key file format."""

import hashlib
import os

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from proud_twisted.errors import ProtocolError

KEY_SIZE = 32
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class PublicIdentity:
    """The public half of a server identity: what a client pins."""

    __slots__ = ("_key", "_raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._raw = key.public_bytes(*_RAW)

    @classmethod
    def fromBytes(cls, raw: bytes) -> "PublicIdentity":
        """From the raw 32-byte public key; raises L{ProtocolError}."""
        if len(raw) != KEY_SIZE:
            raise ProtocolError(f"identity key must be {KEY_SIZE} bytes, not {len(raw)}")
        try:
            return cls(Ed25519PublicKey.from_public_bytes(bytes(raw)))
        except ValueError as e:
            raise ProtocolError(f"invalid identity key: {e}") from None

    @classmethod
    def fromHex(cls, text: str) -> "PublicIdentity":
        """From the 64 hex digits of L{toHex} (e.g. a config setting)."""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ProtocolError("identity key is not hexadecimal") from None
        return cls.fromBytes(raw)

    def publicBytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._raw

    __bytes__ = publicBytes

    def toHex(self) -> str:
        return self._raw.hex()

    def fingerprint(self) -> str:
        """Hex of the first 16 bytes of SHA-256 of the key, for humans and logs."""
        return hashlib.sha256(self._raw).digest()[:16].hex()

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether C{signature} is this identity's signature of C{data}."""
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other) -> bool:
        if not isinstance(other, PublicIdentity):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"<PublicIdentity {self.fingerprint()}>"


class IdentityKey:
    """A server's long-term Ed25519 signing key."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls, randomBytes=os.urandom) -> "IdentityKey":
        """A new key from 32 bytes of C{randomBytes}."""
        return cls.fromPrivateBytes(randomBytes(KEY_SIZE))

    @classmethod
    def fromPrivateBytes(cls, raw: bytes) -> "IdentityKey":
        """From the raw 32-byte private key; raises L{ProtocolError}."""
        if len(raw) != KEY_SIZE:
            raise ProtocolError(f"private key must be {KEY_SIZE} bytes, not {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(raw)))

    def privateBytes(self) -> bytes:
        """The raw 32-byte private key. Keep it secret."""
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())

    def publicKey(self) -> PublicIdentity:
        return PublicIdentity(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of C{data}."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"<IdentityKey {self.publicKey().fingerprint()}>"


def identityToPem(key: IdentityKey, password: bytes | None = None) -> bytes:
    """The PKCS#8 PEM text of C{key}, encrypted when a C{password} is given."""
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def identityFromPem(data: bytes, password: bytes | None = None) -> IdentityKey:
    """Load L{identityToPem} output; raises L{ProtocolError} if it is not one."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ProtocolError(f"not a usable identity key file: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ProtocolError(f"identity key file holds a {type(key).__name__}, not Ed25519")
    return IdentityKey(key)
