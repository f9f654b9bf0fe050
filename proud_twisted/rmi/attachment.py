"""Where a host's L{RmiEndpoint} is made: at the first attach to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proud_twisted.rmi.endpoint import RmiEndpoint, RmiStats, SendFunction


def endpointOf(engine: Any, send: SendFunction,
               isGroup: Callable[[int], bool]) -> RmiEndpoint:
    """The RMI endpoint of a host's C{engine}, made and installed on first use
    (until then every user message goes to C{onReceiveUserMessage})."""
    endpoint = engine.rmi
    if endpoint is None:
        endpoint = engine.rmi = RmiEndpoint(send, isGroup, engine.reactor, engine.dispatch)
    return endpoint


def statsOf(host: Any) -> RmiStats:
    """The L{RmiStats} of a L{NetServer} or L{NetClient} (all zero before
    anything is attached)."""
    endpoint = host._engine.rmi
    return RmiStats() if endpoint is None else endpoint.stats
