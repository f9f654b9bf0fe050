"""The middle process of framework_rtt.py's windowed streams: a NetServer on
127.0.0.1 (encryption on, hole punching for every pair at once, the relay
rate limits out of the way), or with ``--bare`` a bare Twisted UDP forwarder
(`_common.BareUdpForwarder`), which imports nothing of ours.

Commands (see ``_common.JsonControl``):

- ours: ``group HOSTID HOSTID`` (createP2PGroup, direct paths allowed),
  ``stats`` (the server's counters, and its log events by level);
- bare: ``ends PORT PORT`` (the two loopback UDP ports it forwards between).

Its first answer gives its pid and ports (and ours, its public key).

    python bench/_frtt_server.py --lifetime S [--bare]
"""

from __future__ import annotations

import os
import sys
import uuid

import _common

VERSION = uuid.UUID("f7a1c3e5-2b4d-4e6f-8a0c-1e3f5a7b9d20")
UNLIMITED = 1e12
"""Relay frames and bytes a second: a windowed stream goes past the default
limits (10,000 frames a second a client), which would hold the sender's
reading; checking the limit costs the same whatever it is."""


def oursSetup(args):
    async def setup(reactor, log):
        from proud_twisted import HolePunchPolicy, NetServer, freezeStartupObjects
        events = _common.serverEvents()
        server = NetServer(events, VERSION, tcpPort=0, udpPort=0, interface=_common.LOOPBACK,
                           reactor=reactor, holePunchPolicy=HolePunchPolicy.ALWAYS,
                           relayFramesPerSecond=UNLIMITED, relayBytesPerSecond=UNLIMITED)
        server.startService()
        freezeStartupObjects()          # as twistd proudserver does

        def group(*hostIDs: str) -> dict:
            return {"group": server.createP2PGroup([int(h) for h in hostIDs])}

        def stats() -> dict:
            return {"stats": server.stats.asDict(), "logLevels": dict(log.levels),
                    "failures": [f.getErrorMessage() for f in events.failures]}

        hello = {"pid": os.getpid(), "tcpPort": server.getTcpAddress()[1],
                 "udpPort": server.getUdpAddress()[1],
                 "key": server.identity.publicKey().toHex(), "version": str(VERSION)}
        return hello, {"group": group, "stats": stats}

    return setup


def bareSetup(args):
    async def setup(reactor, log):
        forwarder = _common.BareUdpForwarder()
        port = reactor.listenUDP(0, forwarder, interface=_common.LOOPBACK)

        def ends(first: str, second: str) -> dict:
            forwarder.ends = ((_common.LOOPBACK, int(first)), (_common.LOOPBACK, int(second)))
            return {"ends": [int(first), int(second)]}

        return {"pid": os.getpid(), "udpPort": port.getHost().port}, {"ends": ends}

    return setup


def main() -> int:
    parser = _common.childParser(__doc__, joinsServer=False)
    parser.add_argument("--bare", action="store_true",
                        help="a bare Twisted UDP forwarder instead of a NetServer")
    return _common.runParsed(parser, lambda args: (bareSetup if args.bare else oursSetup)(args))


if __name__ == "__main__":
    sys.exit(main())
