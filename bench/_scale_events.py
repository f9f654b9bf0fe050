"""The server events of scale.py, run by ``twistd -n proudserver`` itself:

    PYTHONPATH=bench:. twistd -n --logfile server.log --pidfile '' proudserver \\
        --tcp 0 --udp 0 --interface 127.0.0.1 --events _scale_events.ScaleEvents ...

`ScaleEvents` puts every client into a relay-only P2P group of
``$SCALE_GROUP_SIZE`` (default 10) members in the order they join
(``createP2PGroup([first], allowDirectP2P=False)`` for a group's first
member, ``joinP2PGroup`` for the others), or, with ``$SCALE_GROUP_SIZE`` 0,
leaves grouping to the ``group`` command (cluster.py: groups whose members
may be clients of other servers of the cluster), and counts joins, leaves
and join acknowledgements. Once the reactor runs it answers commands on stdin with a
JSON line each on stdout (twistd logs to its ``--logfile``; see
``_common.JsonControl``):

- first, unasked: the ports, the public key, the pid, the package it runs
  (path, compiled or not) and how many objects twistd froze out of
  garbage collection;
- ``mark K``: start counting joins from 0 and note this process's CPU time
  (``time.process_time``), at the K-th join from now and at the latest join;
- ``cpu``: this process's CPU time (``time.process_time``);
- ``group ID,ID,...``: a relay-only P2P group of those HostIDs (clients of
  this server or, in a cluster, of others), made as above; answers its HostID,
  or None and how many of them are not known here yet (then no group is made);
- ``status``: clients, connections, groups, the peer entries their members
  should hold, join acknowledgements, ``stats``, with a cluster its
  ``cluster.stats``, leaves by reason, the CPU marks, RSS;
- ``profile-start``, ``profile-stop TOP``: cProfile the server between the
  two (timed by the process's CPU clock); the second answers with the TOP
  functions by own time;
- ``quit`` (or stdin closing): stop the reactor, and so twistd.

The process stops by itself ``$SCALE_LIFETIME`` seconds after it started.
"""

from __future__ import annotations

import collections
import cProfile
import dataclasses
import gc
import io
import os
import pstats
import time

import _common
from proud_twisted import ErrorType, NetServerEvents

GROUP_SIZE_VARIABLE = "SCALE_GROUP_SIZE"
LIFETIME_VARIABLE = "SCALE_LIFETIME"
FAILURES_KEPT = 5


class ScaleEvents(NetServerEvents):
    """Groups the clients as they join, and tells scale.py what it sees."""

    def __init__(self) -> None:
        self.groupSize = int(os.environ.get(GROUP_SIZE_VARIABLE, "10"))
        self.lifetime = float(os.environ.get(LIFETIME_VARIABLE, "3600"))
        self.server = None
        self.group = None
        self.members = 0
        self.acked = 0
        self.ackFailures = collections.Counter()
        self.leaves = collections.Counter()
        self.exceptions = []
        self.joinClock = _common.JoinClock()
        self.profile = None

    # what twistd proudserver calls

    def attachServer(self, server) -> None:
        from twisted.internet import reactor
        self.server = server
        reactor.callWhenRunning(self._startControl, reactor)

    def _startControl(self, reactor) -> None:
        from twisted.internet import stdio
        _common.raiseFileLimit()
        control = _common.JsonControl(reactor)
        control.commands = {"mark": self.mark, "status": self.status,
                            "cpu": lambda: {"cpu": time.process_time()},
                            "group": self.makeGroup,
                            "profile-start": self.profileStart,
                            "profile-stop": self.profileStop,
                            "memory-top": self.memoryTop}
        stdio.StandardIO(control, reactor=reactor)
        reactor.callLater(self.lifetime, control.stop)
        control.answer(self.hello())

    # the server's events

    def onClientJoin(self, clientInfo) -> None:
        if self.groupSize:
            self.place(clientInfo.hostID, self.groupSize)
        self.joinClock.joined()

    def place(self, hostID: int, groupSize: int) -> None:
        """Into the group being filled, or a new one once it has ``groupSize``."""
        if self.group is None or self.members >= groupSize:
            self.group = self.server.createP2PGroup([hostID], allowDirectP2P=False)
            self.members = 1
        else:
            self.server.joinP2PGroup(hostID, self.group)
            self.members += 1

    def onClientLeave(self, clientInfo, reason, comment) -> None:
        self.leaves[reason.name] += 1

    def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result) -> None:
        if result == ErrorType.OK:
            self.acked += 1
        else:
            self.ackFailures[result.name] += 1

    def onException(self, failure) -> None:
        if len(self.exceptions) < FAILURES_KEPT:
            self.exceptions.append(failure.getTraceback()[-2000:])

    # the control channel's commands

    def hello(self) -> dict:
        import proud_twisted
        from proud_twisted import rudp
        identity = self.server.identity
        return {"pid": os.getpid(), "tcpPort": self.server.getTcpAddress()[1],
                "udpPort": self.server.getUdpAddress()[1],
                "key": identity.publicKey().toHex() if identity is not None else None,
                "package": os.path.dirname(proud_twisted.__file__),
                "compiled": rudp.COMPILED, "frozen": gc.get_freeze_count(),
                "groupSize": self.groupSize}

    def mark(self, milestone: str = "0") -> dict:
        return self.joinClock.mark(milestone)

    def makeGroup(self, hostIDs: str) -> dict:
        members = [int(hostID) for hostID in hostIDs.split(",")]
        local, cluster = set(self.server.getClientHostIDs()), self.server.cluster
        unknown = [h for h in members
                   if h not in local and (cluster is None or cluster.homeOf(h) is None)]
        if unknown:         # not yet known here to be another server's client
            return {"group": None, "unknown": len(unknown)}
        self.group = None
        for hostID in members:
            self.place(hostID, len(members))
        self.group, group = None, self.group
        return {"group": group}

    def status(self) -> dict:
        server = self.server
        sizes = [len(server.getP2PGroupInfo(group).members) for group in server.getP2PGroups()]
        return {"clients": len(server.getClientHostIDs()),
                "connections": server.getConnectionCount(),
                "groups": len(sizes), "peerEntries": sum(s * (s - 1) for s in sizes),
                "acked": self.acked, "ackFailures": dict(self.ackFailures),
                "leaves": dict(self.leaves), "stats": server.stats.asDict(),
                "cluster": (dataclasses.asdict(server.cluster.stats)
                            if server.cluster is not None else None),
                **self.joinClock.figures(),
                "rss": _common.processRssBytes(os.getpid()),
                "exceptions": self.exceptions}

    def profileStart(self) -> dict:
        # CPU time, not wall time: on a busy machine the wall clock would
        # charge the time the process waited for a core to whatever call
        # (a send, epoll) it was in.
        self.profile = cProfile.Profile(time.process_time)
        self.profile.enable()
        return {"profiling": True}

    def memoryTop(self, top: str = "25") -> dict:
        """The Python heap this process holds, by the source line that
        allocated it (tracemalloc: only when started with PYTHONTRACEMALLOC)."""
        import tracemalloc
        if not tracemalloc.is_tracing():
            return {"memory": "tracemalloc is off (PYTHONTRACEMALLOC unset)"}
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        clients = max(1, len(self.server.getClientHostIDs()))
        traced = sum(s.size for s in snapshot.statistics("filename"))
        heading = (f"{traced / clients:,.0f} bytes of traced Python heap per client"
                   f" ({clients:,} clients); by line:")
        lines = [heading]
        for stat in snapshot.statistics("lineno")[:int(top)]:
            frame = stat.traceback[0]
            lines.append(f"  {stat.size / clients:8,.1f} B/client {stat.count / clients:7.2f}"
                         f" blocks/client  {frame.filename}:{frame.lineno}")
        if tracemalloc.get_traceback_limit() > 1:
            for stat in snapshot.statistics("traceback")[:3]:
                lines.append(f"  {stat.size / clients:,.1f} B/client allocated at:")
                lines.extend("    " + line for line in stat.traceback.format())
        return {"memory": "\n".join(lines)}

    def profileStop(self, top: str = "25") -> dict:
        if self.profile is None:
            return {"profile": ""}
        self.profile.disable()
        out = io.StringIO()
        pstats.Stats(self.profile, stream=out).sort_stats("tottime").print_stats(int(top))
        self.profile = None
        return {"profile": out.getvalue()}
