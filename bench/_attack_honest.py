"""The honest pair of attacks.py, in a process of its own: two NetClients
that join the server, and once the bench process has put them into one P2P
group, send each other ``--rate`` reliable messages a second each way, each
stamped with the time it was sent; the receiver (same process, same clock)
measures the one-way latency.

Commands (see ``_common.JsonControl``): ``paired`` waits (bounded) until each
client has the other as a peer (and, with ``--direct``, a direct path), then
starts the exchange; ``stop`` stops sending, waits up to ``--drain`` seconds
for what is in flight, and answers with the figures.

    python bench/_attack_honest.py --port TCP --key HEX --lifetime S [--direct]
"""

from __future__ import annotations

import struct
import sys
import time

from twisted.internet import defer, task

import _common

_STAMP = struct.Struct("!dI")       # send time (perf_counter), sequence number
POLL = 0.05
PAIR_WAIT = 10.0


class Direction:
    """One direction of the exchange: what was sent, and what arrived when."""

    def __init__(self) -> None:
        self.sent = self.received = self.duplicates = self.outOfOrder = self.refused = 0
        self.latest = -1
        self.seen = set()
        self.latencies = []

    def take(self, payload: bytes) -> None:
        stamp, number = _STAMP.unpack_from(payload)
        if number in self.seen:
            self.duplicates += 1
            return
        self.seen.add(number)
        self.received += 1
        self.latencies.append(time.perf_counter() - stamp)
        if number < self.latest:
            self.outOfOrder += 1
        self.latest = max(self.latest, number)


def makeEvents(name: str, direction: Direction, leaves: list):
    from proud_twisted import NetClientEvents

    class Honest(NetClientEvents):
        def onReceiveUserMessage(self, sender, payload, context):
            if len(payload) >= _STAMP.size:
                direction.take(payload)

        def onLeaveServer(self, reason):
            leaves.append(f"{name}: {reason.name}")

    return Honest()


def setupFor(args):
    async def setup(reactor, log):
        from proud_twisted import NetClient, PublicIdentity
        from proud_twisted.errors import SendQueueFull
        key = PublicIdentity.fromHex(args.key)
        toA, toB, leaves = Direction(), Direction(), []
        a = NetClient(makeEvents("a", toA, leaves), reactor=reactor, serverKey=key,
                      udpInterface=_common.LOOPBACK)
        b = NetClient(makeEvents("b", toB, leaves), reactor=reactor, serverKey=key,
                      udpInterface=_common.LOOPBACK)
        idA, idB = await defer.gatherResults(
            [c.connect(_common.LOOPBACK, args.port, _common.ATTACK_VERSION) for c in (a, b)],
            consumeErrors=True)
        filler = bytes(max(0, args.size - _STAMP.size))
        loops = []

        def sender(client, peer, direction):
            def send() -> None:
                if client.getLocalHostID() == 0:
                    return          # left the server: counted in leaves
                try:
                    client.send(peer, _STAMP.pack(time.perf_counter(), direction.sent) + filler)
                except SendQueueFull:
                    direction.refused += 1
                    return
                direction.sent += 1
            loop = task.LoopingCall(send)
            loop.clock = reactor
            return loop

        async def until(condition, seconds: float) -> bool:
            for _ in range(int(seconds / POLL) + 1):
                if condition():
                    return True
                await task.deferLater(reactor, POLL, lambda: None)
            return condition()

        async def paired() -> dict:
            if not await until(lambda: idB in a.getPeerHostIDs() and idA in b.getPeerHostIDs(),
                               PAIR_WAIT):
                return {"error": "the honest pair never became peers"}
            if args.direct:
                await defer.gatherResults([a.whenDirect(idB), b.whenDirect(idA)],
                                          consumeErrors=True).addTimeout(PAIR_WAIT, reactor)
            loops.extend([sender(a, idB, toB), sender(b, idA, toA)])
            for loop in loops:
                loop.start(1.0 / args.rate)
            return {"exchanging": True, "relayed": a.getPeerInfo(idB).relayed}

        async def stop() -> dict:
            for loop in loops:
                if loop.running:
                    loop.stop()
            await until(lambda: toA.received >= toA.sent and toB.received >= toB.sent,
                        args.drain)
            sent = toA.sent + toB.sent
            received = toA.received + toB.received
            latencies = toA.latencies + toB.latencies
            p50, p99 = _common.summarise(latencies) if latencies else (None, None)
            return {"sent": sent, "received": received, "lost": sent - received,
                    "refused": toA.refused + toB.refused,
                    "duplicates": toA.duplicates + toB.duplicates,
                    "outOfOrder": toA.outOfOrder + toB.outOfOrder,
                    "p50": p50, "p99": p99, "max": max(latencies) if latencies else None,
                    "leaves": leaves}

        return {"hostIDs": [idA, idB]}, {"paired": paired, "stop": stop}

    return setup


def main() -> int:
    parser = _common.childParser(__doc__)
    parser.add_argument("--direct", action="store_true",
                        help="wait for a direct path before exchanging")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="messages a second each way (default 100)")
    parser.add_argument("--size", type=int, default=64, help="message size (default 64)")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds to wait for messages in flight at the end (default 5)")
    return _common.runParsed(parser, setupFor)


if __name__ == "__main__":
    sys.exit(main())
