"""Goodput of our session under emulated random loss, as a ratio to its
goodput without loss, over loopback UDP.  Each datagram either session sends
is dropped with probability p (seeded).  Goal at 5 %: ratio >= 0.5; 1 % and
10 % are printed for information.

    python bench/rudp_loss.py [--messages 20000] [--size 1024] [--seed 1] [--repeat 1]
"""

from __future__ import annotations

import _common

GOAL = 0.5
MAIN_LOSS = 0.05
LOSSES = (0.0, MAIN_LOSS, 0.01, 0.10)


async def run(reactor, args, profile) -> None:
    print(f"goodput of {args.messages} reliable ordered messages of {args.size} B over"
          f" loopback UDP, each datagram dropped with probability p; {args.repeat} run(s)")
    goodputs = {loss: [] for loss in LOSSES}
    for i in range(1, args.repeat + 1):
        for loss in LOSSES:
            result = await _common.stream(reactor, args, args.messages, args.size, loss,
                                          profile if loss == MAIN_LOSS else _common.NO_PROFILE)
            result.describe(f"#{i} p={loss:.0%}")
            goodputs[loss].append(result.megabytesPerSecond)
    lossless = _common.median(goodputs[0.0])
    for loss in LOSSES[1:]:
        main = loss == MAIN_LOSS
        _common.report(f"goodput at {loss:.0%} loss" + ("" if main else " (information)"),
                       _common.median(goodputs[loss]), lossless, "MB/s", "ours without loss",
                       GOAL if main else None)


if __name__ == "__main__":
    _common.runScript(__doc__, run, messages=20000, size=1024, timeout=300.0, repeat=1)
