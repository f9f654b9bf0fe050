"""Fingerprints of declarations, exchanged at join to catch version skew.

A client's C{HELLO} carries, for every declaration attached to it, the name
and, per method, its ID, name and signature digest. The server compares
them with its own declarations of the same name: a method both sides have
must have the same ID and signature, an ID both sides have must be the
same method. A method only one side has is compatible (adding a method to
the end of a declaration is how a declaration grows).

    fingerprints := varint count, declaration*
    declaration  := str name, varint count, (varint ID, str name, 8-byte digest)*
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from proud_twisted.rmi.codec import decodeStr, decodeVarint, encodeStr, encodeVarint
from proud_twisted.rmi.errors import RmiVersionMismatch

DIGEST_SIZE = 8
_SMALLEST_METHOD = 1 + 1 + DIGEST_SIZE


def interfaceDigest(declaration: Any) -> bytes:
    """8 bytes naming the whole declaration (its name, IDs and signatures)."""
    h = hashlib.sha256(declaration.__name__.encode())
    for method in declaration.methods:
        h.update(method.id.to_bytes(8, "big") + method.digest)
    return h.digest()[:DIGEST_SIZE]


def encodeFingerprints(declarations: Iterable[Any]) -> bytes:
    declarations = list(declarations)
    out = bytearray()
    encodeVarint(len(declarations), out)
    for declaration in declarations:
        encodeStr(declaration.__name__, out)
        encodeVarint(len(declaration.methods), out)
        for method in declaration.methods:
            encodeVarint(method.id, out)
            encodeStr(method.name, out)
            out += method.digest
    return bytes(out)


def decodeFingerprints(data: bytes) -> dict[str, list[tuple[int, str, bytes]]]:
    """The declarations C{encodeFingerprints} wrote.

    @raise ValueError: the bytes are not such a list (IndexError too, for
        bytes that end early).
    """
    result: dict[str, list[tuple[int, str, bytes]]] = {}
    count, pos = decodeVarint(data, 0)
    if count > len(data):
        raise ValueError("more declarations than bytes")
    for _ in range(count):
        name, pos = decodeStr(data, pos)
        methodCount, pos = decodeVarint(data, pos)
        if methodCount * _SMALLEST_METHOD > len(data) - pos:
            raise ValueError("more methods than bytes")
        methods = []
        for _ in range(methodCount):
            methodID, pos = decodeVarint(data, pos)
            methodName, pos = decodeStr(data, pos)
            digest = data[pos:pos + DIGEST_SIZE]
            if len(digest) != DIGEST_SIZE:
                raise ValueError("a digest runs past the end")
            pos += DIGEST_SIZE
            methods.append((methodID, methodName, digest))
        result[name] = methods
    if pos != len(data):
        raise ValueError("bytes after the fingerprints")
    return result


def findMismatch(local: dict[str, Any], remote: bytes) -> RmiVersionMismatch | None:
    """The first incompatibility between the declarations C{local} (by name)
    and the C{remote} fingerprints (empty: no declarations), or None."""
    if not remote:
        return None
    try:
        theirs = decodeFingerprints(remote)
    except (IndexError, ValueError) as e:
        return RmiVersionMismatch("?", "?", f"unreadable fingerprints ({e})")
    for name, methods in theirs.items():
        declaration = local.get(name)
        if declaration is None:
            continue
        byID = {m.id: m for m in declaration.methods}
        byName = {m.name: m for m in declaration.methods}
        for methodID, methodName, digest in methods:
            mine = byName.get(methodName)
            if mine is not None and mine.id != methodID:
                return RmiVersionMismatch(name, methodName,
                                          f"ID {mine.id} on one side, {methodID} on the other")
            if mine is not None and mine.digest != digest:
                return RmiVersionMismatch(name, methodName,
                                          f"the signatures differ (one side has "
                                          f"{mine.signature})")
            other = byID.get(methodID)
            if other is not None and other.name != methodName:
                return RmiVersionMismatch(name, other.name,
                                          f"ID {methodID} is {other.name} on one side, "
                                          f"{methodName} on the other")
    return None
