"""What the protection costs: the same traffic with encryption on and off.

On loopback (127.0.0.1 only, real reactor, one process), two setups live
side by side: one whose server and clients encrypt (``NetServer(encryption=
True)``, clients pinned to its key with ``NetClient(serverKey=...)``), one
with ``encryption=False`` everywhere. Each has a server and four clients;
the measurements alternate between the two (on/off, then off/on, ...), so
that whatever else loads the machine hits both alike.

(a) direct P2P round trip: A and B in a group that allows direct P2P, both
    sides direct (``whenDirect``); A sends a reliable 64-byte message, B
    echoes it reliably, A times it and sends the next. ``--pings`` (default
    2,000) timed round trips per mode, in ``--blocks`` alternating blocks
    (each after 100 untimed). Compares the medians, on/off. Goal: <= 1.15.

(b) relay forwarding rate: C and D in a group made with
    ``allowDirectP2P=False``; C sends ``--messages`` (default 20,000)
    reliable 64-byte messages to D as fast as its session's send queue takes
    them (refilling after ``SendQueueFull``), D checks their order; messages
    per second from the first send to the last delivery, through the server
    relay over UDP. ``--relay-runs`` (default 20) alternating runs per mode;
    compares the medians, on/off. Goal: >= 0.85.

(c) with ``--floor``, what the AEAD calls alone cost in place: the
    protected pair's direct round trip with its pair channels wrapped in a
    stand-in that seals and opens through them, against the same stand-in
    doing no cryptography (it only adds the record's 24 bytes, so every
    datagram keeps its size), alternating blocks. Information: the part of
    (a) that is ``cryptography``'s AES-GCM itself, called where it runs.
    Then, for each cipher, one seal and one open of a ``--size`` record
    through a pair of ``SecureChannel``s in a tight loop, against the bare
    AEAD's encrypt and decrypt (the best of 5 runs of 20,000, in ns):
    what the channel adds (counter, replay window) to the calls themselves.

With protection on, a direct datagram is sealed once and opened once
(AES-256-GCM under the pair's keys); a relayed one is sealed by its sender
under the pair's keys and again for its channel to the server; the server
opens only that outer record (which proves the sender) and forwards the
pair's record as it is, and the receiver opens it once. The relay rate limits are raised
out of the way (``--default-limits`` keeps the server's defaults). Clients
and server share one thread, as on a single-core server, so every figure
includes everyone's CPU time. ``--profile`` prints the share of the
protection code in each mode's profile, then the top functions.

On a busy machine, run lengths wander by tens of per cent from one run to
the next whatever the mode; hence many short alternating runs, the medians,
and the spread of the on/off ratios of neighbouring runs. ``--control`` runs
both setups without encryption: its ratios show the noise floor.

    python bench/security_overhead.py [--pings 2000] [--relay-runs 20] [--floor] [--profile]
"""

from __future__ import annotations

import statistics
import sys
import uuid

import _common
from _common import LOOPBACK, STEP_WAIT, BenchFailure, Budget, Profile, Setup, report, us
from proud_twisted import NetClient, NetServer, SendQueueFull, ServerUdpState
from proud_twisted._crypto import channel as channelModule
from proud_twisted.crypto import CIPHERS, SecureChannel

VERSION = uuid.UUID("0b5e55ed-5ec0-4e11-8a7d-c0ffee000001")
RTT_GOAL = 1.15
RELAY_GOAL = 0.85
UNLIMITED = 1e12
"""Relay frames and bytes a second when the limits are out of the way."""
MODES = {True: "protection ON", False: "protection OFF"}


class World:
    """A server and four joined clients: pair (A, B) for the direct round
    trip, pair (C, D) for the relay rate; encrypted or not."""

    def __init__(self, reactor, server, serverEvents, clients) -> None:
        self.reactor = reactor
        self.server = server
        self.serverEvents = serverEvents
        self.clients = clients      # [(NetClient, events, hostID)]

    def pair(self, first: int, second: int) -> Setup:
        (a, eventsA, idA), (b, eventsB, idB) = self.clients[first], self.clients[second]
        return Setup(self.reactor, self.server, a, b, eventsA, eventsB, self.serverEvents,
                     idA, idB)


async def startWorld(reactor, budget: Budget, encrypted: bool, args) -> World:
    encrypted = encrypted and not args.control
    serverEvents = _common.serverEvents()
    limits = {} if args.default_limits else {
        "relayFramesPerSecond": UNLIMITED, "relayBytesPerSecond": UNLIMITED}
    server = NetServer(serverEvents, VERSION, tcpPort=0, udpPort=0, interface=LOOPBACK,
                       reactor=reactor, encryption=encrypted, udpBufferSize=args.rcvbuf,
                       **limits)
    server.startService()
    pinned = server.identity.publicKey() if encrypted else None
    port = server.getTcpAddress()[1]
    clients = []
    try:
        for name in "ABCD":
            events = _common.clientEvents(name)
            client = NetClient(events, reactor=reactor, udpInterface=LOOPBACK,
                               encryption=encrypted, serverKey=pinned,
                               udpBufferSize=args.rcvbuf)
            hostID = await budget.wait(client.connect(LOOPBACK, port, VERSION),
                                       STEP_WAIT, f"{name} to join")
            clients.append((client, events, hostID))
        await budget.until(
            lambda: all(c.getServerUdpState() is ServerUdpState.CONFIRMED
                        for c, _, _ in clients),
            STEP_WAIT, "every client's UDP to the server")
    except BaseException:
        await stopWorld(World(reactor, server, serverEvents, clients))
        raise
    return World(reactor, server, serverEvents, clients)


async def stopWorld(world: World) -> None:
    await _common.disconnect(world.reactor, [c for c, _, _ in world.clients], 0.1, 5.0)
    await world.server.stopService()


async def makeGroup(setup: Setup, budget: Budget, allowDirect: bool) -> None:
    """Put the pair in a new group; return once both sides run the pair session."""
    setup.server.createP2PGroup([setup.idA, setup.idB], allowDirectP2P=allowDirect)

    def paired() -> bool:
        return (setup.hasPeers() and setup.a.getPeerInfo(setup.idB).stats is not None
                and setup.b.getPeerInfo(setup.idA).stats is not None)

    await budget.until(paired, STEP_WAIT, "the pair to be introduced")


# (a) the direct round trip

async def directRoundTrips(world: World, budget: Budget, count: int, size: int,
                           block: int, profile: Profile) -> list:
    """The times of C{count} round trips over the (direct) pair A, B."""
    setup = world.pair(0, 1)
    profile.start()
    try:
        result = await _common.pingPongOurs(setup, budget, block, count, size,
                                            expectRelayed=False)
    finally:
        profile.stop()
    if any(result["wrongPath"]) or result["framesRelayed"]:
        raise BenchFailure(f"relayed traffic during the direct round trips:"
                               f" {result}")
    return result["times"]


# (b) the relay forwarding rate

async def relayRate(world: World, budget: Budget, count: int, size: int,
                    profile: Profile) -> dict:
    """Relay C{count} messages from C to D (a relay-only pair)."""
    setup = world.pair(2, 3)
    a, idB = setup.a, setup.idB
    body = _common.filler(size)
    counter = _common.OrderedCounter(count, size)
    sent = fullQueue = direct = 0

    def refill() -> None:
        nonlocal sent, fullQueue
        while sent < count:
            try:
                a.send(idB, _common.payload(sent, body))
            except SendQueueFull:
                fullQueue += 1
                return
            sent += 1

    def receiveB(sender, payload, context) -> None:
        nonlocal direct
        if sender != setup.idA:
            return
        direct += not context.relayed
        counter.take(payload)
        if sent < count:
            refill()

    stats = setup.server.stats
    before = stats.asDict()
    senderBefore = a.getPeerInfo(idB).stats
    setup.eventsB.onMessage = receiveB
    profile.start()
    start, cpuStart = _common.clock(), _common.cpuClock()
    try:
        refill()
        end = await budget.wait(counter.done, STEP_WAIT * 6,
                                f"{count} relayed messages")
    finally:
        profile.stop()
        setup.eventsB.onMessage = None
    setup.checkHandlers()
    if direct:
        raise BenchFailure(f"{direct} messages of the relay-only pair came directly")
    after = stats.asDict()
    sender = a.getPeerInfo(idB).stats
    return {"rate": count / (end - start), "seconds": end - start,
            "cpu": _common.cpuClock() - cpuStart, "fullQueue": fullQueue,
            "server": {k: after[k] - before[k] for k in
                       ("framesRelayed", "relayRateLimited", "spoofedDatagrams")},
            "lost": sender.datagramsLost - senderBefore.datagramsLost,
            "retransmissions": sender.retransmissions - senderBefore.retransmissions,
            "sender": sender}


# (c) the AEAD calls alone

class _ThroughChannel:
    """A pair channel stand-in that seals and opens through the real one."""

    def __init__(self, channel) -> None:
        self.channel = channel

    def seal(self, plaintext: bytes) -> bytes:
        return self.channel.seal(plaintext)

    def open(self, record: bytes) -> bytes:
        return self.channel.open(record)


class _WithoutCipher:
    """The same stand-in without the cryptography: records of the same size."""

    HEADER, TAG = bytes(channelModule.HEADER_SIZE), bytes(channelModule.TAG_SIZE)

    def __init__(self, channel) -> None:
        pass    # takes the channel it stands in for, as L{_ThroughChannel} does

    def seal(self, plaintext: bytes) -> bytes:
        return self.HEADER + plaintext + self.TAG

    def open(self, record: bytes) -> bytes:
        return record[channelModule.HEADER_SIZE:-channelModule.TAG_SIZE]


async def aeadFloor(world: World, budget: Budget, args) -> dict:
    """Round trip times of the protected pair A, B with its records sealed
    through L{_ThroughChannel} and through L{_WithoutCipher}, alternating."""
    setup = world.pair(0, 1)
    peers = (_common.clientEngine(setup.a).peerTable.peers[setup.idB],
             _common.clientEngine(setup.b).peerTable.peers[setup.idA])
    channels = [peer.channel for peer in peers]
    times = {_ThroughChannel: [], _WithoutCipher: []}
    pings = max(1, args.pings // args.blocks)
    try:
        for block in range(args.blocks):
            order = (_ThroughChannel, _WithoutCipher) if block % 2 == 0 else (
                _WithoutCipher, _ThroughChannel)
            for standIn in order:
                for peer, channel in zip(peers, channels, strict=True):
                    peer.channel = standIn(channel)
                result = await _common.pingPongOurs(setup, budget, block, pings, args.size,
                                                    expectRelayed=False)
                times[standIn] += result["times"]
    finally:
        for peer, channel in zip(peers, channels, strict=True):
            peer.channel = channel
    return times


# (c) also: one seal and one open in a loop, outside the reactor

SEAL_OPEN_CALLS, SEAL_OPEN_RUNS = 20000, 5


def bestOf(function) -> float:
    """Seconds a call of C{function}, the best of SEAL_OPEN_RUNS runs."""
    best = float("inf")
    for _ in range(SEAL_OPEN_RUNS):
        start = _common.clock()
        for _ in range(SEAL_OPEN_CALLS):
            function()
        best = min(best, _common.clock() - start)
    return best / SEAL_OPEN_CALLS


def sealOpenCost(cipher: str, size: int) -> tuple[float, float]:
    """Seconds for one seal and one open of C{size} bytes through a pair of
    L{SecureChannel}s, and for the bare AEAD's encrypt and decrypt."""
    keyA, keyB = bytes(range(32)), bytes(range(32, 64))
    seal = SecureChannel(keyA, keyB, cipher=cipher).seal
    open_ = SecureChannel(keyB, keyA, cipher=cipher).open
    aead = CIPHERS[cipher](keyA)
    encrypt, decrypt = aead.encrypt, aead.decrypt
    payload, nonce = bytes(size), bytes(channelModule.NONCE_SIZE)
    channel = bestOf(lambda: open_(seal(payload)))
    bare = bestOf(lambda: decrypt(nonce, encrypt(nonce, payload, b""), b""))
    return channel, bare


# running and reporting

PROTECTION_CODE = ("proud_twisted/_crypto/", "proud_twisted/_crypto/datagrams.py")
AEAD_METHODS = ("encrypt' of 'cryptography", "decrypt' of 'cryptography")


def protectionShare(profile: Profile) -> tuple[float, float]:
    """Seconds spent in the protection code (our AEAD wrappers and the
    cipher calls), and in all, according to the profile."""
    stats = profile.stats()
    own = total = 0.0
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        total += tottime
        if (any(part in filename for part in PROTECTION_CODE)
                or any(method in function for method in AEAD_METHODS)):
            own += tottime
    return own, total


def alternating(number: int) -> tuple:
    """The order of the two setups in run C{number}: on/off, off/on, ..."""
    return (True, False) if number % 2 == 0 else (False, True)


def spread(name: str, ratios: list) -> None:
    print(f"  {name}: min {min(ratios):.3f}, median {statistics.median(ratios):.3f},"
          f" max {max(ratios):.3f}")


async def roundTripPhase(worlds: dict, budget: Budget, args, labels: dict,
                         profiles: dict) -> dict:
    times = {True: [], False: []}
    ratios = []
    pings = max(1, args.pings // args.blocks)
    for block in range(args.blocks):
        medians = {}
        for encrypted in alternating(block):
            rtt = await directRoundTrips(worlds[encrypted], budget, pings, args.size,
                                         block, profiles[encrypted])
            times[encrypted] += rtt
            medians[encrypted] = statistics.median(rtt)
        ratios.append(medians[True] / medians[False])
        if args.verbose:
            print(f"  round trips, block {block + 1}: {us(medians[True], 1)} and"
                  f" {us(medians[False], 1)}, ratio {ratios[-1]:.3f}")
    for encrypted in (True, False):
        med, p99 = _common.summarise(times[encrypted])
        print(f"  direct round trip, {labels[encrypted]:14s}: median {us(med, 1)}, p99"
              f" {us(p99, 1)} (n={len(times[encrypted])})")
    spread("on/off ratios of the block medians", ratios)
    return times


async def relayPhase(worlds: dict, budget: Budget, args, labels: dict,
                     profiles: dict) -> dict:
    relays = {True: [], False: []}
    ratios = []
    for number in range(args.relay_runs):
        for encrypted in alternating(number):
            relay = await relayRate(worlds[encrypted], budget, args.messages, args.size,
                                    profiles[encrypted])
            relays[encrypted].append(relay)
            if args.verbose or number < 2:
                print(f"  relay run {number + 1}, {labels[encrypted]:14s}:"
                      f" {relay['rate']:8,.0f} msgs/s ({relay['seconds']:.3f} s,"
                      f" CPU {relay['cpu']:.3f} s); datagrams lost {relay['lost']},"
                      f" frames resent {relay['retransmissions']}, send queue full"
                      f" {relay['fullQueue']}x; server {relay['server']}")
            if args.verbose:
                print(f"      sender: {_common.formatStats(relay['sender'])}")
        ratios.append(relays[True][-1]["rate"] / relays[False][-1]["rate"])
    for encrypted in (True, False):
        runs = relays[encrypted]
        print(f"  relay, {labels[encrypted]:14s}: median"
              f" {statistics.median(r['rate'] for r in runs):,.0f} msgs/s (min"
              f" {min(r['rate'] for r in runs):,.0f}, max {max(r['rate'] for r in runs):,.0f});"
              f" datagrams lost {sum(r['lost'] for r in runs)} in"
              f" {sum(1 for r in runs if r['lost'])} of {len(runs)} runs, frames resent"
              f" {sum(r['retransmissions'] for r in runs)}, rate-limited"
              f" {sum(r['server']['relayRateLimited'] for r in runs)}")
    spread("on/off ratios of the relay rates of neighbouring runs", ratios)
    return relays


async def run(reactor, args) -> None:
    budget = Budget(reactor, args.deadline)
    profiles = {True: Profile(args.profile), False: Profile(args.profile)}
    labels = ({True: "control A", False: "control B"} if args.control else MODES)
    print(f"protection on vs off{' (CONTROL: both off)' if args.control else ''}, loopback,"
          f" {type(reactor).__name__}, {args.size} B messages, relay limits"
          f" {'server defaults' if args.default_limits else 'out of the way'}, UDP socket"
          f" buffers {args.rcvbuf or 'OS default'}: (a) {args.pings} timed direct round"
          f" trips per mode in {args.blocks} alternating blocks (each after {_common.WARMUP}"
          f" untimed), (b) {args.relay_runs} alternating runs of {args.messages} reliable"
          " messages through the relay per mode")
    worlds = {}
    try:
        for encrypted in (True, False):
            worlds[encrypted] = world = await startWorld(reactor, budget, encrypted, args)
            await makeGroup(world.pair(0, 1), budget, allowDirect=True)
            await makeGroup(world.pair(2, 3), budget, allowDirect=False)
            await _common.goDirect(world.pair(0, 1), budget, labels[encrypted])
        times = await roundTripPhase(worlds, budget, args, labels, profiles)
        relays = await relayPhase(worlds, budget, args, labels, profiles)
        floor = await aeadFloor(worlds[True], budget, args) if args.floor else None
        for world in worlds.values():
            world.pair(0, 1).checkHandlers()
            world.pair(2, 3).checkHandlers()
    finally:
        for world in worlds.values():
            await stopWorld(world)

    if args.profile:
        for encrypted in (True, False):
            own, total = protectionShare(profiles[encrypted])
            print(f"==== profile, {labels[encrypted]}: {own:.3f} s of {total:.3f} s"
                  f" ({own / total:.1%}) in the protection code ====")
            profiles[encrypted].print(top=args.profile_top)
    onMed, onP99 = _common.summarise(times[True])
    offMed, offP99 = _common.summarise(times[False])
    baseline = labels[False]
    rate = {e: statistics.median(r["rate"] for r in relays[e]) for e in relays}
    cpuRate = {e: statistics.median(args.messages / r["cpu"] for r in relays[e])
               for e in relays}
    report("direct round trip p99 (information)", onP99 * 1e6, offP99 * 1e6, "us", baseline)
    report("direct round trip median", onMed * 1e6, offMed * 1e6, "us", baseline,
           RTT_GOAL, higherIsBetter=False)
    report("relay messages per CPU second, median (information)", cpuRate[True],
           cpuRate[False], "msgs/s", baseline)
    report("relay rate median", rate[True], rate[False], "msgs/s", baseline, RELAY_GOAL)
    if floor is not None:
        report("direct round trip median, AES-GCM calls alone (information)",
               statistics.median(floor[_ThroughChannel]) * 1e6,
               statistics.median(floor[_WithoutCipher]) * 1e6, "us",
               f"{labels[True]}, the same records without the cipher")
        for cipher in CIPHERS:
            channel, bare = sealOpenCost(cipher, args.size)
            report(f"seal+open of {args.size} B, {cipher}, in a loop (information)",
                   channel * 1e9, bare * 1e9, "ns", "bare AEAD encrypt+decrypt")


def main() -> int:
    _common.printCore()
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--pings", type=int, default=2000,
                        help="timed direct round trips per mode (default 2000)")
    parser.add_argument("--blocks", type=int, default=10,
                        help="alternating blocks the round trips are split into, each"
                             f" after {_common.WARMUP} untimed ones (default 10)")
    parser.add_argument("--messages", type=int, default=5000,
                        help="messages relayed per run (default 5000)")
    parser.add_argument("--relay-runs", type=int, default=20,
                        help="alternating relay runs per mode (default 20)")
    parser.add_argument("--size", type=int, default=64, help="message size (default 64)")
    parser.add_argument("--rcvbuf", type=int, default=_common.ENET_SOCKET_BUFFER * 4,
                        help="udpBufferSize of the server and every client, so that"
                             " bursts are not lost in the kernel (default"
                             f" {_common.ENET_SOCKET_BUFFER * 4}); 0 keeps the OS default")
    parser.add_argument("--control", action="store_true",
                        help="a control run: both setups without encryption, so every"
                             " ratio should be 1 and its spread is the noise floor")
    parser.add_argument("--default-limits", action="store_true",
                        help="keep the server's default relay rate limits")
    _common.addTimeout(parser, 300.0)
    _common.addProfile(parser, "the measured parts of each mode; print the share of the"
                               " protection code and the top functions")
    parser.add_argument("--floor", action="store_true",
                        help="also measure (c): the protected round trip with and without"
                             " the AEAD calls themselves, and one seal and open in a loop")
    parser.add_argument("--verbose", action="store_true",
                        help="print every round trip block and the relay sender's stats")
    args = parser.parse_args()
    if (min(args.pings, args.blocks, args.messages, args.relay_runs) < 1
            or args.timeout <= 0 or args.blocks > args.pings):
        parser.error("--pings, --blocks, --messages and --relay-runs must be >= 1,"
                     " --blocks <= --pings, and --timeout > 0")
    if args.size < _common.MESSAGE_HEADER_SIZE:
        parser.error(f"--size must be at least {_common.MESSAGE_HEADER_SIZE}")
    return _common.runUntilDeadline(run, args, grace=5.0)


if __name__ == "__main__":
    sys.exit(main())
