"""The client side: NetClient, its protocols and what it knows of peers."""

from proud_twisted.client.netclient import NetClient

__all__ = ["NetClient"]
