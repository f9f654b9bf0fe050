"""The client <-> server handshake: two explicit, sans-I/O state machines.

    client                                   server
    ClientHello(version, X25519 eph, random) ->
                 <- ServerHello(X25519 eph, random, identity, signature)
    ClientFinished(sealed transcript hash)   ->

The transcript hash is SHA-256 over a label, the whole ClientHello body and the
ServerHello fields before the signature (all fixed-size, so unambiguous). The
server signs it with its Ed25519 identity; HKDF-SHA256 over the X25519 shared
secret, salted with the transcript hash, gives four direction keys, a session
id and a key-confirmation key used once by ClientFinished.
"""

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from proud_twisted._crypto.channel import SecureChannel
from proud_twisted._crypto.identity import IdentityKey, PublicIdentity
from proud_twisted._crypto.kdf import hkdf
from proud_twisted.errors import ProtocolError
from proud_twisted.wire.handshake import (
    HANDSHAKE_VERSION,
    KEY_SIZE,
    RANDOM_SIZE,
    decodeHandshake,
    encodeHandshake,
)

_TRANSCRIPT_LABEL = b"proud_twisted handshake v1\0"
_SIGNATURE_LABEL = b"proud_twisted server signature v1\0"
_KEYS_INFO = b"proud_twisted session keys v1"
_FINISHED_AAD = b"proud_twisted client finished v1"
_CONFIRM_NONCE = bytes(12)
SESSION_ID_SIZE = 16
_KEY_BLOCK = 5 * KEY_SIZE + SESSION_ID_SIZE


class ServerAuthenticationFailed(ProtocolError):
    """The server's identity is not the pinned one, or its signature is wrong."""


class HandshakeState(enum.Enum):
    IDLE = "IDLE"
    AWAIT_SERVER_HELLO = "AWAIT_SERVER_HELLO"
    AWAIT_CLIENT_HELLO = "AWAIT_CLIENT_HELLO"
    AWAIT_CLIENT_FINISHED = "AWAIT_CLIENT_FINISHED"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class SessionKeys:
    """What a finished handshake gives both sides: equal on client and server."""

    clientToServerTcp: bytes = field(repr=False)
    serverToClientTcp: bytes = field(repr=False)
    clientToServerUdp: bytes = field(repr=False)
    serverToClientUdp: bytes = field(repr=False)
    sessionID: bytes

    def clientChannel(self, transport: str = "tcp", **options) -> SecureChannel:
        """The client's L{SecureChannel} for C{"tcp"} (strict) or C{"udp"}."""
        return self._channel(transport, True, options)

    def serverChannel(self, transport: str = "tcp", **options) -> SecureChannel:
        """The server's L{SecureChannel} for C{"tcp"} (strict) or C{"udp"}."""
        return self._channel(transport, False, options)

    def _channel(self, transport, isClient, options):
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
        suffix = transport.capitalize()
        up = getattr(self, "clientToServer" + suffix)
        down = getattr(self, "serverToClient" + suffix)
        options.setdefault("strict", transport == "tcp")
        return SecureChannel(*((up, down) if isClient else (down, up)), **options)


def transcriptHash(clientHello: bytes, ephemeral: bytes, random: bytes,
                   identity: bytes) -> bytes:
    """SHA-256 of the ClientHello body and the signed ServerHello fields."""
    return hashlib.sha256(
        _TRANSCRIPT_LABEL + clientHello + ephemeral + random + identity).digest()


def _newEphemeral(randomBytes):
    key = X25519PrivateKey.from_private_bytes(randomBytes(KEY_SIZE))
    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, raw


def _exchange(private: X25519PrivateKey, peerPublic: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peerPublic))
    except ValueError:
        raise ProtocolError("peer ephemeral key gives no shared secret") from None


def _deriveKeys(shared: bytes, transcript: bytes):
    """The L{SessionKeys} and the key-confirmation key."""
    block = hkdf(shared, _KEYS_INFO, _KEY_BLOCK, salt=transcript)
    keys = [block[i:i + KEY_SIZE] for i in range(0, 5 * KEY_SIZE, KEY_SIZE)]
    return SessionKeys(*keys[:4], sessionID=block[5 * KEY_SIZE:]), keys[4]


class _Handshake:
    """An explicit state table: C{(state, event) -> handler}; anything else fails."""

    _transitions: ClassVar[dict] = {}

    def __init__(self, state: HandshakeState, randomBytes) -> None:
        self.state = state
        self.keys: SessionKeys | None = None
        self._randomBytes = randomBytes

    @property
    def complete(self) -> bool:
        return self.state is HandshakeState.COMPLETE

    @property
    def failed(self) -> bool:
        return self.state is HandshakeState.FAILED

    def receive(self, body: bytes):
        """Handle one handshake frame body; returns the reply body or None."""
        try:
            kind, fields = decodeHandshake(body)
        except ProtocolError as e:
            self._refuse(f"{self._where()}: {e}")
        return self._handle(kind, fields, body)

    def _handle(self, event: str, *args):
        handler = self._transitions.get((self.state, event))
        if handler is None:
            self._refuse(f"{self._where()} cannot handle {event}")
        try:
            return handler(self, *args)
        except ProtocolError:
            self._fail()
            raise

    def _where(self) -> str:
        return f"{type(self).__name__} in state {self.state.name}"

    def _refuse(self, message: str):
        self._fail()
        raise ProtocolError(message)

    def _fail(self) -> None:
        # Forget every secret: a failed handshake is over for good.
        self.__dict__.update(state=HandshakeState.FAILED, keys=None)
        for name in ("_ephemeral", "_pending", "_confirmKey", "_transcript"):
            self.__dict__.pop(name, None)


class ClientHandshake(_Handshake):
    """The client side. C{start()}, then C{receive(serverHello)} -> ClientFinished.

    @param pinnedServerKey: the server identity to insist on; with None any
        identity whose signature verifies is accepted, and L{serverIdentity}
        tells which (trust on first use).
    """

    def __init__(self, pinnedServerKey: PublicIdentity | None = None,
                 randomBytes=os.urandom) -> None:
        super().__init__(HandshakeState.IDLE, randomBytes)
        self.pinnedServerKey = pinnedServerKey
        self.serverIdentity: PublicIdentity | None = None

    def start(self) -> bytes:
        """The ClientHello body to send first."""
        return self._handle("START")

    def _start(self):
        self._ephemeral, public = _newEphemeral(self._randomBytes)
        self._hello = encodeHandshake(
            "CLIENT_HELLO", version=HANDSHAKE_VERSION, ephemeral=public,
            random=self._randomBytes(RANDOM_SIZE))
        self.state = HandshakeState.AWAIT_SERVER_HELLO
        return self._hello

    def _serverHello(self, hello, body):
        identity = PublicIdentity.fromBytes(hello.identity)
        pinned = self.pinnedServerKey
        if pinned is not None and identity != pinned:
            raise ServerAuthenticationFailed(
                f"server identity {identity.fingerprint()} is not the pinned "
                f"{pinned.fingerprint()}")
        transcript = transcriptHash(self._hello, hello.ephemeral, hello.random, hello.identity)
        if not identity.verify(hello.signature, _SIGNATURE_LABEL + transcript):
            raise ServerAuthenticationFailed(
                f"ServerHello signature by {identity.fingerprint()} does not verify")
        keys, confirmKey = _deriveKeys(_exchange(self._ephemeral, hello.ephemeral), transcript)
        confirmation = ChaCha20Poly1305(confirmKey).encrypt(
            _CONFIRM_NONCE, transcript, _FINISHED_AAD)
        del self._ephemeral
        self.serverIdentity, self.keys = identity, keys
        self.state = HandshakeState.COMPLETE
        return encodeHandshake("CLIENT_FINISHED", confirmation=confirmation)

    _transitions: ClassVar[dict] = {
        (HandshakeState.IDLE, "START"): _start,
        (HandshakeState.AWAIT_SERVER_HELLO, "SERVER_HELLO"): _serverHello,
    }


class ServerHandshake(_Handshake):
    """The server side: ClientHello -> ServerHello, ClientFinished -> None (complete)."""

    def __init__(self, identity: IdentityKey, randomBytes=os.urandom) -> None:
        super().__init__(HandshakeState.AWAIT_CLIENT_HELLO, randomBytes)
        self.identity = identity

    def _clientHello(self, hello, body):
        if hello.version != HANDSHAKE_VERSION:
            raise ProtocolError(
                f"unsupported handshake version {hello.version} "
                f"(this server speaks {HANDSHAKE_VERSION})")
        ephemeral, public = _newEphemeral(self._randomBytes)
        random = self._randomBytes(RANDOM_SIZE)
        identity = self.identity.publicKey().publicBytes()
        transcript = transcriptHash(body, public, random, identity)
        self._pending, self._confirmKey = _deriveKeys(
            _exchange(ephemeral, hello.ephemeral), transcript)
        self._transcript = transcript
        self.state = HandshakeState.AWAIT_CLIENT_FINISHED
        return encodeHandshake(
            "SERVER_HELLO", ephemeral=public, random=random, identity=identity,
            signature=self.identity.sign(_SIGNATURE_LABEL + transcript))

    def _clientFinished(self, finished, body):
        try:
            confirmed = ChaCha20Poly1305(self._confirmKey).decrypt(
                _CONFIRM_NONCE, finished.confirmation, _FINISHED_AAD)
        except InvalidTag:
            raise ProtocolError("ClientFinished does not confirm the session keys") from None
        if not hmac.compare_digest(confirmed, self._transcript):
            raise ProtocolError("ClientFinished confirms another transcript")
        self.keys = self._pending
        for name in ("_pending", "_confirmKey", "_transcript"):
            delattr(self, name)
        self.state = HandshakeState.COMPLETE

    _transitions: ClassVar[dict] = {
        (HandshakeState.AWAIT_CLIENT_HELLO, "CLIENT_HELLO"): _clientHello,
        (HandshakeState.AWAIT_CLIENT_FINISHED, "CLIENT_FINISHED"): _clientFinished,
    }
