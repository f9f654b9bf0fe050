"""The server side: NetServer, its protocols and the P2P group service."""

from proud_twisted.server.netserver import NetServer

__all__ = ["NetServer"]
