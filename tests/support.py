"""Event recorders and bounded waits shared by the tests."""

from unittest import mock

from twisted.internet import defer, task

from proud_twisted.events import NetClientEvents, NetServerEvents

DEFAULT_WAIT = 10.0
POLL_INTERVAL = 0.01


class Recorder:
    """Records events as tuples and lets a test wait for a condition on them."""

    def __init__(self, reactor=None) -> None:
        self.events = []
        self._byName = {}
        self._waiters = []
        self._reactor = reactor

    def record(self, *event) -> None:
        self.events.append(event)
        self._byName.setdefault(event[0], []).append(event[1:])
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate():
                self._waiters.remove(waiter)
                d.callback(None)

    def named(self, name: str) -> list:
        return list(self._byName.get(name, ()))

    def count(self, name: str) -> int:
        return len(self._byName.get(name, ()))

    def wait(self, predicate, timeout: float = DEFAULT_WAIT, reactor=None) -> defer.Deferred:
        """A Deferred that fires once C{predicate()} holds; fails after C{timeout}.

        The predicate is checked on every recorded event and, for state that
        changes without an event (counters), every C{POLL_INTERVAL} seconds.
        """
        if predicate():
            return defer.succeed(None)
        if reactor is None:
            reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        d = defer.Deferred()
        waiter = (predicate, d)
        self._waiters.append(waiter)

        def poll():
            if waiter in self._waiters and predicate():
                self._waiters.remove(waiter)
                d.callback(None)

        poller = task.LoopingCall(poll)
        poller.clock = reactor
        poller.start(POLL_INTERVAL, now=False)

        def forget(result):
            poller.stop()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return result

        d.addBoth(forget)
        return d.addTimeout(timeout, reactor)

    def waitCount(self, name: str, count: int, timeout: float = DEFAULT_WAIT, reactor=None):
        return self.wait(lambda: self.count(name) >= count, timeout, reactor)


class RecordingServerEvents(NetServerEvents):
    def __init__(self, reactor=None, accept=True) -> None:
        self.rec = Recorder(reactor)
        self.accept = accept

    def onConnectionRequest(self, address, userData):
        self.rec.record("onConnectionRequest", address, userData)
        return self.accept

    def onClientJoin(self, clientInfo):
        self.rec.record("onClientJoin", clientInfo)

    def onClientLeave(self, clientInfo, reason, comment):
        self.rec.record("onClientLeave", clientInfo, reason, comment)

    def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
        self.rec.record("onP2PGroupJoinMemberAckComplete", groupHostID, memberHostID, result)

    def onP2PGroupRemoved(self, groupHostID):
        self.rec.record("onP2PGroupRemoved", groupHostID)

    def onReceiveUserMessage(self, sender, payload, context):
        self.rec.record("onReceiveUserMessage", sender, payload, context)

    def onWarning(self, errorInfo):
        self.rec.record("onWarning", errorInfo)

    def onError(self, errorInfo):
        self.rec.record("onError", errorInfo)

    def onClientOffline(self, clientInfo):
        self.rec.record("onClientOffline", clientInfo)

    def onClientOnline(self, clientInfo):
        self.rec.record("onClientOnline", clientInfo)

    def onClientArrived(self, clientInfo, ticket):
        self.rec.record("onClientArrived", clientInfo, ticket)


class RecordingClientEvents(NetClientEvents):
    def __init__(self, reactor=None) -> None:
        self.rec = Recorder(reactor)
        self._bySender = {}

    def onJoinServerComplete(self, result, reply):
        self.rec.record("onJoinServerComplete", result, reply)

    def onLeaveServer(self, reason):
        self.rec.record("onLeaveServer", reason)

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        self.rec.record("onP2PMemberJoin", memberHostID, groupHostID, memberCount, message)

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        self.rec.record("onP2PMemberLeave", memberHostID, groupHostID, memberCount)

    def onChangeP2PRelayState(self, peerHostID, reason):
        self.rec.record("onChangeP2PRelayState", peerHostID, reason)

    def onChangeServerUdpState(self, state):
        self.rec.record("onChangeServerUdpState", state)

    def onServerOffline(self, reason):
        self.rec.record("onServerOffline", reason)

    def onServerOnline(self):
        self.rec.record("onServerOnline")

    def onServerMoved(self, serverAddress):
        self.rec.record("onServerMoved", serverAddress)

    def onP2PMemberOffline(self, memberHostID):
        self.rec.record("onP2PMemberOffline", memberHostID)

    def onP2PMemberOnline(self, memberHostID):
        self.rec.record("onP2PMemberOnline", memberHostID)

    def onReceiveUserMessage(self, sender, payload, context):
        self._bySender.setdefault(sender, []).append(payload)
        self.rec.record("onReceiveUserMessage", sender, payload, context)

    def messagesFrom(self, sender) -> list:
        """Payloads received from C{sender}, in order (a live list: do not modify)."""
        return self._bySender.get(sender, [])


def stopMemoryWorld(net, server, clients, linger: float = 0) -> None:
    """Disconnect C{clients}, then stop C{server}, in a memory network C{net}."""
    for client in clients:
        client.disconnect(linger=linger)
    net.advance(1)
    server.stopService()
    net.advance(1)


def spyOn(testCase, cls, name: str, record) -> None:
    """For the rest of C{testCase}, every call of C{cls.name} also calls
    C{record(instance, *args)} first."""
    original = getattr(cls, name)

    def spy(instance, *args):
        record(instance, *args)
        return original(instance, *args)

    patcher = mock.patch.object(cls, name, spy)
    patcher.start()
    testCase.addCleanup(patcher.stop)


class OffsetReactor:
    """A reactor whose clock reads C{offset} seconds off C{reactor}'s; every
    other attribute is C{reactor}'s. A server given one runs on a clock
    its clients do not share."""

    def __init__(self, reactor, offset: float) -> None:
        self._reactor = reactor
        self.offset = offset

    def seconds(self) -> float:
        return self._reactor.seconds() + self.offset

    def __getattr__(self, name: str):
        return getattr(self._reactor, name)
