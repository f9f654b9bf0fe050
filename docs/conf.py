"""Sphinx configuration for the proud_twisted documentation."""

import inspect
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# Document the source tree this file belongs to, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.python.reflect import namedAny
from zope.interface import Interface
from zope.interface.interface import Method

import proud_twisted

project = "proud_twisted"
author = "the proud_twisted authors"
copyright = "the proud_twisted authors"
release = version = proud_twisted.__version__

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
default_role = "py:obj"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True

# The docstrings are written in epytext, as Twisted's are; turn the markup
# they use into reStructuredText.
_EPYTEXT = [
    (re.compile(r"[CI]\{([^{}]*)\}"), r"``\1``"),
    (re.compile(r"L\{([^{}]*)\}"), r"`\1`"),
    (re.compile(r"^(\s*)@(param|type|ivar|keyword) ([\w*]+):", re.MULTILINE), r"\1:\2 \3:"),
    (re.compile(r"^(\s*)@raise (\w+):", re.MULTILINE), r"\1:raises \2:"),
    (re.compile(r"^(\s*)@(return|rtype):", re.MULTILINE), r"\1:\2:"),
]


def epytextToRst(text: str) -> str:
    for pattern, replacement in _EPYTEXT:
        text = pattern.sub(replacement, text)
    return text


def convertDocstring(app, what, name, obj, options, lines):
    lines[:] = epytextToRst("\n".join(lines)).split("\n")


def _indented(text: str, indent: int) -> list:
    return [" " * indent + line if line else "" for line in epytextToRst(text).split("\n")]


def _provider(interface):
    """The public class of proud_twisted that implements C{interface}, if any."""
    for publicName in proud_twisted.__all__:
        candidate = getattr(proud_twisted, publicName)
        if isinstance(candidate, type) and interface.implementedBy(candidate):
            return candidate
    return None


def _signature(interface, methodName: str) -> str:
    """The method's signature as its implementation declares it (keyword-only
    options and annotations included), else as the interface does."""
    provider = _provider(interface)
    implementation = getattr(provider, methodName, None)
    if implementation is None:
        return interface[methodName].getSignatureString()
    signature = inspect.signature(implementation)
    parameters = list(signature.parameters.values())[1:]    # without self
    return str(signature.replace(parameters=parameters))


class InterfaceDirective(SphinxDirective):
    """``.. interface:: dotted.Name``: a zope.interface, its attributes and methods."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        interface = namedAny(name)
        lines = [f".. py:class:: {name}", ""]
        lines += _indented(inspect.cleandoc(interface.__doc__ or ""), 3)
        for base in interface.__bases__:
            if base.__name__ in proud_twisted.__all__:
                lines += ["", f"   Also has every member of `proud_twisted.{base.__name__}`."]
            elif base is not Interface:
                lines += ["", f"   Also a ``{base.__module__}.{base.__name__}``."]
        for memberName in interface.names():
            member = interface[memberName]
            if isinstance(member, Method):
                signature = _signature(interface, memberName)
                lines += ["", f"   .. py:method:: {memberName}{signature}", ""]
            else:
                lines += ["", f"   .. py:attribute:: {memberName}", ""]
            lines += _indented(inspect.cleandoc(member.getDoc() or ""), 6)
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=name), container)
        return container.children


class RmiDeclarationDirective(SphinxDirective):
    """``.. rmi-declaration:: module.Interface``: what ``python -m
    proud_twisted.rmi describe`` prints for it (modules in docs/ import too)."""

    required_arguments = 1

    def run(self):
        from proud_twisted.rmi.describe import describe, resolve

        docs = str(Path(__file__).resolve().parent)
        if docs not in sys.path:
            sys.path.insert(0, docs)
        text = describe(resolve(self.arguments[0]))
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.connect("autodoc-process-docstring", convertDocstring)
    app.add_directive("interface", InterfaceDirective)
    app.add_directive("rmi-declaration", RmiDeclarationDirective)
