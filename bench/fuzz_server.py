"""Fuzz a live server: a million hostile TCP streams and UDP datagrams.

Starts a NetServer on 127.0.0.1 with two honest NetClients in one relayed
P2P group that exchange sequence-numbered reliable messages the whole time
(the receiver checks each arrives once, intact and in order), joins a few
insiders (attackers that completed the real handshake and joined, so what
they seal reaches the parsers behind the encryption), and throws
``--inputs`` hostile inputs derived from valid frames (see tests/fuzzing.py):
about 90 % UDP datagrams and 10 % TCP streams, each stream a connection
with its own script.

Pass criteria (exit status 1 if any fails):

- every input was thrown within ``--max-seconds``;
- the server keeps running, and a fresh client joins and is heard after it;
- no failure (unhandled exception) or error was logged;
- the honest clients lost nothing, received nothing out of order or twice,
  and stayed connected;
- the server's memory stayed bounded: RSS grew at most ``--max-rss-growth``
  MB between the middle and the end of the run, and after it the server
  holds exactly the honest clients' and insiders' connections.

All traffic stays on the loopback interface (hostile TCP streams leave from
127.0.0.2 to 127.0.0.33 so short-lived connections do not run out of ports);
every loop is bounded in count and in time.

    python bench/fuzz_server.py                      # 1,000,000 inputs
    python bench/fuzz_server.py --inputs 50000 --seed 7
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    globalLogBeginner,
)

import _common

# The fuzzing harness belongs to the tests (tests/test_fuzz_server.py runs it
# on a small budget, this script on a large one).
from tests.fuzzing import FuzzConfig, FuzzHarness


def parseOptions(argv=None) -> argparse.Namespace:
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--inputs", type=int, default=1_000_000,
                        help="hostile inputs to throw, TCP streams and UDP datagrams"
                             " (default 1,000,000)")
    parser.add_argument("--tcp-share", type=float, default=0.10,
                        help="share of the inputs that are TCP streams (default 0.10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="stop throwing after this long (default 1800)")
    parser.add_argument("--tcp-concurrency", type=int, default=64,
                        help="hostile TCP connections open at once, at most 200"
                             " (default 64)")
    parser.add_argument("--udp-in-flight", type=int, default=48,
                        help="hostile datagrams sent but not yet read by the server"
                             " (default 48)")
    parser.add_argument("--insiders", type=int, default=2,
                        help="attackers that join and seal their inputs (default 2)")
    parser.add_argument("--max-rss-growth", type=float, default=64.0,
                        help="MB the process may grow in the second half (default 64)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slower)")
    parser.add_argument("--log", metavar="FILE",
                        help="write every log event at warning level or above to FILE")
    parser.add_argument("--progress", type=float, default=10.0,
                        help="seconds between progress lines (default 10)")
    args = parser.parse_args(argv)
    if args.inputs < 1 or not 0 <= args.tcp_share <= 1 or args.max_seconds <= 0:
        parser.error("--inputs must be >= 1, --tcp-share in [0, 1], --max-seconds > 0")
    if not 1 <= args.tcp_concurrency <= 200:
        parser.error("--tcp-concurrency must be in [1, 200]")
    return args


def main(reactor, args) -> defer.Deferred:
    observers = []
    if args.log:
        logFile = open(args.log, "w")  # noqa: SIM115 - open for the whole run
        observers.append(FilteringLogObserver(
            FileLogObserver(logFile, formatEventAsClassicLogText),
            [LogLevelFilterPredicate(LogLevel.warn)]))
    # Start logging (to FILE or nowhere) so the log buffer of early events
    # does not grow; the harness watches the log on its own.
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
    config = FuzzConfig(
        inputs=args.inputs, tcpShare=args.tcp_share, seed=args.seed,
        maxSeconds=args.max_seconds, tcpConcurrency=args.tcp_concurrency,
        udpInFlight=args.udp_in_flight, insiders=args.insiders,
        maxRssGrowthMB=args.max_rss_growth, tracemalloc=args.tracemalloc,
        drainSeconds=60.0, sampleInterval=2.0,
        progress=lambda line: print(line, flush=True), progressInterval=args.progress)
    print(f"fuzzing a live server with {args.inputs:,} inputs"
          f" (TCP share {args.tcp_share:g}, seed {args.seed})", flush=True)

    def done(result):
        print(result.report(), flush=True)
        if result.problems():
            raise SystemExit(1)

    return FuzzHarness(config, reactor).run().addCallback(done)


if __name__ == "__main__":
    arguments = parseOptions()
    task.react(main, [arguments])
