"""HostIDs, result codes and states shared by server and client."""

import enum
from typing import Final

HOSTID_NONE: Final = 0
HOSTID_SERVER: Final = 1
FIRST_ALLOCATED_HOSTID: Final = 1000


class ErrorType(enum.Enum):
    """Why something happened (or failed); carried by events and errors."""

    OK = "ok"
    PROTOCOL_VERSION_MISMATCH = "protocol version mismatch"
    CONNECTION_REFUSED = "connection refused by the server application"
    SERVER_FULL = "server full"
    TIMEOUT = "timed out"
    DISCONNECT_FROM_LOCAL = "disconnected by the local host"
    DISCONNECT_FROM_REMOTE = "disconnected by the remote host"
    KICKED = "connection closed by the server"
    CONNECTION_LOST = "connection lost"
    PROTOCOL_ERROR = "protocol error"
    MESSAGE_TOO_LONG = "message too long"
    RELAY_NOT_ALLOWED = "relay between hosts that share no group"
    HANDSHAKE_FAILED = "secure handshake failed"
    SLOW_CONSUMER = "the client left too much unread output queued for too long"
    LOGIN_FAILED = "the server's login check failed or timed out"
    MOVED = "moved to another server of the cluster"


class HackKind(enum.Enum):
    """Why the server suspects a client of cheating (``onClientHackSuspected``)."""

    RELAY_NOT_ALLOWED = "asked to relay to a host it shares no group with"
    RELAY_FLOOD = "relayed more messages or bytes than its rate limit"
    BAD_MESSAGE = "sent a message a client may never send"


class ServerUdpState(enum.Enum):
    """The state of a client's UDP path to the server."""

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    LOST = "lost"


class RelayReason(enum.Enum):
    """Why a peer pair's path changed (``onChangeP2PRelayState``)."""

    HOLE_PUNCHED = "hole punched: direct"
    DIRECT_PATH_DIED = "direct path stopped answering: relayed"
    FORCED_RELAY = "relay forced"


class ResumeRefusal(enum.IntEnum):
    """Wire codes for a refused session resume (logged and counted by the server)."""

    UNKNOWN_SESSION = 1
    """No session to resume: never was, recovery off, or its window ran out."""
    BAD_PROOF = 2
    """The resume proof is not the session's: not its key, or not this nonce."""
    BAD_MOVE_TOKEN = 3
    """A move token this server does not expect for that HostID: forged,
    used already, or expired."""


class JoinRefusal(enum.IntEnum):
    """Wire codes for a refused join."""

    VERSION_MISMATCH = 1
    REFUSED_BY_APPLICATION = 2
    SERVER_FULL = 3
    ENCRYPTION_MISMATCH = 4
    LOGIN_ERROR = 5
    """The server's login check (``onConnectionRequest``) raised or failed."""
    LOGIN_TIMEOUT = 6
    """The server's login check did not answer within its login timeout."""
    RMI_MISMATCH = 7
    """Client and server declare a remote method differently (the reply names
    the declaration and the method)."""


class HolePunchPolicy(enum.Enum):
    """When a pair starts hole punching."""

    JUST_IN_TIME = "when the pair first exchanges a message"
    ALWAYS = "as soon as the pair shares a group"
