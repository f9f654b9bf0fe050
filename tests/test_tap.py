"""C{twistd proudserver}: its options, the service it makes, and the plugin."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

from twisted.application.service import IServiceMaker, MultiService
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from proud_twisted import INetServerEvent, NetServer, NetServerEvents
from proud_twisted.rooms import ROOMS_PROTOCOL_VERSION, RoomServerEvents
from proud_twisted.tap import Options, makeService

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0d9e3f5a-7b1c-4e2d-8f60-91a2b3c4d5e6"


class AttachingEvents(NetServerEvents):
    def attachServer(self, server):
        self.server = server


@implementer(INetServerEvent)
class BareEvents:
    """Provides the interface without subclassing NetServerEvents."""


class NotEvents:
    pass


def parse(*args):
    config = Options()
    config.parseOptions(list(args))
    return config


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        config = parse()
        self.assertEqual(config["tcp"], 33333)
        self.assertEqual(config["udp"], 33333)
        self.assertEqual(config["interface"], "")
        self.assertEqual(config["protocol-version"], ROOMS_PROTOCOL_VERSION)
        self.assertIs(config["events"], RoomServerEvents)
        self.assertGreater(config["max-message-length"], 0)
        self.assertGreater(config["client-timeout"], 0)

    def test_everyOption(self):
        config = parse("--tcp", "0", "--udp", "65535", "--interface", "127.0.0.1",
                       "--protocol-version", VERSION,
                       "--events", "tests.test_tap.AttachingEvents",
                       "--max-message-length", "1000", "--client-timeout", "2.5")
        self.assertEqual((config["tcp"], config["udp"]), (0, 65535))
        self.assertEqual(config["interface"], "127.0.0.1")
        self.assertEqual(config["protocol-version"], uuid.UUID(VERSION))
        self.assertIs(config["events"], AttachingEvents)
        self.assertEqual(config["max-message-length"], 1000)
        self.assertEqual(config["client-timeout"], 2.5)

    def test_eventsNeedOnlyProvideTheInterface(self):
        self.assertIs(parse("--events", "tests.test_tap.BareEvents")["events"], BareEvents)

    def test_badValuesAreUsageErrorsNamingTheOption(self):
        for args, option in [
            (["--tcp", "65536"], "--tcp"),
            (["--udp", "-1"], "--udp"),
            (["--tcp", "http"], "--tcp"),
            (["--protocol-version", "not-a-uuid"], "--protocol-version"),
            (["--max-message-length", "0"], "--max-message-length"),
            (["--client-timeout", "soon"], "--client-timeout"),
            (["--events", "no.such.module.Events"], "--events"),
            (["--events", "tests.test_tap.NotEvents"], "--events"),
            (["--events", "tests.test_tap.parse"], "--events"),
        ]:
            with self.assertRaises(usage.UsageError, msg=args) as caught:
                parse(*args)
            self.assertIn(option, str(caught.exception))

    def test_helpListsEveryOption(self):
        text = str(Options())
        for option in ("--tcp", "--udp", "--interface", "--protocol-version",
                       "--events", "--max-message-length", "--client-timeout"):
            self.assertIn(option, text)


class MakeServiceTests(SynchronousTestCase):
    def test_multiServiceHoldingTheConfiguredServer(self):
        top = makeService(parse("--tcp", "0", "--udp", "0", "--interface", "127.0.0.1",
                                "--protocol-version", VERSION,
                                "--max-message-length", "1000", "--client-timeout", "3"))
        self.assertIsInstance(top, MultiService)
        (server,) = list(top)
        self.assertIsInstance(server, NetServer)
        self.assertIs(top.getServiceNamed("proudserver"), server)
        self.assertEqual((server.tcpPort, server.udpPort, server.interface), (0, 0, "127.0.0.1"))
        self.assertEqual(server.protocolVersion, uuid.UUID(VERSION).bytes)
        self.assertEqual(server.maxMessageLength, 1000)
        self.assertEqual(server.clientTimeout, 3.0)
        self.assertFalse(server.running)

    def test_defaultEventsAreTheRoomsAppAttachedToTheServer(self):
        server = makeService(parse()).getServiceNamed("proudserver")
        self.assertIsInstance(server.events, RoomServerEvents)
        self.assertIs(server.events.server, server)

    def test_attachServerIsCalledWhenPresent(self):
        server = makeService(parse("--events", "tests.test_tap.AttachingEvents")
                             ).getServiceNamed("proudserver")
        self.assertIs(server.events.server, server)

    def test_eventsWithoutAttachServer(self):
        server = makeService(parse("--events", "tests.test_tap.BareEvents")
                             ).getServiceNamed("proudserver")
        self.assertIsInstance(server.events, BareEvents)


class PluginTests(SynchronousTestCase):
    def test_proudserverIsAServiceMaker(self):
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("proudserver", makers)
        maker = makers["proudserver"]
        self.assertIs(maker.options, Options)
        self.assertIs(maker.makeService, makeService)

    def test_pluginAndOptionsDoNotImportTheReactor(self):
        code = (
            "import json, sys\n"
            "import twisted.plugins.proudserver_plugin as plugin\n"
            "loaded = {'plugin': 'twisted.internet.reactor' in sys.modules}\n"
            "plugin.proudServer.options().parseOptions([])\n"
            "loaded['options'] = 'twisted.internet.reactor' in sys.modules\n"
            "print(json.dumps(loaded))\n")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"plugin": False, "options": False})
