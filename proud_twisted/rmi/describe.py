"""A declaration as text: IDs, methods, parameters and wire sizes.

C{python -m proud_twisted.rmi describe module.Interface} prints it, and the
documentation's RMI page is built from it (the C{rmi-declaration} directive
of C{docs/conf.py}).
"""

from __future__ import annotations

import importlib
from typing import Any

from proud_twisted.rmi.codec import encodeVarint
from proud_twisted.rmi.declaration import RemoteInterface, RemoteMethod
from proud_twisted.rmi.fingerprint import interfaceDigest


def resolve(dotted: str) -> Any:
    """The L{RemoteInterface} subclass called C{dotted} (C{package.module.Name}).

    @raise LookupError: there is none by that name.
    """
    moduleName, _, name = dotted.rpartition(".")
    if not moduleName:
        raise LookupError(f"{dotted!r}: give module.Interface")
    try:
        declaration = getattr(importlib.import_module(moduleName), name)
    except (ImportError, AttributeError) as e:
        raise LookupError(f"{dotted}: {e}") from e
    if not (isinstance(declaration, type) and issubclass(declaration, RemoteInterface)):
        raise LookupError(f"{dotted} is not a RemoteInterface subclass")
    return declaration


def _headerSize(method: RemoteMethod) -> int:
    out = bytearray()
    encodeVarint(method.id, out)
    return 1 + len(out)


def _size(low: int, high: int | None) -> str:
    if high == low:
        return f"{low} B"
    return f"{low}+ B" if high is None else f"{low}-{high} B"


def describeMethod(method: RemoteMethod) -> list[str]:
    parameters = ", ".join(f"{name}: {codec.name}" for name, codec in method.parameters)
    result = "one-way" if method.result is None else method.result.name
    lines = [f"{method.id}  {method.name}({parameters}) -> {result}"]
    if method.raises:
        lines.append("      raises " + ", ".join(e.__name__ for e in method.raises))
    low = high = _headerSize(method)
    highOrNone: int | None = high
    if method.result is not None:
        low, highOrNone = low + 1, high + 5          # the request ID: 1-5 bytes
    for _, codec in method.parameters:
        low += codec.minSize
        if highOrNone is not None and codec.maxSize is not None:
            highOrNone += codec.maxSize
        else:
            highOrNone = None
    lines.append(f"      message {_size(low, highOrNone)}"
                 + "".join(f", {name} {codec.describeSize()}"
                           for name, codec in method.parameters))
    if method.result is not None:
        lines.append(f"      answer 3+ B, result {method.result.describeSize()}")
    if method.doc:
        lines.append("      " + method.doc.splitlines()[0])
    return lines


def describe(declaration: Any) -> str:
    """The text C{python -m proud_twisted.rmi describe} prints for C{declaration}."""
    title = (f"{declaration.__name__}: IDs {declaration.firstID}-{declaration.lastID}, "
             f"fingerprint {interfaceDigest(declaration).hex()}")
    lines = [title, ""]
    for method in declaration.methods:
        lines += describeMethod(method)
    return "\n".join(lines) + "\n"
