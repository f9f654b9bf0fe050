"""Remote interfaces declared as plain Python classes.

A subclass of L{RemoteInterface} with a C{firstID} declares one remote
method per public method, numbered from C{firstID} in the order written;
the annotations of its parameters say how each argument travels
(L{proud_twisted.rmi.codec}). A method annotated C{-> None} (or not at all)
is one-way; one with any other result type, or decorated with L{call}, is a
call whose proxy returns a Deferred::

    class Shop(RemoteInterface, firstID=6000):
        def say(self, text: str, color: Color) -> None:
            "One-way: the proxy returns None."

        @call(raises=(NotEnoughGold,))
        def buy(self, item: int, count: int) -> int:
            "The proxy's Deferred fires with the gold left, or fails with NotEnoughGold."
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import keyword
import struct
import typing
from collections.abc import Callable
from typing import Any, ClassVar

from proud_twisted.rmi.codec import (
    DeclarationError,
    TypeCodec,
    codecFor,
    decodeVarint,
    encodeVarint,
)
from proud_twisted.rmi.errors import MalformedArguments
from proud_twisted.rmi.wire import ANSWER_ID, FIRST_USER_ID, LAST_ID, RMI_MARKER

RESERVED_METHOD_NAMES = frozenset({
    "method", "methods", "firstID", "lastID", "Stub", "declaration", "timeout",
    "maxPendingCalls", "pendingCalls", "stopTimers", "rmiHandlers", "maxCallsInProgress"})
"""Method names a declaration may not use (its class's, its proxy's and its stub's own)."""
RESERVED_NAMES = frozenset({"self", "target", "mode", "priority", "channel", "latestOnly",
                            "reliable", "context"})
"""Parameter names a declaration may not use (the proxy's and stub's own)."""


@dataclasses.dataclass(frozen=True)
class _CallMark:
    raises: tuple[type[Exception], ...]


def call(*, raises: tuple[type[Exception], ...] = ()) -> Callable[[Any], Any]:
    """Declare a method a call with a result (even C{-> None}: the Deferred
    then fires with None once the stub has run), whose stub may raise the
    exception types C{raises}: the caller's Deferred fails with the same type."""
    for exceptionType in raises:
        if not (isinstance(exceptionType, type) and issubclass(exceptionType, Exception)):
            raise DeclarationError(f"raises= takes exception classes, not {exceptionType!r}")

    def mark(function: Any) -> Any:
        function.__rmiCall__ = _CallMark(tuple(raises))
        return function

    return mark


@dataclasses.dataclass(frozen=True, eq=False)
class RemoteMethod:
    """One declared remote method.

    @ivar result: the codec of the result, or None for a one-way method.
    @ivar encodeArguments: C{([requestID,] *arguments) -> bytes}, the whole
        message (the requestID first for a call with a result).
    @ivar decodeArguments: C{(data, position) -> tuple} of the arguments.
    @ivar digest: 8 bytes naming the signature (the fingerprint's part).
    """

    interface: str
    name: str
    id: int
    parameters: tuple[tuple[str, TypeCodec], ...]
    result: TypeCodec | None
    raises: tuple[type[Exception], ...]
    doc: str
    encodeArguments: Callable[..., bytes]
    decodeArguments: Callable[[bytes, int], tuple[Any, ...]]
    encodeAnswer: Callable[[int, Any], bytes] | None
    """C{(requestID, result) -> bytes}, the whole answer (None for a one-way method)."""
    decodeCall: Callable[[bytes, int], tuple[Any, ...]] | None
    """C{(data, position) -> (requestID, *arguments)} of a call (None for a
    one-way method): what a stub's host reads, in one go."""
    decodeAnswer: Callable[[bytes, int], Any] | None
    """C{(data, position) -> result} of an answer, after its request ID
    (None for a one-way method)."""

    def decode(self, payload: bytes) -> tuple[int | None, tuple[Any, ...]]:
        """The request ID (None for a one-way method) and the arguments of a
        whole message of this method.

        @raise MalformedArguments: the bytes are not such a message; nothing
            else comes out, whatever the bytes.
        """
        try:
            if payload[0] != RMI_MARKER:
                raise ValueError("no RMI marker")
            rmiID, pos = decodeVarint(payload, 1)
            if rmiID != self.id:
                raise ValueError(f"ID {rmiID}, not {self.id}")
            if self.decodeCall is None:
                return None, self.decodeArguments(payload, pos)
            decoded = self.decodeCall(payload, pos)
            return decoded[0], decoded[1:]
        except Exception as e:
            raise MalformedArguments(f"{self.qualifiedName}: {e}") from None

    @property
    def qualifiedName(self) -> str:
        return f"{self.interface}.{self.name}"

    @property
    def signature(self) -> str:
        """What the fingerprint hashes: the wire types, not the parameter names."""
        parameters = ", ".join(codec.name for _, codec in self.parameters)
        result = "one-way" if self.result is None else self.result.name
        raises = ", ".join(e.__name__ for e in self.raises)
        return f"{self.name}({parameters}) -> {result} raises ({raises})"

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.signature.encode()).digest()[:8]


class RemoteInterface:
    """Subclass with C{firstID=} to declare remote methods (see the module).

    The class gets C{methods} (a tuple of L{RemoteMethod}, by ID), C{firstID},
    C{lastID}, and C{Stub}, the base class of its stubs.
    """

    firstID: ClassVar[int]
    lastID: ClassVar[int]
    methods: ClassVar[tuple[RemoteMethod, ...]]
    Stub: ClassVar[type]

    def __init_subclass__(cls, firstID: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if firstID is None:
            raise DeclarationError(f"{cls.__name__} needs a firstID: "
                                   f"class {cls.__name__}(RemoteInterface, firstID=...)")
        if not FIRST_USER_ID <= firstID <= LAST_ID:
            raise DeclarationError(f"{cls.__name__}: firstID {firstID} is outside "
                                   f"{FIRST_USER_ID}..{LAST_ID}")
        functions = [(name, value) for name, value in vars(cls).items()
                     if not name.startswith("_") and inspect.isfunction(value)]
        for name, _ in functions:
            if name in RESERVED_METHOD_NAMES:
                raise DeclarationError(f"{cls.__name__}: the method name {name!r} is reserved")
        if not functions:
            raise DeclarationError(f"{cls.__name__} declares no method")
        cls.firstID = firstID
        cls.lastID = firstID + len(functions) - 1
        if cls.lastID > LAST_ID:
            raise DeclarationError(f"{cls.__name__}: IDs run past {LAST_ID}")
        cls.methods = tuple(_method(cls.__name__, firstID + i, name, function)
                            for i, (name, function) in enumerate(functions))
        from proud_twisted.rmi.stub import Stub
        cls.Stub = type(f"{cls.__name__}Stub", (Stub,), {
            "declaration": cls, "__module__": cls.__module__,
            "__doc__": f"Subclass to implement {cls.__name__}: each method takes "
                       f"(context, *arguments); attach with attachStub."})

    @classmethod
    def method(cls, name: str) -> RemoteMethod:
        """The L{RemoteMethod} called C{name}."""
        for method in cls.methods:
            if method.name == name:
                return method
        raise KeyError(f"{cls.__name__} has no method {name!r}")


def _method(interface: str, methodID: int, name: str, function: Any) -> RemoteMethod:
    where = f"{interface}.{name}"
    try:
        hints = typing.get_type_hints(function)
    except Exception as e:
        raise DeclarationError(f"{where}: cannot resolve its annotations ({e})") from e
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].name != "self":
        raise DeclarationError(f"{where} must take self first")
    codecs = []
    for parameter in parameters[1:]:
        pname = parameter.name
        if parameter.kind is not parameter.POSITIONAL_OR_KEYWORD:
            raise DeclarationError(f"{where}: {pname} must be a plain parameter "
                                   f"(no *args, **kwargs or keyword-only)")
        if parameter.default is not parameter.empty:
            raise DeclarationError(f"{where}: {pname} may not have a default")
        if pname in RESERVED_NAMES or pname.startswith("_") or keyword.iskeyword(pname):
            raise DeclarationError(f"{where}: the parameter name {pname!r} is reserved")
        if pname not in hints:
            raise DeclarationError(f"{where}: {pname} has no annotation")
        codecs.append((pname, codecFor(hints[pname], f"{where}({pname})")))
    mark = getattr(function, "__rmiCall__", None)
    resultType = hints.get("return", None)
    if mark is None and resultType in (None, type(None)):
        result = None
    else:
        result = codecFor(resultType, f"{where} result")
    header = bytearray([RMI_MARKER])
    encodeVarint(methodID, header)
    return RemoteMethod(
        interface, name, methodID, tuple(codecs), result,
        mark.raises if mark is not None else (), inspect.getdoc(function) or "",
        _argumentEncoder(name, bytes(header), codecs, result is not None),
        _argumentDecoder(name, codecs),
        None if result is None else _argumentEncoder(
            f"{name}_answer", bytes([RMI_MARKER, ANSWER_ID]), [("_result", result)], True),
        None if result is None else _argumentDecoder(f"{name}_call", codecs, withRequest=True),
        None if result is None else _argumentDecoder(f"{name}_answer", [("_result", result)],
                                                     single=True))


def _compile(source: str, namespace: dict[str, Any], name: str) -> Any:
    exec(compile(source, f"<rmi {name}>", "exec"), namespace)
    return namespace[name]


# Inline fast paths of the generated code: the common case of each scalar in
# a line or two, falling back to the codec's function (same bytes, checked by
# the tests against the construct schema).
_ENCODE_INLINE = {
    "int": ["if 0 <= {p} < 0x40:", "    _out.append({p} << 1)", "else:", "    {f}({p}, _out)"],
    "HostID": ["if 0 <= {p} < 0x80:", "    _out.append({p})", "elif 0 <= {p} < 0x4000:",
               "    _out.append(({p} & 0x7F) | 0x80)", "    _out.append({p} >> 7)", "else:",
               "    {f}({p}, _out)"],
    "bool": ["_out.append(1 if {p} else 0)"],
    "float": ["_out += _packDouble({p})"],
}
_DECODE_INLINE = {
    "int": ["_b = _data[_pos]", "if _b < 0x80:", "    {p} = (_b >> 1) ^ -(_b & 1)",
            "    _pos += 1", "else:", "    {p}, _pos = {f}(_data, _pos)"],
    "HostID": ["_b = _data[_pos]", "if _b < 0x80:", "    {p} = _b", "    _pos += 1",
               "elif _data[_pos + 1] < 0x80:", "    {p} = (_b & 0x7F) | (_data[_pos + 1] << 7)",
               "    _pos += 2", "else:", "    {p}, _pos = {f}(_data, _pos)"],
    "bool": ["{p} = _data[_pos] != 0", "_pos += 1"],
    "float": ["{p}, = _unpackDouble(_data, _pos)", "_pos += 8"],
}
_DOUBLE = struct.Struct("<d")
_REQUEST_ID = TypeCodec("HostID", encodeVarint, decodeVarint, 1, 10)
"""A request ID reads as a HostID does: an unsigned varint."""


def _codeLines(codecs: list[tuple[str, TypeCodec]], namespace: dict[str, Any], prefix: str,
               function: Callable[[TypeCodec], Any], inline: dict[str, list[str]],
               fallback: str) -> list[str]:
    """The generated lines for each C{(parameter, codec)}: the C{inline} fast
    path of its type, else a call of the codec's function (C{{f}}), put in
    C{namespace} as C{prefix} and the parameter's index."""
    lines = []
    for i, (pname, codec) in enumerate(codecs):
        namespace[f"{prefix}{i}"] = function(codec)
        template = inline.get(codec.name, [fallback])
        lines += ["    " + line.format(p=pname, f=f"{prefix}{i}") for line in template]
    return lines


def _argumentEncoder(name: str, header: bytes, codecs: list[tuple[str, TypeCodec]],
                     withRequest: bool) -> Callable[..., bytes]:
    """C{encode([requestID,] *arguments) -> bytes}, made for this method's
    parameters (a few lines per argument, no loop)."""
    namespace: dict[str, Any] = {"_HEADER": header, "_packDouble": _DOUBLE.pack}
    if withRequest:
        codecs = [("_requestID", _REQUEST_ID), *codecs]
    lines = ["    _out = bytearray(_HEADER)",
             *_codeLines(codecs, namespace, "_e", lambda c: c.encode, _ENCODE_INLINE,
                         "{f}({p}, _out)"),
             "    return bytes(_out)"]
    parameters = ", ".join(pname for pname, _ in codecs)
    source = f"def encode_{name}({parameters}):\n" + "\n".join(lines) + "\n"
    return typing.cast(Callable[..., bytes], _compile(source, namespace, f"encode_{name}"))


def _argumentDecoder(name: str, codecs: list[tuple[str, TypeCodec]], *,
                     withRequest: bool = False, single: bool = False
                     ) -> Callable[[bytes, int], Any]:
    """C{decode(data, position) -> arguments}, refusing bytes left over: the
    tuple of the arguments, C{(requestID, *arguments)} C{withRequest}, or the
    one value C{single}."""
    namespace: dict[str, Any] = {"_unpackDouble": _DOUBLE.unpack_from}
    if withRequest:
        codecs = [("_requestID", _REQUEST_ID), *codecs]
    lines = _codeLines(codecs, namespace, "_d", lambda c: c.decode, _DECODE_INLINE,
                       "{p}, _pos = {f}(_data, _pos)")
    lines.append("    if _pos != len(_data):")
    lines.append("        raise ValueError(f'{len(_data) - _pos} bytes after the arguments')")
    values = codecs[0][0] if single else "".join(f"{pname}, " for pname, _ in codecs)
    lines.append(f"    return ({values})")
    source = f"def decode_{name}(_data, _pos):\n" + "\n".join(lines) + "\n"
    return typing.cast(Callable[[bytes, int], tuple[Any, ...]],
                       _compile(source, namespace, f"decode_{name}"))
