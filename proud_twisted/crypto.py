"""Key agreement, AEAD record protection and the replay window; pure.

No sockets, no reactor, no clock; randomness comes from an injectable
C{randomBytes} (default C{os.urandom}). Every error caused by bytes from the
network is a L{ProtocolError}.

Server identity::

    key = IdentityKey.generate()                 # or identityFromPem(pemBytes)
    pemBytes = identityToPem(key)                # the twistd plugin writes it
    pinned = key.publicKey()                     # PublicIdentity; .fingerprint()

Handshake (frame bodies in, frame bodies out; see L{proud_twisted.wire.handshake})::

    client = ClientHandshake(pinned)             server = ServerHandshake(key)
    hello = client.start()             --->      serverHello = server.receive(hello)
    finished = client.receive(serverHello) <---
                                       --->      server.receive(finished)  # None
    client.keys == server.keys                   # SessionKeys

Records::

    tcp = client.keys.clientChannel("tcp")       # strict: exact sequence
    udp = client.keys.clientChannel("udp")       # replay window
    record = tcp.seal(b"payload"); server.keys.serverChannel("tcp").open(record)

Peer pairs: the server sends C{newPairSecret()} to both peers; each calls
C{pairChannel(secret, myHostID, peerHostID, epoch)} and C{pairProbeKey(secret)}.
"""

from proud_twisted._crypto.channel import (
    CIPHERS,
    OVERHEAD,
    CounterExhausted,
    ReplayWindow,
    SecureChannel,
)
from proud_twisted._crypto.handshake import (
    ClientHandshake,
    HandshakeState,
    ServerAuthenticationFailed,
    ServerHandshake,
    SessionKeys,
    transcriptHash,
)
from proud_twisted._crypto.identity import (
    IdentityKey,
    PublicIdentity,
    identityFromPem,
    identityToPem,
)
from proud_twisted._crypto.pairs import (
    PAIR_SECRET_SIZE,
    newPairSecret,
    pairChannel,
    pairProbeKey,
)

__all__ = [
    "IdentityKey", "PublicIdentity", "identityToPem", "identityFromPem",
    "ClientHandshake", "ServerHandshake", "HandshakeState", "SessionKeys",
    "ServerAuthenticationFailed", "transcriptHash",
    "SecureChannel", "ReplayWindow", "CounterExhausted", "CIPHERS", "OVERHEAD",
    "newPairSecret", "pairChannel", "pairProbeKey", "PAIR_SECRET_SIZE",
]
