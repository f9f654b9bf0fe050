"""Server identity, AEAD records, the replay window and peer-pair keys."""

import hashlib
import random

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.crypto import (
    CIPHERS,
    OVERHEAD,
    CounterExhausted,
    IdentityKey,
    PublicIdentity,
    ReplayWindow,
    SecureChannel,
    identityFromPem,
    identityToPem,
    newPairSecret,
    pairChannel,
    pairProbeKey,
)
from proud_twisted.errors import ProtocolError
from proud_twisted.wire.punch import PUNCH_PROBE, encodeControl, tagIsValid
from tests.test_handshake import flipped, seeded

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def channels(**options):
    """Two ends of one channel: C{(sender, receiver)}."""
    return SecureChannel(KEY_A, KEY_B, **options), SecureChannel(KEY_B, KEY_A, **options)


class IdentityTests(SynchronousTestCase):
    def setUp(self):
        self.key = IdentityKey.generate(seeded("identity"))

    def test_signAndVerify(self):
        signature = self.key.sign(b"data")
        self.assertEqual(len(signature), 64)
        self.assertTrue(self.key.publicKey().verify(signature, b"data"))
        self.assertFalse(self.key.publicKey().verify(signature, b"other"))
        self.assertFalse(self.key.publicKey().verify(b"short", b"data"))

    def test_privateBytesRoundTrip(self):
        raw = self.key.privateBytes()
        self.assertEqual(len(raw), 32)
        self.assertEqual(IdentityKey.fromPrivateBytes(raw).publicKey(), self.key.publicKey())
        self.assertEqual(raw, seeded("identity")(32))

    def test_publicIdentity(self):
        public = self.key.publicKey()
        raw = public.publicBytes()
        self.assertEqual(len(raw), 32)
        self.assertEqual(bytes(public), raw)
        self.assertEqual(PublicIdentity.fromBytes(raw), public)
        self.assertEqual(PublicIdentity.fromHex(public.toHex()), public)
        self.assertEqual(hash(PublicIdentity.fromBytes(raw)), hash(public))
        self.assertNotEqual(IdentityKey.generate(seeded("other")).publicKey(), public)
        self.assertIn(public.fingerprint(), repr(public))

    def test_fingerprint(self):
        public = self.key.publicKey()
        self.assertEqual(public.fingerprint(),
                         hashlib.sha256(public.publicBytes()).digest()[:16].hex())
        self.assertEqual(len(public.fingerprint()), 32)

    def test_badBytesAreProtocolErrors(self):
        self.assertRaises(ProtocolError, PublicIdentity.fromBytes, b"x" * 31)
        self.assertRaises(ProtocolError, PublicIdentity.fromHex, "not hex")
        self.assertRaises(ProtocolError, IdentityKey.fromPrivateBytes, b"x" * 33)

    def test_pemRoundTrip(self):
        pem = identityToPem(self.key)
        self.assertTrue(pem.startswith(b"-----BEGIN PRIVATE KEY-----"))
        loaded = identityFromPem(pem)
        self.assertEqual(loaded.privateBytes(), self.key.privateBytes())
        self.assertEqual(loaded.publicKey(), self.key.publicKey())

    def test_encryptedPemRoundTrip(self):
        pem = identityToPem(self.key, password=b"secret")
        self.assertIn(b"ENCRYPTED", pem)
        self.assertEqual(identityFromPem(pem, password=b"secret").privateBytes(),
                         self.key.privateBytes())
        self.assertRaises(ProtocolError, identityFromPem, pem, password=b"wrong")
        self.assertRaises(ProtocolError, identityFromPem, pem)

    def test_badPemIsRefused(self):
        self.assertRaises(ProtocolError, identityFromPem, b"not a key")
        otherKind = X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        e = self.assertRaises(ProtocolError, identityFromPem, otherKind)
        self.assertIn("X25519", str(e))


class SealTests(SynchronousTestCase):
    def test_roundTripWithEveryCipher(self):
        for cipher in CIPHERS:
            sender, receiver = channels(cipher=cipher)
            for payload in (b"", b"hello", bytes(1500)):
                record = sender.seal(payload, aad=b"header")
                self.assertEqual(len(record), len(payload) + OVERHEAD)
                self.assertEqual(receiver.open(record, aad=b"header"), payload)

    def test_recordStartsWithTheCounter(self):
        sender, _ = channels()
        records = [sender.seal(b"x") for _ in range(3)]
        self.assertEqual([r[:8] for r in records],
                         [n.to_bytes(8, "big") for n in range(3)])
        self.assertEqual(sender.sent, 3)

    def test_passiveObserverSeesNoPlaintext(self):
        payload = b"secret game state: hp=100 pos=(1,2)"
        for cipher in CIPHERS:
            sender, _ = channels(cipher=cipher)
            for _ in range(3):
                record = sender.seal(payload)
                self.assertNotIn(payload, record)
                self.assertNotIn(payload[:8], record)

    def test_sameTextSealsDifferently(self):
        sender, _ = channels()
        self.assertNotEqual(sender.seal(b"again")[8:], sender.seal(b"again")[8:])

    def test_everyFlippedBitIsRejected(self):
        for cipher in CIPHERS:
            sender, receiver = channels(cipher=cipher)
            record = sender.seal(b"sixteen byte msg", aad=b"aad")
            for bit in range(len(record) * 8):
                self.assertRaises(ProtocolError, receiver.open, flipped(record, bit), b"aad")
            self.assertEqual(receiver.open(record, b"aad"), b"sixteen byte msg")

    def test_wrongAadIsRejected(self):
        sender, receiver = channels()
        record = sender.seal(b"x", aad=b"from 1000 to 1001")
        self.assertRaises(ProtocolError, receiver.open, record, aad=b"from 1000 to 1002")

    def test_truncationIsRejected(self):
        sender, receiver = channels()
        record = sender.seal(b"some payload")
        for length in range(len(record)):
            self.assertRaises(ProtocolError, receiver.open, record[:length])
        self.assertRaises(ProtocolError, receiver.open, record + b"\x00")

    def test_ownRecordsAreNotAcceptedBack(self):
        sender, _ = channels()
        self.assertRaises(ProtocolError, sender.open, sender.seal(b"reflected"))

    def test_counterExhaustion(self):
        sender, receiver = channels()
        sender._sendCounter = 2 ** 64 - 1
        last = sender.seal(b"last")
        self.assertRaises(CounterExhausted, sender.seal, b"one too many")
        self.assertEqual(receiver.open(last), b"last")

    def test_unknownCipher(self):
        self.assertRaises(ValueError, SecureChannel, KEY_A, KEY_B, cipher="rot13")

    @settings(max_examples=300)
    @given(st.binary(max_size=100))
    def test_garbageIsRejected(self, data):
        """Bytes no one sealed never open, and leave the channel as it was."""
        for strict in (False, True):
            sender, receiver = channels(strict=strict)
            self.assertRaises(ProtocolError, receiver.open, data)
            self.assertEqual(receiver.open(sender.seal(b"real")), b"real")


class ReplayTests(SynchronousTestCase):
    def test_replayedRecordIsRejected(self):
        sender, receiver = channels()
        record = sender.seal(b"once")
        receiver.open(record)
        e = self.assertRaises(ProtocolError, receiver.open, record)
        self.assertIn("replayed", str(e))

    def test_outOfOrderWithinTheWindowAcceptedOnceEach(self):
        sender, receiver = channels(replayWindow=64)
        records = [sender.seal(b"%d" % n) for n in range(64)]
        order = list(range(64))
        random.Random(5).shuffle(order)
        for n in order:
            self.assertEqual(receiver.open(records[n]), b"%d" % n)
        for n in order:
            self.assertRaises(ProtocolError, receiver.open, records[n])

    def test_tooOldIsRejected(self):
        sender, receiver = channels(replayWindow=16)
        old = sender.seal(b"old")
        for _ in range(15):
            sender.seal(b"skipped")
        borderline = sender.seal(b"16 behind")
        receiver.open(sender.seal(b"new"))
        e = self.assertRaises(ProtocolError, receiver.open, old)
        self.assertIn("older than the replay window", str(e))
        self.assertEqual(receiver.open(borderline), b"16 behind")

    def test_forgedRecordDoesNotMoveTheWindow(self):
        sender, receiver = channels(replayWindow=16)
        first = sender.seal(b"first")
        forged = (2 ** 40).to_bytes(8, "big") + bytes(32)
        self.assertRaises(ProtocolError, receiver.open, forged)
        self.assertEqual(receiver.open(first), b"first")
        self.assertEqual(receiver.window.highest, 0)

    def test_strictModeWantsExactSequence(self):
        sender, receiver = channels(strict=True)
        records = [sender.seal(b"%d" % n) for n in range(4)]
        self.assertEqual(receiver.open(records[0]), b"0")
        e = self.assertRaises(ProtocolError, receiver.open, records[2])
        self.assertIn("out of sequence", str(e))
        self.assertRaises(ProtocolError, receiver.open, records[0])
        self.assertRaises(ProtocolError, receiver.open, flipped(records[1], 100))
        self.assertEqual(receiver.open(records[1]), b"1")
        self.assertEqual(receiver.open(records[2]), b"2")

    def test_windowWithLargeJump(self):
        window = ReplayWindow(8)
        window.accept(3)
        window.accept(1000)
        self.assertRaises(ProtocolError, window.check, 3)
        window.accept(999)
        self.assertRaises(ProtocolError, window.check, 1000)
        window.accept(2 ** 64 - 1)
        self.assertRaises(ProtocolError, window.check, 2 ** 64 - 1)
        window.accept(2 ** 64 - 2)
        self.assertRaises(ProtocolError, window.check, 1000)
        self.assertRaises(ValueError, ReplayWindow, 0)

    def assertMatchesModel(self, size, steps, counterFor):
        """Feed a window the counter C{counterFor(step, highest)} of each step;
        it must accept exactly what a plain set of seen counters would."""
        window = ReplayWindow(size)
        seen, highest = set(), -1
        for step in steps:
            counter = counterFor(step, highest)
            expected = counter not in seen and counter > highest - size
            try:
                window.accept(counter)
                accepted = True
            except ProtocolError:
                accepted = False
            self.assertEqual(accepted, expected, (size, counter, highest))
            if accepted:
                seen.add(counter)
                highest = max(highest, counter)

    @settings(max_examples=300)
    @given(st.integers(1, 70), st.lists(st.integers(0, 300), max_size=200))
    def test_windowMatchesAModel(self, size, counters):
        self.assertMatchesModel(size, counters, lambda counter, highest: counter)

    def test_windowRemembersAcrossWordBoundaries(self):
        """Every counter still inside the window stays refused as it moves on."""
        for size in (1, 31, 32, 33, 64, 65, 100, 1024):
            for stride in (1, 3, 31, 32, 33):
                window, accepted = ReplayWindow(size), []
                for counter in range(0, 40 * stride + 2 * size, stride):
                    window.accept(counter)
                    accepted.append(counter)
                    inside = [c for c in accepted if c > counter - size]
                    for old in (inside[0], inside[len(inside) // 2], counter):
                        self.assertRaises(ProtocolError, window.check, old)
                    fresh = counter - 1
                    if stride > 1 and fresh > counter - size:
                        window.check(fresh)     # never seen, inside: still welcome

    @settings(max_examples=200)
    @given(st.sampled_from([31, 32, 33, 64, 100, 1024, 1025]),
           st.lists(st.tuples(st.booleans(), st.integers(0, 40) | st.integers(0, 1200)),
                    max_size=300))
    def test_wideWindowMatchesAModel(self, size, steps):
        """Windows of many words, moved by runs forward and probes backward."""
        def counterFor(step, highest):
            forward, distance = step
            return highest + 1 + distance if forward else max(0, highest - distance)
        self.assertMatchesModel(size, steps, counterFor)


class PairTests(SynchronousTestCase):
    def test_newPairSecret(self):
        self.assertEqual(len(newPairSecret()), 32)
        self.assertNotEqual(newPairSecret(), newPairSecret())
        self.assertEqual(newPairSecret(seeded(1)), newPairSecret(seeded(1)))

    def test_peersInteroperateBothWays(self):
        secret = newPairSecret(seeded("pair"))
        a = pairChannel(secret, 1000, 1001)
        b = pairChannel(secret, 1001, 1000)
        self.assertEqual(b.open(a.seal(b"A to B")), b"A to B")
        self.assertEqual(a.open(b.seal(b"B to A")), b"B to A")
        self.assertRaises(ProtocolError, a.open, a.seal(b"reflected"))

    def test_differentPairsDiffer(self):
        secret, other = newPairSecret(seeded(1)), newPairSecret(seeded(2))
        record = pairChannel(secret, 1000, 1001).seal(b"hi")
        self.assertRaises(ProtocolError, pairChannel(other, 1001, 1000).open, record)
        self.assertRaises(ProtocolError, pairChannel(secret, 1002, 1000).open, record)
        self.assertRaises(ProtocolError, pairChannel(secret, 1001, 1002).open, record)
        self.assertNotEqual(pairProbeKey(secret), pairProbeKey(other))

    def test_keysAreBoundToTheEpoch(self):
        """Records carry no associated data: the epoch is in the keys."""
        secret = newPairSecret(seeded("pair"))
        record = pairChannel(secret, 1000, 1001, epoch=7).seal(b"epoch 7")
        self.assertRaises(ProtocolError, pairChannel(secret, 1001, 1000, epoch=8).open,
                          record)
        self.assertEqual(pairChannel(secret, 1001, 1000, epoch=7).open(record), b"epoch 7")

    def test_pairChannelToleratesReordering(self):
        secret = newPairSecret(seeded("pair"))
        a, b = pairChannel(secret, 1000, 1001), pairChannel(secret, 1001, 1000)
        first, second = a.seal(b"1"), a.seal(b"2")
        self.assertEqual((b.open(second), b.open(first)), (b"2", b"1"))

    def test_pairChannelOptions(self):
        secret = newPairSecret(seeded("pair"))
        a = pairChannel(secret, 1000, 1001, cipher="aesgcm", replayWindow=32)
        b = pairChannel(secret, 1001, 1000, cipher="aesgcm", replayWindow=32)
        self.assertEqual(b.open(a.seal(b"gcm")), b"gcm")
        self.assertEqual(b.window.size, 32)

    def test_badArguments(self):
        secret = newPairSecret()
        self.assertRaises(ValueError, pairChannel, secret, 1000, 1000)
        self.assertRaises(ValueError, pairChannel, secret, -1, 1000)
        self.assertRaises(ValueError, pairChannel, secret, 1000, 1001, 2 ** 32)
        self.assertRaises(ProtocolError, pairChannel, b"short", 1000, 1001)
        self.assertRaises(ProtocolError, pairProbeKey, b"short")

    def test_probeKeyAuthenticatesProbes(self):
        secret = newPairSecret(seeded("pair"))
        key = pairProbeKey(secret)
        self.assertEqual(len(key), 32)
        self.assertNotIn(key, (secret,))
        probe = encodeControl(PUNCH_PROBE, 1000, 1001, b"nonce#03", key)
        self.assertTrue(tagIsValid(probe, key))
        self.assertFalse(tagIsValid(flipped(probe, 80), key))
        self.assertFalse(tagIsValid(probe, pairProbeKey(newPairSecret())))


class IdleReleaseTests(SynchronousTestCase):
    """A channel drops its cipher contexts while idle and makes them again."""

    def test_releasedOnlyAfterAQuietCheck(self):
        for strict in (False, True):
            sender, receiver = channels(strict=strict)
            sender.releaseIfIdle()      # the first check: nothing to drop yet
            receiver.releaseIfIdle()
            record = sender.seal(b"one")
            self.assertEqual(receiver.open(record), b"one")
            self.assertFalse(sender.releaseIfIdle())      # it sealed since the last check
            self.assertFalse(receiver.releaseIfIdle())    # it opened since the last check
            self.assertTrue(sender.releaseIfIdle())
            self.assertTrue(receiver.releaseIfIdle())
            self.assertIsNone(sender._encrypt)
            self.assertIsNone(receiver._decrypt)

    def test_aReleasedChannelKeepsItsCountersAndItsReplayProtection(self):
        for strict in (False, True):
            sender, receiver = channels(strict=strict)
            first = sender.seal(b"first")
            self.assertEqual(receiver.open(first), b"first")
            for channel in (sender, receiver):
                channel.releaseIfIdle()
                channel.releaseIfIdle()
            second = sender.seal(b"second")
            self.assertEqual(sender.sent, 2)
            self.assertEqual(receiver.open(second), b"second")
            self.assertRaises(ProtocolError, receiver.open, first)
            self.assertRaises(ProtocolError, receiver.open, flipped(sender.seal(b"x"), 30))
