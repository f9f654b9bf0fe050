"""The test harness's own redis-server: started on a free port, no
persistence, stopped and started again on the same port."""

import socket

from tests.redisserver import RedisServer, ping


def command(port: int, *words: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(" ".join(words).encode() + b"\r\n")
        return s.recv(4096)


def test_answersPingWithoutPersistence(redis):
    assert ping(redis.port)
    assert b"appendonly\r\n$2\r\nno" in command(redis.port, "CONFIG", "GET", "appendonly")
    # `save` is empty: no snapshots.
    assert command(redis.port, "CONFIG", "GET", "save").endswith(b"$4\r\nsave\r\n$0\r\n\r\n")


def test_stopsAndStartsAgainOnTheSamePortEmpty():
    server = RedisServer().start()
    try:
        port = server.port
        assert command(port, "SET", "k", "v") == b"+OK\r\n"
        server.stop()
        assert not ping(port)
        server.start()
        assert server.port == port
        assert command(port, "GET", "k") == b"$-1\r\n"      # no persistence
    finally:
        server.close()
    assert not ping(port)


def test_twoServersGetTwoPorts(redis):
    other = RedisServer().start()
    try:
        assert other.port != redis.port
        assert ping(other.port) and ping(redis.port)
    finally:
        other.close()
