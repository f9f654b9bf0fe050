"""pytest fixtures shared by the test modules."""

import os
import shutil

import pytest

from tests.redisserver import REDIS_SERVER, RedisServer


@pytest.fixture(scope="session")
def redisServer():
    """A real redis-server of this test session, on a free loopback port with
    no persistence; stopped (and its directory removed) at the end."""
    if not shutil.which(REDIS_SERVER):
        if os.environ.get("CI"):
            pytest.fail(f"{REDIS_SERVER} is missing (.ci/run installs redis-server)")
        pytest.skip(f"{REDIS_SERVER} is not installed (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis(redisServer):
    """The session's Redis, emptied for this test (and started again if a
    test stopped it)."""
    if redisServer.process is None:
        redisServer.start()
    redisServer.flush()
    return redisServer


@pytest.fixture
def world(redis):
    """In-process cluster servers and their clients on the test's Redis
    (L{tests.clustersupport.ClusterWorld}), stopped at the end."""
    from tests.clustersupport import ClusterWorld

    world = ClusterWorld(redis)
    yield world
    world.close()
