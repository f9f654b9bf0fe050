"""C{twistd proudserver --cluster ...}: the cluster options (the process
running them is in test_cluster_processes)."""

import pytest
from twisted.python import usage

from proud_twisted.cluster.cluster import DEFAULT_TTL
from proud_twisted.tap import Options, makeService


def parse(*args):
    config = Options()
    config.parseOptions(["--no-encryption", *args])
    return config


CLUSTER = ("--cluster", "redis://10.0.0.9:7000/2", "--server-id", "zone-1",
           "--advertise", "198.51.100.7")


def test_withoutClusterTheServerHasNone():
    config = parse()
    assert config["cluster"] is None
    assert makeService(config).getServiceNamed("proudserver").cluster is None


def test_clusterOptionsMakeTheServersCluster():
    config = parse(*CLUSTER, "--tag", "eu", "--cluster-ttl", "4")
    cluster = makeService(config).getServiceNamed("proudserver").cluster
    assert (cluster.address.host, cluster.address.port, cluster.address.db) == (
        "10.0.0.9", 7000, 2)
    assert (cluster.serverID, cluster.advertise, cluster.tag) == ("zone-1", "198.51.100.7", "eu")
    assert (cluster.ttl, cluster.heartbeat) == (4.0, 0.8)
    assert cluster.direct is not None
    assert parse(*CLUSTER)["cluster-ttl"] == DEFAULT_TTL
    config = parse(*CLUSTER, "--no-direct-relay")
    assert makeService(config).getServiceNamed("proudserver").cluster.direct is None


@pytest.mark.parametrize(("args", "option"), [
    (("--cluster", "redis://h"), "--server-id"),
    (("--cluster", "redis://h", "--server-id", "a"), "--advertise"),
    (("--server-id", "a"), "--server-id"),
    (("--advertise", "h"), "--advertise"),
    (("--cluster", "http://h", "--server-id", "a", "--advertise", "h"), "--cluster"),
    (("--cluster", "redis://h/x", "--server-id", "a", "--advertise", "h"), "--cluster"),
    (("--cluster", "redis://h", "--server-id", "a b", "--advertise", "h"), "--server-id"),
    ((*CLUSTER, "--cluster-ttl", "0"), "--cluster-ttl"),
    (("--no-direct-relay",), "--no-direct-relay"),
])
def test_mistakesAreUsageErrorsNamingTheOption(args, option):
    with pytest.raises(usage.UsageError, match=option):
        parse(*args)


def test_helpListsTheClusterOptions():
    text = str(Options())
    for option in ("--cluster", "--server-id", "--advertise", "--tag", "--cluster-ttl",
                   "--no-direct-relay"):
        assert option in text
