"""The architecture as rules: what the facades hold and who may import whom.

docs/architecture.rst describes the layers; these tests hold the code to it.
"""

import ast
import pathlib
import re
import subprocess
import sys
import tempfile

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proud_twisted import INetClient, INetServer, NetClient, NetServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proud_twisted"

PURE_CORES = [
    "proud_twisted.wire", "proud_twisted.rudp", "proud_twisted.server.groups",
    "proud_twisted.server.hostids", "proud_twisted.server.ratelimit",
    "proud_twisted.server.stats", "proud_twisted.client.pathstate",
    "proud_twisted.client.holepunch", "proud_twisted.client.peers",
    "proud_twisted.client.serverpath", "proud_twisted.client.servertime",
    "proud_twisted.client.reconnect", "proud_twisted._crypto",
    "proud_twisted.rmi.codec", "proud_twisted.rmi.schema", "proud_twisted.rmi.wire",
    "proud_twisted.rmi.declaration", "proud_twisted.rmi.stub",
    "proud_twisted.rmi.fingerprint", "proud_twisted.rmi.describe",
    "proud_twisted.cluster.envelope", "proud_twisted.cluster.keys",
    "proud_twisted.cluster.leases", "proud_twisted.cluster.redisurl",
    "proud_twisted.cluster.serverinfo", "proud_twisted.cluster.stats",
]
"""Sans-I/O modules (and packages): no Twisted, no reactor glue."""

MAY_IMPORT = {
    "proud_twisted.wire": {"proud_twisted.errors", "proud_twisted.wire"},
    "proud_twisted.rudp": {"proud_twisted.errors", "proud_twisted.rudp"},
    "proud_twisted._glue": {"proud_twisted.rudp", "proud_twisted._glue"},
    "proud_twisted._crypto": {"proud_twisted.errors", "proud_twisted.wire",
                              "proud_twisted._crypto"},
}
"""Packages that may import only these parts of proud_twisted."""


def moduleName(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importsOf(path: pathlib.Path) -> set:
    """Every module C{path} imports, by absolute dotted name (for C{from a
    import b}, both C{a} and C{a.b}: b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importGraph() -> dict:
    return {moduleName(path): importsOf(path) for path in PACKAGE.rglob("*.py")}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offenders(graph: dict, importer: str, imported: str) -> list:
    """C{(module, name)} for each module within C{importer} importing within C{imported}."""
    return sorted((module, name) for module, names in graph.items() if within(module, importer)
                  for name in names if within(name, imported))


class FacadeTests(SynchronousTestCase):
    """The facades hold the game API and nothing else."""

    def assertOnlyTheInterface(self, facade, interface, instance):
        self.assertTrue(verifyObject(interface, instance))
        public = {name for name in dir(facade) if not name.startswith("_")}
        self.assertEqual(public, set(interface.names(all=True)))
        onInstance = {name for name in dir(instance) if not name.startswith("_")}
        self.assertEqual(onInstance, set(interface.names(all=True)))

    def test_netServerIsItsInterface(self):
        server = NetServer(reactor=task.Clock(), encryption=False)
        self.assertOnlyTheInterface(NetServer, INetServer, server)

    def test_netClientIsItsInterface(self):
        self.assertOnlyTheInterface(NetClient, INetClient, NetClient(reactor=task.Clock()))

    def test_everyMemberIsDocumented(self):
        for facade in (NetServer, NetClient):
            own = [name for name in vars(facade) if not name.startswith("_")]
            self.assertIn("send", own)
            for name in own:
                self.assertTrue(getattr(facade, name).__doc__, f"{facade.__name__}.{name}")


class ImportGraphTests(SynchronousTestCase):
    """Who may import whom (the Architecture page of the docs says why)."""

    def setUp(self):
        self.graph = importGraph()

    def test_theGraphIsRead(self):
        self.assertIn("proud_twisted.server.netserver", self.graph)
        self.assertIn("proud_twisted.server.engine", self.graph["proud_twisted.server.netserver"])

    def test_rmiImportsNeitherClientNorServer(self):
        for side in ("proud_twisted.client", "proud_twisted.server"):
            self.assertEqual(offenders(self.graph, "proud_twisted.rmi", side), [])

    def test_clientAndServerDoNotImportEachOther(self):
        self.assertEqual(offenders(self.graph, "proud_twisted.client", "proud_twisted.server"), [])
        self.assertEqual(offenders(self.graph, "proud_twisted.server", "proud_twisted.client"), [])

    def test_onlyTheWirePackageImportsItsSchemaHelpers(self):
        found = [(module, name) for module, name in
                 offenders(self.graph, "proud_twisted", "proud_twisted.wire._schema")
                 if not within(module, "proud_twisted.wire")]
        self.assertEqual(found, [])

    def test_theLibraryNeverImportsItsApps(self):
        found = [(module, name) for module, name in
                 offenders(self.graph, "proud_twisted", "proud_twisted.apps")
                 if not within(module, "proud_twisted.apps")]
        self.assertEqual(found, [])

    def test_pureCoresImportNoTwisted(self):
        for core in PURE_CORES:
            for package in ("twisted", "proud_twisted._glue"):
                self.assertEqual(offenders(self.graph, core, package), [], core)
        self.assertTrue(any(within(m, "proud_twisted.rudp") for m in self.graph))

    def test_lowerLayersImportOnlyWhatTheyMay(self):
        for package, allowed in MAY_IMPORT.items():
            found = [(module, name) for module, names in self.graph.items()
                     if within(module, package)
                     for name in names if within(name, "proud_twisted")
                     and not any(within(name, a) for a in allowed)]
            self.assertEqual(found, [], package)


class ApiReferenceTests(SynchronousTestCase):
    """The API reference Sphinx builds documents the game API only."""

    def test_apiReferenceListsNoProtocolHook(self):
        with tempfile.TemporaryDirectory() as out:
            built = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html",
                                    str(ROOT / "docs"), out], capture_output=True,
                                   text=True, check=False, timeout=120)
            self.assertEqual(built.returncode, 0, built.stderr)
            html = (pathlib.Path(out) / "api.html").read_text()
        for facade, interface in ((NetServer, INetServer), (NetClient, INetClient)):
            documented = set(re.findall(rf'id="proud_twisted\.{facade.__name__}\.(\w+)"', html))
            allowed = set(interface.names(all=True))
            self.assertTrue(documented, facade.__name__)
            self.assertLessEqual(documented, allowed, facade.__name__)
            interfaceDocumented = set(re.findall(
                rf'id="proud_twisted\.{interface.__name__}\.(\w+)"', html))
            self.assertEqual(interfaceDocumented, set(interface.names()))
