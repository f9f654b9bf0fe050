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
from proud_twisted.rmi.errors import RemoteCallFailed, RemoteCallTimeout

DEFAULT_CALL_TIMEOUT = 30.0
"""Seconds a call with a result waits for its answer: a reliable message
survives some 10 s of retransmission backoff and a stub that waits for a
database a few more."""
DEFAULT_MAX_PENDING_CALLS = 10000
"""Answers one proxy waits for at once; each waiting call holds a Deferred and
a small record (some 600 bytes), so 10,000 hold about 6 MB."""


PendingCall = tuple[defer.Deferred[Any], int, RemoteMethod, float, "Proxy"]
"""A call waiting for its answer: C{(deferred, target, method, deadline,
proxy)} (a tuple: one is made per call)."""


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
        # requestID -> the call, oldest (earliest deadline) first.
        self._pending: dict[int, PendingCall] = {}
        self._timer: Any = None

    def pendingCalls(self) -> int:
        """How many answers this proxy waits for."""
        return len(self._pending)

    def _expire(self) -> None:
        """Fail every call past its deadline (the oldest come first)."""
        self._timer = None
        clock = self._endpoint.clock
        now = clock.seconds()
        expired = []
        for requestID, (_, _, _, deadline, _) in self._pending.items():
            if deadline > now:
                self._timer = clock.callLater(deadline - now, self._expire)
                break
            expired.append(requestID)
        for requestID in expired:
            deferred, target, method, _, _ = self._pending.pop(requestID)
            del self._endpoint.calls[requestID]
            self._endpoint.stats.timeouts += 1
            deferred.errback(RemoteCallTimeout(
                f"{method.qualifiedName}: no answer from host {target} "
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
        for requestID, (deferred, _, method, _, _) in pending.items():
            self._endpoint.calls.pop(requestID, None)
            deferred.errback(RemoteCallFailed(f"{method.qualifiedName}: {reason}"))


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
        lines += ["    _endpoint = self._endpoint",
                  "    _requestID = _endpoint.nextRequestID()",
                  "    try:", f"        _payload = _encode(_requestID, {arguments})",
                  "    except Exception as _e:",
                  "        raise _refused(_e) from _e",
                  ("    return _endpoint.call(self, _method, target, _requestID, _payload, "
                   "mode, priority, channel, latestOnly)")]
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
