"""How long a fresh pair of clients takes, on loopback with real sockets,
from the server's createP2PGroup to (a) the first message delivered through
the relay and (b) the pair being direct; then the round trip of a reliable
64-byte message over the direct path against the relayed one.

One NetServer and two NetClients in one process on the real reactor, all on
127.0.0.1. Each round makes a new group of the two clients (the previous one
destroyed, both clients having seen the other leave, so the pair is new) and
A sends to B as soon as its onP2PMemberJoin for B fires. Then, on the last
round's pair, A pings and B echoes (one at a time), once direct and once with
forceRelay on both sides, alternating --repeat times.

Baselines measured in the same run, on the same loopback: a bare Twisted UDP
echo round trip (A -> B -> A, the least a direct round trip can cost), a
bare Twisted UDP relay round trip (A -> S -> B -> S -> A, four hops through a
forwarding DatagramProtocol: the least a relayed round trip can cost), and a
bare Twisted "TCP notice, then one relayed datagram" (S writes to A over TCP
with TCP_NODELAY, A sends a datagram through the forwarder to B: the least
part (a) can cost). Figures are medians (p90 for part 1, p99 for round
trips); each ratio line reads ours / baseline, lower is better.

Everything shares one thread, so the figures include the other parties' CPU
time (the server's and the other client's), as a game server on one core would.

    python bench/p2p_times.py [--rounds 20] [--pings 1000] [--repeat 2] [--quick]
"""

from __future__ import annotations

import sys
import uuid

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Factory, Protocol

import _common
from _common import (
    LOOPBACK,
    STEP_WAIT,
    WARMUP,
    BenchFailure,
    Budget,
    clock,
    ms,
    pingPongOurs,
    report,
    us,
)
from proud_twisted import HolePunchPolicy, NetClient, NetServer, ServerUdpState

VERSION = uuid.UUID("5c0b6f7e-2d1a-4e55-9a8b-7b1f0e3d2c11")


# The pair and its server

async def start(reactor, budget: Budget, policy: HolePunchPolicy) -> _common.Setup:
    serverEvents = _common.serverEvents()
    server = NetServer(serverEvents, VERSION, tcpPort=0, udpPort=0, interface=LOOPBACK,
                       reactor=reactor, holePunchPolicy=policy)
    server.startService()
    tcpPort = server.getTcpAddress()[1]
    eventsA, eventsB = _common.clientEvents("A"), _common.clientEvents("B")
    a = NetClient(eventsA, reactor=reactor, udpInterface=LOOPBACK)
    b = NetClient(eventsB, reactor=reactor, udpInterface=LOOPBACK)
    idA = await budget.wait(a.connect(LOOPBACK, tcpPort, VERSION), STEP_WAIT, "A to join")
    idB = await budget.wait(b.connect(LOOPBACK, tcpPort, VERSION), STEP_WAIT, "B to join")
    # Relayed frames go over UDP once each client's UDP to the server is confirmed.
    await budget.until(lambda: (a.getServerUdpState() is ServerUdpState.CONFIRMED
                                and b.getServerUdpState() is ServerUdpState.CONFIRMED),
                       STEP_WAIT, "both clients' UDP to the server")
    return _common.Setup(reactor, server, a, b, eventsA, eventsB, serverEvents, idA, idB)


async def stop(setup: _common.Setup) -> None:
    await _common.disconnect(setup.reactor, (setup.a, setup.b), 0.1, 5.0)
    await setup.server.stopService()


# Part 1: createP2PGroup -> first relayed message, -> pair direct

class Round:
    def __init__(self) -> None:
        self.created = None
        self.group = None
        self.firstMessage = None
        self.directA = None
        self.directB = None
        self.relayedAtJoinA = None
        self.relayedAtJoinB = None
        self.firstContextRelayed = None
        self.delivered = defer.Deferred()
        self.directDeferredB = defer.Deferred()
        self.joinedA = defer.Deferred()
        self.joinedB = defer.Deferred()
        self.whenDirectA = None
        self.staleFrames = 0


async def oneRound(setup: _common.Setup, budget: Budget, number: int, size: int,
                   destroyAfter: bool) -> Round:
    a, b, idA, idB = setup.a, setup.b, setup.idA, setup.idB
    r = Round()

    def joinA(member, group):
        if member != idB or group != r.group or r.joinedA.called:
            return
        # Relay first: send at once, then wait for the direct path.
        a.send(idB, _common.message(b"F", number, 0, size))
        r.relayedAtJoinA = a.getPeerInfo(idB).relayed
        r.whenDirectA = a.whenDirect(idB)
        r.whenDirectA.addCallback(lambda _: setattr(r, "directA", clock()) or _)
        r.joinedA.callback(None)

    def joinB(member, group):
        if member != idA or group != r.group or r.joinedB.called:
            return
        r.relayedAtJoinB = b.getPeerInfo(idA).relayed
        r.joinedB.callback(None)

    def receiveB(sender, payload, context):
        kind, block, _ = _common.parse(payload)
        if sender == idA and kind == b"F" and block == number and r.firstMessage is None:
            r.firstMessage = clock()
            r.firstContextRelayed = context.relayed
            r.delivered.callback(None)

    def relayStateB(peer, reason):
        if peer == idA and r.directB is None and not b.getPeerInfo(idA).relayed:
            r.directB = clock()
            r.directDeferredB.callback(None)

    setup.eventsA.onJoin, setup.eventsB.onJoin = joinA, joinB
    setup.eventsB.onMessage, setup.eventsB.onRelayState = receiveB, relayStateB
    staleBefore = setup.staleFrames()
    try:
        r.created = clock()
        r.group = setup.server.createP2PGroup([idA, idB])
        await budget.wait(defer.gatherResults([r.joinedA, r.joinedB]), STEP_WAIT,
                          f"round {number}: both onP2PMemberJoin")
        await budget.wait(r.delivered, STEP_WAIT, f"round {number}: the first message at B")
        await budget.wait(r.whenDirectA, STEP_WAIT, f"round {number}: whenDirect on A")
        if r.directB is None and not b.getPeerInfo(idA).relayed:
            raise BenchFailure(f"round {number}: B went direct without onChangeP2PRelayState")
        await budget.wait(r.directDeferredB, STEP_WAIT, f"round {number}: B direct")
    finally:
        setup.eventsA.onJoin = setup.eventsB.onJoin = None
        setup.eventsB.onMessage = setup.eventsB.onRelayState = None
    r.staleFrames = setup.staleFrames() - staleBefore
    setup.checkHandlers()
    if not (r.relayedAtJoinA and r.relayedAtJoinB):
        raise BenchFailure(f"round {number}: the pair was not relayed at the join"
                           f" (A sees relayed={r.relayedAtJoinA}, B sees {r.relayedAtJoinB})")
    if destroyAfter:
        await destroy(setup, budget, r.group, number)
    return r


async def destroy(setup: _common.Setup, budget: Budget, group: int, number) -> None:
    idA, idB = setup.idA, setup.idB
    leftA, leftB = defer.Deferred(), defer.Deferred()

    def leaveA(member, g):
        if member == idB and g == group and not leftA.called:
            leftA.callback(None)

    def leaveB(member, g):
        if member == idA and g == group and not leftB.called:
            leftB.callback(None)

    setup.eventsA.onLeave, setup.eventsB.onLeave = leaveA, leaveB
    try:
        setup.server.destroyP2PGroup(group)
        await budget.wait(defer.gatherResults([leftA, leftB]), STEP_WAIT,
                          f"round {number}: both onP2PMemberLeave")
    finally:
        setup.eventsA.onLeave = setup.eventsB.onLeave = None
    if setup.hasPeers():
        raise BenchFailure(f"round {number}: still peers after the group was destroyed")


# Part 2: ping-pong, direct vs relayed (ours: pingPongOurs)

class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)


class Forwarder(DatagramProtocol):
    """A bare relay: what comes from one end goes to the other."""

    def __init__(self) -> None:
        self.ends = ()

    def datagramReceived(self, data, addr):
        first, second = self.ends
        self.transport.write(data, second if addr == first else first)


class Pinger(DatagramProtocol):
    def __init__(self) -> None:
        self.pp = None
        self.target = None

    def datagramReceived(self, data, addr):
        self.pp.echoed(data)


async def pingPongBare(reactor, budget: Budget, count: int, size: int, relayed: bool) -> list:
    pinger, echo = Pinger(), Echo()
    ports = [reactor.listenUDP(0, p, interface=LOOPBACK) for p in (pinger, echo)]
    addrs = [(LOOPBACK, port.getHost().port) for port in ports]
    if relayed:
        forwarder = Forwarder()
        forwarder.ends = tuple(addrs)
        ports.append(reactor.listenUDP(0, forwarder, interface=LOOPBACK))
        target = (LOOPBACK, ports[-1].getHost().port)
    else:
        target = addrs[1]
    pinger.pp = _common.PingPong(count, WARMUP, 0, size,
                         lambda data: pinger.transport.write(data, target))
    try:
        return await budget.wait(pinger.pp.start(), STEP_WAIT * 2,
                                 f"bare {'relayed' if relayed else 'direct'} round trips")
    finally:
        for port in ports:
            await defer.maybeDeferred(port.stopListening)


class Notified(Protocol):
    """A's TCP end of the bare baseline: on a notice, send one datagram to the relay."""

    def __init__(self, udp, relayAddress, size: int) -> None:
        self.udp, self.relayAddress, self.size = udp, relayAddress, size
        self.made = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.udp.transport.write(bytes(self.size), self.relayAddress)


class Stamp(DatagramProtocol):
    def __init__(self) -> None:
        self.arrived = None

    def datagramReceived(self, data, addr):
        if self.arrived is not None and not self.arrived.called:
            self.arrived.callback(clock())


async def noticeThenRelayBare(reactor, budget: Budget, rounds: int, size: int) -> list:
    """The least part 1's first message can cost in bare Twisted: a server
    writes a small notice to A over TCP (TCP_NODELAY), A answers it with one
    UDP datagram to a forwarder, which sends it on to B; timed from the
    server's write to B's read, C{rounds} times."""
    udpA, stampB, forwarder = DatagramProtocol(), Stamp(), Forwarder()
    udpPorts = [reactor.listenUDP(0, p, interface=LOOPBACK) for p in (udpA, stampB, forwarder)]
    forwarder.ends = tuple((LOOPBACK, port.getHost().port) for port in udpPorts[:2])
    relayAddress = (LOOPBACK, udpPorts[2].getHost().port)
    serverSide = defer.Deferred()

    class Accepted(Protocol):
        def connectionMade(self):
            self.transport.setTcpNoDelay(True)
            serverSide.callback(self)

    listening = reactor.listenTCP(0, Factory.forProtocol(Accepted), interface=LOOPBACK)
    clientSide = Notified(udpA, relayAddress, size)
    connector = reactor.connectTCP(LOOPBACK, listening.getHost().port,
                                   ClientFactory.forProtocol(lambda: clientSide))
    times = []
    try:
        server = await budget.wait(serverSide, STEP_WAIT, "the bare TCP connection")
        await budget.wait(clientSide.made, STEP_WAIT, "the bare TCP connection")
        for _ in range(rounds):
            stampB.arrived = defer.Deferred()
            start = clock()
            server.transport.write(b"notice")
            times.append(await budget.wait(stampB.arrived, STEP_WAIT, "the bare relayed datagram")
                         - start)
    finally:
        connector.disconnect()
        await defer.maybeDeferred(listening.stopListening)
        for port in udpPorts:
            await defer.maybeDeferred(port.stopListening)
    return times


async def goRelayed(setup: _common.Setup, budget: Budget, on: bool) -> None:
    setup.a.forceRelay(setup.idB, on)
    setup.b.forceRelay(setup.idA, on)
    if on:
        await budget.until(setup.bothRelayed, STEP_WAIT, "both sides to report relayed")


# Output

def rttLine(label: str, times: list) -> str:
    med, p99 = _common.summarise(times)
    return f"{label:28s} median {us(med):>8s}  p99 {us(p99):>8s}  (n={len(times)})"


def ratio(x: float, y: float) -> str:
    return f"{x / y:.3f}" if y else "inf"


async def run(reactor, args) -> None:
    budget = Budget(reactor, args.deadline)
    policy = HolePunchPolicy[args.policy.upper().replace("-", "_")]
    print(f"proud_twisted P2P on loopback (real reactor, {type(reactor).__name__}):"
          f" {args.rounds} rounds, {args.pings} timed round trips x {args.repeat} per path,"
          f" {args.size} B messages, hole punch policy {policy.name}")
    setup = await start(reactor, budget, policy)
    try:
        # Part 1
        rounds = []
        print("part 1: createP2PGroup -> first message at B (sent by A on its join)"
              " / -> pair direct")
        for i in range(args.rounds):
            r = await oneRound(setup, budget, i, args.size, destroyAfter=i < args.rounds - 1)
            rounds.append(r)
            if args.verbose or i < 3 or i == args.rounds - 1:
                print(f"  round {i + 1:3d}: group {r.group}  first message"
                      f" {ms(r.firstMessage - r.created):>9s}"
                      f" ({'relayed' if r.firstContextRelayed else 'direct'})  A direct"
                      f" {ms(r.directA - r.created):>9s}  B direct"
                      f" {ms(r.directB - r.created):>9s}  stale frames {r.staleFrames}")
            elif i == 3:
                print("  ...")
        bareFirsts = await noticeThenRelayBare(reactor, budget, args.rounds, args.size)
        firsts = [r.firstMessage - r.created for r in rounds]
        directs = [max(r.directA, r.directB) - r.created for r in rounds]
        notRelayedFirst = sum(1 for r in rounds if not r.firstContextRelayed)

        # Part 2, on the last round's pair (direct now)
        print("part 2: reliable ping-pong A -> B -> A, direct vs forceRelay on both sides,"
              " with bare Twisted UDP baselines")
        results = {"direct": [], "relayed": [], "bareDirect": [], "bareRelayed": []}
        wrong = {"direct": [0, 0], "relayed": [0, 0]}
        frames = {"direct": 0, "relayed": 0}
        for rep in range(args.repeat):
            block = 2 * rep
            results["bareDirect"] += await pingPongBare(reactor, budget, args.pings,
                                                        args.size, relayed=False)
            if rep:
                await goRelayed(setup, budget, False)
            await _common.goDirect(setup, budget, f"repeat {rep + 1}")
            direct = await pingPongOurs(setup, budget, block, args.pings, args.size, False)
            await goRelayed(setup, budget, True)
            relayed = await pingPongOurs(setup, budget, block + 1, args.pings, args.size, True)
            results["bareRelayed"] += await pingPongBare(reactor, budget, args.pings,
                                                         args.size, relayed=True)
            for name, res in (("direct", direct), ("relayed", relayed)):
                results[name] += res["times"]
                wrong[name] = [x + y for x, y in zip(wrong[name], res["wrongPath"], strict=True)]
                frames[name] += res["framesRelayed"]
            print(f"  repeat {rep + 1}: direct median {us(_common.median(direct['times']))},"
                  f" relayed median {us(_common.median(relayed['times']))};"
                  f" server relayed {direct['framesRelayed']} frames during direct,"
                  f" {relayed['framesRelayed']} during relayed")
        # Leave the pair as we found it, then tear down.
        await goRelayed(setup, budget, False)
        await destroy(setup, budget, rounds[-1].group, "last")
        setup.checkHandlers()
    finally:
        await stop(setup)

    # Summary
    dMed, dP99 = _common.summarise(results["direct"])
    rMed, rP99 = _common.summarise(results["relayed"])
    bdMed, bdP99 = _common.summarise(results["bareDirect"])
    brMed, brP99 = _common.summarise(results["bareRelayed"])
    fMed, fP90 = _common.median(firsts), _common.percentile(firsts, 0.9)
    xMed, xP90 = _common.median(directs), _common.percentile(directs, 0.9)
    bfMed, bfP90 = _common.median(bareFirsts), _common.percentile(bareFirsts, 0.9)
    stale = sum(r.staleFrames for r in rounds)
    staleRounds = sum(1 for r in rounds if r.staleFrames)
    n = len(results["direct"])
    print()
    print("==== summary ====")
    print(f"fresh pairs: {len(rounds)}, each relayed at its join (checked); first message"
          f" delivered only once the pair was direct (context.relayed=False): {notRelayedFirst};"
          f" relayed frames dropped as stale: {stale} in {staleRounds} rounds")
    print(f"  createP2PGroup -> first message at B:  median {ms(fMed):>9s}  p90 {ms(fP90):>9s}"
          f"  (min {ms(min(firsts))}, max {ms(max(firsts))})")
    print(f"  createP2PGroup -> pair direct:         median {ms(xMed):>9s}  p90 {ms(xP90):>9s}"
          f"  (min {ms(min(directs))}, max {ms(max(directs))})")
    print(f"  bare Twisted TCP notice -> UDP relay:  median {ms(bfMed):>9s}  p90 {ms(bfP90):>9s}"
          f"  (min {ms(min(bareFirsts))}, max {ms(max(bareFirsts))})")
    print(f"round trips, {args.size} B reliable, echoed reliably, {n} timed per path:")
    print("  " + rttLine("ours, direct", results["direct"]))
    print("  " + rttLine("ours, relayed (forceRelay)", results["relayed"]))
    print("  " + rttLine("bare Twisted UDP echo", results["bareDirect"]))
    print("  " + rttLine("bare Twisted UDP relay", results["bareRelayed"]))
    print(f"  path check: deliveries whose context.relayed was wrong, A/B: direct"
          f" {wrong['direct']}, relayed {wrong['relayed']}; frames the server relayed"
          f" during the direct blocks {frames['direct']}, during the relayed blocks"
          f" {frames['relayed']}")
    print(f"  bare Twisted direct/relayed: median {ratio(bdMed, brMed)}, p99 {ratio(bdP99, brP99)}"
          " (what skipping the server hop can save at best)")
    report("round trip direct vs relayed, p99 (information)", dP99 * 1e6, rP99 * 1e6, "us",
           "ours, forceRelay on both sides")
    report("round trip direct vs relayed, median", dMed * 1e6, rMed * 1e6, "us",
           "ours, forceRelay on both sides", note=" (lower is better)")
    report("round trip direct (information)", dMed * 1e6, bdMed * 1e6, "us",
           "bare Twisted UDP echo, median")
    report("round trip relayed (information)", rMed * 1e6, brMed * 1e6, "us",
           "bare Twisted UDP relay, median")
    report("createP2PGroup to first message, p90 (information)", fP90 * 1e3, bfP90 * 1e3,
           "ms", "bare Twisted TCP notice then UDP relay hop, p90")
    report("createP2PGroup to first message, median", fMed * 1e3, bfMed * 1e3,
           "ms", "bare Twisted TCP notice then UDP relay hop, median")
    report("createP2PGroup to pair direct, median (information)", xMed * 1e3, bfMed * 1e3,
           "ms", "bare Twisted TCP notice then UDP relay hop, median")


def main() -> int:
    _common.printCore()
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--rounds", type=int, default=20,
                        help="fresh pairs to time (default 20)")
    parser.add_argument("--pings", type=int, default=1000,
                        help=f"timed round trips per path per repeat, after {WARMUP} untimed"
                             " (default 1000)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate direct / relayed blocks this many times (default 2)")
    parser.add_argument("--size", type=int, default=64, help="message size (default 64)")
    parser.add_argument("--policy", choices=("just-in-time", "always"), default="just-in-time",
                        help="the server's holePunchPolicy (default just-in-time)")
    _common.addTimeout(parser, 55.0)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run: 3 rounds, 100 round trips, 1 repeat")
    parser.add_argument("--verbose", action="store_true", help="print every round")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.pings, args.repeat = 3, 100, 1
    if args.rounds < 1 or args.pings < 1 or args.repeat < 1 or args.timeout <= 0:
        parser.error("--rounds, --pings and --repeat must be >= 1 and --timeout > 0")
    if args.size < _common.MESSAGE_HEADER_SIZE:
        parser.error(f"--size must be at least {_common.MESSAGE_HEADER_SIZE}")
    return _common.runUntilDeadline(run, args, grace=5.0)


if __name__ == "__main__":
    sys.exit(main())
