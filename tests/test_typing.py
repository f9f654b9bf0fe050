"""The public API's type hints: every public signature annotated, the
interfaces annotated as their providers are, and the PEP 561 marker shipped.

CI also runs mypy over the public modules (C{[tool.mypy]} in pyproject.toml).
"""

import ast
import inspect
import pathlib

from twisted.trial.unittest import SynchronousTestCase

import proud_twisted
from proud_twisted import testing

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proud_twisted"

PROVIDERS = {
    "INetCoreEvent": proud_twisted.NetServerEvents,
    "INetServerEvent": proud_twisted.NetServerEvents,
    "INetClientEvent": proud_twisted.NetClientEvents,
    "INetServer": proud_twisted.NetServer,
    "INetClient": proud_twisted.NetClient,
}
"""Each interface of interfaces.py and a class whose methods it declares."""

NOT_ANNOTATED_YET = {
    "IdentityKey.generate": {"randomBytes"},
}
"""Parameters of exported names that still lack a type (none of them in a
module mypy checks)."""


def unannotated(function: object) -> set:
    """The parameters of C{function} (and C{"return"}) that have no annotation."""
    signature = inspect.signature(function)
    missing = {name for name, parameter in signature.parameters.items()
               if name not in ("self", "cls") and parameter.annotation is parameter.empty}
    if signature.return_annotation is signature.empty:
        missing.add("return")
    return missing


def publicFunctions(cls: type):
    """C{(name, function)} for each public method, property and constructor
    C{cls} defines itself."""
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        function = member
        if isinstance(member, property):
            function = member.fget
        elif isinstance(member, (staticmethod, classmethod)):
            function = member.__func__
        if inspect.isfunction(function) and function.__module__.startswith("proud_twisted"):
            yield name, function


def declaredAnnotations(interfaceName: str) -> dict:
    """For each method of C{interfaceName} in interfaces.py, its annotations
    as written (parameter name or C{"return"} to source text)."""
    tree = ast.parse((PACKAGE / "interfaces.py").read_text())
    [interface] = [node for node in tree.body
                   if isinstance(node, ast.ClassDef) and node.name == interfaceName]
    methods = {}
    for node in interface.body:
        if isinstance(node, ast.FunctionDef):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            written = {a.arg: ast.unparse(a.annotation) for a in arguments if a.annotation}
            if node.returns is not None:
                written["return"] = ast.unparse(node.returns)
            methods[node.name] = written
    return methods


class AnnotationTests(SynchronousTestCase):
    def test_exportedNamesAreAnnotated(self):
        """Every function, method, property and constructor of the names
        that proud_twisted and proud_twisted.testing export is annotated."""
        checked = 0
        for module in (proud_twisted, testing):
            for exported in module.__all__:
                value = getattr(module, exported)
                if inspect.isfunction(value):
                    functions = [(exported, value)]
                elif isinstance(value, type) and not hasattr(value, "names"):
                    functions = [(f"{exported}.{name}", function)
                                 for name, function in publicFunctions(value)]
                else:
                    continue
                for name, function in functions:
                    missing = unannotated(function) - NOT_ANNOTATED_YET.get(name, set())
                    self.assertEqual(missing, set(), name)
                    checked += 1
        self.assertGreater(checked, 100)

    def test_interfacesAreAnnotatedAsTheirProviders(self):
        """The annotations written in interfaces.py are those of the class
        that implements each interface (zope.interface keeps none of them,
        so the source is compared)."""
        for interfaceName, provider in PROVIDERS.items():
            declared = declaredAnnotations(interfaceName)
            self.assertTrue(declared, interfaceName)
            for name, written in declared.items():
                implemented = dict(inspect.get_annotations(getattr(provider, name)))
                implemented.pop("self", None)
                self.assertEqual(written, implemented, f"{interfaceName}.{name}")


class MarkerTests(SynchronousTestCase):
    def test_pyTypedIsShipped(self):
        """The PEP 561 marker exists and is package data."""
        self.assertTrue((PACKAGE / "py.typed").is_file())
        self.assertIn('"proud_twisted" = ["py.typed"]', (ROOT / "pyproject.toml").read_text())
