"""Proxies: one method per remote method, that encodes and sends.

C{host.attachProxy(Chat)} gives a proxy whose C{say(target, text, color)}
sends C{Chat.say} to C{target}: the server (C{HOSTID_SERVER}), a client, a
peer, a group, or a list of them. Every method also takes the keyword
options of C{send}:

    - C{mode}: a L{DeliveryMode} (C{RELIABLE} by default);
    - C{priority}: a L{Priority} (C{MEDIUM} by default);
    - C{channel}: 0-255;
    - C{latestOnly}: a key 0-255; the message is sent C{UNRELIABLE_LATEST} on
      that channel, so of the messages sent with that key a receiver gets
      none older than one it already had (positions, aim).

A one-way method returns None. A call with a result takes one host (not a
group, not a list) and returns a Deferred.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from proud_twisted.rmi.declaration import RemoteMethod
from proud_twisted.rmi.errors import RemoteCallFailed, RemoteCallTimeout, TooManyPendingCalls

DEFAULT_CALL_TIMEOUT = 30.0
"""Seconds a call with a result waits for its answer: a reliable message
survives some 10 s of retransmission backoff and a stub that waits for a
database a few more."""
DEFAULT_MAX_PENDING_CALLS = 10000
"""Answers one proxy waits for at once; each waiting call holds a Deferred and
a small record (some 600 bytes), so 10,000 hold about 6 MB."""


class _Pending:
    __slots__ = ("deadline", "deferred", "method", "target")

    def __init__(self, deferred: defer.Deferred[Any], target: int, method: RemoteMethod,
                 deadline: float) -> None:
        self.deferred = deferred
        self.target = target
        self.method = method
        self.deadline = deadline


class Proxy:
    """The base of the proxy classes L{proxyClass} makes.

    @ivar timeout: seconds a call with a result waits (see L{DEFAULT_CALL_TIMEOUT}).
    @ivar maxPendingCalls: answers waited for at once (L{DEFAULT_MAX_PENDING_CALLS}).
    """

    declaration: Any

    def __init__(self, endpoint: Any, timeout: float = DEFAULT_CALL_TIMEOUT,
                 maxPendingCalls: int = DEFAULT_MAX_PENDING_CALLS) -> None:
        if timeout <= 0 or maxPendingCalls < 1:
            raise ValueError("need timeout > 0 and maxPendingCalls >= 1")
        self._endpoint = endpoint
        self.timeout = timeout
        self.maxPendingCalls = maxPendingCalls
        # requestID -> _Pending, oldest (earliest deadline) first.
        self._pending: dict[int, _Pending] = {}
        self._timer: Any = None

    def pendingCalls(self) -> int:
        """How many answers this proxy waits for."""
        return len(self._pending)

    def _call(self, method: RemoteMethod, target: Any, requestID: int, payload: bytes,
              mode: Any, priority: Any, channel: Any, latestOnly: Any) -> defer.Deferred[Any]:
        endpoint = self._endpoint
        if type(target) is not int or endpoint.isGroup(target):
            raise ValueError(f"{method.qualifiedName} has a result: call one host, "
                             f"not {target!r}")
        if len(self._pending) >= self.maxPendingCalls:
            endpoint.stats.callsRefused += 1
            return defer.fail(TooManyPendingCalls(
                f"{method.qualifiedName}: {self.maxPendingCalls} calls already wait "
                f"for an answer"))
        endpoint.send(target, payload, mode, priority, channel, latestOnly)
        d: defer.Deferred[Any] = defer.Deferred()
        deadline = endpoint.clock.seconds() + self.timeout
        self._pending[requestID] = _Pending(d, target, method, deadline)
        endpoint.calls[requestID] = self
        if self._timer is None:
            self._timer = endpoint.clock.callLater(self.timeout, self._expire)
        return d

    def _answered(self, requestID: int) -> _Pending:
        return self._pending.pop(requestID)

    def _expire(self) -> None:
        """Fail every call past its deadline (the oldest come first)."""
        self._timer = None
        clock = self._endpoint.clock
        now = clock.seconds()
        expired = []
        for requestID, pending in self._pending.items():
            if pending.deadline > now:
                self._timer = clock.callLater(pending.deadline - now, self._expire)
                break
            expired.append(requestID)
        for requestID in expired:
            pending = self._pending.pop(requestID)
            del self._endpoint.calls[requestID]
            self._endpoint.stats.timeouts += 1
            pending.deferred.errback(RemoteCallTimeout(
                f"{pending.method.qualifiedName}: no answer from host {pending.target} "
                f"within {self.timeout} s"))

    def stopTimers(self) -> None:
        """Cancel the timeout timer (pending calls then wait until answered)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def failPending(self, reason: str) -> None:
        """Fail every call waiting for an answer with L{RemoteCallFailed}
        (its host stopped or left), and cancel the timer."""
        self.stopTimers()
        pending, self._pending = self._pending, {}
        for requestID, call in pending.items():
            self._endpoint.calls.pop(requestID, None)
            call.deferred.errback(RemoteCallFailed(f"{call.method.qualifiedName}: {reason}"))


def _methodSource(method: RemoteMethod) -> str:
    names = [name for name, _ in method.parameters]
    parameters = ", ".join(["self", "target", *names])
    options = "mode=None, priority=None, channel=None, latestOnly=None"
    arguments = ", ".join(names)
    lines = [f"def {method.name}({parameters}, *, {options}):"]
    if method.result is None:
        lines += ["    try:", f"        _payload = _encode({arguments})",
                  "    except Exception as _e:",
                  "        raise _refused(_e) from _e",
                  ("    self._endpoint.send(target, _payload, mode, priority, channel, "
                  "latestOnly)")]
    else:
        lines += ["    _requestID = self._endpoint.nextRequestID()",
                  "    try:", f"        _payload = _encode(_requestID, {arguments})",
                  "    except Exception as _e:",
                  "        raise _refused(_e) from _e",
                  ("    return self._call(_method, target, _requestID, _payload, mode, "
                  "priority, channel, latestOnly)")]
    return "\n".join(lines) + "\n"


def _proxyMethod(method: RemoteMethod) -> Callable[..., Any]:
    def refused(error: Exception) -> TypeError:
        return TypeError(f"{method.qualifiedName}: cannot encode the arguments: {error}")

    namespace: dict[str, Any] = {"_encode": method.encodeArguments, "_method": method,
                                 "_refused": refused}
    exec(compile(_methodSource(method), f"<rmi proxy {method.qualifiedName}>", "exec"),
         namespace)
    function = namespace[method.name]
    kind = "one-way" if method.result is None else "returns a Deferred"
    function.__doc__ = f"{method.qualifiedName} ({kind}). {method.doc}".strip()
    return typing.cast(Callable[..., Any], function)


def proxyClass(declaration: Any) -> type[Proxy]:
    """The proxy class of a declaration (made once, then cached on it)."""
    cached = declaration.__dict__.get("_rmiProxyClass")
    if cached is not None:
        return typing.cast(type[Proxy], cached)
    members: dict[str, Any] = {method.name: _proxyMethod(method)
                               for method in declaration.methods}
    members.update(declaration=declaration, __module__=declaration.__module__,
                   __doc__=f"Calls {declaration.__name__}'s remote methods.")
    cls = type(f"{declaration.__name__}Proxy", (Proxy,), members)
    declaration._rmiProxyClass = cls
    return cls
