"""One load process of scale.py: ``--clients`` real NetClients of one server
(encryption on, the server's key pinned, UDP on 127.0.0.1).

Commands (see ``_common.JsonControl``), a JSON answer each:

- ``go``: every client calls connect in this one reactor turn; answers once
  every join has ended: how many joined, the failures by kind (the
  exception's class, with the refusal reason for
  ``ConnectionRefusedByServer``) and each join's time from this turn (with
  ``--profile``, also the storm's cProfile, top functions by own time);
- ``rejoin BATCH``: connect the clients whose join failed again, BATCH at
  a time (each batch once the one before has ended); how many joined;
- ``hostids``: the HostIDs of the joined clients still on the server;
- ``ready``: of the joined clients still on the server, how many have their
  UDP path to the server confirmed, and the peer entries they hold
  (``len(getPeerHostIDs())``, summed);
- ``trickle RATE SECONDS``: for SECONDS, RATE reliable 32-byte messages a
  second, each from the next joined client (round robin) to the next of its
  peers; answers when done with what was sent;
- ``counts``: messages sent, sent refused, received; clients that left the
  server (``onLeaveServer``) by reason;
- ``leave``: disconnect every client (clients leaving then are not counted).

    python bench/_scale_load.py --port TCP --key HEX --clients N --lifetime S
"""

from __future__ import annotations

import collections
import cProfile
import io
import pstats
import sys
import time

from twisted.internet import defer

import _common

MESSAGE_SIZE = 32


class Counts:
    """What all the clients of this process saw."""

    def __init__(self) -> None:
        self.received = 0
        self.wrongSize = 0
        self.left = collections.Counter()
        self.leaving = False
        self.exceptions = []


def playerClass():
    from proud_twisted import NetClientEvents

    class Player(NetClientEvents):
        """A client's events: counts into the process's L{Counts}."""

        def __init__(self, counts: Counts) -> None:
            self.counts = counts

        def onReceiveUserMessage(self, sender, payload, context) -> None:
            self.counts.received += 1
            if len(payload) != MESSAGE_SIZE:
                self.counts.wrongSize += 1

        def onLeaveServer(self, reason) -> None:
            if not self.counts.leaving:
                self.counts.left[reason.name] += 1

        def onException(self, failure) -> None:
            if len(self.counts.exceptions) < 3:
                self.counts.exceptions.append(failure.getTraceback()[-2000:])

    return Player


def failureKind(failure) -> str:
    from proud_twisted.errors import ConnectionRefusedByServer
    kind = failure.type.__name__
    if failure.check(ConnectionRefusedByServer):
        kind += f" ({getattr(failure.value.reason, 'name', failure.value.reason)})"
    return kind


def setupFor(args):
    async def setup(reactor, log):
        from proud_twisted import NetClient, PublicIdentity, ServerUdpState
        from proud_twisted.errors import SendQueueFull
        key = PublicIdentity.fromHex(args.key)
        counts = Counts()
        Player = playerClass()
        clients = [NetClient(Player(counts), reactor=reactor, serverKey=key,
                             udpInterface=_common.LOOPBACK)
                   for _ in range(args.clients)]
        joined = []
        joinedSet = set()
        sent = [0, 0]           # sent, refused (SendQueueFull or the like)

        async def go() -> dict:
            times, failures = [], collections.Counter()
            # Timed by the CPU clock: waiting for a core is not a call's cost.
            profile = cProfile.Profile(time.process_time) if args.profile else None
            if profile is not None:
                profile.enable()
            start = time.perf_counter()

            def succeeded(_, client):
                times.append(round(time.perf_counter() - start, 5))
                joined.append(client)
                joinedSet.add(client)

            def failed(failure):
                failures[failureKind(failure)] += 1

            joins = [client.connect(_common.LOOPBACK, args.port, args.version,
                                    timeout=args.join_timeout)
                     .addCallbacks(succeeded, failed, callbackArgs=(client,))
                     for client in clients]
            await defer.DeferredList(joins)
            answer = {"joined": len(times), "joinFailures": dict(failures), "times": times}
            if profile is not None:
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(
                    args.profile_top)
                answer["profile"] = out.getvalue()
            return answer

        async def rejoin(batch: str) -> dict:
            """Connect the clients not joined, ``batch`` at a time, each batch
            once the one before has ended."""
            waiting = [c for c in clients if c not in joinedSet and not c.getLocalHostID()]
            size, again, failures = max(1, int(batch)), 0, collections.Counter()
            start = time.perf_counter()

            def succeeded(_, client):
                nonlocal again
                again += 1
                joined.append(client)
                joinedSet.add(client)

            def failed(failure):
                failures[failureKind(failure)] += 1

            for first in range(0, len(waiting), size):
                await defer.DeferredList([
                    client.connect(_common.LOOPBACK, args.port, args.version,
                                   timeout=args.join_timeout)
                    .addCallbacks(succeeded, failed, callbackArgs=(client,))
                    for client in waiting[first:first + size]])
            return {"tried": len(waiting), "joined": again, "joinFailures": dict(failures),
                    "seconds": time.perf_counter() - start}

        def present():
            return [c for c in joined if c.getLocalHostID()]

        def ready() -> dict:
            here = present()
            return {"present": len(here),
                    "confirmed": sum(1 for c in here
                                     if c.getServerUdpState() is ServerUdpState.CONFIRMED),
                    "peerEntries": sum(len(c.getPeerHostIDs()) for c in here),
                    "exceptions": counts.exceptions}

        async def trickle(rate: str, seconds: str) -> dict:
            senders = [(c, c.getPeerHostIDs()) for c in present()]
            senders = [(c, peers) for c, peers in senders if peers]
            body = _common.filler(MESSAGE_SIZE)
            if not senders:
                return {"sent": 0, "refused": 0, "senders": 0}
            before = list(sent)

            def send(index: int) -> None:
                client, peers = senders[index % len(senders)]
                peer = peers[(index // len(senders)) % len(peers)]
                try:
                    client.send(peer, _common.payload(index, body))
                except SendQueueFull:
                    sent[1] += 1
                except Exception:       # the client has left meanwhile
                    sent[1] += 1
                else:
                    sent[0] += 1

            await _common.Trickle(reactor, float(rate), float(seconds), send).start()
            return {"sent": sent[0] - before[0], "refused": sent[1] - before[1],
                    "senders": len(senders)}

        def report() -> dict:
            return {"sent": sent[0], "refused": sent[1], "received": counts.received,
                    "wrongSize": counts.wrongSize, "left": dict(counts.left),
                    "exceptions": counts.exceptions}

        async def leave() -> dict:
            counts.leaving = True
            await defer.DeferredList([defer.maybeDeferred(c.disconnect, linger=0)
                                      for c in joined])
            return {"left": len(joined)}

        return ({"clients": len(clients)},
                {"go": go, "rejoin": rejoin, "ready": ready, "trickle": trickle, "counts": report,
                 "leave": leave,
                 "hostids": lambda: {"hostIDs": [c.getLocalHostID() for c in present()]}})

    return setup


def main() -> int:
    parser = _common.childParser(__doc__)
    parser.add_argument("--clients", type=int, required=True, help="clients to join")
    parser.add_argument("--version", required=True, help="the protocol version (UUID)")
    parser.add_argument("--join-timeout", type=float, default=10.0,
                        help="each client's join timeout (default 10, NetClient's)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the storm (go), answered with the top functions")
    parser.add_argument("--profile-top", type=int, default=25,
                        help="functions listed in the profile (default 25)")
    return _common.runParsed(parser, setupFor)


if __name__ == "__main__":
    sys.exit(main())
