"""Keys for a peer pair, derived from a secret the server issues to both peers.

Both peers call L{pairChannel} with their own HostID first; the key one side
sends with is the key the other receives with. Each key is bound to the
pairing's epoch and to both HostIDs by its derivation, so a record sealed for
one direction, pair or pairing opens under no other key, and the records need
no associated data. The server knows the pair secret, as it must to hand it
out.

L{pairProbeKey} keys the pair's hole-punch probes, answers, pings and pongs
(L{proud_twisted.wire.punch} computes and checks their tags).
"""

import hashlib
import hmac
import os
import struct

from proud_twisted._crypto.channel import SecureChannel
from proud_twisted._crypto.kdf import hkdf
from proud_twisted.errors import ProtocolError

PAIR_SECRET_SIZE = 32
_DIRECTION_INFO = b"proud_twisted p2p direction v2"
_PROBE_KEY_LABEL = b"proud_twisted peer probe key v1"
_direction = struct.Struct(">III")     # epoch, sender, receiver


def newPairSecret(randomBytes=os.urandom) -> bytes:
    """A fresh 32-byte secret for one peer pair."""
    secret = randomBytes(PAIR_SECRET_SIZE)
    if len(secret) != PAIR_SECRET_SIZE:
        raise ValueError("randomBytes returned the wrong number of bytes")
    return secret


def _directionKey(pairSecret: bytes, epoch: int, sender: int, receiver: int) -> bytes:
    return hkdf(pairSecret, _DIRECTION_INFO + _direction.pack(epoch, sender, receiver), 32)


def pairChannel(pairSecret: bytes, localHostID: int, peerHostID: int, epoch: int = 0,
                **options) -> SecureChannel:
    """This host's L{SecureChannel} to C{peerHostID} (a replay window, not strict).

    @param epoch: the pairing's epoch (from the server's PEER_PAIR), bound
        into both keys.
    C{options} are passed on to L{SecureChannel} (C{replayWindow}, C{cipher}).
    """
    if len(pairSecret) != PAIR_SECRET_SIZE:
        raise ProtocolError(f"pair secret must be {PAIR_SECRET_SIZE} bytes")
    if localHostID == peerHostID:
        raise ValueError("a pair needs two different HostIDs")
    try:
        send = _directionKey(pairSecret, epoch, localHostID, peerHostID)
        receive = _directionKey(pairSecret, epoch, peerHostID, localHostID)
    except struct.error:
        raise ValueError("the epoch and HostIDs must be unsigned 32-bit integers") from None
    return SecureChannel(send, receive, **options)


def pairProbeKey(pairSecret: bytes) -> bytes:
    """The 32-byte key of the pair's hole-punch probes, answers, pings and
    pongs: HMAC-SHA256(pairSecret, label), apart from the pair's other keys."""
    if len(pairSecret) != PAIR_SECRET_SIZE:
        raise ProtocolError(f"pair secret must be {PAIR_SECRET_SIZE} bytes")
    return hmac.new(pairSecret, _PROBE_KEY_LABEL, hashlib.sha256).digest()
