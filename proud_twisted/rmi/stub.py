"""L{Stub}: the base of the classes that implement a remote interface.

Each declaration has its own base, C{Declaration.Stub}; subclass it and
define the methods you handle, each taking a L{MessageContext} and then the
declared arguments::

    class ChatHandler(Chat.Stub):
        def say(self, context, text, color):
            print(f"host {context.sender} says {text}")

    server.attachStub(ChatHandler())

A method the subclass leaves out is reported through C{onNoRmiProcessed},
as ProudNet does. A method of a call with a result returns the result, or
a Deferred (or a coroutine) of it; raising one of the declared exceptions
makes the caller's Deferred fail with it, any other exception is reported
through C{onException} and fails the caller's Deferred with
L{RemoteCallFailed}.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from proud_twisted.rmi.codec import DeclarationError

DEFAULT_MAX_CALLS_IN_PROGRESS = 16
"""Calls with a result from one host whose answer (a Deferred the stub
returned) is still pending; more are answered at once with
L{RemoteCallFailed}. An honest client rarely has more than one or two in
flight; 10,000 clients at the limit hold 160,000 of the application's
Deferreds, some 100 MB, while the stub's table holds one int per host."""


class Stub:
    """The base of every C{Declaration.Stub} (see the module)."""

    declaration: ClassVar[Any]
    maxCallsInProgress: ClassVar[int] = DEFAULT_MAX_CALLS_IN_PROGRESS
    """Per calling host; see L{DEFAULT_MAX_CALLS_IN_PROGRESS}."""

    def rmiHandlers(self) -> dict[int, Callable[..., Any] | None]:
        """The bound method handling each ID of the declaration (None where
        the subclass defines none), after checking each takes
        C{(context, *arguments)}.

        @raise DeclarationError: a method takes other arguments.
        """
        handlers: dict[int, Callable[..., Any] | None] = {}
        for method in self.declaration.methods:
            handler = getattr(self, method.name, None)
            if handler is not None:
                _checkArity(type(self).__name__, method, handler)
            handlers[method.id] = handler
        return handlers


def _checkArity(stubName: str, method: Any, handler: Callable[..., Any]) -> None:
    names = ["context"] + [name for name, _ in method.parameters]
    try:
        inspect.signature(handler).bind(*names)
    except TypeError:
        raise DeclarationError(
            f"{stubName}.{method.name} must take (context, {', '.join(names[1:])}) "
            f"as {method.qualifiedName} is declared") from None
    except ValueError:
        pass                # no signature to check (a builtin): trust it
