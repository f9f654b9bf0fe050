"""Builds the reliable-UDP core with mypyc where it can.

The modules listed in COMPILED (the sans-I/O session, the drivers that run it
and the path state on the reactor, the AEAD record channel every datagram
passes, and the RMI endpoint and varints every remote call passes) are
ordinary, fully typed Python; mypyc turns them into C extensions that run
several times faster and import in their place.
Where mypyc or a C compiler is missing, or PROUD_TWISTED_PURE is set, the
package installs as pure Python and works the same, only slower.
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "proud_twisted/_crypto/channel.py",
    "proud_twisted/_glue/coredriver.py",
    "proud_twisted/rudp/acks.py",
    "proud_twisted/rudp/congestion.py",
    "proud_twisted/rudp/events.py",
    "proud_twisted/rudp/fifo.py",
    "proud_twisted/rudp/frames.py",
    "proud_twisted/rudp/reassembly.py",
    "proud_twisted/rudp/recovery.py",
    "proud_twisted/rudp/rtt.py",
    "proud_twisted/rudp/sendqueue.py",
    "proud_twisted/rudp/session.py",
    "proud_twisted/_glue/sessiondriver.py",
    "proud_twisted/rmi/endpoint.py",
    "proud_twisted/rmi/varint.py",
]


class OptionalBuildExt(build_ext):
    """A compiled module that fails to build leaves its pure-Python source in charge."""

    def run(self):
        try:
            super().run()
        except Exception as e:
            self.warn(f"not compiling the reliable-UDP core ({e}); it runs as pure Python")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            self.warn(f"not compiling {ext.name} ({e}); it runs as pure Python")


def extensions():
    if os.environ.get("PROUD_TWISTED_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    try:
        # Type-check only these modules (the rest of the package stays
        # interpreted and is not held to mypy's rules).
        options = ["--follow-imports=silent", "--ignore-missing-imports"]
        return mypycify(options + COMPILED, opt_level="3", group_name="proud_twisted_rudp")
    except Exception as e:
        print(f"warning: mypyc cannot compile the reliable-UDP core ({e}); pure Python")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
