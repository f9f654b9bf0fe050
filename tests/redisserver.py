"""A real C{redis-server} for the cluster tests: on a free loopback port, no
persistence, stopped at the end.

Redis refuses C{--port 0}, so a free port is found by binding a socket to
port 0, closing it and starting Redis there, retrying with another port if
something took it in between. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 10.0
"""Seconds a fresh redis-server has to answer PING (it takes some 10 ms)."""
PORT_ATTEMPTS = 5
POLL = 0.01


def freeLoopbackPort() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    """Whether a Redis on C{port} answers PING with PONG (after AUTH with
    C{password}, if given)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if password is not None:
                s.sendall(_command("AUTH", password))
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _command(*words) -> bytes:
    parts = [w if isinstance(w, bytes) else str(w).encode() for w in words]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class RedisServer:
    """One C{redis-server} process on loopback; L{start}, L{stop} and
    L{start} again on the same port (Redis restarts empty). With a
    C{password}, clients must AUTH first (C{requirepass})."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.directory = tempfile.mkdtemp(prefix="proud-redis-")

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{self.password}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start Redis (on the port it had, if it ran before) and wait until it
        answers PING; raise if it does not within L{START_TIMEOUT}."""
        if self.port is not None:
            if not self._tryStart(self.port):
                raise RuntimeError(f"redis-server could not start again on {self.port}")
            return self
        for _ in range(PORT_ATTEMPTS):
            if self._tryStart(freeLoopbackPort()):
                return self
        raise RuntimeError(f"redis-server did not start in {PORT_ATTEMPTS} attempts")

    def _tryStart(self, port: int) -> bool:
        log = open(os.path.join(self.directory, "redis.log"), "ab")  # noqa: SIM115
        with log:
            process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.directory,
                 "--daemonize", "no"]
                + ([] if self.password is None else ["--requirepass", self.password]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False            # exited: most likely the port was taken
            if ping(port, password=self.password):
                self.port, self.process = port, process
                return True
            time.sleep(POLL)
        process.kill()
        process.wait(START_TIMEOUT)
        raise RuntimeError(f"redis-server on {port} did not answer PING in "
                           f"{START_TIMEOUT} s; see {self.directory}/redis.log")

    def stop(self) -> None:
        """Stop Redis (bounded: killed if it does not exit in time)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(START_TIMEOUT)

    def close(self) -> None:
        """Stop Redis and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def flush(self) -> None:
        """Empty every database (between tests sharing one Redis)."""
        if not self.call("FLUSHALL").startswith(b"+OK"):
            raise RuntimeError("FLUSHALL failed")

    def call(self, *words) -> bytes:
        """Run one command (str or bytes words); the raw reply (short ones)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=START_TIMEOUT) as s:
            if self.password is not None:
                s.sendall(_command("AUTH", self.password))
                s.recv(64)
            s.sendall(_command(*words))
            return s.recv(65536)
