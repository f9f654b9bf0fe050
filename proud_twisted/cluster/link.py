"""L{RedisLink}: a server's two connections to Redis, kept up (Twisted glue).

One connection runs commands, the other listens to the server's channels
(Redis allows no other command on a connection that subscribed). Both use
txredisapi's protocols on the injected reactor, with binary values (no
charset), and reconnect by themselves, after 0.1 s, then twice as long each
time up to C{maxRetryDelay}. The link is I{up} while both are; each change
is reported through C{onUp} and C{onDown}. A command while the link is
down, or unanswered within C{commandTimeout}, fails with
L{ClusterUnavailable}.

txredisapi is imported when the link starts: it imports the global reactor,
which twistd must choose first.
"""

from __future__ import annotations

import functools
from collections import deque

from twisted.internet import defer, protocol
from twisted.logger import Logger

from proud_twisted.cluster.errors import ClusterUnavailable
from proud_twisted.cluster.redisurl import RedisAddress

DEFAULT_COMMAND_TIMEOUT = 2.0
"""Seconds Redis has to answer a command: it answers in well under a
millisecond, so two seconds means it is gone or the network is split."""
DEFAULT_MAX_RETRY_DELAY = 1.0
"""Longest pause between two attempts to reconnect: a server is back in the
cluster within a second of Redis answering again."""


class RedisLink:
    """Commands and subscriptions to one Redis, reconnected when lost."""

    log = Logger()

    def __init__(self, address: RedisAddress, reactor, channels, onMessage, onUp, onDown,
                 commandTimeout: float = DEFAULT_COMMAND_TIMEOUT,
                 maxRetryDelay: float = DEFAULT_MAX_RETRY_DELAY) -> None:
        self.address = address
        self.reactor = reactor
        self.channels = list(channels)
        self.onMessage = onMessage
        self.onUp = onUp
        self.onDown = onDown
        self.commandTimeout = commandTimeout
        self.maxRetryDelay = maxRetryDelay
        self.up = False
        self._commands = None           # the ready command protocol
        self._subscriber = None         # the ready, subscribed protocol
        self._waiting = _Waiting(None)  # commands of that protocol not answered yet
        self._watchdog = None
        self._factories = []
        self._connectors = []

    def start(self) -> None:
        commands, subscriber = _protocolClasses()
        for protocolClass, db in ((commands, self.address.db), (subscriber, None)):
            factory = _LinkFactory(self, protocolClass, db)
            self._factories.append(factory)
            self._connectors.append(self.reactor.connectTCP(
                self.address.host, self.address.port, factory,
                timeout=self.commandTimeout))

    def stop(self) -> defer.Deferred:
        """Close both connections for good; a Deferred fires once they are closed."""
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        closing = []
        for factory in self._factories:
            factory.stopTrying()
            if factory.current is not None and factory.current.transport is not None:
                closing.append(factory.current.whenDisconnected())
                factory.current.transport.loseConnection()
        for connector in self._connectors:
            connector.stopConnecting() if connector.state == "connecting" else None
        self._factories, self._connectors = [], []
        self._commands = self._subscriber = None
        self._setDown("stopped")
        return defer.DeferredList(closing)

    def command(self, *args) -> defer.Deferred:
        """Run one Redis command; its reply, or L{ClusterUnavailable}."""
        if self._commands is None:
            return defer.fail(ClusterUnavailable(
                f"Redis at {self.address.host}:{self.address.port} is not reachable"))
        d = self._commands.execute_command(*args)
        waiting = self._waiting
        waiting.sentAt.append(self.reactor.seconds())
        if self._watchdog is None:
            self._watchdog = self.reactor.callLater(self.commandTimeout, self._watch)
        d.addCallbacks(waiting.answered, self._failed, errbackArgs=(waiting, args[0]))
        return d

    def _watch(self) -> None:
        """One timer for every command (Redis answers them in order): if
        the oldest is unanswered for C{commandTimeout}, Redis is gone or
        the network split; drop the connection (every waiting command
        fails) and reconnect."""
        self._watchdog = None
        waiting = self._waiting
        if not waiting.sentAt:
            return
        late = waiting.sentAt[0] + self.commandTimeout - self.reactor.seconds()
        if late > 0:
            self._watchdog = self.reactor.callLater(late, self._watch)
        elif waiting.proto.transport is not None:
            waiting.timedOut = True
            waiting.proto.transport.abortConnection()

    def _failed(self, failure, waiting, name):
        waiting.answered(None)
        if waiting.timedOut:
            raise ClusterUnavailable(
                f"Redis did not answer {name} within {self.commandTimeout} s")
        if failure.check(ClusterUnavailable) or not _isRedisReplyError(failure.value):
            raise ClusterUnavailable(f"Redis {name} failed: {failure.getErrorMessage()}")
        return failure

    # Called by the protocols

    def ready(self, proto) -> None:
        if proto.isSubscriber:
            self._subscriber = proto
        else:
            self._commands = proto
            self._waiting = _Waiting(proto)
        if self._commands is not None and self._subscriber is not None and not self.up:
            self.up = True
            self.onUp()

    def lost(self, proto) -> None:
        if proto is self._commands:
            self._commands = None
        elif proto is self._subscriber:
            self._subscriber = None
        else:
            return
        self._setDown("connection lost")

    def _setDown(self, why: str) -> None:
        # The other connection, if still open, is kept: up again once the
        # lost one is back.
        if self.up:
            self.up = False
            self.onDown(why)


class _Waiting:
    """When each command on the command connection C{proto} was sent,
    oldest first, until answered (Redis answers a connection's commands in
    order)."""

    def __init__(self, proto) -> None:
        self.proto = proto
        self.sentAt: deque[float] = deque()
        self.timedOut = False

    def answered(self, result):
        if self.sentAt:
            self.sentAt.popleft()
        return result


def _isRedisReplyError(error) -> bool:
    import txredisapi
    return isinstance(error, txredisapi.ResponseError)


class _LinkFactory(protocol.ReconnectingClientFactory):
    initialDelay = 0.1
    factor = 2.0
    jitter = 0.1
    isLazy = False
    noisy = False

    def __init__(self, link: RedisLink, protocolClass, db) -> None:
        self.link = link
        self.clock = link.reactor
        self.maxDelay = link.maxRetryDelay
        self.protocolClass = protocolClass
        self.db = db
        self.current = None

    def buildProtocol(self, addr):
        self.resetDelay()
        proto = self.protocolClass(charset=None, password=self.link.address.password,
                                   dbid=self.db, convertNumbers=False)
        proto.factory = self
        self.current = proto
        return proto

    def connectionError(self, message) -> None:
        self.link.log.warn("Redis: {message}", message=message)


@functools.cache
def _readingInOneTurn(base):
    """C{base}, a txredisapi protocol, reading all the bytes it is given at once.

    txredisapi hands what follows each bulk string to the next reactor turn
    (C{setLineMode} pauses and calls C{dataReceived} again with
    C{callLater(0)}, lest the parser recurse), so a pub/sub message, three
    bulk strings, took three turns, and a burst of them three turns each.
    Here the rest is kept and read in a loop in the same call.
    """

    class ReadsInOneTurn(base):
        _rest = b""

        def setLineMode(self, extra=b""):
            self.line_mode = 1
            if extra:
                self._rest += extra

        def dataReceived(self, data, unpause=False):
            super().dataReceived(data, unpause)
            while self._rest and self.transport is not None \
                    and not self.transport.disconnecting:
                rest, self._rest = self._rest, b""
                super().dataReceived(rest)

    return ReadsInOneTurn


def _protocolClasses():
    """The command and subscriber protocols (txredisapi imported here)."""
    import txredisapi

    class CommandProtocol(_readingInOneTurn(txredisapi.BaseRedisProtocol)):
        isSubscriber = False

        def connectionMade(self):
            self.whenConnected().addCallback(self.factory.link.ready)
            return super().connectionMade()

        def connectionLost(self, why):
            # The link first: what the failed commands' callers do next
            # (at once, in their errbacks) must find it down.
            self.factory.link.lost(self)
            super().connectionLost(why)

    class SubscriberProtocol(_readingInOneTurn(txredisapi.SubscriberProtocol)):
        isSubscriber = True

        def connectionMade(self):
            self.whenConnected().addCallback(self._subscribe)
            return super().connectionMade()

        def _subscribe(self, _):
            d = self.subscribe(self.factory.link.channels)
            d.addCallback(lambda _: self.factory.link.ready(self))
            d.addErrback(lambda f: self.transport.loseConnection())

        def messageReceived(self, pattern, channel, message):
            self.factory.link.onMessage(channel, message)

        def connectionLost(self, why):
            self.factory.link.lost(self)
            super().connectionLost(why)

    return CommandProtocol, SubscriberProtocol
