"""C{twistd proudserver}: run a L{NetServer} as a twistd service::

    twistd -n proudserver                          # the rooms example app
    twistd -n proudserver --tcp 40000 --udp 40001 --events mygame.server.Events \\
        --protocol-version 0d9e3f5a-...

C{--events} names a class (C{package.module.ClassName}) that implements
L{INetServerEvent}, usually a subclass of L{NetServerEvents}. It is called
with no arguments; if the instance has an C{attachServer} method, that method
is called with the L{NetServer} before the server starts, so the events can
create and manage P2P groups.
"""

from __future__ import annotations

import uuid

from twisted.application import service
from twisted.python import reflect, usage

from proud_twisted.interfaces import INetServerEvent
from proud_twisted.rooms import ROOMS_PROTOCOL_VERSION
from proud_twisted.server.netserver import DEFAULT_CLIENT_TIMEOUT, NetServer
from proud_twisted.wire.framing import DEFAULT_MAX_MESSAGE_LENGTH

DEFAULT_PORT = 33333
DEFAULT_EVENTS = "proud_twisted.rooms.RoomServerEvents"


class Options(usage.Options):
    """Command line options of C{twistd proudserver}."""

    synopsis = "[options]"
    longdesc = ("Run a proud_twisted game server: clients join over TCP, confirm "
                "a UDP path, and message the members of their P2P groups through "
                "the server relay. Without --events it runs the built-in rooms app.")

    optParameters = [
        ["tcp", None, DEFAULT_PORT, "TCP port to listen on (0: any free port)."],
        ["udp", None, DEFAULT_PORT, "UDP port to listen on (0: any free port)."],
        ["interface", None, "", "Address to bind both ports to; empty: every address."],
        ["protocol-version", None, str(ROOMS_PROTOCOL_VERSION),
         "UUID that clients must present; others are refused."],
        ["events", None, DEFAULT_EVENTS,
         "Dotted name of the INetServerEvent class to run; it is called with "
         "no arguments, and its attachServer(server) method, if any, with the "
         "NetServer."],
        ["max-message-length", None, DEFAULT_MAX_MESSAGE_LENGTH,
         "Longest user message in bytes."],
        ["client-timeout", None, DEFAULT_CLIENT_TIMEOUT,
         "Seconds of silence after which a client is dropped."],
    ]

    compData = usage.Completions(
        optActions={"interface": usage.CompleteNetInterfaces()})

    def postOptions(self) -> None:
        for name in ("tcp", "udp"):
            self[name] = _convert(name, self[name], usage.portCoerce)
        self["protocol-version"] = _convert(
            "protocol-version", self["protocol-version"], uuid.UUID)
        self["max-message-length"] = _convert(
            "max-message-length", self["max-message-length"], _positive(int))
        self["client-timeout"] = _convert(
            "client-timeout", self["client-timeout"], _positive(float))
        self["events"] = _loadEventsClass(self["events"])


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


def makeService(config) -> service.MultiService:
    """A L{MultiService} holding the configured L{NetServer}."""
    events = config["events"]()
    server = NetServer(
        events, config["protocol-version"], tcpPort=config["tcp"],
        udpPort=config["udp"], interface=config["interface"],
        maxMessageLength=config["max-message-length"],
        clientTimeout=config["client-timeout"])
    attachServer = getattr(events, "attachServer", None)
    if attachServer is not None:
        attachServer(server)
    top = service.MultiService()
    server.setName("proudserver")
    server.setServiceParent(top)
    return top
