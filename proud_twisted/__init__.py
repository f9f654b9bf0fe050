"""proud_twisted: server-managed peer-to-peer networking for online games, on Twisted.

The server owns every P2P group; members message each other through the
server relay from the moment a group forms.
"""

from proud_twisted._glue.gcfreeze import freezeStartupObjects
from proud_twisted._glue.udpbuffers import SocketBuffers
from proud_twisted.client import NetClient
from proud_twisted.cluster import (
    Cluster,
    ClusterEvents,
    ClusterStats,
    ClusterUnavailable,
    ICluster,
    IClusterEvent,
    ServerInfo,
    UnknownServer,
)
from proud_twisted.constants import (
    HOSTID_NONE,
    HOSTID_SERVER,
    ErrorType,
    HackKind,
    HolePunchPolicy,
    JoinRefusal,
    RelayReason,
    ResumeRefusal,
    ServerUdpState,
)
from proud_twisted.crypto import IdentityKey, PublicIdentity
from proud_twisted.errors import (
    ConnectionRefusedByServer,
    HandshakeFailed,
    HolePunchFailed,
    InvalidGroupOperation,
    JoinCancelled,
    JoinFailed,
    JoinTimeout,
    MessageTooLong,
    NotConnected,
    ProtocolError,
    ProtocolVersionMismatch,
    ProudError,
    ResumeRefused,
    SendQueueFull,
    UnknownHostID,
)
from proud_twisted.events import NetClientEvents, NetServerEvents
from proud_twisted.info import (
    ClientInfo,
    ErrorInfo,
    MessageContext,
    P2PConnectionStats,
    P2PGroupInfo,
    PeerInfo,
)
from proud_twisted.interfaces import (
    INetClient,
    INetClientEvent,
    INetCoreEvent,
    INetServer,
    INetServerEvent,
    IRmiHost,
)
from proud_twisted.rudp import (
    DeliveryMode,
    Priority,
    ReceiveBudget,
    SessionConfig,
    SessionStats,
)
from proud_twisted.server import NetServer
from proud_twisted.server.metrics import ServerMetrics
from proud_twisted.server.metricsweb import MetricsService, metricsService
from proud_twisted.server.stats import ServerStats

__version__ = "0.1.0"

__all__ = [
    "NetServer", "NetClient", "INetServer", "INetClient",
    "INetCoreEvent", "INetServerEvent", "INetClientEvent", "IRmiHost",
    "NetServerEvents", "NetClientEvents",
    "ClientInfo", "ErrorInfo", "MessageContext", "P2PGroupInfo", "PeerInfo",
    "P2PConnectionStats", "ServerStats", "SocketBuffers", "freezeStartupObjects",
    "ServerMetrics", "MetricsService", "metricsService",
    "DeliveryMode", "Priority", "ReceiveBudget", "SessionConfig", "SessionStats",
    "IdentityKey", "PublicIdentity",
    "HOSTID_NONE", "HOSTID_SERVER", "ErrorType", "HackKind", "HolePunchPolicy", "JoinRefusal",
    "RelayReason", "ResumeRefusal", "ServerUdpState",
    "ProudError", "ProtocolError", "MessageTooLong", "UnknownHostID",
    "InvalidGroupOperation", "NotConnected", "JoinFailed", "ProtocolVersionMismatch",
    "ConnectionRefusedByServer", "HandshakeFailed", "JoinTimeout", "JoinCancelled",
    "SendQueueFull", "HolePunchFailed", "ResumeRefused",
    "Cluster", "ICluster", "IClusterEvent", "ClusterEvents", "ClusterStats", "ServerInfo",
    "ClusterUnavailable", "UnknownServer",
]
