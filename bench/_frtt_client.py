"""An end of framework_rtt.py's windowed streams, in a process of its own:
a NetClient (encryption on, the server's key pinned) or, with ``--bare``,
a bare Twisted UDP port (which imports nothing of ours).

The stream: the end asked to ``stream`` keeps WINDOW messages of SIZE bytes
in flight to the other end, sending the next as each echo comes back, until
COUNT echoes are back. NetClients send reliably and echo reliably (a message
of kind ``W`` from the peer goes back as kind ``R``); a bare ``--bare echo``
port writes each datagram back where it came from (`_common.BareUdpEcho`),
and a ``--bare stream`` port counts what comes back.

Commands (see ``_common.JsonControl``):

- ours: ``peer HOSTID`` (wait until the server has paired us with it),
  ``path direct|relayed`` (forceRelay off and wait for the direct path, or
  on and wait until relayed), ``stream COUNT WINDOW SIZE BLOCK SECONDS``,
  ``status`` (messages echoed, deliveries on the wrong path, the session's
  counters, log events by level);
- bare stream: ``stream COUNT WINDOW SIZE BLOCK SECONDS PORT`` (to 127.0.0.1:PORT).

    python bench/_frtt_client.py --lifetime S --port TCP --key HEX --version UUID
    python bench/_frtt_client.py --lifetime S --bare echo|stream
"""

from __future__ import annotations

import os
import sys
import uuid

from twisted.internet import defer, protocol, task

import _common
from _common import BenchFailure, clock

POLL = 0.002
PATH_WAIT = 10.0
"""At most this long for the pair to be introduced, or to reach a path."""


class Window:
    """COUNT messages, WINDOW of them in flight: each echo sends the next;
    C{done} fires with the figures once COUNT echoes are back."""

    def __init__(self, count: int, window: int, size: int, block: int, send) -> None:
        self.count, self.window, self.size, self.block = count, window, size, block
        self.send = send
        self.sent = self.received = self.outOfOrder = self.stale = 0
        self.startedAt = 0.0
        self.done = defer.Deferred()

    def start(self) -> defer.Deferred:
        self.startedAt = clock()
        for _ in range(min(self.window, self.count)):
            self._sendNext()
        return self.done

    def _sendNext(self) -> None:
        self.send(_common.message(b"W", self.block, self.sent, self.size))
        self.sent += 1

    def echoed(self, payload: bytes) -> None:
        if self.done.called:
            return
        _, block, index = _common.parse(payload)
        if block != self.block:
            self.stale += 1
            return
        if index != self.received:
            self.outOfOrder += 1
        self.received += 1
        if self.sent < self.count:
            try:
                self._sendNext()
            except Exception as e:      # SendQueueFull: the window is too large
                self.done.errback(BenchFailure(f"message {self.sent}: {e!r}"))
                return
        if self.received == self.count:
            self.done.callback(clock())

    def figures(self, end: float) -> dict:
        return {"messages": self.received, "seconds": end - self.startedAt,
                "outOfOrder": self.outOfOrder, "stale": self.stale}


async def bounded(reactor, d: defer.Deferred, seconds: float, what: str):
    try:
        return await d.addTimeout(seconds, reactor)
    except defer.TimeoutError:
        raise BenchFailure(f"timed out after {seconds:g} s waiting for {what}") from None


async def until(reactor, condition, seconds: float, what: str) -> None:
    for _ in range(int(seconds / POLL) + 2):
        if condition():
            return
        await task.deferLater(reactor, POLL, lambda: None)
    if not condition():
        raise BenchFailure(f"timed out after {seconds:g} s waiting for {what}")


# ours: a NetClient

def makeEvents(end):
    from proud_twisted import NetClientEvents

    class StreamEnd(NetClientEvents):
        def __init__(self) -> None:
            self.failures = []

        def onReceiveUserMessage(self, sender, payload, context):
            if sender != end.peer:
                return
            if context.relayed != end.expectRelayed:
                end.wrongPath += 1
            kind = payload[:1]
            if kind == b"W":
                end.client.send(sender, b"R" + payload[1:])
                end.echoed += 1
            elif kind == b"R" and end.window is not None:
                end.window.echoed(payload)

        def onException(self, failure):
            self.failures.append(failure)

    return StreamEnd()


class OursEnd:
    """A NetClient, the peer it streams to or echoes for, and what it counted."""

    def __init__(self) -> None:
        self.client = None
        self.peer = None
        self.expectRelayed = False
        self.window = None
        self.echoed = self.wrongPath = 0


def sessionCounters(client, peer) -> dict:
    stats = client.getPeerInfo(peer).stats
    return {k: getattr(stats, k) for k in
            ("datagramsSent", "datagramsReceived", "retransmissions", "datagramsLost")}


def oursSetup(args):
    async def setup(reactor, log):
        from proud_twisted import NetClient, PublicIdentity, ServerUdpState
        end = OursEnd()
        events = makeEvents(end)
        client = end.client = NetClient(events, reactor=reactor,
                                        serverKey=PublicIdentity.fromHex(args.key),
                                        udpInterface=_common.LOOPBACK)
        hostID = await bounded(reactor, client.connect(_common.LOOPBACK, args.port,
                                                       uuid.UUID(args.version)),
                               PATH_WAIT, "the join")
        await until(reactor, lambda: client.getServerUdpState() is ServerUdpState.CONFIRMED,
                    PATH_WAIT, "UDP to the server")

        async def peer(hostID: str) -> dict:
            end.peer = int(hostID)
            await until(reactor, lambda: (end.peer in client.getPeerHostIDs()
                                          and client.getPeerInfo(end.peer).stats is not None),
                        PATH_WAIT, f"the server to pair us with {end.peer}")
            return {"peer": end.peer}

        async def path(which: str) -> dict:
            relayed = which == "relayed"
            client.forceRelay(end.peer, relayed)
            if not relayed:
                await bounded(reactor, client.whenDirect(end.peer), PATH_WAIT,
                              "the direct path")
            await until(reactor, lambda: client.getPeerInfo(end.peer).relayed == relayed,
                        PATH_WAIT, f"the {which} path")
            end.expectRelayed = relayed
            return {"relayed": client.getPeerInfo(end.peer).relayed}

        async def stream(count: str, window: str, size: str, block: str,
                         seconds: str) -> dict:
            before = sessionCounters(client, end.peer)
            wrongBefore = end.wrongPath
            end.window = Window(int(count), int(window), int(size), int(block),
                                lambda data: client.send(end.peer, data))
            try:
                last = await bounded(reactor, end.window.start(), float(seconds),
                                     f"{count} echoes")
            finally:
                figures, end.window = end.window, None
            after = sessionCounters(client, end.peer)
            return {**figures.figures(last), "wrongPath": end.wrongPath - wrongBefore,
                    "session": {k: after[k] - before[k] for k in after}}

        def status() -> dict:
            return {"echoed": end.echoed, "wrongPath": end.wrongPath,
                    "session": sessionCounters(client, end.peer) if end.peer else None,
                    "logLevels": dict(log.levels),
                    "failures": [f.getErrorMessage() for f in events.failures]}

        return ({"pid": os.getpid(), "hostID": hostID},
                {"peer": peer, "path": path, "stream": stream, "status": status})

    return setup


# bare Twisted

class BareStreamer(protocol.DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.window = None

    def datagramReceived(self, data: bytes, addr) -> None:
        if self.window is not None:
            self.window.echoed(data)


def bareSetup(args):
    async def setup(reactor, log):
        if args.bare == "echo":
            port = reactor.listenUDP(0, _common.BareUdpEcho(), interface=_common.LOOPBACK)
            return {"pid": os.getpid(), "udpPort": port.getHost().port}, {}
        streamer = BareStreamer()
        port = reactor.listenUDP(0, streamer, interface=_common.LOOPBACK)

        async def stream(count: str, window: str, size: str, block: str, seconds: str,
                         target: str) -> dict:
            address = (_common.LOOPBACK, int(target))
            write = streamer.transport.write
            streamer.window = Window(int(count), int(window), int(size), int(block),
                                     lambda data: write(data, address))
            try:
                last = await bounded(reactor, streamer.window.start(), float(seconds),
                                     f"{count} echoes (a datagram lost?)")
            finally:
                figures, streamer.window = streamer.window, None
            return figures.figures(last)

        return {"pid": os.getpid(), "udpPort": port.getHost().port}, {"stream": stream}

    return setup


def main() -> int:
    parser = _common.childParser(__doc__, joinsServer=False)
    parser.add_argument("--port", type=int, help="the server's TCP port (ours)")
    parser.add_argument("--key", help="the server's public key, hex (ours)")
    parser.add_argument("--version", help="the server's protocol version, a UUID (ours)")
    parser.add_argument("--bare", choices=("echo", "stream"),
                        help="a bare Twisted UDP port that echoes, or streams")
    args = parser.parse_args()
    if not args.bare and None in (args.port, args.key, args.version):
        parser.error("a NetClient needs --port, --key and --version")
    return _common.runChild((bareSetup if args.bare else oursSetup)(args), args.lifetime)


if __name__ == "__main__":
    sys.exit(main())
