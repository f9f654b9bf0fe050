"""
The memory network: hosts, NAT boxes, paths and their conditions, one clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from twisted.internet.abstract import isIPAddress
from twisted.logger import Logger

from .conditions import LinkConditions, NATType, NetworkStats
from .host import HostReactor
from .nat import NATBox
from .scheduler import EventQueue, NetworkClock

Address = tuple[str, int]
Node = HostReactor | NATBox

_PERFECT = LinkConditions()


@dataclass
class Route:
    """
    Where a packet or connection from one host to one address goes.

    C{source} is the sender as the receiver sees it (after NAT).
    C{srcNodes}/C{dstNodes} name the two ends, most specific first, for
    looking up conditions.  C{node} is the host or NAT the address leads to;
    C{host} is the receiving host when known without NAT translation.
    C{dropped} is why the packet goes nowhere, or C{None}.
    """

    source: Address
    destination: Address
    srcNodes: tuple[Node, ...]
    dstNodes: tuple[Node, ...] = ()
    node: Node | None = None
    host: HostReactor | None = None
    dropped: str | None = None
    natPort: tuple[NATBox, int] | None = None


class MemoryNetwork:
    """
    An in-memory internet of hosts and NATs on one clock, C{clock} (a
    L{twisted.internet.task.Clock}).

    All randomness (loss, jitter, symmetric NAT ports) comes from C{seed},
    so a run is reproducible.  Drive time with L{advance} or L{runUntil}
    (C{clock.advance} works too, but runs everything due in one step at the
    end time; L{advance} stops at each event's own time).
    """

    log = Logger()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.clock = NetworkClock()
        self.random = Random(seed)
        self.stats = NetworkStats()
        self._events = EventQueue(self.clock)
        self._public: dict[str, Node] = {}
        self._nats: list[NATBox] = []
        self._default = _PERFECT
        self._conditions: dict[tuple[Node, Node], LinkConditions] = {}
        self._partitions: dict[tuple[Node, Node], None] = {}
        self._fifo: dict[tuple, float] = {}
        self._stalled: dict = {}

    # Topology

    def addHost(self, ip: str) -> HostReactor:
        """
        Add a host with public address C{ip}; return its reactor.
        """
        return self._addHost(ip, None)

    def _addHost(self, ip: str, nat: NATBox | None) -> HostReactor:
        self._checkIP(ip, nat.hosts if nat is not None else self._public)
        host = HostReactor(self, ip, nat)
        if nat is None:
            self._public[ip] = host
        else:
            nat.hosts[ip] = host
        return host

    def addNAT(self, ip: str, natType: NATType = NATType.PORT_RESTRICTED,
               mappingTimeout: float | None = 120.0) -> NATBox:
        """
        Add a NAT box with public address C{ip}; add hosts behind it with
        its C{addHost}.
        """
        self._checkIP(ip, self._public)
        nat = NATBox(self, ip, natType, mappingTimeout, Random(f"{self.seed}/nat/{ip}"))
        self._public[ip] = nat
        self._nats.append(nat)
        return nat

    @staticmethod
    def _checkIP(ip: str, taken: dict) -> None:
        if not isIPAddress(ip) or ip.startswith("127.") or ip == "0.0.0.0":
            raise ValueError(f"not a usable IPv4 host address: {ip!r}")
        if ip in taken:
            raise ValueError(f"address {ip} is already in use")

    def _node(self, which: Node | str) -> Node:
        if isinstance(which, (HostReactor, NATBox)):
            return which
        if which in self._public:
            return self._public[which]
        found = [nat.hosts[which] for nat in self._nats if which in nat.hosts]
        if len(found) == 1:
            return found[0]
        what = "unknown" if not found else "ambiguous (on several LANs)"
        raise ValueError(f"address {which!r} is {what}")

    # Conditions

    def setDefaultConditions(self, conditions: LinkConditions) -> None:
        """
        Conditions for every path without its own.
        """
        self._default = conditions
        self._conditionsChanged()

    def setConditions(self, src: Node | str, dst: Node | str,
                      conditions: LinkConditions | None) -> None:
        """
        Conditions for the path from C{src} to C{dst} (one direction), each
        a host, a NAT or an address; C{None} goes back to the default.

        A host's own setting wins over its NAT's.
        """
        key = (self._node(src), self._node(dst))
        if conditions is None:
            self._conditions.pop(key, None)
        else:
            self._conditions[key] = conditions
        self._conditionsChanged()

    def partition(self, a: Node | str, b: Node | str) -> None:
        """
        Block both directions between C{a} and C{b} (whatever their
        conditions) until L{heal}.
        """
        a, b = self._node(a), self._node(b)
        self._partitions[(a, b)] = self._partitions[(b, a)] = None

    def heal(self, a: Node | str, b: Node | str) -> None:
        """
        Undo L{partition}.
        """
        a, b = self._node(a), self._node(b)
        self._partitions.pop((a, b), None)
        self._partitions.pop((b, a), None)
        self._conditionsChanged()

    def _conditionsChanged(self) -> None:
        for pipe in list(self._stalled):
            if pipe.wake():
                del self._stalled[pipe]

    def _linkState(self, route: Route, reverse: bool = False
                   ) -> tuple[LinkConditions, bool]:
        """
        The conditions of a route (or its way back) and whether it is blocked.
        """
        src, dst = route.srcNodes, route.dstNodes
        if not src:
            return _PERFECT, False  # loopback
        if reverse:
            src, dst = dst, src
        conditions = None
        blocked = False
        for s in src:
            for d in dst:
                if conditions is None:
                    conditions = self._conditions.get((s, d))
                if self._partitions and (s, d) in self._partitions:
                    blocked = True
        if conditions is None:
            conditions = self._default
        return conditions, blocked or conditions.blocked

    # Routing

    def _route(self, host: HostReactor, srcPort: int, destination: Address,
               kind: str) -> Route:
        dstIP = destination[0]
        if dstIP == host.ip or dstIP.startswith("127."):
            source = (dstIP, srcPort)
            return Route(source, destination, (), (), host, host)
        nat = host.nat
        if nat is not None:
            if dstIP in nat.hosts:
                peer = nat.hosts[dstIP]
                return Route((host.ip, srcPort), destination, (host,), (peer,),
                             peer, peer)
            if dstIP == nat.ip:
                return Route((host.ip, srcPort), destination, (host, nat),
                             dropped="hairpin")
            inside = (host.ip, srcPort)
            natPort = None
            if kind == "udp":
                publicPort = nat._outboundUDP(inside, destination,
                                              self.clock.seconds())
            else:
                publicPort = nat._openTCP(inside)
                natPort = (nat, publicPort)
            route = Route((nat.ip, publicPort), destination, (host, nat),
                          natPort=natPort)
        else:
            route = Route((host.ip, srcPort), destination, (host,))
        node = self._public.get(dstIP)
        if node is None:
            route.dropped = "unroutable"
        elif isinstance(node, NATBox):
            inner = node._peekUDP(destination[1]) if kind == "udp" else None
            route.dstNodes = (inner, node) if inner is not None else (node,)
        else:
            route.dstNodes = (node,)
            route.host = node
        route.node = node
        return route

    # UDP

    def _sendUDP(self, host: HostReactor, srcPort: int, destination: Address,
                 data: bytes) -> None:
        stats = self.stats
        stats["udp.sent"] += 1
        route = self._route(host, srcPort, destination, "udp")
        if route.dropped is not None:
            stats.drop("udp", route.dropped)
            return
        conditions, blocked = self._linkState(route)
        if blocked:
            stats.drop("udp", "blocked")
            return
        rng = self.random
        if conditions.loss and rng.random() < conditions.loss:
            stats.drop("udp", "loss")
            return
        copies = 1
        if conditions.duplicate and rng.random() < conditions.duplicate:
            stats["udp.duplicated"] += 1
            copies = 2
        now = self.clock.seconds()
        fifoKey = (route.srcNodes[:1], route.node, destination)
        for _ in range(copies):
            when = now + conditions.sampleDelay(rng)
            if conditions.reorder and rng.random() < conditions.reorder:
                stats["udp.reordered"] += 1
                when += conditions.reorderDelay
            else:
                when = max(when, self._fifo.get(fifoKey, when))
                self._fifo[fifoKey] = when
            self._events.at(when, self._arriveUDP, route, data)
        if len(self._fifo) > 4096:
            self._fifo = {k: t for k, t in self._fifo.items() if t > now}

    def _arriveUDP(self, route: Route, data: bytes) -> None:
        node = route.node
        port = route.destination[1]
        if isinstance(node, NATBox):
            inside = node._inboundUDP(route.source, port, self.clock.seconds())
            if inside is None:
                self.stats.drop("udp", "filtered")
                return
            node = node.hosts.get(inside[0])
            port = inside[1]
        udpPort = node._udpPort(port) if node is not None else None
        if udpPort is None or not udpPort._accepts(route.source):
            self.stats.drop("udp", "noListener")
            return
        self.stats["udp.delivered"] += 1
        udpPort._deliver(data, route.source)

    # Time

    @property
    def pending(self) -> int:
        """
        How many deliveries are in flight (stalled TCP not counted).
        """
        return len(self._events)

    def advance(self, seconds: float) -> None:
        """
        Move the clock on by C{seconds}, stopping at each delayed call's
        time so that every callback sees its own time.
        """
        self._runTo(self.clock.seconds() + seconds, None)

    def runUntil(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """
        Advance until C{predicate()} is true (checked after every step) or
        C{timeout} virtual seconds have passed; return the last result.
        """
        return self._runTo(self.clock.seconds() + timeout, predicate)

    #: Steps at one instant before L{advance} declares a livelock.
    maxStepsPerInstant = 100_000

    def _runTo(self, end: float, predicate: Callable[[], bool] | None) -> bool:
        clock, events = self.clock, self._events
        if predicate is not None and predicate():
            return True
        stuck = 0
        while True:
            now = clock.rightNow
            userTime = clock.nextTime(ignore=events.timer)
            netTime = events.nextTime()
            if netTime is not None and (userTime is None or netTime <= userTime):
                if netTime > end:
                    break
                # Our own events need no trip through the clock's calls.
                clock.rightNow = max(now, netTime)
                events.runDue(clock.rightNow)
            elif userTime is not None and userTime <= end:
                clock.advance(max(0.0, userTime - now))
            else:
                break
            stuck = stuck + 1 if clock.rightNow == now else 0
            if stuck > self.maxStepsPerInstant:
                raise RuntimeError(f"memory network livelock at t={now}")
            if predicate is not None and predicate():
                return True
        if clock.rightNow < end:
            clock.advance(end - clock.rightNow)
        return predicate() if predicate is not None else True

    # Failures

    def disconnectHost(self, host: HostReactor | str) -> None:
        """
        Abort every TCP connection of C{host}; see
        L{HostReactor.abortConnections}.
        """
        host = self._node(host)
        if not isinstance(host, HostReactor):
            raise TypeError(f"{host!r} is not a host")
        host.abortConnections()
