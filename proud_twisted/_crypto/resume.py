"""Proof that a reconnecting client holds its session's resume key (pure).

The resume key comes from the session's handshake (HKDF-SHA256 over its
four direction keys; it never crosses the wire), or, with encryption off,
from the server's C{RECOVERY} message. To resume, the client answers a fresh
server nonce with HMAC-SHA256 of the key over a label, its HostID and that
nonce: a recorded answer is worth nothing against another nonce, and
another client's key proves nothing about this HostID.
"""

import hmac
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac

from proud_twisted._crypto.handshake import SessionKeys
from proud_twisted._crypto.kdf import hkdf

RESUME_KEY_SIZE = 32
NONCE_SIZE = 16
_KEY_INFO = b"proud_twisted resume key v1"
_PROOF_LABEL = b"proud_twisted resume proof v1\0"
_HOST = struct.Struct(">I")


def resumeKeyFromSession(keys: SessionKeys) -> bytes:
    """The resume key both ends derive from a finished handshake."""
    secret = (keys.clientToServerTcp + keys.serverToClientTcp + keys.clientToServerUdp
              + keys.serverToClientUdp)
    return hkdf(secret, _KEY_INFO, RESUME_KEY_SIZE, salt=keys.sessionID)


def newResumeKey() -> bytes:
    """A random resume key, for a session without a handshake."""
    return os.urandom(RESUME_KEY_SIZE)


def newNonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def resumeProof(key: bytes, hostID: int, nonce: bytes) -> bytes:
    """What the client answers the server's C{nonce} with, to resume C{hostID}."""
    mac = chmac.HMAC(key, hashes.SHA256())
    mac.update(_PROOF_LABEL + _HOST.pack(hostID) + nonce)
    return mac.finalize()


def proofHolds(key: bytes, hostID: int, nonce: bytes, proof: bytes) -> bool:
    """Whether C{proof} answers C{nonce} for C{hostID} with C{key} (constant time)."""
    return hmac.compare_digest(resumeProof(key, hostID, nonce), proof)
