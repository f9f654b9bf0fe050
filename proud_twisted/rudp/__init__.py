"""Sans-I/O reliable UDP session: no reactor, no sockets, time passed in.

One `ReliableSession` per peer pair carries reliable-ordered, unreliable and
latest-only messages in three priorities over whatever path moves its
datagrams::

    session.send(payload, now, DeliveryMode.RELIABLE, Priority.HIGH, channel)
    for datagram in session.datagramsToSend(now): transport.write(datagram)
    session.receiveDatagram(datagram, now)          # ProtocolError if malformed
    session.handleTimeout(now)                      # at session.nextTimeout()
    while (event := session.nextEvent()) is not None: ...

Modules, one job each: `frames` (datagram layout), `acks` (received packet
numbers, delayed acks), `recovery` (packets in flight, loss detection),
`rtt` (RFC 6298), `congestion` (window), `sendqueue` (priorities,
fragmentation, retransmission queue), `reassembly` (reordering, reassembly,
receive budgets), `events` (what `nextEvent` returns), `fifo` (the queue they
share), `session` (ties them together).

An install compiles these modules with mypyc where it can (see setup.py);
`COMPILED` says whether this process runs that build or the pure-Python one.
"""

from proud_twisted.rudp import session as _session
from proud_twisted.rudp.config import DeliveryMode, Priority, SessionConfig
from proud_twisted.rudp.events import MessageReceived, PathAlive, PathDead
from proud_twisted.rudp.reassembly import ReceiveBudget
from proud_twisted.rudp.session import ReliableSession, SessionClosed, SessionStats

COMPILED = not _session.__file__.endswith(".py")

__all__ = [
    "ReliableSession", "SessionConfig", "SessionStats", "SessionClosed",
    "DeliveryMode", "Priority", "MessageReceived", "PathDead", "PathAlive", "ReceiveBudget",
    "COMPILED",
]
