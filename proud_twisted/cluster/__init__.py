"""Many server processes, one game: a cluster coordinated by Redis.

See L{Cluster} and the "Running many servers" page of the docs.
"""

from proud_twisted.cluster.cluster import Cluster
from proud_twisted.cluster.errors import ClusterUnavailable, UnknownServer
from proud_twisted.cluster.events import ClusterEvents
from proud_twisted.cluster.interfaces import ICluster, IClusterEvent
from proud_twisted.cluster.serverinfo import ServerInfo
from proud_twisted.cluster.stats import ClusterStats

__all__ = ["Cluster", "ClusterEvents", "ClusterStats", "ClusterUnavailable", "ICluster",
           "IClusterEvent", "ServerInfo", "UnknownServer"]
