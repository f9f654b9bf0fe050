"""MMORPG "view group" churn: how fast the server forms P2P groups and moves
clients in and out of them, against the least TCP traffic the same notices
and acknowledgements need in bare Twisted.

One NetServer (real reactor, encryption on unless ``--no-encryption``; the
clients pin its key) and ``--clients`` (default 50) joined NetClients, all in
one process on 127.0.0.1, every client's UDP to the server confirmed first.

(a) formation: ``createP2PGroup`` of ``--group-size`` (default 20) clients,
    timed from the call to the server's last ``onP2PGroupJoinMemberAckComplete``
    (one per member: every member processed every member's join notice, G*G
    notices and as many acks), ``--rounds`` (default 20) times after one
    untimed round. Between rounds, untimed, ``destroyP2PGroup`` and a wait
    until every member heard every ``onP2PMemberLeave`` and has no peers left.

(b) churn: one group of ``--group-size`` members; each step, the member
    that has been in it longest leaves (``leaveP2PGroup``) and the client
    that has been out of it longest joins (``joinP2PGroup``), both calls in
    one go; timed from the calls to the joiner's ack-complete on the server
    and every ``onP2PMemberLeave`` of the step on the clients (G-1 to the
    members who stay, G to the leaver). ``--steps`` (default 200) timed
    steps after 10 untimed ones, in 10 blocks alternating with the baseline;
    steps per second is the timed steps over the sum of their times.

Every client event is checked against the exact set the step must cause
(receiver, member, group): a missing one ends the run with ``gave up: ...``
naming what is missing, an unexpected one at once. After each operation,
untimed, the clients' peer tables are checked too (the leaver has no peers,
the joiner has the members).

Baseline, in the same run and process, alternating with ours: a bare
Twisted TCP server (``Int32StringReceiver``, TCP_NODELAY, as ours) with the
same number of bare clients; it sends the same notices to the same
receivers in the same order, 41-byte join notices and 13-byte leave notices
(the size of ours before encryption), each client answers every join notice
that asks for it with a 5-byte ack, and the server counts the acks of each
join to completion. Not mirrored: our PEER_PAIR introductions (one to each
side of every new pair) and our encryption; both are part of what ours
costs. Ratios read ours / baseline: lower is better for times, higher for
steps per second. There is no goal yet; every line is (information).

Everything shares one thread, so every figure includes the server's and
all the clients' CPU time, as a game server and its clients on one core.
``--profile`` runs cProfile over our measured operations only (formation
and churn apart) and prints the top functions.

    python bench/group_churn.py [--clients 50] [--group-size 20] [--rounds 20]
                                [--steps 200] [--no-encryption] [--profile]
"""

from __future__ import annotations

import collections
import statistics
import struct
import sys
import uuid

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, Factory
from twisted.protocols.basic import Int32StringReceiver

import _common
from _common import (
    LOOPBACK,
    STEP_WAIT,
    BenchFailure,
    Budget,
    Profile,
    clock,
    cpuClock,
    ms,
    report,
)
from proud_twisted import ErrorType, NetClient, NetServer, ServerUdpState

VERSION = uuid.UUID("c4a2e1f0-7d3b-4b8e-9f10-5e6d7c8b9a01")
WARMUP_ROUNDS = 1
WARMUP_STEPS = 10
CHURN_BLOCKS = 10

BARE_GROUP = 1
_NOTICE = struct.Struct("!cII")     # kind, ackID (0: no ack wanted), member
_ACK = struct.Struct("!cI")         # b"A", ackID
JOIN_NOTICE_SIZE = 41               # our MEMBER_JOIN body on loopback, before encryption
LEAVE_NOTICE_SIZE = 13              # our MEMBER_LEAVE body
JOIN_PAD = bytes(JOIN_NOTICE_SIZE - _NOTICE.size)
LEAVE_PAD = bytes(LEAVE_NOTICE_SIZE - _NOTICE.size)


# What one operation must cause, checked event by event

class Tally:
    """The events one operation must cause: join and leave events on the
    clients as (receiver, member) pairs of one group, and ack-complete
    events on the server by member. C{done} fires with the clock at the
    moment the last one arrives; an event not expected fails it at once."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.group = None
        self.joins, self.leaves, self.completes = set(), set(), set()
        self.done = None
        self.stray = []

    def checkStray(self) -> None:
        if self.stray:
            raise BenchFailure(f"{self.label}: events no operation caused: {self.stray[:5]}")

    def expect(self, group: int, joins, leaves, completes) -> defer.Deferred:
        self.checkStray()
        self.group = group
        self.joins, self.leaves, self.completes = set(joins), set(leaves), set(completes)
        self.done = defer.Deferred()
        return self.done

    def missing(self) -> str:
        def some(keys):
            return f"{len(keys)} {sorted(keys)[:4]}{'...' if len(keys) > 4 else ''}"
        return (f"missing (receiver, member) joins {some(self.joins)}, leaves"
                f" {some(self.leaves)}, ack-complete of {some(self.completes)}")

    def joined(self, receiver: int, member: int, group: int) -> None:
        self._take(self.joins, "join", receiver, member, group)

    def left(self, receiver: int, member: int, group: int) -> None:
        self._take(self.leaves, "leave", receiver, member, group)

    def completed(self, group: int, member: int, result=ErrorType.OK) -> None:
        if result != ErrorType.OK:
            self._unexpected(("ack-complete", member, group, result))
        else:
            self._take(self.completes, "ack-complete", None, member, group)

    def _take(self, keys: set, kind: str, receiver, member: int, group: int) -> None:
        key = member if receiver is None else (receiver, member)
        if group != self.group or key not in keys or self.done is None or self.done.called:
            self._unexpected((kind, receiver, member, group))
            return
        keys.remove(key)
        if not (self.joins or self.leaves or self.completes):
            self.done.callback(clock())

    def _unexpected(self, event) -> None:
        if self.done is not None and not self.done.called:
            self.done.errback(BenchFailure(f"{self.label}: unexpected event {event}"))
        else:
            self.stray.append(event)

    async def wait(self, budget: Budget, what: str) -> float:
        try:
            return await budget.wait(self.done, STEP_WAIT, f"{self.label}, {what}")
        except BenchFailure as e:
            raise BenchFailure(f"{e}; {self.missing()}") from None


def formationEvents(members):
    every = [(r, m) for r in members for m in members]
    return every, (), members


def destroyEvents(members):
    return (), [(r, m) for r in members for m in members], ()


def churnEvents(remaining, leaver: int, joiner: int):
    """Ours as the group table makes them: the leaver tells the members who
    stay and hears of each of them and of itself; the joiner hears of every
    member, and every member (the joiner too) hears of the joiner."""
    leaves = [(r, leaver) for r in remaining] + [(leaver, o) for o in remaining]
    leaves.append((leaver, leaver))
    joins = [(joiner, o) for o in remaining] + [(r, joiner) for r in remaining]
    joins.append((joiner, joiner))
    return joins, leaves, (joiner,)


# Ours: a server and --clients joined clients

class World:
    def __init__(self, reactor, server, serverEvents, tally) -> None:
        self.reactor = reactor
        self.server, self.serverEvents, self.tally = server, serverEvents, tally
        self.clients = []       # [(NetClient, events, hostID)]
        self.byID = {}

    def checkHandlers(self) -> None:
        _common.checkHandlers([self.serverEvents] + [e for _, e, _ in self.clients])

    def checkPeers(self, hostID: int, expected) -> None:
        peers = set(self.byID[hostID].getPeerHostIDs())
        if peers != set(expected):
            raise BenchFailure(f"client {hostID} has peers {sorted(peers)},"
                               f" expected {sorted(expected)}")


async def startWorld(reactor, budget: Budget, args) -> World:
    encrypted = not args.no_encryption
    tally = Tally("ours")
    serverEvents = _common.serverEvents()
    serverEvents.onAckComplete = tally.completed
    server = NetServer(serverEvents, VERSION, tcpPort=0, udpPort=0, interface=LOOPBACK,
                       reactor=reactor, encryption=encrypted)
    server.startService()
    world = World(reactor, server, serverEvents, tally)
    pinned = server.identity.publicKey() if encrypted else None
    port = server.getTcpAddress()[1]
    try:
        for number in range(args.clients):
            events = _common.clientEvents(f"client {number}")
            client = NetClient(events, reactor=reactor, udpInterface=LOOPBACK,
                               encryption=encrypted, serverKey=pinned)
            world.clients.append((client, events, None))
            hostID = await budget.wait(client.connect(LOOPBACK, port, VERSION), STEP_WAIT,
                                       f"client {number} to join")
            world.clients[-1] = (client, events, hostID)
            world.byID[hostID] = client
            events.onJoin = lambda member, group, me=hostID: tally.joined(me, member, group)
            events.onLeave = lambda member, group, me=hostID: tally.left(me, member, group)
        await budget.until(
            lambda: all(c.getServerUdpState() is ServerUdpState.CONFIRMED
                        for c, _, _ in world.clients),
            STEP_WAIT, "every client's UDP to the server")
    except BaseException:
        await stopWorld(world)
        raise
    return world


async def stopWorld(world: World) -> None:
    await _common.disconnect(world.reactor, [c for c, _, _ in world.clients], 0.1, 5.0)
    await world.server.stopService()


async def formOurs(world: World, budget: Budget, members: list,
                   profile: Profile) -> tuple:
    """createP2PGroup(members) to the last ack-complete: (group, seconds, CPU seconds)."""
    # The group's HostID is not known before the call; the events carry it.
    tally = world.tally
    tally.expect(None, *formationEvents(members))
    profile.start()
    cpu = cpuClock()
    start = clock()
    try:
        group = world.server.createP2PGroup(members)
        tally.group = group         # no event can arrive before this turn ends
        end = await tally.wait(budget, f"{len(members)} members' join acks")
    finally:
        profile.stop()
    cpu = cpuClock() - cpu
    for member in members:
        world.checkPeers(member, set(members) - {member})
    return group, end - start, cpu


async def destroyOurs(world: World, budget: Budget, group: int, members: list) -> None:
    world.tally.expect(group, *destroyEvents(members))
    world.server.destroyP2PGroup(group)
    await world.tally.wait(budget, "every onP2PMemberLeave of a destroyed group")
    for member in members:
        world.checkPeers(member, ())


async def churnOurs(world: World, budget: Budget, group: int, members, outside,
                    profile: Profile) -> tuple:
    """One step: the oldest member leaves, the longest outside joins."""
    leaver, joiner = members.popleft(), outside.popleft()
    remaining = list(members)
    tally = world.tally
    tally.expect(group, *churnEvents(remaining, leaver, joiner))
    profile.start()
    cpu = cpuClock()
    start = clock()
    try:
        world.server.leaveP2PGroup(leaver, group)
        world.server.joinP2PGroup(joiner, group)
        end = await tally.wait(budget, f"step: {leaver} leaves, {joiner} joins")
    finally:
        profile.stop()
    cpu = cpuClock() - cpu
    members.append(joiner)
    outside.append(leaver)
    world.checkPeers(leaver, ())
    world.checkPeers(joiner, remaining)
    return end - start, cpu


# The baseline: bare Twisted TCP, the same notices and acks

class BareServerSide(Int32StringReceiver):
    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, data: bytes) -> None:
        kind, number = _ACK.unpack_from(data)
        if kind == b"A":
            self.factory.hub.acked(number)
        else:                       # b"H": the client says which one it is
            self.factory.hub.connections[number] = self


class BareClient(Int32StringReceiver):
    def __init__(self, number: int, tally: Tally) -> None:
        self.number, self.tally = number, tally

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.sendString(_ACK.pack(b"H", self.number))

    def stringReceived(self, data: bytes) -> None:
        kind, ackID, member = _NOTICE.unpack_from(data)
        if kind == b"J":
            self.tally.joined(self.number, member, BARE_GROUP)
            if ackID:
                self.sendString(_ACK.pack(b"A", ackID))
        else:
            self.tally.left(self.number, member, BARE_GROUP)


class BareHub:
    """The bare server's whole state: connections and the acks each join waits for."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.connections = {}
        self.pending = {}           # ackID -> [member, acks still to come]
        self.lastAckID = 0
        self.listening = None
        self.clients = []

    def _ackID(self, member: int, waiting: int) -> int:
        self.lastAckID += 1
        self.pending[self.lastAckID] = [member, waiting]
        return self.lastAckID

    def acked(self, ackID: int) -> None:
        entry = self.pending[ackID]
        entry[1] -= 1
        if not entry[1]:
            del self.pending[ackID]
            self.tally.completed(BARE_GROUP, entry[0])

    def join(self, to: int, member: int, ackID: int) -> None:
        self.connections[to].sendString(_NOTICE.pack(b"J", ackID, member) + JOIN_PAD)

    def leave(self, to: int, member: int) -> None:
        self.connections[to].sendString(_NOTICE.pack(b"L", 0, member) + LEAVE_PAD)

    def form(self, members: list) -> None:
        ackIDs = {m: self._ackID(m, len(members)) for m in members}
        for receiver in members:
            for member in members:
                self.join(receiver, member, ackIDs[member])

    def destroy(self, members: list) -> None:
        self.pending.clear()
        for receiver in members:
            for member in members:
                self.leave(receiver, member)

    def churn(self, remaining: list, leaver: int, joiner: int) -> None:
        for receiver in remaining:
            self.leave(receiver, leaver)
        for other in remaining:
            self.leave(leaver, other)
        self.leave(leaver, leaver)
        for other in remaining:
            self.join(joiner, other, 0)
        ackID = self._ackID(joiner, len(remaining) + 1)
        for receiver in remaining:
            self.join(receiver, joiner, ackID)
        self.join(joiner, joiner, ackID)


async def startBare(reactor, budget: Budget, ids: list) -> BareHub:
    """A bare server and one bare client per HostID of ours (the same numbers)."""
    hub = BareHub(Tally("baseline"))
    factory = Factory.forProtocol(BareServerSide)
    factory.hub = hub
    hub.listening = reactor.listenTCP(0, factory, interface=LOOPBACK)
    port = hub.listening.getHost().port
    try:
        for number in ids:
            connector = reactor.connectTCP(LOOPBACK, port, ClientFactory.forProtocol(
                lambda number=number: BareClient(number, hub.tally)))
            hub.clients.append(connector)
        await budget.until(lambda: len(hub.connections) == len(ids), STEP_WAIT,
                           "every bare client to connect")
    except BaseException:
        await stopBare(hub)
        raise
    return hub


async def stopBare(hub: BareHub) -> None:
    for connector in hub.clients:
        connector.disconnect()
    await defer.maybeDeferred(hub.listening.stopListening)


async def formBare(hub: BareHub, budget: Budget, members: list) -> tuple:
    hub.tally.expect(BARE_GROUP, *formationEvents(members))
    cpu = cpuClock()
    start = clock()
    hub.form(members)
    end = await hub.tally.wait(budget, f"{len(members)} members' join acks")
    return BARE_GROUP, end - start, cpuClock() - cpu


async def destroyBare(hub: BareHub, budget: Budget, members: list) -> None:
    hub.tally.expect(BARE_GROUP, *destroyEvents(members))
    hub.destroy(members)
    await hub.tally.wait(budget, "every leave notice of a destroyed group")


async def churnBare(hub: BareHub, budget: Budget, members, outside) -> tuple:
    leaver, joiner = members.popleft(), outside.popleft()
    remaining = list(members)
    hub.tally.expect(BARE_GROUP, *churnEvents(remaining, leaver, joiner))
    cpu = cpuClock()
    start = clock()
    hub.churn(remaining, leaver, joiner)
    end = await hub.tally.wait(budget, f"step: {leaver} leaves, {joiner} joins")
    members.append(joiner)
    outside.append(leaver)
    return end - start, cpuClock() - cpu


# The two parts

async def formationPart(world: World, hub: BareHub, budget: Budget, args,
                        profile: Profile) -> dict:
    members = [hostID for _, _, hostID in world.clients[:args.group_size]]
    times = {"ours": [], "bare": []}
    cpu = {"ours": 0.0, "bare": 0.0}
    for number in range(WARMUP_ROUNDS + args.rounds):
        timed = number >= WARMUP_ROUNDS
        order = ("ours", "bare") if number % 2 == 0 else ("bare", "ours")
        for side in order:
            if side == "ours":
                group, seconds, used = await formOurs(
                    world, budget, members, profile if timed else _common.NO_PROFILE)
                await destroyOurs(world, budget, group, members)
            else:
                _, seconds, used = await formBare(hub, budget, members)
                await destroyBare(hub, budget, members)
            if timed:
                times[side].append(seconds)
                cpu[side] += used
        world.checkHandlers()
    return {"times": times, "cpu": cpu}


async def churnPart(world: World, hub: BareHub, budget: Budget, args,
                    profile: Profile) -> dict:
    ids = [hostID for _, _, hostID in world.clients]
    G = args.group_size
    queues = {side: (collections.deque(ids[:G]), collections.deque(ids[G:]))
              for side in ("ours", "bare")}
    group, _, _ = await formOurs(world, budget, ids[:G], _common.NO_PROFILE)
    await formBare(hub, budget, ids[:G])
    for _ in range(WARMUP_STEPS):
        await churnOurs(world, budget, group, *queues["ours"], _common.NO_PROFILE)
        await churnBare(hub, budget, *queues["bare"])
    times = {"ours": [], "bare": []}
    cpu = {"ours": 0.0, "bare": 0.0}
    blocks = min(CHURN_BLOCKS, args.steps)
    for block in range(blocks):
        count = args.steps // blocks + (block < args.steps % blocks)
        for side in (("ours", "bare") if block % 2 == 0 else ("bare", "ours")):
            for _ in range(count):
                if side == "ours":
                    seconds, used = await churnOurs(world, budget, group, *queues["ours"],
                                                    profile)
                else:
                    seconds, used = await churnBare(hub, budget, *queues["bare"])
                times[side].append(seconds)
                cpu[side] += used
        world.checkHandlers()
    await destroyOurs(world, budget, group, list(queues["ours"][0]))
    await destroyBare(hub, budget, list(queues["bare"][0]))
    return {"times": times, "cpu": cpu}


# Output

def line(label: str, times: list, cpu: float) -> str:
    med, p90 = statistics.median(times), _common.percentile(times, 0.9)
    return (f"  {label:9s} median {ms(med):>10s}  p90 {ms(p90):>10s}  min {ms(min(times))}"
            f"  max {ms(max(times))}  (n={len(times)}; wall {sum(times):.3f} s,"
            f" CPU {cpu:.3f} s)")


def printProfile(title: str, profile: Profile, top: int) -> None:
    if profile.enabled:
        print(f"==== profile, {title} (ours only; server and clients together) ====")
        profile.print(top=top)


async def run(reactor, args) -> None:
    budget = Budget(reactor, args.deadline)
    G = args.group_size
    noticesPerStep = 2 * (2 * G - 1)
    print(f"P2P group formation and churn on loopback ({type(reactor).__name__}),"
          f" encryption {'OFF' if args.no_encryption else 'ON'}: {args.clients} clients,"
          f" groups of {G}; (a) {args.rounds} formations ({G * G} join notices and acks"
          f" each), (b) {args.steps} churn steps ({noticesPerStep} notices and {G} acks"
          " each), alternating with the bare Twisted TCP baseline")
    profiles = {"formation": Profile(args.profile),
                "churn": Profile(args.profile)}
    world = hub = None
    try:
        setupStart = clock()
        world = await startWorld(reactor, budget, args)
        hub = await startBare(reactor, budget, [h for _, _, h in world.clients])
        print(f"  {args.clients} clients joined, UDP confirmed, bare clients connected in"
              f" {clock() - setupStart:.2f} s")
        formation = await formationPart(world, hub, budget, args, profiles["formation"])
        churn = await churnPart(world, hub, budget, args, profiles["churn"])
        world.checkHandlers()
        world.tally.checkStray()
        hub.tally.checkStray()
    finally:
        if hub is not None:
            await stopBare(hub)
        if world is not None:
            await stopWorld(world)

    for title, profile in profiles.items():
        printProfile(title, profile, args.profile_top)
    if args.profile:
        print("(figures below measured under cProfile: ours is slowed, the baseline not)")

    fo, fb = formation["times"]["ours"], formation["times"]["bare"]
    co, cb = churn["times"]["ours"], churn["times"]["bare"]
    print("(a) createP2PGroup to every member's onP2PGroupJoinMemberAckComplete:")
    print(line("ours", fo, formation["cpu"]["ours"]))
    print(line("baseline", fb, formation["cpu"]["bare"]))
    print("(b) leaveP2PGroup + joinP2PGroup to the joiner's ack-complete and every leave"
          " event:")
    print(line("ours", co, churn["cpu"]["ours"]))
    print(line("baseline", cb, churn["cpu"]["bare"]))
    bare = "bare Twisted TCP, same notices and acks"
    fMed, fbMed = statistics.median(fo), statistics.median(fb)
    report(f"group formation of {G}, median (information)", fMed * 1e3,
           fbMed * 1e3, "ms", bare)
    report("formation per member join notice, median (information)",
           fMed / (G * G) * 1e6, fbMed / (G * G) * 1e6, "us", bare)
    report("churn step, median (information)", statistics.median(co) * 1e6,
           statistics.median(cb) * 1e6, "us", bare)
    report("churn steps per second, higher is better (information)",
           len(co) / sum(co), len(cb) / sum(cb), "steps/s", bare)


def main() -> int:
    _common.printCore()
    parser = _common.scriptParser(__doc__)
    _common.addGroupOptions(parser, 50, "the group; at most --clients - 1")
    parser.add_argument("--rounds", type=int, default=20,
                        help=f"timed group formations, after {WARMUP_ROUNDS} untimed"
                             " (default 20)")
    parser.add_argument("--steps", type=int, default=200,
                        help=f"timed churn steps, after {WARMUP_STEPS} untimed (default 200)")
    _common.addTimeout(parser, 120.0)
    _common.addProfile(parser, "our measured operations (formation and churn apart) and"
                               " print the top functions")
    args = parser.parse_args()
    if args.clients < 3 or args.group_size < 2 or args.group_size > args.clients - 1:
        parser.error("need --clients >= 3 and 2 <= --group-size <= --clients - 1"
                     " (churn needs a client outside the group)")
    if args.rounds < 1 or args.steps < 1 or args.timeout <= 0 or args.profile_top < 1:
        parser.error("--rounds, --steps and --profile-top must be >= 1 and --timeout > 0")
    return _common.runUntilDeadline(run, args, grace=5.0)


if __name__ == "__main__":
    sys.exit(main())
