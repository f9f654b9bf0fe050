"""Typed remote method calls, declared once in Python.

Declare remote methods as a L{RemoteInterface} subclass; call them through
the proxy C{host.attachProxy(Declaration)} gives; implement them in a
subclass of C{Declaration.Stub} attached with C{host.attachStub(stub)},
where C{host} is a L{NetServer} or a L{NetClient}. The docs page "Remote
method calls" tells the whole story.
"""

from proud_twisted.rmi.attachment import statsOf
from proud_twisted.rmi.codec import DeclarationError, HostID
from proud_twisted.rmi.declaration import RemoteInterface, RemoteMethod, call
from proud_twisted.rmi.endpoint import RmiStats
from proud_twisted.rmi.errors import (
    MalformedArguments,
    RemoteCallFailed,
    RemoteCallTimeout,
    RmiVersionMismatch,
    TooManyPendingCalls,
)
from proud_twisted.rmi.proxy import DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_PENDING_CALLS, Proxy
from proud_twisted.rmi.stub import DEFAULT_MAX_CALLS_IN_PROGRESS, Stub
from proud_twisted.rmi.wire import RMI_MARKER

__all__ = [
    "RemoteInterface", "RemoteMethod", "call", "HostID", "Stub", "Proxy",
    "RmiStats", "statsOf", "RMI_MARKER",
    "DeclarationError", "MalformedArguments", "RemoteCallFailed", "RemoteCallTimeout",
    "RmiVersionMismatch", "TooManyPendingCalls",
    "DEFAULT_CALL_TIMEOUT", "DEFAULT_MAX_PENDING_CALLS", "DEFAULT_MAX_CALLS_IN_PROGRESS",
]
