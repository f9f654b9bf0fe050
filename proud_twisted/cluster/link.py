"""L{RedisLink}: a server's two connections to Redis, kept up (Twisted glue).

One connection runs commands, the other listens to the server's channels
(Redis allows no other command on a connection that subscribed). Both use
txredisapi's protocols on the injected reactor, with binary values (no
charset), and reconnect by themselves, after 0.1 s, then twice as long each
time up to C{maxRetryDelay}. The link is I{up} while both are; each change
is reported through C{onUp} and C{onDown}. A command while the link is
down, or unanswered within C{commandTimeout}, fails with
L{ClusterUnavailable}.

Replies are parsed by hiredis (Redis's own parser, in C; txredisapi uses
it when it is installed), and commands are encoded by it too: parsed and
encoded in Python, a frame crossing servers cost 27 microseconds of CPU,
sent and received, 8 with hiredis. Publications nobody waits for
(L{RedisLink.publishQuietly}: relayed frames, routed sends) make no
Deferred: their replies are counted off as they come, in order with the
other commands'.

txredisapi and hiredis are imported when the link starts: txredisapi
imports the global reactor, which twistd must choose first.
"""

from __future__ import annotations

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
    """Commands and subscriptions to one Redis, reconnected when lost.

    @ivar pendingBytes: bytes of publications sent to Redis and not yet
        acknowledged by it.
    """

    log = Logger()

    def __init__(self, address: RedisAddress, reactor, channels, onMessage, onUp, onDown,
                 commandTimeout: float = DEFAULT_COMMAND_TIMEOUT,
                 maxRetryDelay: float = DEFAULT_MAX_RETRY_DELAY,
                 onPublishFailed=None) -> None:
        self.address = address
        self.reactor = reactor
        self.channels = list(channels)
        self.onMessage = onMessage
        self.onUp = onUp
        self.onDown = onDown
        self.onPublishFailed = onPublishFailed or (lambda count, why: None)
        self.commandTimeout = commandTimeout
        self.maxRetryDelay = maxRetryDelay
        self.up = False
        self.pendingBytes = 0
        self._commands = None           # the ready command protocol
        self._subscriber = None         # the ready, subscribed protocol
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
        proto = self._commands
        d = proto.execute_command(*args)
        self._watchSoon()
        d.addErrback(self._failed, proto, args[0])
        return d

    def publish(self, channel: str, data: bytes) -> defer.Deferred:
        """PUBLISH C{data} on C{channel}; how many subscribers received it,
        or L{ClusterUnavailable}."""
        self.pendingBytes += len(data)

        def answered(result):
            self.pendingBytes -= len(data)
            return result
        return self.command("PUBLISH", channel, data).addBoth(answered)

    def publishQuietly(self, channel: str, data: bytes) -> bool:
        """PUBLISH C{data} on C{channel}, in order with every other command,
        waiting for nothing; whether it was sent (the link is up). If it
        fails (Redis answers an error, or the connection is lost first),
        C{onPublishFailed(count, why)} says so."""
        if self._commands is None:
            return False
        self.pendingBytes += len(data)
        self._commands.publishQuietly(channel, data)
        self._watchSoon()
        return True

    def _watchSoon(self) -> None:
        """A command was sent: the watchdog looks within C{commandTimeout}."""
        if self._watchdog is None:
            self._watchdog = self.reactor.callLater(self.commandTimeout, self._watch)

    def _watch(self) -> None:
        """One timer for every command (Redis answers them in order): if
        the oldest is unanswered for C{commandTimeout}, Redis is gone or
        the network split; drop the connection (every waiting command
        fails) and reconnect."""
        self._watchdog = None
        proto = self._commands
        oldest = None if proto is None else proto.oldestUnanswered()
        if oldest is None:
            return
        late = oldest + self.commandTimeout - self.reactor.seconds()
        if late > 0:
            self._watchdog = self.reactor.callLater(late, self._watch)
        else:
            proto.timedOut = True
            proto.transport.abortConnection()

    def _failed(self, failure, proto, name):
        if proto.timedOut:
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
        if self._commands is not None and self._subscriber is not None and not self.up:
            self.up = True
            self.onUp()

    def quietlyAnswered(self, size: int, reply) -> None:
        """Redis answered a quiet publication of C{size} bytes."""
        self.pendingBytes -= size
        if isinstance(reply, Exception):
            self.onPublishFailed(1, f"Redis answered {reply}")

    def quietlyLost(self, sizes) -> None:
        """The command connection closed before Redis answered these."""
        if sizes:
            self.pendingBytes -= sum(sizes)
            self.onPublishFailed(len(sizes), "the connection to Redis was lost first")

    def lost(self, proto) -> None:
        if proto.factory.current is proto:
            proto.factory.current = None        # (stop waits for live ones only)
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


def _protocolClasses():
    """The command and subscriber protocols (txredisapi and hiredis imported here)."""
    try:
        import hiredis
    except ImportError:
        raise ImportError("the cluster parses Redis's replies with hiredis: "
                          "pip install 'proud-twisted[cluster]'") from None
    import txredisapi

    if txredisapi.RedisProtocol is not txredisapi.HiredisProtocol:
        # (txredisapi chooses when first imported, before hiredis was installed)
        raise ImportError("txredisapi did not find hiredis; restart the process")
    pack = hiredis.pack_command

    class CommandProtocol(txredisapi.HiredisProtocol):
        """Replies come in the order of the commands: C{_expected} holds,
        for each command not answered yet, when it was sent (for the link's
        watchdog) and the size of a quiet publication, or None for a
        command a txredisapi Deferred waits for."""

        isSubscriber = False
        timedOut = False            # (the watchdog dropped the connection)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._expected = deque()

        def oldestUnanswered(self):
            """When the oldest command not answered yet was sent, or None."""
            return self._expected[0][0] if self._expected else None

        def connectionMade(self):
            self.whenConnected().addCallback(self.factory.link.ready)
            return super().connectionMade()

        def _build_command(self, *args, **kwargs):
            return pack(args)

        def execute_command(self, *args, **kwargs):
            d = super().execute_command(*args, **kwargs)
            self._expected.append((self.factory.link.reactor.seconds(), None))
            return d

        def publishQuietly(self, channel, data):
            self.transport.write(pack((b"PUBLISH", channel, data)))
            self._expected.append((self.factory.link.reactor.seconds(), len(data)))

        def replyReceived(self, reply):
            size = self._expected.popleft()[1] if self._expected else None
            if size is None:
                super().replyReceived(reply)
            else:
                self.factory.link.quietlyAnswered(size, reply)

        def connectionLost(self, why):
            # The link first: what the failed commands' callers do next
            # (at once, in their errbacks) must find it down.
            link = self.factory.link
            link.lost(self)
            link.quietlyLost([size for _, size in self._expected if size is not None])
            self._expected.clear()
            super().connectionLost(why)

    class SubscriberProtocol(txredisapi.SubscriberProtocol):
        isSubscriber = True

        def connectionMade(self):
            self.whenConnected().addCallback(self._subscribe)
            return super().connectionMade()

        def _subscribe(self, _):
            d = self.subscribe(self.factory.link.channels)
            d.addCallback(lambda _: self.factory.link.ready(self))
            d.addErrback(lambda f: self.transport.loseConnection())

        def dataReceived(self, data, unpause=False):
            # HiredisProtocol's loop, less what does nothing here (no
            # charset, no numbers converted, no transactions), and
            # messages handed straight to the link.
            reader = self._reader
            if data:
                reader.feed(data)
            onMessage = self.factory.link.onMessage
            transport = self.transport
            reply = reader.gets()
            while reply is not False and not transport.disconnecting:
                if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                    onMessage(reply[1], reply[2])
                else:
                    self.replyReceived(reply)       # (un)subscribe confirmations
                reply = reader.gets()

        def connectionLost(self, why):
            self.factory.link.lost(self)
            super().connectionLost(why)

    return CommandProtocol, SubscriberProtocol
