"""The server's TCP output to a client: one transport write per reactor turn,
in the order written, and all of it out before a close."""

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ErrorType
from tests.test_memnet_relay import RelayWorld


def countWrites(testCase, transport) -> list:
    """Record what C{transport.write} is given (and still write it)."""
    writes = []
    write = transport.write

    def recording(data):
        writes.append(data)
        write(data)

    transport.write = recording
    testCase.addCleanup(setattr, transport, "write", write)
    return writes


class TurnOutputTests(SynchronousTestCase):
    def setUp(self):
        self.world = RelayWorld(self, seed=11, clients=3)
        self.a, self.b, self.c = self.world.clients
        self.connection = self.world.server._engine._clients[self.a.getLocalHostID()]

    def test_aTurnsMessagesToOneClientLeaveInOneWriteAndInOrder(self):
        writes = countWrites(self, self.connection.transport)
        sent = [b"message %d" % i for i in range(20)]
        for payload in sent:
            self.world.server.send(self.a.getLocalHostID(), payload)
        self.assertEqual(writes, [])        # nothing before the turn ends
        self.assertTrue(self.world.net.runUntil(
            lambda: len(self.a.events.messagesFrom(1)) == len(sent), 5))
        self.assertEqual(self.a.events.messagesFrom(1), sent)
        self.assertEqual(len(writes), 1)

    def test_aGroupFormingWritesOnceToEachMemberPerTurn(self):
        connections = self.world.server._engine._clients
        writes = {hostID: countWrites(self, connections[hostID].transport)
                  for hostID in self.world.ids()}
        self.world.server.createP2PGroup(self.world.ids())
        self.world.net.advance(0)       # the turn ends
        for hostID, written in writes.items():
            self.assertEqual(len(written), 1, f"host {hostID}")
        self.assertTrue(self.world.net.runUntil(
            lambda: all(c.events.rec.count("onP2PMemberJoin") == 3
                        for c in self.world.clients), 5))

    def test_whatWasWrittenBeforeAKickArrivesBeforeTheClientLeaves(self):
        self.world.server.send(self.a.getLocalHostID(), b"last words")
        self.world.server.closeConnection(self.a.getLocalHostID())
        self.assertTrue(self.world.net.runUntil(
            lambda: self.a.events.rec.count("onLeaveServer") == 1, 10))
        self.assertEqual(self.a.events.messagesFrom(1), [b"last words"])
        names = [event[0] for event in self.a.events.rec.events]
        self.assertLess(names.index("onReceiveUserMessage"), names.index("onLeaveServer"))

    def test_nothingIsWrittenAfterAnAbort(self):
        writes = countWrites(self, self.connection.transport)
        self.world.server.send(self.a.getLocalHostID(), b"never sent")
        # (A protocol error: a connection merely lost would be resumed.)
        self.connection.abort(ErrorType.PROTOCOL_ERROR, "a test drops it")
        self.world.net.advance(0)
        self.assertEqual(writes, [])
        self.assertTrue(self.world.net.runUntil(
            lambda: self.a.events.rec.count("onLeaveServer") == 1, 10))
        self.assertEqual(self.a.events.messagesFrom(1), [])
        self.assertEqual(sorted(self.world.server.getClientHostIDs()),
                         sorted([self.b.getLocalHostID(), self.c.getLocalHostID()]))
