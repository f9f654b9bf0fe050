"""The cluster's exceptions."""

from proud_twisted.errors import ProudError


class ClusterUnavailable(ProudError):
    """Redis cannot be reached (or did not answer in time): the cluster call
    failed. The server keeps serving its own clients, and rejoins the
    cluster by itself when Redis is back."""


class UnknownServer(ProudError, KeyError):
    """A server ID that is not a live member of the cluster."""

    def __str__(self) -> str:
        return Exception.__str__(self)
