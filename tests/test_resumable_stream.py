"""The pure parts of connection recovery: which frames are counted, the
resend buffer and its bound, and the resume proof."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._crypto.resume import (
    NONCE_SIZE,
    proofHolds,
    resumeKeyFromSession,
    resumeProof,
)
from proud_twisted.crypto import ClientHandshake, IdentityKey, ServerHandshake
from proud_twisted.errors import ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.messages import encodeMessage
from proud_twisted.wire.stream import (
    ACK_EVERY_FRAMES,
    ResendOverflow,
    ResumableStream,
    isCounted,
)


class CountedTests(SynchronousTestCase):

    def test_reliableMessagesAndNoticesAreCounted(self):
        for body in (relay.encodeTcpUserMessage(relay.FLAG_RELIABLE, b"x"),
                     relay.encodeTcpRelayed(1000, relay.FLAG_RELIABLE, b"x"),
                     relay.encodeTcpRelayRequest([1000], relay.FLAG_RELIABLE, b"x"),
                     encodeMessage("MEMBER_LEAVE", groupID=1, memberID=2, memberCount=3),
                     encodeMessage("MEMBER_OFFLINE", memberID=2)):
            self.assertTrue(isCounted(body), body)

    def test_linkMessagesUnreliableAndPeerSessionFramesAreNot(self):
        for body in (relay.encodeTcpUserMessage(0, b"x"),
                     relay.encodeTcpRelayed(1000, relay.FLAG_SESSION, b"x"),
                     relay.encodeTcpRelayed(1000, relay.FLAG_SESSION | relay.FLAG_RELIABLE,
                                            b"x"),
                     relay.encodeTcpRelayBundle(relay.FLAG_SESSION, [(1000, b"x")]),
                     encodeMessage("PING", timestamp=1.0, rtt=-1.0),
                     encodeMessage("STREAM_ACK", received=3),
                     encodeMessage("RESUME_ACCEPTED", received=3),
                     encodeMessage("SESSION_ENDED")):
            self.assertFalse(isCounted(body), body)

    def test_aTruncatedDataFrameIsNotCounted(self):
        self.assertFalse(isCounted(bytes([relay.TCP_RELAYED, 0, 0])))


class StreamTests(SynchronousTestCase):

    def test_acknowledgedFramesAreForgotten(self):
        stream = ResumableStream(1000)
        for i in range(5):
            stream.sending(b"frame%d" % i)
        stream.acknowledge(3)
        self.assertEqual(stream.resendAfter(3), [b"frame3", b"frame4"])
        self.assertEqual(stream.unacknowledgedBytes, 12)
        stream.acknowledge(5)
        self.assertEqual(stream.resendAfter(5), [])
        self.assertEqual(stream.unacknowledgedBytes, 0)

    def test_anOldAcknowledgementChangesNothing(self):
        stream = ResumableStream(1000)
        stream.sending(b"a")
        stream.sending(b"b")
        stream.acknowledge(2)
        stream.acknowledge(1)
        self.assertEqual((stream.acknowledged, stream.unacknowledgedBytes), (2, 0))

    def test_impossibleCountsAreProtocolErrors(self):
        stream = ResumableStream(1000)
        stream.sending(b"a")
        self.assertRaises(ProtocolError, stream.acknowledge, 2)
        stream.acknowledge(1)
        self.assertRaises(ProtocolError, stream.resendAfter, 0)   # below what was acknowledged
        self.assertRaises(ProtocolError, stream.resendAfter, 2)   # beyond what was sent

    def test_theBoundHolds(self):
        stream = ResumableStream(10)
        stream.sending(b"12345")
        stream.sending(b"12345")
        self.assertRaises(ResendOverflow, stream.sending, b"1")
        self.assertEqual((stream.sent, stream.unacknowledgedBytes), (2, 10))

    def test_anAcknowledgementIsDueAfterManyFrames(self):
        stream = ResumableStream(10)
        due = [stream.receivedFrame(10) for _ in range(ACK_EVERY_FRAMES)]
        self.assertEqual(due, [False] * (ACK_EVERY_FRAMES - 1) + [True])
        self.assertEqual(stream.report(), ACK_EVERY_FRAMES)
        self.assertIsNone(stream.report())

    def test_anAcknowledgementIsDueAfterManyBytes(self):
        stream = ResumableStream(10)
        self.assertTrue(stream.receivedFrame(64 * 1024))

    @given(st.lists(st.binary(min_size=1, max_size=20), max_size=50), st.data())
    def test_resumingResendsExactlyWhatWasNotCounted(self, frames, data):
        sender = ResumableStream(10**6)
        for frame in frames:
            sender.sending(frame)
        acked = data.draw(st.integers(0, len(frames)))
        sender.acknowledge(acked)
        counted = data.draw(st.integers(acked, len(frames)))
        self.assertEqual(frames[:counted] + sender.resendAfter(counted), frames)


class ProofTests(SynchronousTestCase):

    def _keys(self):
        identity = IdentityKey.generate()
        client, server = ClientHandshake(identity.publicKey()), ServerHandshake(identity)
        server.receive(client.receive(server.receive(client.start())))
        return client.keys, server.keys

    def test_bothEndsDeriveTheSameKeyAndEachSessionItsOwn(self):
        clientKeys, serverKeys = self._keys()
        key = resumeKeyFromSession(clientKeys)
        self.assertEqual(key, resumeKeyFromSession(serverKeys))
        self.assertNotEqual(key, resumeKeyFromSession(self._keys()[0]))

    def test_aProofHoldsOnlyForItsKeyHostAndNonce(self):
        key, nonce = b"k" * 32, b"n" * NONCE_SIZE
        proof = resumeProof(key, 1000, nonce)
        self.assertTrue(proofHolds(key, 1000, nonce, proof))
        self.assertFalse(proofHolds(b"K" * 32, 1000, nonce, proof))
        self.assertFalse(proofHolds(key, 1001, nonce, proof))
        self.assertFalse(proofHolds(key, 1000, b"N" * NONCE_SIZE, proof))
