"""Sans-I/O reliable UDP session: no reactor, no sockets, time passed in.

See `ReliableSession`; the datagram layout is in `proud_twisted.rudp.frames`.
"""

from proud_twisted.rudp.config import DeliveryMode, Priority, SessionConfig
from proud_twisted.rudp.events import MessageReceived, PathAlive, PathDead
from proud_twisted.rudp.session import ReliableSession, SessionClosed, SessionStats

__all__ = [
    "ReliableSession", "SessionConfig", "SessionStats", "SessionClosed",
    "DeliveryMode", "Priority", "MessageReceived", "PathDead", "PathAlive",
]
