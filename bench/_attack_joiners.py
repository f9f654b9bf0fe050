"""One join-storm process of attacks.py: ``--clients`` NetClients that all
call connect in the same reactor turn when told ``go``, and answer with how
each join ended (the times in seconds from connect to joined).

Commands (see ``_common.JsonControl``): ``go``; ``leave`` (disconnect them all).

    python bench/_attack_joiners.py --port TCP --key HEX --clients N --lifetime S
"""

from __future__ import annotations

import collections
import sys
import time

from twisted.internet import defer

import _common


def setupFor(args):
    async def setup(reactor, log):
        from proud_twisted import NetClient, PublicIdentity
        from proud_twisted.errors import JoinTimeout
        key = PublicIdentity.fromHex(args.key)
        clients = [NetClient(reactor=reactor, serverKey=key, udpInterface=_common.LOOPBACK)
                   for _ in range(args.clients)]

        async def go() -> dict:
            times, timeouts, failures = [], 0, collections.Counter()

            def joined(_, start):
                times.append(time.perf_counter() - start)

            def failed(failure):
                nonlocal timeouts
                if failure.check(JoinTimeout):
                    timeouts += 1
                else:
                    failures[f"{failure.type.__name__}: {failure.getErrorMessage()}"] += 1

            joins = []
            for client in clients:
                start = time.perf_counter()
                joins.append(client.connect(_common.LOOPBACK, args.port, _common.ATTACK_VERSION,
                                            timeout=args.join_timeout)
                             .addCallbacks(joined, failed, callbackArgs=(start,)))
            await defer.DeferredList(joins)
            return {"joined": len(times), "timeouts": timeouts, "otherFailures": dict(failures),
                    "times": times}

        async def leave() -> dict:
            await defer.DeferredList([defer.maybeDeferred(c.disconnect, linger=0)
                                      for c in clients])
            return {"left": len(clients)}

        return {"clients": len(clients)}, {"go": go, "leave": leave}

    return setup


def main() -> int:
    parser = _common.childParser(__doc__)
    parser.add_argument("--clients", type=int, required=True, help="clients to join")
    parser.add_argument("--join-timeout", type=float, default=10.0,
                        help="each client's join timeout (default 10, NetClient's)")
    return _common.runParsed(parser, setupFor)


if __name__ == "__main__":
    sys.exit(main())
