"""A moved client may reach its target before the target has read the move
notice from Redis, were it told to go once Redis had *accepted* the notice
(PUBLISH answered on the source's connection): the target reads it from its
own subscriber connection, with no order between the two, and would refuse
the client (C{BAD_MOVE_TOKEN}: no move expected). It took only a few other
cluster messages to the target just before the notice: txredisapi's own
parser (the cluster parses with hiredis now) read one bulk string of a
buffered reply per reactor turn (C{setLineMode} hands the rest to
C{callLater(0)}), so each queued pub/sub message delayed the next by three
turns; examples/zones.py --headless hit it in 1-3 runs of 100 (a directory
broadcast just before a move's notice). So the source tells the client to
go only once the target says it expects it (C{expecting}), and these tests
hold it to that."""

import pytest_twisted
from twisted.internet import reactor

QUEUED_MESSAGES = 20
"""Cluster messages to the target just before the move."""
NOTICE_LATE = 0.3
"""Seconds the target reads the move notice late (a busy target process,
or its subscriber socket read after the client's)."""


@pytest_twisted.inlineCallbacks
def test_aClientArrivingBeforeTheTargetReadTheMoveNoticeIsAdmitted(world):
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    client = yield world.client(a)
    hostID = client.getLocalHostID()
    mover = b._engine.mover
    readNotice = mover.controlReceived
    late = []

    def readLate(serverID, op):
        if op["op"] == "move":
            late.append(reactor.callLater(NOTICE_LATE, readNotice, serverID, op))
        else:
            readNotice(serverID, op)
    mover.controlReceived = readLate
    a._engine.mover.timeout = 2.0           # (a failed move gives up soon)
    outcome = []
    a.moveClient(hostID, "b").addBoth(outcome.append)
    rec = client.events.rec
    try:
        yield rec.wait(lambda: rec.named("onServerMoved") or rec.named("onLeaveServer"))
        assert rec.named("onLeaveServer") == []
        assert rec.named("onServerMoved") == [(b.getTcpAddress(),)]
        assert client.getLocalHostID() == hostID
        yield rec.wait(lambda: outcome)
        assert outcome[0].serverID == "b"
        assert b.stats.movesRefused == 0
    finally:
        for call in late:
            if call.active():
                call.cancel()


@pytest_twisted.inlineCallbacks
def test_aMoveRightAfterOtherClusterMessagesToTheTargetSucceeds(world):
    """No patching: the notice queues behind other messages to the target
    (txredisapi parses one bulk string of a buffered reply per reactor turn,
    so each queued pub/sub message costs the target three turns), while the
    client reconnects and arrives."""
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    client = yield world.client(a)
    hostID = client.getLocalHostID()
    a._engine.mover.timeout = 2.0           # (a failed move gives up soon)
    for i in range(QUEUED_MESSAGES):
        a.cluster.send("b", b"news %d" % i)
    outcome = []
    a.moveClient(hostID, "b").addBoth(outcome.append)
    rec = client.events.rec
    yield rec.wait(lambda: rec.named("onServerMoved") or rec.named("onLeaveServer"))
    assert rec.named("onLeaveServer") == []
    assert client.getLocalHostID() == hostID
    yield rec.wait(lambda: outcome)
    assert outcome[0].serverID == "b"
    assert b.stats.movesRefused == 0
