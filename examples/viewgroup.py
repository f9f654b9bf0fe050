"""View groups, the MMORPG case: players see only the characters near them.

A server and N simulated players run in one process on loopback. The
characters wander over a 2-D map; whenever two of them come within the view
radius of each other, the server puts the pair into a P2P group, and when
they walk apart it takes them out again, so P2P pairs form and part all the
time. The players send their positions to everyone they see, peer to peer,
"latest only" (an older position is never delivered after a newer one), and
chat lines to the same players, reliably: both are remote methods of
C{ViewMessages}, declared once below, called on a proxy (C{player.say}) and
run by each receiver's stub (C{Hearing}). Every second one line reports what
happened; ``--svg FILE`` draws the map at the end.

    python examples/viewgroup.py --players 50 --seconds 5 --svg map.svg

How view groups map to P2P groups. ProudNet's guide on large game worlds
syncs each character only with the characters in its sight, through P2P
groups that the server alone changes as characters come into and leave
sight; members of one group all talk to each other. This example gives
each pair in view a group of two (``createP2PGroup([a, b])`` when they come
into view, ``destroyP2PGroup`` when they part), so the P2P pairs are exactly
the pairs in view. One group per character holding everyone who sees it
would pair up its viewers too, even two at opposite edges of its view who
cannot see each other: about as many pairs again for nothing. A pair comes
into view at the radius and leaves it 10 % further out, so two characters
walking along the edge do not join and part on every tick.

The server decides who may talk to whom: a player can send only to players
it shares a group with. One player here is a cheater: every second it sends
a position to a player far out of its view, and the server must refuse each
one (the report's ``refused`` equals its ``cheats``), while no player ever
hears from someone it does not share a group with (``intrusions``).

Some players (``--relay-only``, a fifth by default) are treated as behind a
NAT no hole punch gets through: their pairs stay on the server relay. The
others start relayed and go direct once punched.

Each line of the report, every second:

- ``ticks``: moves made that second (10 unless the machine cannot keep up:
  a tick that comes late is not made up, so positions and lines get fewer);
- ``joins`` / ``leaves``: members the server put into and took out of groups;
- ``pairs``, ``direct``, ``relayed``: the P2P pairs now and how they talk;
- ``relayed_bytes``: bytes the server relayed between peers that second;
- ``positions``: position updates received; ``chat``: chat lines received;
- ``lost``, ``duplicated``, ``reordered``: reliable chat lines the framework
  lost, delivered twice or out of order (all must stay 0; each sender numbers
  its lines, each receiver checks them; a line still in flight when its pair
  parted may be dropped with the pair and counts as ``dropped_at_parting``);
- ``stale``: positions older than one already received from the same
  player ("latest only" promises none: must stay 0);
- ``cheats``, ``refused``, ``intrusions``: as above.

The last line, ``total ...``, sums the run after the players stopped moving
and every line still owed was delivered; the exit status is 1 if anything
was lost, duplicated, reordered, stale or let through.
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task

from _viewgroup_ledger import DeliveryLedger
from _viewgroup_svg import PairLine, PlayerMark, renderMap
from _viewgroup_world import ViewTracker, WorldMap, mapSide
from proud_twisted import (
    HackKind,
    NetClient,
    NetClientEvents,
    NetServer,
    NetServerEvents,
)
from proud_twisted.rmi import RemoteInterface

VERSION = uuid.UUID("0f6b2c1e-3d7a-4f58-9b21-6c4e8a1d2f70")
VIEW_RADIUS = 100.0
WALKING_SPEED = 40.0            # map units a second, on average
TICK = 0.1                      # seconds between moves (and view updates)
POSITION_TICKS = 2              # a player sends its position every 2 ticks: 5 a second
CHAT_TICKS = 10                 # and says a line every 10 ticks: once a second
POSITION_KEY = 1                # the "latest only" key (and channel) of positions
CONNECT_BATCH = 32              # players joining at once
JOIN_TIMEOUT = 30.0
SETTLE_TIMEOUT = 10.0           # for the lines still owed at the end
POLL = 0.05


class ViewMessages(RemoteInterface, firstID=7000):
    """What players say to the players they see (IDs 7000 and 7001)."""

    def position(self, x: float, y: float, tick: int) -> None:
        """Where the sender's character is (sent "latest only")."""

    def chat(self, seq: int, text: str) -> None:
        """A chat line, numbered by its sender from 1 (sent reliably)."""


@dataclass
class Counters:
    """What happened since the last report (or, for the run, since the start)."""

    joins: int = 0
    leaves: int = 0
    positions: int = 0
    chat: int = 0
    cheats: int = 0
    intrusions: int = 0
    stale: int = 0
    garbage: int = 0


class ViewServer(NetServerEvents):
    """The game server: moves the characters and keeps a P2P group per pair in view."""

    def __init__(self, world: WorldMap, radius: float, relayOnly: set[str],
                 counters: Counters) -> None:
        self.world = world
        self.tracker = ViewTracker(radius)
        self.relayOnly = relayOnly
        self.counters = counters
        self.server: NetServer | None = None
        self.hostIDs: dict[str, int] = {}       # player name -> HostID
        self.players: list[str] = []            # character index -> player name
        self.groups: dict[tuple[int, int], int] = {}
        self.hackReports = 0

    def onClientJoin(self, clientInfo):
        self.hostIDs[clientInfo.userData.decode("utf-8")] = clientInfo.hostID

    def onClientHackSuspected(self, hostID, kind):
        if kind is HackKind.RELAY_NOT_ALLOWED:
            self.hackReports += 1

    def tick(self, seconds: float) -> None:
        """Move everyone on by C{seconds}, then follow who came into view and who left it."""
        self.world.step(seconds)
        entered, left = self.tracker.update(self.world.positions())
        server, names, hostIDs = self.server, self.players, self.hostIDs
        for pair in left:
            server.destroyP2PGroup(self.groups.pop(pair))
            self.counters.leaves += 2
        for pair in entered:
            a, b = names[pair[0]], names[pair[1]]
            direct = a not in self.relayOnly and b not in self.relayOnly
            self.groups[pair] = server.createP2PGroup([hostIDs[a], hostIDs[b]],
                                                      allowDirectP2P=direct)
            self.counters.joins += 2


class Player(NetClientEvents):
    """A simulated player: sends where its character is to everyone it sees,
    says a numbered line to them now and then, and checks what it hears."""

    def __init__(self, name: str, index: int, world: WorldMap, ledger: DeliveryLedger,
                 counters: Counters) -> None:
        self.name = name
        self.index = index
        self.world = world
        self.ledger = ledger
        self.counters = counters
        self.client: NetClient | None = None
        self.hostID = 0
        self.seq = 0
        self.say: Any = None                # the proxy of ViewMessages
        self.latestTick: dict[int, int] = {}    # sender -> newest position's tick

    def connect(self, port: int, reactor) -> defer.Deferred:
        self.client = NetClient(self, reactor=reactor)
        self.say = self.client.attachProxy(ViewMessages)
        self.client.attachStub(Hearing(self))
        d = self.client.connect("127.0.0.1", port, VERSION, self.name.encode("utf-8"))
        return d.addCallback(self._joined)

    def _joined(self, hostID: int) -> int:
        self.hostID = hostID
        return hostID

    def sendPosition(self, tick: int) -> None:
        peers = self.client.getPeerHostIDs()
        if peers:
            c = self.world.characters[self.index]
            self.say.position(peers, c.x, c.y, tick, latestOnly=POSITION_KEY)

    def sayLine(self) -> None:
        peers = self.client.getPeerHostIDs()
        if peers:
            self.seq += 1
            self.say.chat(peers, self.seq, f"{self.name} says hello")
            self.ledger.sent(self.hostID, self.seq, peers)

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        if memberHostID != self.hostID:
            self.ledger.parted(self.hostID, memberHostID)

    def onReceiveUserMessage(self, sender, payload, context):
        self.counters.garbage += 1          # every message here is RMI

    def onNoRmiProcessed(self, rmiID, context):
        self.counters.garbage += 1

    def checkLatest(self, sender: int, tick: int) -> None:
        """A position sent "latest only" is never older than one already had."""
        if tick <= self.latestTick.get(sender, -1):
            self.counters.stale += 1
        else:
            self.latestTick[sender] = tick


class Hearing(ViewMessages.Stub):
    """What a player hears; anything from a host it shares no group with is
    an intrusion (the server must never let one through)."""

    def __init__(self, player: Player) -> None:
        self.player = player

    def _fromPeer(self, sender: int) -> bool:
        if sender in self.player.client.getPeerHostIDs():
            return True
        self.player.counters.intrusions += 1
        return False

    def position(self, context, x, y, tick):
        if self._fromPeer(context.sender):
            self.player.counters.positions += 1
            self.player.checkLatest(context.sender, tick)

    def chat(self, context, seq, text):
        if self._fromPeer(context.sender):
            self.player.counters.chat += 1
            self.player.ledger.received(context.sender, self.player.hostID, seq)


class Cheater(Player):
    """A player with a hacked client: it also sends positions to players it
    has never shared a group with."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.everSeen: set[int] = set()
        self.victims: list[int] = []        # every player's HostID, set by the game

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        self.everSeen.add(memberHostID)

    def cheat(self, tick: int) -> None:
        """Send a position to a stranger, if any is left."""
        for victim in self.victims:
            if victim != self.hostID and victim not in self.everSeen:
                c = self.world.characters[self.index]
                self.say.position(victim, c.x, c.y, tick, latestOnly=POSITION_KEY)
                self.counters.cheats += 1
                return


def until(reactor, predicate, timeout: float) -> defer.Deferred:
    """A Deferred firing with True once C{predicate()} holds, or False after C{timeout}."""
    d: defer.Deferred = defer.Deferred()
    start = reactor.seconds()

    def check():
        if predicate():
            poll.stop()
            d.callback(True)
        elif reactor.seconds() - start > timeout:
            poll.stop()
            d.callback(False)

    poll = task.LoopingCall(check)
    poll.clock = reactor
    poll.start(POLL)
    return d


class Game:
    """The whole run: a server, the players, the clock that drives them, the report."""

    def __init__(self, reactor, players: int, seconds: float, relayOnly: float,
                 cheater: bool, seed: int, svg: str | None = None, out=sys.stdout) -> None:
        self.reactor = reactor
        self.seconds = seconds
        self.svg = svg
        self.out = out
        self.counters = Counters()
        self.total = Counters()
        self.ledger = DeliveryLedger()
        self.side = mapSide(players, VIEW_RADIUS)
        self.world = WorldMap(players, self.side, WALKING_SPEED, seed)
        self.names = [f"p{i:03d}" for i in range(players)]
        self.relayOnly = set(random.Random(seed).sample(self.names,
                                                        round(relayOnly * players)))
        self.events = ViewServer(self.world, VIEW_RADIUS, self.relayOnly, self.counters)
        self.events.players = self.names
        self.server = NetServer(self.events, VERSION, interface="127.0.0.1", reactor=reactor)
        self.events.server = self.server
        self.players = [
            (Cheater if cheater and i == 0 else Player)(
                name, i, self.world, self.ledger, self.counters)
            for i, name in enumerate(self.names)]
        self.ticks = 0
        self.started = self.lastTick = 0.0
        self.reported = 0               # seconds reported
        self.lastTicks = 0
        self._ticker: task.LoopingCall | None = None
        self.lastRelayBytes = 0
        self.lastRejected = 0

    @defer.inlineCallbacks
    def run(self):
        """Join everyone, play for the given seconds, settle, report; the exit status."""
        self.server.startService()
        port = self.server.getTcpAddress()[1]
        try:
            for start in range(0, len(self.players), CONNECT_BATCH):
                batch = self.players[start:start + CONNECT_BATCH]
                yield defer.gatherResults([p.connect(port, self.reactor) for p in batch],
                                          consumeErrors=True)
            hostIDs = [p.hostID for p in self.players]
            for player in self.players:
                if isinstance(player, Cheater):
                    player.victims = hostIDs
            self.lastRelayBytes = self.server.stats.relayBytes
            self.lastRejected = self.server.stats.relayRejected
            yield self.play()
            status = yield self.settle()
            if self.svg:
                with open(self.svg, "w", encoding="utf-8") as out:
                    out.write(self.picture())
                print(f"svg {self.svg}", file=self.out, flush=True)
        finally:
            yield defer.gatherResults([p.client.disconnect() for p in self.players
                                       if p.client is not None], consumeErrors=True)
            yield self.server.stopService()
        return status

    def play(self) -> defer.Deferred:
        """Tick until the given seconds have passed, reporting every second."""
        self.started = self.lastTick = self.reactor.seconds()
        self._ticker = task.LoopingCall(self.tick)
        self._ticker.clock = self.reactor
        return self._ticker.start(TICK, now=False)

    def tick(self) -> None:
        now = self.reactor.seconds()
        self.ticks += 1
        self.events.tick(now - self.lastTick)
        self.lastTick = now
        for player in self.players:
            phase = self.ticks + player.index
            if phase % POSITION_TICKS == 0:
                player.sendPosition(self.ticks)
            if phase % CHAT_TICKS == 0:
                player.sayLine()
                if isinstance(player, Cheater):
                    player.cheat(self.ticks)
        # A tick a little early (the clock's rounding) still closes its second.
        if now - self.started >= self.reported + 1 - TICK / 2:
            self.reported += 1
            self.report()
            if self.reported >= self.seconds:
                self._ticker.stop()

    def pairs(self) -> dict[tuple[int, int], bool]:
        """Every P2P pair the players have now: whether it is direct (both ends say so)."""
        byHostID = {p.hostID: p for p in self.players}
        found: dict[tuple[int, int], bool] = {}
        for player in self.players:
            for peer in player.client.getPeerHostIDs():
                key = (min(player.hostID, peer), max(player.hostID, peer))
                direct = not player.client.getPeerInfo(peer).relayed
                found[key] = found.get(key, True) and direct and peer in byHostID
        return found

    def _takeCounters(self) -> Counters:
        """The counters since the last call (added to the run's total), reset."""
        taken = self.counters
        for name, value in vars(taken).items():
            setattr(self.total, name, getattr(self.total, name) + value)
        self.counters = self.events.counters = Counters()
        for player in self.players:
            player.counters = self.counters
        return taken

    def report(self) -> None:
        """One line: the second just past."""
        pairs = self.pairs()
        direct = sum(pairs.values())
        stats = self.server.stats
        counts = self.ledger.counts()
        c = self._takeCounters()
        relayed, self.lastRelayBytes = stats.relayBytes - self.lastRelayBytes, stats.relayBytes
        refused, self.lastRejected = stats.relayRejected - self.lastRejected, stats.relayRejected
        ticks, self.lastTicks = self.ticks - self.lastTicks, self.ticks
        fields = {
            "t": self.reported, "ticks": ticks, "players": len(self.players),
            "pairs": len(pairs), "direct": direct, "relayed": len(pairs) - direct,
            "joins": c.joins, "leaves": c.leaves, "relayed_bytes": relayed,
            "positions": c.positions, "chat": c.chat, "lost": counts.lost,
            "duplicated": counts.duplicated, "reordered": counts.reordered,
            "stale": c.stale, "cheats": c.cheats, "refused": refused,
            "intrusions": c.intrusions,
        }
        print(" ".join(f"{k}={v}" for k, v in fields.items()), file=self.out, flush=True)

    @defer.inlineCallbacks
    def settle(self):
        """Stop moving; wait for every chat line still owed; the final report."""
        settled = yield until(self.reactor, lambda: self.ledger.counts().pending == 0,
                              SETTLE_TIMEOUT)
        yield until(self.reactor,
                    lambda: self.server.stats.relayRejected - self.lastRejected
                    >= self.counters.cheats, SETTLE_TIMEOUT)
        self._takeCounters()
        counts = self.ledger.counts(final=True)
        t = self.total
        stats = self.server.stats
        pairs = self.pairs()
        print(f"total seconds={self.seconds:g} players={len(self.players)} "
              f"joins={t.joins} leaves={t.leaves} pairs={len(pairs)} "
              f"direct={sum(pairs.values())} relayed_bytes={stats.relayBytes} "
              f"positions={t.positions} chat_sent={counts.sent} chat={counts.received} "
              f"lost={counts.lost} duplicated={counts.duplicated} "
              f"reordered={counts.reordered} dropped_at_parting={counts.droppedAtParting} "
              f"stale={t.stale} "
              f"cheats={t.cheats} refused={stats.relayRejected} "
              f"hack_reports={self.events.hackReports} intrusions={t.intrusions} "
              f"settled={'yes' if settled else 'no'}", file=self.out, flush=True)
        ok = (counts.broken == 0 and t.intrusions == 0 and t.stale == 0 and t.garbage == 0
              and stats.relayRejected == t.cheats)
        return 0 if ok else 1

    def picture(self) -> str:
        names = {p.hostID: p.name for p in self.players}
        marks = [PlayerMark(p.name, c.x, c.y, p.name in self.relayOnly, isinstance(p, Cheater))
                 for p, c in zip(self.players, self.world.characters, strict=True)]
        lines = [PairLine(names[a], names[b], direct) for (a, b), direct in
                 sorted(self.pairs().items()) if a in names and b in names]
        return renderMap(self.side, VIEW_RADIUS, marks, lines,
                         title=f"{len(self.players)} players after {self.seconds:g} s")


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=50, help="simulated players (50)")
    parser.add_argument("--seconds", type=int, default=10,
                        help="seconds of play before the final count (10)")
    parser.add_argument("--svg", metavar="FILE", help="draw the map at the end into FILE")
    parser.add_argument("--relay-only", type=float, default=0.2, metavar="FRACTION",
                        help="share of players whose pairs stay relayed (0.2)")
    parser.add_argument("--no-cheater", dest="cheater", action="store_false",
                        help="leave out the player who sends to strangers")
    parser.add_argument("--seed", type=int, default=1, help="for the map and the walks (1)")
    args = parser.parse_args(argv)
    if args.players < 2:
        parser.error("--players: at least 2")
    if not 0.0 <= args.relay_only <= 1.0:
        parser.error("--relay-only: a fraction from 0 to 1")
    if args.seconds <= 0:
        parser.error("--seconds: more than 0")
    return args


def main(reactor, *argv):
    args = parseArguments(argv)
    game = Game(reactor, args.players, args.seconds, args.relay_only, args.cheater,
                args.seed, svg=args.svg)
    timeout = args.seconds + JOIN_TIMEOUT + 2 * SETTLE_TIMEOUT + 10
    d = game.run().addTimeout(timeout, reactor)
    return d.addCallback(lambda status: sys.exit(status) if status else None)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
