"""Remote method calls against raw sends of the same bytes: the encode and
decode cost of a 3-argument call, and its round trip client -> server ->
client in one process over loopback.

The call is ``Combat.attack(victim: HostID, skill: int, power: float) ->
int``, a call with a result, made as ``proxy.attack(HOSTID_SERVER, 1234, 7,
2.5)``.

Part 1, no network: the caller's encoding (the proxy's encoder, request ID
included) plus the receiver's decoding (header, request ID, arguments:
``RemoteMethod.decode``), per call, over ``--calls`` calls. Baseline in the
same run: ``struct`` packing and unpacking the same fields in a fixed
layout, the least a hand-written format costs. Goal: at most 3 us a call.

Part 2, loopback (a NetServer and a joined NetClient in this process,
encryption on): the client calls, the server's stub answers 42, the
client's Deferred fires and it calls again; ``--round-trips`` timed round
trips after 100 untimed. Baseline in the same run, on the same connection:
the client sends the very bytes of the call with ``send`` (their first byte
changed, so that RMI leaves them to ``onReceiveUserMessage``), the server's
``onReceiveUserMessage`` sends back the very bytes of the answer the same
way, and the client sends again from its ``onReceiveUserMessage``.
Alternated ``--repeat`` times; medians over all runs. Goal: the call's
round trip at most 1.15 x the raw one (with the compiled build, which
compiles the RMI endpoint: what it adds per call is mostly the generated
encoders and decoders and the Deferred). As information, the round trip of
two one-way calls (``strike`` to the server, whose stub calls ``struck``
back) against the same raw round trip: what the Deferred and the table of
calls waiting for an answer add shows as the difference. The CPU time this process spends per
round trip (it holds the client and the server) is printed beside it, as
information: on a busy machine it varies less than the wall clock.

    python bench/rmi.py [--calls 200000] [--round-trips 500] [--repeat 8]
        [--timeout 120] [--quick]
"""

from __future__ import annotations

import struct
import uuid

from twisted.internet import defer

from _common import (
    STEP_WAIT,
    WARMUP,
    BenchFailure,
    Budget,
    addTimeout,
    clientEvents,
    clock,
    cpuClock,
    median,
    printCore,
    report,
    reportLimit,
    runUntilDeadline,
    scriptParser,
    serverEvents,
    us,
)
from proud_twisted import HOSTID_SERVER, NetClient, NetServer
from proud_twisted.rmi import RMI_MARKER, HostID, RemoteInterface, call, endpoint

VERSION = uuid.UUID("6a2e9c41-0f7d-4b83-a5e1-2c9d8b7f3e60")
TARGET, SKILL, POWER = 1234, 7, 2.5
ANSWER = 42
_BARE = struct.Struct("<BIIQd")        # marker, ID, request ID, target, skill as a double


class Combat(RemoteInterface, firstID=5000):
    @call()
    def attack(self, victim: HostID, skill: int, power: float) -> int:
        """Hit C{victim} with C{skill} at C{power}; the damage done."""

    def strike(self, victim: HostID, skill: int, power: float) -> None:
        """The same, one-way."""

    def struck(self, damage: int) -> None:
        """The server's one-way answer to strike."""


def codecCost(args) -> None:
    method = Combat.method("attack")
    encode, decode = method.encodeArguments, method.decode
    calls = args.calls
    started = clock()
    for requestID in range(1, calls + 1):
        decode(encode(requestID, TARGET, SKILL, POWER))
    ours = (clock() - started) / calls
    pack, unpack = _BARE.pack, _BARE.unpack
    started = clock()
    for requestID in range(1, calls + 1):
        unpack(pack(0xFF, 5000, requestID, TARGET, SKILL))
    bare = (clock() - started) / calls
    if decode(encode(1, TARGET, SKILL, POWER)) != (1, (TARGET, SKILL, POWER)):
        raise BenchFailure("the call does not round-trip")
    reportLimit("encode+decode of a 3-argument call", ours * 1e6, bare * 1e6, "us",
                "struct pack+unpack of the same fields", 3.0,
                note=f" [{len(encode(1, TARGET, SKILL, POWER))} bytes a call, "
                     f"{_BARE.size} fixed]")


class Loop:
    """One block of round trips, each started when the one before is back."""

    def __init__(self, count: int, send) -> None:
        self.count = count
        self.send = send
        self.times: list[float] = []
        self.sentAt = 0.0
        self.done: defer.Deferred[list[float]] = defer.Deferred()

    def start(self) -> defer.Deferred[list[float]]:
        self.sentAt = clock()
        self.send()
        return self.done

    def back(self, *ignored) -> None:
        now = clock()
        if self.done.called:
            return
        self.times.append(now - self.sentAt)
        if len(self.times) == self.count:
            self.done.callback(self.times[WARMUP:])
        else:
            self.sentAt = now
            self.send()


async def roundTrips(reactor, args) -> None:
    budget = Budget(reactor, args.deadline)
    serverSide, clientSide = serverEvents(), clientEvents("client")
    server = NetServer(serverSide, VERSION, interface="127.0.0.1", reactor=reactor)
    server.startService()
    client = NetClient(clientSide, reactor=reactor)
    try:
        await budget.wait(client.connect("127.0.0.1", server.getTcpAddress()[1], VERSION),
                          STEP_WAIT, "the join")

        serverProxy = server.attachProxy(Combat)
        oneWay: dict[str, Loop] = {}

        class Handler(Combat.Stub):
            def attack(self, context, victim, skill, power):
                return ANSWER

            def strike(self, context, victim, skill, power):
                serverProxy.struck(context.sender, ANSWER)

        class Struck(Combat.Stub):
            def struck(self, context, damage):
                oneWay["loop"].back()

        server.attachStub(Handler())
        client.attachStub(Struck())
        proxy = client.attachProxy(Combat)
        method = Combat.method("attack")
        call = method.encodeArguments(1, TARGET, SKILL, POWER)
        rawCall = b"\x00" + call[1:]
        answer = bytes([RMI_MARKER, 0, 1, ANSWER * 2])     # the answer's bytes
        rawAnswer = b"\x00" + answer[1:]

        def echo(sender, payload, context):
            server.send(sender, rawAnswer)

        serverSide.onReceiveUserMessage = echo
        count = WARMUP + args.round_trips
        ours: list[float] = []
        bare: list[float] = []
        oneWays: list[float] = []
        cpu = {"ours": 0.0, "bare": 0.0}
        for _ in range(args.repeat):
            oneWay["loop"] = Loop(count, lambda: proxy.strike(HOSTID_SERVER, TARGET, SKILL,
                                                              POWER))
            oneWays += await budget.wait(oneWay["loop"].start(), STEP_WAIT * 3,
                                         "the one-way round trips")
            loop = Loop(count, None)
            loop.send = lambda loop=loop: proxy.attack(
                HOSTID_SERVER, TARGET, SKILL, POWER).addCallback(loop.back)
            started = cpuClock()
            ours += await budget.wait(loop.start(), STEP_WAIT * 3, "the calls' round trips")
            cpu["ours"] += cpuClock() - started
            raw = Loop(count, lambda: client.send(HOSTID_SERVER, rawCall))
            clientSide.onMessage = raw.back
            started = cpuClock()
            bare += await budget.wait(raw.start(), STEP_WAIT * 3, "the raw round trips")
            cpu["bare"] += cpuClock() - started
            clientSide.onMessage = None
        for side in (serverSide, clientSide):
            if side.failures:
                raise BenchFailure(side.failures[0].getTraceback())
        report("round trip of a 3-argument call, client -> server -> client",
               median(ours) * 1e6, median(bare) * 1e6, "us",
               "raw send of the same bytes, echoed raw", goal=1.15, higherIsBetter=False,
               note=f" [{len(call)} B call, {len(answer)} B answer; "
                    f"mean {us(sum(ours) / len(ours))} vs {us(sum(bare) / len(bare))}]")
        report("round trip of two one-way calls, strike and struck (information)",
               median(oneWays) * 1e6, median(bare) * 1e6, "us",
               "raw send of the same bytes, echoed raw", higherIsBetter=False)
        trips = count * args.repeat
        report("CPU time of this process per round trip (information)",
               cpu["ours"] / trips * 1e6, cpu["bare"] / trips * 1e6, "us",
               "raw send of the same bytes", higherIsBetter=False)
        proxy.stopTimers()
    finally:
        await client.disconnect(linger=0)
        await server.stopService()


async def run(reactor, args) -> None:
    codecCost(args)
    await roundTrips(reactor, args)


def main() -> int:
    parser = scriptParser(__doc__)
    parser.add_argument("--calls", type=int, default=200000,
                        help="calls encoded and decoded in part 1 (default 200000)")
    parser.add_argument("--round-trips", type=int, default=500,
                        help="timed round trips per block in part 2 (default 500)")
    parser.add_argument("--repeat", type=int, default=8,
                        help="blocks of each kind, alternated (default 8: short blocks, "
                             "so that a busy machine weighs on both alike)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2,000 calls, 50 round trips, one block")
    addTimeout(parser, 120.0)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.round_trips, args.repeat = 2000, 50, 1
    if args.calls < 1 or args.round_trips < 1 or args.repeat < 1:
        parser.error("--calls, --round-trips and --repeat must be >= 1")
    printCore()
    compiled = not endpoint.__file__.endswith(".py")
    print(f"RMI endpoint: {'compiled with mypyc' if compiled else 'pure Python'}", flush=True)
    return runUntilDeadline(run, args, grace=5.0)


if __name__ == "__main__":
    raise SystemExit(main())
