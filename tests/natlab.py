"""A real NAT lab: Linux network namespaces with iptables MASQUERADE routers.

Topology (every name starts with a short per-run prefix ``<p>``)::

    <p>pub   bridge <p>br, 203.0.113.1/24 (the server's public address)
      |-- <p>r1b ~ <p>r1w  router <p>r1: WAN 203.0.113.11, LAN bridge <p>r1l 10.1.0.1/24
      |                      |-- <p>h1p ~ <p>h1e  host <p>h1: 10.1.0.2, default via 10.1.0.1
      |                      `-- <p>h2p ~ <p>h2e  host <p>h2: 10.1.0.3 (same NAT as h1)
      `-- <p>r2b ~ <p>r2w  router <p>r2: WAN 203.0.113.12, LAN 10.2.0.1/24 ...

Nothing is connected to the machine's own namespace: veth pairs are created
directly inside the lab's namespaces, no namespace has a route beyond the
203.0.113.0/24 segment and its routers' LANs, so lab traffic cannot leave the
lab. Every namespace (and with it every interface) is deleted on close, also
when a test fails, and at interpreter exit for labs left open.

Routers:
  - ``"cone"``: ``MASQUERADE`` on the WAN (the source port is kept when it
    can be: one mapping for every destination), conntrack filtering (only
    replies to flows the LAN opened come in); unsolicited NEW packets from the
    WAN are dropped in INPUT and FORWARD, as a home router does. Dropping them
    also keeps the first unsolicited punch from creating a conntrack entry
    that would clash with the outbound mapping made a moment later.
  - ``"symmetric"``: the same with ``--random-fully``: a new public port for
    every destination.

Run processes inside with L{NatLab.run}, or start the JSON-lines agents
(L{tests.natlab_agent}) with L{NatLab.startServer} / L{NatLab.startClient}
and wait for their events with L{Agent.waitFor}: every wait has a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from typing_extensions import Self  # (Twisted's dependency; typing.Self is 3.11+)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC_PREFIX = "203.0.113."
SERVER_ADDRESS = PUBLIC_PREFIX + "1"
NAT_KINDS = ("cone", "symmetric")
COMMAND_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
MAX_IFNAME = 15

_openLabs = set()
_openLabsLock = threading.Lock()


class LabError(Exception):
    """Building, driving or tearing down the lab failed."""


class LabTimeout(LabError, AssertionError):
    """An awaited event did not come before its deadline."""


def newPrefix() -> str:
    """A short random prefix for one lab's namespace and interface names."""
    return "nl" + secrets.token_hex(2)


def _run(argv, timeout: float = COMMAND_TIMEOUT, check: bool = True):
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"{' '.join(argv)}: {e}") from e
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}): "
                       f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def listNamespaces() -> list:
    result = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def labAvailable() -> tuple:
    """C{(True, "")} if a lab can be built here, else C{(False, why not)}.

    Needs root, a working C{ip netns} and iptables (with the nat table and
    the conntrack match) inside a namespace.
    """
    if sys.platform != "linux":
        return False, f"the NAT lab needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "the NAT lab needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return False, (f"{tool!r} not found (apt-get install -y "
                           f"{'iproute2' if tool == 'ip' else 'iptables'})")
    probe = newPrefix() + "chk"
    try:
        _run(["ip", "netns", "add", probe])
    except LabError as e:
        return False, f"ip netns does not work: {e}"
    try:
        _run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-A", "POSTROUTING",
              "-o", "lo", "-j", "MASQUERADE", "--random-fully"])
        _run(["ip", "netns", "exec", probe, "iptables", "-A", "INPUT", "-i", "lo",
              "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"])
    except LabError as e:
        return False, f"iptables does not work in a namespace: {e}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return True, ""


@dataclass
class Router:
    """A NAT router: WAN on the public segment, LAN bridge for its hosts."""

    index: int
    namespace: str
    kind: str
    wan: str                    # WAN interface (inside the router)
    wanAddress: str
    lan: str                    # LAN bridge (inside the router)
    lanAddress: str
    lanPrefix: str              # e.g. "10.1.0."
    hosts: list = field(default_factory=list)


@dataclass
class Host:
    """A host namespace behind a router."""

    index: int
    namespace: str
    router: Router
    address: str


class NatLab:
    """Namespaces, a public segment and NAT routers; a context manager.

    C{with NatLab() as lab:} builds the public namespace; add routers and
    hosts with L{addRouter} / L{addHost}. Leaving the block (or L{close})
    kills every process started with L{run} and deletes every namespace.
    """

    def __init__(self, prefix: str | None = None, serverAddress: str = SERVER_ADDRESS) -> None:
        self.prefix = prefix if prefix is not None else newPrefix()
        if len(self.prefix) > MAX_IFNAME - 4 or not self.prefix.isalnum():
            raise ValueError("prefix must be alphanumeric, at most 11 characters")
        self.serverAddress = serverAddress
        self.pub = self.prefix + "pub"
        self.bridge = self.prefix + "br"
        self.routers = []
        self.hosts = []
        self.namespaces = []        # creation order
        self.processes = []
        self.agents = []
        self._cuts = set()
        self._linksCut = set()
        self._closed = False
        self.tmpdir = tempfile.mkdtemp(prefix=self.prefix + "-")

    # Building

    def __enter__(self) -> Self:
        with _openLabsLock:
            _openLabs.add(self)
        try:
            _exitOnSigterm()
            self._addNamespace(self.pub)
            self._ip(self.pub, "link", "add", self.bridge, "type", "bridge")
            self._ip(self.pub, "addr", "add", f"{self.serverAddress}/24", "dev", self.bridge)
            self._ip(self.pub, "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *excinfo) -> None:
        self.close()

    def addRouter(self, kind: str = "cone", lanPrefix: str | None = None) -> Router:
        """A NAT router of C{kind} (C{"cone"} or C{"symmetric"}) on the public segment.

        Its LAN is C{lanPrefix}0/24 (default C{10.<n>.0.}, one per router);
        give two routers the same one to model two homes that both use, say,
        C{"192.168.1."}.
        """
        if kind not in NAT_KINDS:
            raise ValueError(f"kind must be one of {NAT_KINDS}")
        index = len(self.routers) + 1
        if index > 200:
            raise LabError("too many routers")
        if lanPrefix is None:
            lanPrefix = f"10.{index}.0."
        ns = self._name(f"r{index}")
        router = Router(index, ns, kind, wan=self._name(f"r{index}w"),
                        wanAddress=f"{PUBLIC_PREFIX}{10 + index}",
                        lan=self._name(f"r{index}l"), lanAddress=f"{lanPrefix}1",
                        lanPrefix=lanPrefix)
        self._addNamespace(ns)
        port = self._name(f"r{index}b")
        self._ip(ns, "link", "add", router.wan, "type", "veth", "peer", "name", port,
                 "netns", self.pub)
        self._ip(self.pub, "link", "set", port, "master", self.bridge)
        self._ip(self.pub, "link", "set", port, "up")
        self._ip(ns, "addr", "add", f"{router.wanAddress}/24", "dev", router.wan)
        self._ip(ns, "link", "set", router.wan, "up")
        self._ip(ns, "link", "add", router.lan, "type", "bridge")
        self._ip(ns, "addr", "add", f"{router.lanAddress}/24", "dev", router.lan)
        self._ip(ns, "link", "set", router.lan, "up")
        self._exec(ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", router.wan, "-j", "MASQUERADE"]
        if kind == "symmetric":
            masquerade.append("--random-fully")
        self._iptables(ns, *masquerade)
        # A home router drops what nobody behind it asked for, to itself and beyond.
        for chain in ("INPUT", "FORWARD"):
            self._iptables(ns, "-A", chain, "-i", router.wan, "-m", "conntrack",
                           "--ctstate", "NEW", "-j", "DROP")
        self.routers.append(router)
        return router

    def addHost(self, router: Router) -> Host:
        """A host namespace on C{router}'s LAN, its default route via the router."""
        index = len(self.hosts) + 1
        ns = self._name(f"h{index}")
        address = f"{router.lanPrefix}{2 + len(router.hosts)}"
        host = Host(index, ns, router, address)
        self._addNamespace(ns)
        inner, port = self._name(f"h{index}e"), self._name(f"h{index}p")
        self._ip(router.namespace, "link", "add", port, "type", "veth", "peer",
                 "name", inner, "netns", ns)
        self._ip(router.namespace, "link", "set", port, "master", router.lan)
        self._ip(router.namespace, "link", "set", port, "up")
        self._ip(ns, "addr", "add", f"{address}/24", "dev", inner)
        self._ip(ns, "link", "set", inner, "up")
        self._ip(ns, "route", "add", "default", "via", router.lanAddress)
        router.hosts.append(host)
        self.hosts.append(host)
        return host

    # Faults

    def cut(self, a: Router, b: Router) -> None:
        """Drop all traffic between two routers' public addresses.

        Each router still reaches the server; only the direct path between
        the two NATs dies (inbound and outbound, forwarded or local).
        """
        if (a.index, b.index) in self._cuts:
            return
        for rule in self._cutRules(a, b):
            self._iptables(rule[0], "-I", *rule[1:])
        self._cuts.add((a.index, b.index))

    def heal(self, a: Router, b: Router) -> None:
        """Undo L{cut}."""
        if (a.index, b.index) not in self._cuts:
            return
        for rule in self._cutRules(a, b):
            self._iptables(rule[0], "-D", *rule[1:])
        self._cuts.discard((a.index, b.index))

    def cutLink(self, router: Router) -> None:
        """Drop everything the router forwards, both ways (its WAN link is
        down for the hosts behind it); its NAT mappings stay. L{restoreLink}."""
        if router.index in self._linksCut:
            return
        self._iptables(router.namespace, "-I", "FORWARD", *self._linkRule())
        self._linksCut.add(router.index)

    def restoreLink(self, router: Router) -> None:
        """Undo L{cutLink}."""
        if router.index not in self._linksCut:
            return
        self._iptables(router.namespace, "-D", "FORWARD", *self._linkRule())
        self._linksCut.discard(router.index)

    def _linkRule(self) -> list:
        return ["-m", "comment", "--comment", self.prefix + "link", "-j", "DROP"]

    def _cutRules(self, a: Router, b: Router):
        tag = ["-m", "comment", "--comment", self.prefix + "cut", "-j", "DROP"]
        for here, there in ((a, b), (b, a)):
            far = there.wanAddress
            yield [here.namespace, "FORWARD", "-s", far, *tag]
            yield [here.namespace, "FORWARD", "-d", far, *tag]
            yield [here.namespace, "INPUT", "-s", far, *tag]
            yield [here.namespace, "OUTPUT", "-d", far, *tag]

    # Processes

    def run(self, ns: str, argv, *, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None, env=None, cwd=REPO_ROOT) -> subprocess.Popen:
        """Start C{argv} inside namespace C{ns}; the lab kills it on close."""
        if ns not in self.namespaces:
            raise LabError(f"{ns} is not a namespace of this lab")
        if env is None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
            env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=stdin,
                                   stdout=stdout, stderr=stderr, env=env, cwd=cwd,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def startAgent(self, ns: str, name: str, args) -> Agent:
        """Run C{python -m tests.natlab_agent ARGS} in C{ns}, as a L{Agent}."""
        stderrPath = os.path.join(self.tmpdir, f"{name}.stderr")
        with open(stderrPath, "wb") as stderr:
            process = self.run(ns, [sys.executable, "-m", "tests.natlab_agent", *args],
                               stderr=stderr)
        agent = Agent(name, process, stderrPath)
        self.agents.append(agent)
        return agent

    def startServer(self, port: int = 33333, *extra) -> Agent:
        """The server agent in the public namespace; returns once it listens."""
        agent = self.startAgent(self.pub, "server", ["server", "--port", str(port), *extra])
        agent.waitFor("listening", timeout=15)
        return agent

    def startClient(self, host: Host, name: str, port: int = 33333, *extra,
                    wait: bool = True) -> Agent:
        """A client agent on C{host}; returns once it has joined the server
        (at once with C{wait=False})."""
        agent = self.startAgent(host.namespace, name, [
            "client", "--server", f"{self.serverAddress}:{port}", "--name", name, *extra])
        if wait:
            agent.waitFor("joined", timeout=15)
        return agent

    # Teardown

    def close(self) -> None:
        """Stop every process, delete every namespace; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for agent in self.agents:
            agent.closeStdin()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            if process.poll() is None:
                _signalGroup(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signalGroup(process, signal.SIGKILL)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    errors.append(f"process {process.pid} did not die")
        for agent in self.agents:
            agent.join(STOP_TIMEOUT)
        for ns in reversed(self.namespaces):
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            result = _run(["ip", "netns", "del", ns], check=False)
            if result.returncode != 0 and ns in listNamespaces():
                errors.append(f"ip netns del {ns}: {result.stderr.strip()}")
        self.namespaces = []
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        with _openLabsLock:
            _openLabs.discard(self)
        if errors:
            raise LabError("; ".join(errors))

    def leftovers(self) -> list:
        """Namespaces on the machine that carry this lab's prefix."""
        return [ns for ns in listNamespaces() if ns.startswith(self.prefix)]

    # Helpers

    def _name(self, suffix: str) -> str:
        name = self.prefix + suffix
        if len(name) > MAX_IFNAME:
            raise LabError(f"name {name!r} is longer than {MAX_IFNAME} characters")
        return name

    def _addNamespace(self, ns: str) -> None:
        if self._closed:
            raise LabError("the lab is closed")
        _run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self._ip(ns, "link", "set", "lo", "up")

    def _ip(self, ns: str, *args) -> None:
        _run(["ip", "-n", ns, *args])

    def _exec(self, ns: str, *argv) -> None:
        _run(["ip", "netns", "exec", ns, *argv])

    def _iptables(self, ns: str, *args) -> None:
        self._exec(ns, "iptables", "-w", "5", *args)

    def iptablesListing(self, ns: str) -> str:
        """Both tables of C{ns}, with counters (for failure messages)."""
        return "\n".join(_run(["ip", "netns", "exec", ns, "iptables", "-t", table, "-L", "-n",
                                "-v"], check=False).stdout
                         for table in ("filter", "nat"))


def _signalGroup(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


_terminated = []


def _exitOnSigterm() -> None:
    """Turn a default SIGTERM (a CI timeout, say) into SystemExit, so that
    finally blocks and atexit still delete the lab's namespaces.

    Only once: after it, no new lab is built and SIGTERM is the default again.
    """
    if _terminated:
        raise LabError("terminating (SIGTERM): no new lab")
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def terminate(signum, frame):
            _terminated.append(signum)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, terminate)


@atexit.register
def _closeOpenLabs() -> None:
    with _openLabsLock:
        labs = list(_openLabs)
    for lab in labs:
        try:
            lab.close()
        except Exception as e:     # pragma: no cover - best effort at exit
            print(f"natlab: cleanup of {lab.prefix} failed: {e}", file=sys.stderr)


class Agent:
    """A JSON-lines agent process: its events, its commands, bounded waits."""

    def __init__(self, name: str, process: subprocess.Popen, stderrPath: str) -> None:
        self.name = name
        self.process = process
        self.stderrPath = stderrPath
        self.events = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name=f"natlab-{name}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "raw", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # Commands

    def command(self, cmd: str, **fields) -> None:
        line = json.dumps(dict(fields, cmd=cmd)) + "\n"
        try:
            self.process.stdin.write(line.encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise LabError(f"{self.name} is gone: {e}\n{self.stderrTail()}") from e

    def closeStdin(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.process.stdin.close()

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)

    # Events

    def matching(self, name: str, **match) -> list:
        with self._cond:
            return [e for e in self.events if _matches(e, name, match)]

    def first(self, name: str, **match):
        found = self.matching(name, **match)
        return found[0] if found else None

    def waitFor(self, name, timeout: float, **match) -> dict:
        """The first event C{name} whose fields equal C{match}; waits at most C{timeout}.

        C{name} may also be a predicate on the list of all events, returning
        a true value when satisfied (that value is returned).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if callable(name):
                    result = name(self.events)
                    if result:
                        return result
                else:
                    for event in self.events:
                        if _matches(event, name, match):
                            return event
                if self._eof:
                    raise LabError(f"{self.name} exited (code {self.process.poll()}) while "
                                   f"waiting for {self._describe(name, match)}\n"
                                   f"{self.stderrTail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LabTimeout(f"{self.name}: no {self._describe(name, match)} within "
                                     f"{timeout:g} s; last events: {self.events[-8:]}\n"
                                     f"{self.stderrTail()}")
                self._cond.wait(remaining)

    def waitCount(self, name: str, count: int, timeout: float, **match) -> list:
        def enough(events):
            found = [e for e in events if _matches(e, name, match)]
            return found if len(found) >= count else None
        enough.__name__ = f"{count} x {name}"
        return self.waitFor(enough, timeout)

    def received(self, sender: int) -> list:
        """Payloads received from C{sender}, in order."""
        return [e["payload"] for e in self.matching("received", **{"from": sender})]

    def stderrTail(self, lines: int = 30) -> str:
        try:
            with open(self.stderrPath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} stderr (tail) ---\n{tail}" if tail else ""

    @staticmethod
    def _describe(name, match) -> str:
        if callable(name):
            return getattr(name, "__name__", "condition")
        return f"{name!r} event" + (f" with {match}" if match else "")


def _matches(event: dict, name: str, match: dict) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in match.items())
