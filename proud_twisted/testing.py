"""
An in-memory network for deterministic tests of whole servers and clients.

    net = MemoryNetwork(seed=0)
    server = net.addHost("203.0.113.1")
    nat = net.addNAT("198.51.100.1", NATType.PORT_RESTRICTED)
    alice = nat.addHost("10.0.0.2")
    net.setConditions(alice, server, LinkConditions(loss=0.1, latency=0.02))
    ... NetServer(..., reactor=server); NetClient(..., reactor=alice) ...
    assert net.runUntil(lambda: done, timeout=10)

Each host is a L{HostReactor} (C{IReactorTime}, C{IReactorUDP},
C{IReactorTCP}): pass it as the C{reactor} of the code under test, and as
the C{clock} of a C{LoopingCall} or C{ReconnectingClientFactory}.  All
hosts share one clock, C{net.clock}.

Time: L{MemoryNetwork.advance} and L{MemoryNetwork.runUntil} stop at every
delayed call and delivery, so each callback sees its own time.
C{runUntil} checks its predicate after every such step: keep it cheap.

Paths: L{LinkConditions} per direction between two hosts or NATs (a host's
own setting wins over its NAT's), or a default.  UDP gets loss, duplication,
reordering, latency and jitter; TCP gets latency and jitter but stays in
order and loses nothing.  A blocked path (or L{MemoryNetwork.partition})
drops UDP and holds TCP data and connection attempts until it opens.

NATs: RFC 3489 full cone, address- and port-restricted cone, symmetric;
no hairpinning, no port forwarding; UDP mappings expire after
C{mappingTimeout} seconds without outbound use.

Failures: L{HostReactor.crash} makes a host vanish (its peers see
C{ConnectionLost}, its own code hears nothing more);
L{MemoryNetwork.disconnectHost} aborts a host's TCP connections.

Counts: C{net.stats} (see L{NetworkStats}).  When every port is stopped,
every connection closed and the deliveries in flight have landed, nothing
of the network's is left in C{net.clock.getDelayedCalls()}.
"""

from ._memnet.conditions import LinkConditions, NATType, NetworkStats
from ._memnet.host import HostReactor
from ._memnet.nat import NATBox, NATMapping
from ._memnet.network import MemoryNetwork
from ._memnet.scheduler import NetworkClock
from ._memnet.tcp import MemoryConnector, MemoryTCPPort, MemoryTCPTransport
from ._memnet.udp import MemoryUDPPort

__all__ = [
    "HostReactor",
    "LinkConditions",
    "MemoryConnector",
    "MemoryNetwork",
    "MemoryTCPPort",
    "MemoryTCPTransport",
    "MemoryUDPPort",
    "NATBox",
    "NATMapping",
    "NATType",
    "NetworkClock",
    "NetworkStats",
]
