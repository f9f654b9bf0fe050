"""Where a host's L{RmiEndpoint} is made: at the first attach to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proud_twisted.interfaces import IRmiHost, documentedBy
from proud_twisted.rmi.endpoint import RmiEndpoint, RmiStats, SendFunction
from proud_twisted.rmi.proxy import DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_PENDING_CALLS, Proxy
from proud_twisted.rmi.stub import Stub


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


@documentedBy(IRmiHost)
class RmiHost:
    """L{IRmiHost} for a facade over an engine (C{_engine}, whose C{send}
    takes C{(targets, payload, mode, priority, channel)}) that says which
    HostIDs are groups (C{_isGroup})."""

    _engine: Any

    def _isGroup(self, hostID: int) -> bool:
        raise NotImplementedError

    def attachStub(self, stub: Stub) -> None:
        self._rmi().attachStub(stub)

    def attachProxy(self, declaration: type, *, timeout: float = DEFAULT_CALL_TIMEOUT,
                    maxPendingCalls: int = DEFAULT_MAX_PENDING_CALLS) -> Proxy:
        return self._rmi().attachProxy(declaration, timeout, maxPendingCalls)

    def _rmi(self) -> RmiEndpoint:
        return endpointOf(self._engine, self._engine.send, self._isGroup)

    def _stopRmi(self, reason: str) -> None:
        """Fail the calls still waiting for an answer: this host stops."""
        if self._engine.rmi is not None:
            self._engine.rmi.stop(reason)
