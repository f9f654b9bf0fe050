"""AEAD record protection with a replay window.

A record is an 8-byte big-endian counter followed by the AEAD ciphertext and
its 16-byte tag; the nonce is 4 zero bytes and the same 8 counter bytes. Each
direction has its own key, so a counter is never reused under one key.

Every datagram goes through here, so this module is compiled with the
reliable-UDP core (see setup.py) and written for it: typed, and calling
the AEAD through bound methods.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from proud_twisted.errors import ProtocolError, ProudError

HEADER_SIZE: Final = 8
TAG_SIZE: Final = 16
OVERHEAD: Final = HEADER_SIZE + TAG_SIZE
COUNTER_BITS: Final = 64
NONCE_SIZE: Final = 12
CIPHERS: Final[dict[str, type[AESGCM | ChaCha20Poly1305]]] = {
    "chacha20poly1305": ChaCha20Poly1305, "aesgcm": AESGCM}

_NONCE_ZEROS: Final = NONCE_SIZE - HEADER_SIZE
_NONCE_ZERO_BYTES: Final = bytes(_NONCE_ZEROS)
_WORD_BITS: Final = 32
_WORD_SHIFT: Final = 5
_BIT: Final = _WORD_BITS - 1

Aead = Callable[[bytes, bytes, bytes | None], bytes]
"""An AEAD's C{encrypt} or C{decrypt}: (nonce, data, associated data) -> bytes."""


class CounterExhausted(ProudError):
    """A channel sealed 2**64 records; it needs new keys."""


def _counterOf(record: bytes) -> int:
    """The big-endian counter in the first 8 bytes of C{record}."""
    high = record[0] << 24 | record[1] << 16 | record[2] << 8 | record[3]
    low = record[4] << 24 | record[5] << 16 | record[6] << 8 | record[7]
    return high << 32 | low


class ReplayWindow:
    """Accepts each counter at most once, like the IPsec / DTLS sliding window.

    Counters more than C{size - 1} below the highest seen are refused as too
    old. Call L{check} before authenticating a record and L{update} only after
    it authenticated, so forged records cannot move the window.

    The seen counters are bits in a ring of 32-bit words (RFC 6479): moving
    the window clears the words it passes instead of shifting one wide
    bitmap, so every step costs a few small-integer operations whatever the
    window's size.
    """

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError("replay window size must be at least 1")
        self.size = size
        self.highest = -1
        words = 1
        # One spare word, so the word of the oldest counter in the window is
        # never the one a newer counter reuses.
        while words * _WORD_BITS < size + _WORD_BITS:
            words *= 2
        # Unsigned 32-bit words in an array: no object per word for every
        # garbage collection to visit (a server keeps a window per client).
        self._words = array("I", bytes(4 * words))
        self._ring = words - 1

    def check(self, counter: int) -> None:
        """Raise L{ProtocolError} if C{counter} was seen or is too old."""
        offset = self.highest - counter
        if offset < 0:
            return
        if offset >= self.size:
            raise ProtocolError(f"record {counter} is older than the replay window")
        if (self._words[(counter >> _WORD_SHIFT) & self._ring] >> (counter & _BIT)) & 1:
            raise ProtocolError(f"replayed record {counter}")

    def update(self, counter: int) -> None:
        """Record C{counter} as seen (it must have passed L{check})."""
        words = self._words
        ring = self._ring
        index = counter >> _WORD_SHIFT
        if counter > self.highest:
            first = (self.highest >> _WORD_SHIFT) + 1
            if index - first >= ring:
                for i in range(ring + 1):
                    words[i] = 0
            else:
                for i in range(first, index + 1):
                    words[i & ring] = 0
            self.highest = counter
        words[index & ring] |= 1 << (counter & _BIT)

    def accept(self, counter: int) -> None:
        """L{check} and L{update} in one step."""
        self.check(counter)
        self.update(counter)


class SecureChannel:
    """Seals outgoing and opens incoming records for one session direction pair.

    @param strict: for an in-order stream (TCP): incoming counters must be
        exactly 0, 1, 2, ...; otherwise a L{ReplayWindow} of C{replayWindow}
        counters accepts reordering but never a repeat.
    """

    def __init__(self, sendKey: bytes, receiveKey: bytes, replayWindow: int = 1024,
                 cipher: str = "aesgcm", strict: bool = False) -> None:
        try:
            self._aead = CIPHERS[cipher]
        except KeyError:
            raise ValueError(f"unknown cipher {cipher!r}; choose from {sorted(CIPHERS)}") from None
        self._sendKey = sendKey
        self._receiveKey = receiveKey
        # Cipher contexts, made at first use and dropped while idle (see releaseIfIdle).
        self._encrypt: Aead | None = None
        self._decrypt: Aead | None = None
        self._sendCounter = 0
        self._expected = 0
        self._activityChecked = -1
        self.window: ReplayWindow | None = None if strict else ReplayWindow(replayWindow)

    def releaseIfIdle(self) -> bool:
        """Drop the cipher contexts if no record was sealed or opened since the
        last call; return whether they were dropped.

        Each context holds about 2.5 KiB of OpenSSL memory, and a server keeps
        two channels (four contexts) per client: 10 KiB a client that is
        mostly idle. The next record makes the context again (about 1.2 us).
        """
        window = self.window
        activity = self._sendCounter + (self._expected if window is None else window.highest)
        if activity != self._activityChecked:
            self._activityChecked = activity
            return False
        self.release()
        return True

    def release(self) -> None:
        """Drop the cipher contexts now (the next record makes them again)."""
        self._encrypt = self._decrypt = None

    @property
    def strict(self) -> bool:
        """Whether incoming counters must come exactly in sequence (no window)."""
        return self.window is None

    @property
    def sent(self) -> int:
        """How many records this channel has sealed."""
        return self._sendCounter

    def seal(self, plaintext: bytes, aad: bytes | None = None) -> bytes:
        """Encrypt and authenticate C{plaintext} (and C{aad}) into one record."""
        counter = self._sendCounter
        if counter >> COUNTER_BITS:     # counter >= 2**64, without a wide-integer compare
            raise CounterExhausted("record counter exhausted; rekey the session")
        self._sendCounter = counter + 1
        nonce = counter.to_bytes(NONCE_SIZE, "big")     # 4 zero bytes, then the counter
        encrypt = self._encrypt
        if encrypt is None:
            encrypt = self._encrypt = self._aead(self._sendKey).encrypt
        return nonce[_NONCE_ZEROS:] + encrypt(nonce, plaintext, aad)

    def open(self, record: bytes, aad: bytes | None = None) -> bytes:
        """The plaintext of C{record}; L{ProtocolError} if forged, cut or replayed."""
        if len(record) < OVERHEAD:
            raise ProtocolError(f"record of {len(record)} bytes is too short")
        counter = _counterOf(record)
        window = self.window
        if window is None:
            if counter != self._expected:
                raise ProtocolError(
                    f"record {counter} out of sequence (expected {self._expected})")
        elif counter <= window.highest:
            window.check(counter)
        decrypt = self._decrypt
        if decrypt is None:
            decrypt = self._decrypt = self._aead(self._receiveKey).decrypt
        try:
            plaintext = decrypt(_NONCE_ZERO_BYTES + record[:HEADER_SIZE],
                                record[HEADER_SIZE:], aad)
        except InvalidTag:
            raise ProtocolError(f"record {counter} failed authentication") from None
        if window is None:
            self._expected = counter + 1
        else:
            window.update(counter)
        return plaintext
