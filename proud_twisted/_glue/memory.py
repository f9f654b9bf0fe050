"""Handing freed heap memory back to the operating system.

A server that drops the cipher contexts of idle clients frees thousands of
small blocks scattered over the heap; glibc keeps them for reuse and the
process's resident memory stays as high as it was during the last join
storm. C{malloc_trim(0)} returns the free pages among them. Elsewhere
(another C library, another OS) L{returnFreedMemory} does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _findMallocTrim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_mallocTrim = _findMallocTrim()


def returnFreedMemory() -> bool:
    """Give the free pages of the heap back to the OS; whether it could."""
    if _mallocTrim is None:
        return False
    _mallocTrim(0)
    return True
