"""
An in-memory network for deterministic tests of whole servers and clients.

    net = MemoryNetwork(seed=0)
    server = net.addHost("203.0.113.1")
    nat = net.addNAT("198.51.100.1", NATType.PORT_RESTRICTED)
    alice = nat.addHost("10.0.0.2")
    net.setConditions(alice, server, LinkConditions(loss=0.1, latency=0.02))
    ... server.listenUDP(...); alice.connectTCP(...) ...
    net.runUntil(lambda: done, timeout=10)

Each host is a L{HostReactor}: pass it as the C{reactor} of the code under
test (for C{ReconnectingClientFactory} also set C{factory.clock}).  All
hosts share C{net.clock}.  When every port is stopped, every connection
closed and the network drained, nothing of the network's is left in
C{net.clock.getDelayedCalls()}.
"""

from ._memnet.conditions import LinkConditions, NATType, NetworkStats
from ._memnet.host import HostReactor
from ._memnet.nat import NATBox, NATMapping
from ._memnet.network import MemoryNetwork
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
    "NetworkStats",
]
