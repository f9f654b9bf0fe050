"""C{twistd proudserver}: run a L{NetServer} as a twistd service::

    twistd -n proudserver                          # the rooms example app
    twistd -n proudserver --tcp 40000 --udp 40001 --events mygame.server.Events \\
        --protocol-version 0d9e3f5a-... --key-file /etc/mygame/server.key

C{--events} names a class (C{package.module.ClassName}) that implements
L{INetServerEvent}, usually a subclass of L{NetServerEvents}. It is called
with no arguments; if the instance has an C{attachServer} method, that method
is called with the L{NetServer} before the server starts, so the events can
create and manage P2P groups. Without C{--events} and C{--protocol-version}
it runs the rooms app (L{proud_twisted.apps.rooms}), named by strings and
imported only when the options are parsed.

The server proves who it is with a long-term Ed25519 identity key kept in
C{--key-file} (default C{proudserver.key} in the working directory). Parsing
the options loads it, or creates it if the file does not exist yet; a key
file that cannot be read or holds no usable key is a usage error (see
L{proud_twisted._crypto.keyfiles}). The server logs the key's fingerprint and
its public key in hex when it starts, for clients to pin
(C{NetClient(serverKey=PublicIdentity.fromHex(...))}).

L{makeService} composes the server's parts in a C{MultiService}, as
C{twisted.names.tap} does: L{IdentityLog}, the L{NetServer}, with
C{--metrics} a L{MetricsService} serving its Prometheus metrics, and
L{GcFreeze}.

With C{--cluster redis://HOST:PORT/DB --server-id NAME --advertise HOST} the
server joins a cluster of servers coordinated by that Redis (L{Cluster}).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import ClassVar

from twisted.application import service
from twisted.logger import Logger
from twisted.python import reflect, usage

from proud_twisted._crypto.keyfiles import KeyFileError, fileMode, loadOrCreateIdentity
from proud_twisted._glue.gcfreeze import freezeStartupObjects
from proud_twisted._glue.udpbuffers import DEFAULT_SERVER_UDP_BUFFER
from proud_twisted.cluster import Cluster
from proud_twisted.cluster.cluster import DEFAULT_TTL
from proud_twisted.cluster.keys import checkServerID
from proud_twisted.cluster.redisurl import parseRedisURL
from proud_twisted.crypto import IdentityKey
from proud_twisted.interfaces import INetServerEvent
from proud_twisted.server.metrics import ServerMetrics
from proud_twisted.server.metricsweb import metricsService
from proud_twisted.server.netserver import (
    DEFAULT_BACKLOG,
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_LOGIN_TIMEOUT,
    DEFAULT_MAX_CLIENT_OUTPUT,
    DEFAULT_MAX_OFFLINE_CLIENTS,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_RECOVERY_WINDOW,
    DEFAULT_RELAY_BYTES_PER_SECOND,
    DEFAULT_RELAY_FRAMES_PER_SECOND,
    NetServer,
)
from proud_twisted.wire.framing import DEFAULT_MAX_MESSAGE_LENGTH, FRAME_HEADROOM

DEFAULT_PORT = 33333
DEFAULT_EVENTS = "proud_twisted.apps.rooms.RoomServerEvents"
DEFAULT_PROTOCOL_VERSION = "proud_twisted.apps.rooms.ROOMS_PROTOCOL_VERSION"
"""Dotted name of the UUID that C{--protocol-version} defaults to, the rooms
app's: imported only when the options are parsed without it, so that
importing this module imports no app."""
DEFAULT_KEY_FILE = "proudserver.key"
MIN_RELAY_BYTES = 1200
"""The smallest C{--relay-bytes}: one full-size UDP datagram a second."""


CLUSTER_OPTIONS = [
    ["cluster", None, None,
     ("Join the cluster coordinated by the Redis at redis://[:PASSWORD@]HOST[:PORT]"
      "[/DB] (needs --server-id and --advertise; pip install proud-twisted[cluster]).")],
    ["server-id", None, None,
     "This server's unique name in the cluster (letters, digits, '.', '_', '-')."],
    ["advertise", None, None,
     "Host that clients and the other servers reach this server at."],
    ["tag", None, "", "Free-form label shown to the cluster (zone, region, role)."],
    ["cluster-ttl", None, DEFAULT_TTL,
     ("Seconds this server's cluster entry lives without a heartbeat (one every "
      "fifth of it): a crashed server leaves the others' lists within that.")],
]
"""The options of C{--cluster}, kept together."""


class Options(usage.Options):
    """Command line options of C{twistd proudserver}."""

    synopsis = "[options]"
    longdesc = ("Run a proud_twisted game server: clients join over TCP, confirm "
                "a UDP path, and message the members of their P2P groups through "
                "the server relay. Without --events it runs the built-in rooms app. "
                "All traffic is encrypted and the server authenticates itself with "
                "the identity key in --key-file, created on first start.")

    optFlags: ClassVar[list[list]] = [
        ["no-gc-freeze", None,
         ("Keep the objects that exist once the server listens (modules, classes, "
          "functions: some 40,000) in every later garbage collection, instead of "
          "freezing them out of it (gc.freeze), which shortens each full "
          "collection, a pause every player feels.")],
        ["no-encryption", None,
         ("Turn encryption and server authentication off (clients must use "
          "NetClient(encryption=False)). For tests and benchmarks only: anyone "
          "on the path can then read, forge and replay every message.")],
        ["no-direct-relay", None,
         ("With --cluster: relay the frames of P2P pairs across servers through "
          "Redis only, not straight to the other server's UDP port (for networks "
          "where the servers cannot reach each other's UDP ports).")],
    ]

    optParameters: ClassVar[list[list]] = [
        ["tcp", None, DEFAULT_PORT, "TCP port to listen on (0: any free port)."],
        ["udp", None, DEFAULT_PORT, "UDP port to listen on (0: any free port)."],
        ["interface", None, "",
         ("Address to bind both ports to; empty: every IPv4 address; '::': every "
          "IPv6 address and, on Linux, every IPv4 address too.")],
        ["protocol-version", None, None,
         ("UUID that clients must present; others are refused. [default: the "
          f"rooms app's, {DEFAULT_PROTOCOL_VERSION}]")],
        ["events", None, DEFAULT_EVENTS,
         ("Dotted name of the INetServerEvent class to run; it is called with "
          "no arguments, and its attachServer(server) method, if any, with the "
          "NetServer.")],
        ["key-file", None, None,
         ("PEM file of the server's Ed25519 identity key; created (mode 0600) "
          f"if missing. [default: {DEFAULT_KEY_FILE} in the working directory]")],
        ["max-message-length", None, DEFAULT_MAX_MESSAGE_LENGTH,
         "Longest user message in bytes."],
        ["client-timeout", None, DEFAULT_CLIENT_TIMEOUT,
         "Seconds of silence after which a client is dropped."],
        ["handshake-timeout", None, DEFAULT_HANDSHAKE_TIMEOUT,
         "Seconds a new connection has to finish the secure handshake and join."],
        ["max-unauthenticated", None, DEFAULT_MAX_UNAUTHENTICATED,
         ("Most connections that have not joined yet; more are refused at once "
          "(the client's join fails with JoinRefusal.SERVER_FULL).")],
        ["login-timeout", None, DEFAULT_LOGIN_TIMEOUT,
         ("Seconds the events' onConnectionRequest (which may return a Deferred) "
          "has to answer; a late, failed or raising login refuses the client.")],
        ["max-client-output", None, DEFAULT_MAX_CLIENT_OUTPUT,
         ("Bytes of unsent output held for a client that does not read; past it "
          "the client is disconnected (SLOW_CONSUMER).")],
        ["recovery-window", None, DEFAULT_RECOVERY_WINDOW,
         ("Seconds a client whose connection dropped keeps its HostID and groups "
          "while it reconnects and resumes its session (0: no recovery).")],
        ["max-offline-clients", None, DEFAULT_MAX_OFFLINE_CLIENTS,
         "Most clients offline (waiting to resume) at once; past it a dropped client leaves."],
        ["backlog", None, DEFAULT_BACKLOG,
         ("TCP listen queue length, for join storms (Linux caps it at "
          "net.core.somaxconn).")],
        ["relay-rate", None, DEFAULT_RELAY_FRAMES_PER_SECOND,
         "Frames a second each client may have relayed (bursts of one second's worth)."],
        ["relay-bytes", None, DEFAULT_RELAY_BYTES_PER_SECOND,
         "Bytes a second each client may have relayed (bursts of one second's worth)."],
        ["metrics", None, None,
         ("Serve Prometheus metrics over HTTP on this Twisted endpoint, e.g. "
          "tcp:9100 or tcp:9100:interface=127.0.0.1 (keep it off the public "
          "internet). [default: no metrics]")],
        ["udp-buffer", None, DEFAULT_SERVER_UDP_BUFFER,
         ("Bytes of kernel receive and send buffer to ask for on the UDP port, so "
          "that bursts are not dropped (0: the OS defaults). Linux caps it at "
          "net.core.rmem_max / wmem_max unless the server has CAP_NET_ADMIN; the "
          "server logs a warning if it gets less.")],
        *CLUSTER_OPTIONS,
    ]

    compData = usage.Completions(
        optActions={"interface": usage.CompleteNetInterfaces(),
                    "key-file": usage.CompleteFiles()})

    def postOptions(self) -> None:
        for name in ("tcp", "udp"):
            self[name] = _convert(name, self[name], usage.portCoerce)
        version = self["protocol-version"]
        if version is None:
            version = str(reflect.namedAny(DEFAULT_PROTOCOL_VERSION))
        self["protocol-version"] = _convert("protocol-version", version, uuid.UUID)
        self["max-message-length"] = _convert(
            "max-message-length", self["max-message-length"], _atLeast(int, 1))
        for name in ("client-timeout", "handshake-timeout", "login-timeout"):
            self[name] = _convert(name, self[name], _positive(float))
        self["max-unauthenticated"] = _convert(
            "max-unauthenticated", self["max-unauthenticated"], _atLeast(int, 1))
        # The bucket holds one second's worth: below one frame (or one full
        # datagram) a second it would never let anything through.
        self["relay-rate"] = _convert("relay-rate", self["relay-rate"], _atLeast(float, 1))
        self["relay-bytes"] = _convert(
            "relay-bytes", self["relay-bytes"], _atLeast(float, MIN_RELAY_BYTES))
        self["udp-buffer"] = _convert("udp-buffer", self["udp-buffer"], _atLeast(int, 0))
        self["backlog"] = _convert("backlog", self["backlog"], _atLeast(int, 1))
        self["recovery-window"] = _convert(
            "recovery-window", self["recovery-window"], _atLeast(float, 0))
        self["max-offline-clients"] = _convert(
            "max-offline-clients", self["max-offline-clients"], _atLeast(int, 0))
        self["max-client-output"] = _convert(
            "max-client-output", self["max-client-output"],
            _atLeast(int, self["max-message-length"] + FRAME_HEADROOM))
        self["events"] = _loadEventsClass(self["events"])
        _checkClusterOptions(self)
        # Last, so that a mistake in another option creates no key file.
        self["identity"], self["key-created"] = None, False
        if self["no-encryption"]:
            if self["key-file"] is not None:
                raise usage.UsageError(
                    "--key-file: not used with --no-encryption (an unencrypted "
                    "server has no identity); drop one of the two")
            return
        path = Path(self["key-file"] or DEFAULT_KEY_FILE)
        self["key-file"] = path = path.expanduser().absolute()
        try:
            self["identity"], self["key-created"] = loadOrCreateIdentity(path)
        except KeyFileError as e:
            raise usage.UsageError(f"--key-file: {e}") from None


def _convert(name: str, value, convert):
    try:
        return convert(value)
    except (TypeError, ValueError) as e:
        raise usage.UsageError(f"--{name}: invalid value {value!r} ({e})") from None


def _positive(kind):
    def convert(value):
        number = kind(value)
        if not number > 0:
            raise ValueError("must be greater than 0")
        return number
    return convert


def _atLeast(kind, least):
    def convert(value):
        number = kind(value)
        if not number >= least:
            raise ValueError(f"must be at least {least:g}")
        return number
    return convert


def _checkClusterOptions(config) -> None:
    config["cluster-ttl"] = _convert("cluster-ttl", config["cluster-ttl"], _positive(float))
    if config["cluster"] is None:
        for name in ("server-id", "advertise"):
            if config[name] is not None:
                raise usage.UsageError(f"--{name}: only with --cluster")
        if config["no-direct-relay"]:
            raise usage.UsageError("--no-direct-relay: only with --cluster")
        return
    _convert("cluster", config["cluster"], parseRedisURL)
    for name in ("server-id", "advertise"):
        if not config[name]:
            raise usage.UsageError(f"--{name}: needed with --cluster")
    _convert("server-id", config["server-id"], checkServerID)
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        raise usage.UsageError("--cluster: txredisapi is not installed (pip install "
                               "proud-twisted[cluster])") from None


def _makeCluster(config) -> Cluster | None:
    if config.get("cluster") is None:
        return None
    return Cluster(config["cluster"], config["server-id"], advertise=config["advertise"],
                   tag=config["tag"], ttl=config["cluster-ttl"],
                   directRelay=not config["no-direct-relay"])


def _loadEventsClass(name):
    if not isinstance(name, str):
        return name
    try:
        eventsClass = reflect.namedAny(name)
    except (ImportError, AttributeError, reflect.ObjectNotFound, reflect.ModuleNotFound) as e:
        raise usage.UsageError(
            f"--events: cannot load {name!r}: {e} (is its module on the Python "
            "path? twistd does not add the current directory: set PYTHONPATH)") from None
    except reflect.InvalidName as e:
        raise usage.UsageError(f"--events: {e}") from None
    except Exception as e:
        raise usage.UsageError(f"--events: importing {name!r} failed: {e!r}") from None
    if not isinstance(eventsClass, type) or not INetServerEvent.implementedBy(eventsClass):
        raise usage.UsageError(
            f"--events: {name!r} is not a class implementing INetServerEvent "
            "(subclass proud_twisted.NetServerEvents)")
    return eventsClass


# The parts of the service

class IdentityLog(service.Service):
    """Logs, as it starts, the server's identity for clients to pin, or a
    warning that encryption is off. Started before the L{NetServer}, so these
    lines come first."""

    log = Logger()

    def __init__(self, identity: IdentityKey | None, keyFile: Path | None,
                 keyCreated: bool) -> None:
        self.identity = identity
        self.keyFile = keyFile
        self.keyCreated = keyCreated

    def startService(self) -> None:
        super().startService()
        self.logIdentity()

    def logIdentity(self) -> None:
        """Log the public key and fingerprint, or that encryption is off, and
        warn of a key file that other users can read."""
        if self.identity is None:
            self.log.warn(
                "ENCRYPTION IS OFF (--no-encryption): anyone on the network path can "
                "read, forge and replay every message, and clients cannot tell this "
                "server from an impostor. Use it for tests and benchmarks only; "
                "clients must connect with NetClient(encryption=False).")
            return
        public = self.identity.publicKey()
        self.log.info(
            "server identity {how} {keyFile}: fingerprint {fingerprint}, public key "
            "{publicKey}; pin it in clients with NetClient(serverKey="
            "PublicIdentity.fromHex(\"{publicKey}\"))",
            how="created in" if self.keyCreated else "loaded from",
            keyFile=str(self.keyFile), fingerprint=public.fingerprint(),
            publicKey=public.toHex())
        if self.keyCreated:
            self.log.info("keep {keyFile} secret and back it up: with a new key, "
                          "pinned clients refuse the server", keyFile=str(self.keyFile))
        mode = fileMode(self.keyFile)
        if mode is not None and mode & 0o077:
            self.log.warn("{keyFile} is readable by other users (mode {mode:o}); "
                          "chmod 600 it", keyFile=str(self.keyFile), mode=mode)


class GcFreeze(service.Service):
    """Freezes the objects of startup out of garbage collection
    (L{freezeStartupObjects}) as it starts. Started after the L{NetServer},
    once the server listens, so that what it made is frozen too."""

    log = Logger()

    def startService(self) -> None:
        super().startService()
        self.log.info("{count} objects from startup frozen out of garbage collection "
                      "(--no-gc-freeze keeps them in)", count=freezeStartupObjects())


def makeService(config) -> service.MultiService:
    """A C{MultiService} of the server's parts, named and started in this
    order: C{"identity"}, an L{IdentityLog}; C{"proudserver"}, the configured
    L{NetServer}; C{"metrics"}, its L{MetricsService}, with C{--metrics};
    C{"gc-freeze"}, a L{GcFreeze}, left out with C{--no-gc-freeze}."""
    metrics = ServerMetrics() if config["metrics"] else None
    parts = [
        ("identity", IdentityLog(config["identity"], config["key-file"],
                                 config["key-created"])),
        ("proudserver", _makeServer(config, metrics)),
    ]
    if metrics is not None:
        try:
            parts.append(("metrics", metricsService(config["metrics"], metrics)))
        except ValueError as e:
            raise usage.UsageError(f"--metrics: {e}") from None
    if not config["no-gc-freeze"]:
        parts.append(("gc-freeze", GcFreeze()))
    top = service.MultiService()
    for name, part in parts:
        part.setName(name)
        part.setServiceParent(top)
    return top


def _makeServer(config, metrics: ServerMetrics | None = None) -> NetServer:
    """The L{NetServer} of C{config}, its events attached."""
    events = config["events"]()
    server = NetServer(
        events, config["protocol-version"], tcpPort=config["tcp"],
        udpPort=config["udp"], interface=config["interface"],
        maxMessageLength=config["max-message-length"],
        clientTimeout=config["client-timeout"],
        encryption=not config["no-encryption"], identity=config["identity"],
        handshakeTimeout=config["handshake-timeout"],
        maxUnauthenticated=config["max-unauthenticated"],
        relayFramesPerSecond=config["relay-rate"],
        relayBytesPerSecond=config["relay-bytes"],
        udpBufferSize=config["udp-buffer"],
        loginTimeout=config["login-timeout"],
        maxClientOutput=config["max-client-output"],
        backlog=config["backlog"], recoveryWindow=config["recovery-window"],
        maxOfflineClients=config["max-offline-clients"], metrics=metrics,
        cluster=_makeCluster(config))
    attachServer = getattr(events, "attachServer", None)
    if attachServer is not None:
        attachServer(server)
    return server
