"""The server process of attacks.py: a NetServer on 127.0.0.1 and its
control channel (see ``_common.JsonControl``).

Its login check (``onConnectionRequest``) raises for userData ``b"raise"``,
returns a failing Deferred for ``b"fail"`` and a Deferred that never fires
for ``b"hang"``, and admits everyone else. Options the NetServer of this
checkout does not take yet (``--login-timeout``, ``--backlog``) are left
out, and its first answer lists them under ``ignored``.

Commands: ``status``; ``group relay|direct HOSTID...`` (createP2PGroup,
allowDirectP2P for ``direct``); ``send HOSTID INTERVAL SIZE`` (a reliable
server message of SIZE bytes to HOSTID every INTERVAL seconds, until it
leaves); ``udp HOSTID`` (the UDP address the server holds for it); ``quit``.

    python bench/_attack_server.py --lifetime 300 [--login-timeout S] [--backlog N]
"""

from __future__ import annotations

import collections
import inspect
import os
import sys
import time

from twisted.internet import defer, task

import _common


def makeEvents():
    from proud_twisted import NetServerEvents

    class AttackedEvents(NetServerEvents):
        def __init__(self) -> None:
            self.requests = collections.Counter()
            self.leaves = []            # [hostID, reason, time.time(), comment]
            self.leaveCount = 0
            self.hacks = collections.Counter()
            self.exceptions = 0
            self.firstException = None

        def onConnectionRequest(self, address, userData):
            kind = userData.decode("ascii", "replace") if userData in LOGINS else "normal"
            self.requests[kind] += 1
            if userData == b"raise":
                raise RuntimeError("login backend raised")
            if userData == b"fail":
                return defer.fail(RuntimeError("login backend failed"))
            if userData == b"hang":
                return defer.Deferred()
            return True

        def onClientLeave(self, clientInfo, reason, comment):
            self.leaveCount += 1
            if len(self.leaves) < 200:
                self.leaves.append([clientInfo.hostID, reason.name, time.time(),
                                    comment.decode("utf-8", "replace")])

        def onClientHackSuspected(self, hostID, kind):
            self.hacks[kind.name] += 1

        def onException(self, failure):
            self.exceptions += 1
            if self.firstException is None:
                self.firstException = f"{failure.type.__name__}: {failure.getErrorMessage()}"

    return AttackedEvents()


LOGINS = (b"raise", b"fail", b"hang")


class Sender:
    """Sends one client a reliable server message every ``interval`` seconds."""

    def __init__(self, reactor, server, hostID: int, interval: float, size: int) -> None:
        self.server = server
        self.hostID = hostID
        self.payload = bytes(size)
        self.sent = 0
        self.loop = task.LoopingCall(self.send)
        self.loop.clock = reactor
        self.loop.start(interval)

    def send(self) -> None:
        from proud_twisted.errors import UnknownHostID
        try:
            self.server.send(self.hostID, self.payload)
        except UnknownHostID:
            self.loop.stop()
            return
        self.sent += 1


def serverOptions(args) -> tuple[dict, list]:
    """The options asked for that this checkout's NetServer takes, and the
    names of those it does not."""
    from proud_twisted import NetServer
    known = inspect.signature(NetServer).parameters
    wanted = {}
    if args.login_timeout:
        wanted["loginTimeout"] = args.login_timeout
    if args.backlog:
        wanted["backlog"] = args.backlog
    return ({k: v for k, v in wanted.items() if k in known},
            sorted(k for k in wanted if k not in known))


def setupFor(args):
    async def setup(reactor, log):
        from proud_twisted import NetServer, freezeStartupObjects
        events = makeEvents()
        options, ignored = serverOptions(args)
        server = NetServer(events, _common.ATTACK_VERSION, tcpPort=0, udpPort=0,
                           interface=_common.LOOPBACK, reactor=reactor, **options)
        server.startService()
        freezeStartupObjects()          # as twistd proudserver does
        senders = []

        def status() -> dict:
            return {"clients": len(server.getClientHostIDs()),
                    "connections": server.getConnectionCount(),
                    "stats": server.stats.asDict(), "requests": dict(events.requests),
                    "leaves": events.leaves, "leaveCount": events.leaveCount,
                    "hacks": dict(events.hacks), "exceptions": events.exceptions,
                    "firstException": events.firstException, "logLevels": dict(log.levels),
                    "serverSends": sum(s.sent for s in senders)}

        def group(policy: str, *hostIDs: str) -> dict:
            return {"group": server.createP2PGroup([int(h) for h in hostIDs],
                                                  allowDirectP2P=policy == "direct")}

        def send(hostID: str, interval: str, size: str) -> dict:
            senders.append(Sender(reactor, server, int(hostID), float(interval), int(size)))
            return {"sending": int(hostID)}

        def udp(hostID: str) -> dict:
            address = server.getClientInfo(int(hostID)).udpAddress
            return {"udpAddress": list(address) if address else None}

        hello = {"tcpPort": server.getTcpAddress()[1], "udpPort": server.getUdpAddress()[1],
                 "key": server.identity.publicKey().toHex(), "pid": os.getpid(),
                 "options": options, "ignored": ignored}
        return hello, {"status": status, "group": group, "send": send, "udp": udp}

    return setup


def main() -> int:
    parser = _common.childParser(__doc__, joinsServer=False)
    parser.add_argument("--login-timeout", type=float, default=0.0,
                        help="NetServer(loginTimeout=...), where it takes one")
    parser.add_argument("--backlog", type=int, default=0,
                        help="NetServer(backlog=...), where it takes one (0: the server chooses)")
    return _common.runParsed(parser, setupFor)


if __name__ == "__main__":
    sys.exit(main())
