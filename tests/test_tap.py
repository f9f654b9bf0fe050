"""C{twistd proudserver}: its options (the key file as the command line sees
it; the file itself is tested in L{tests.test_keyfiles}), the service it
makes, and the plugin."""

import gc
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from unittest import mock

from twisted.application.service import IServiceMaker, MultiService
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from proud_twisted import INetServerEvent, NetServer, NetServerEvents, tap
from proud_twisted._crypto.keyfiles import KeyFileError
from proud_twisted._glue.udpbuffers import DEFAULT_SERVER_UDP_BUFFER
from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION, RoomServerEvents
from proud_twisted.crypto import IdentityKey, identityFromPem, identityToPem
from proud_twisted.server.netserver import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_RELAY_BYTES_PER_SECOND,
    DEFAULT_RELAY_FRAMES_PER_SECOND,
)
from proud_twisted.tap import Options, makeService
from tests.test_examples import LineReader, environment, stop

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0d9e3f5a-7b1c-4e2d-8f60-91a2b3c4d5e6"
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
POSIX = os.name == "posix"


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


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class InTemporaryDirectory:
    """Runs each test in a fresh working directory, so that the default key
    file lands there (and never in the source tree)."""

    def setUp(self):
        super().setUp()
        self.directory = Path(tempfile.mkdtemp(prefix="proud-tap-")).resolve()
        self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.directory)


class OptionsTests(InTemporaryDirectory, SynchronousTestCase):
    def test_defaults(self):
        config = parse()
        self.assertEqual(config["tcp"], 33333)
        self.assertEqual(config["udp"], 33333)
        self.assertEqual(config["interface"], "")
        self.assertEqual(config["protocol-version"], ROOMS_PROTOCOL_VERSION)
        self.assertIs(config["events"], RoomServerEvents)
        self.assertGreater(config["max-message-length"], 0)
        self.assertGreater(config["client-timeout"], 0)
        self.assertFalse(config["no-encryption"])
        self.assertEqual(config["key-file"], self.directory / "proudserver.key")
        self.assertIsInstance(config["identity"], IdentityKey)

    def test_limitsDefaultToTheServerDefaults(self):
        config = parse()
        self.assertEqual(config["handshake-timeout"], DEFAULT_HANDSHAKE_TIMEOUT)
        self.assertEqual(config["max-unauthenticated"], DEFAULT_MAX_UNAUTHENTICATED)
        self.assertEqual(config["relay-rate"], DEFAULT_RELAY_FRAMES_PER_SECOND)
        self.assertEqual(config["relay-bytes"], DEFAULT_RELAY_BYTES_PER_SECOND)
        self.assertEqual(config["udp-buffer"], DEFAULT_SERVER_UDP_BUFFER)

    def test_everyOption(self):
        config = parse("--tcp", "0", "--udp", "65535", "--interface", "127.0.0.1",
                       "--protocol-version", VERSION,
                       "--events", "tests.test_tap.AttachingEvents",
                       "--max-message-length", "1000", "--client-timeout", "2.5",
                       "--key-file", "server.pem", "--handshake-timeout", "1.5",
                       "--max-unauthenticated", "7", "--relay-rate", "100",
                       "--relay-bytes", "65536", "--udp-buffer", "0")
        self.assertEqual((config["tcp"], config["udp"]), (0, 65535))
        self.assertEqual(config["interface"], "127.0.0.1")
        self.assertEqual(config["protocol-version"], uuid.UUID(VERSION))
        self.assertIs(config["events"], AttachingEvents)
        self.assertEqual(config["max-message-length"], 1000)
        self.assertEqual(config["client-timeout"], 2.5)
        self.assertEqual(config["key-file"], self.directory / "server.pem")
        self.assertEqual(config["handshake-timeout"], 1.5)
        self.assertEqual(config["max-unauthenticated"], 7)
        self.assertEqual(config["relay-rate"], 100)
        self.assertEqual(config["relay-bytes"], 65536)
        self.assertEqual(config["udp-buffer"], 0)

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
            (["--handshake-timeout", "0"], "--handshake-timeout"),
            (["--handshake-timeout", "-3"], "--handshake-timeout"),
            (["--handshake-timeout", "later"], "--handshake-timeout"),
            (["--max-unauthenticated", "0"], "--max-unauthenticated"),
            (["--max-unauthenticated", "2.5"], "--max-unauthenticated"),
            (["--relay-rate", "0"], "--relay-rate"),
            # The bucket holds one second's worth: less than one frame a
            # second would never let a frame through.
            (["--relay-rate", "0.5"], "--relay-rate"),
            (["--relay-rate", "fast"], "--relay-rate"),
            (["--relay-bytes", "-1"], "--relay-bytes"),
            (["--relay-bytes", "100"], "--relay-bytes"),
            (["--udp-buffer", "-1"], "--udp-buffer"),
            (["--udp-buffer", "big"], "--udp-buffer"),
            (["--login-timeout", "0"], "--login-timeout"),
            (["--backlog", "0"], "--backlog"),
            (["--recovery-window", "-1"], "--recovery-window"),
            (["--max-offline-clients", "-1"], "--max-offline-clients"),
            # Less than one frame would cut a client at its first large message.
            (["--max-client-output", "1000"], "--max-client-output"),
        ]:
            with self.assertRaises(usage.UsageError, msg=args) as caught:
                parse(*args)
            self.assertIn(option, str(caught.exception))

    def test_aMistakeInAnotherOptionCreatesNoKeyFile(self):
        with self.assertRaises(usage.UsageError):
            parse("--relay-rate", "0")
        self.assertEqual(os.listdir(self.directory), [])

    def test_helpListsEveryOption(self):
        text = str(Options())
        for option in ("--tcp", "--udp", "--interface", "--protocol-version",
                       "--events", "--max-message-length", "--client-timeout",
                       "--key-file", "--no-encryption", "--handshake-timeout",
                       "--max-unauthenticated", "--relay-rate", "--relay-bytes",
                       "--udp-buffer", "--no-gc-freeze", "--login-timeout",
                       "--max-client-output", "--backlog", "--recovery-window",
                       "--max-offline-clients"):
            self.assertIn(option, text)
        self.assertIn("proudserver.key", text)


class KeyFileTests(InTemporaryDirectory, SynchronousTestCase):
    def test_createdOnFirstStartWithMode0600(self):
        path = self.directory / "proudserver.key"
        config = parse()
        self.assertTrue(config["key-created"])
        self.assertEqual(identityFromPem(path.read_bytes()).publicKey(),
                         config["identity"].publicKey())
        if POSIX:
            self.assertEqual(mode(path), 0o600)
        # Nothing else is left behind: the temporary file became the key file.
        self.assertEqual(os.listdir(self.directory), ["proudserver.key"])

    def test_reusedOnTheSecondStart(self):
        first = parse("--key-file", "server.key")
        written = Path("server.key").read_bytes()
        second = parse("--key-file", "server.key")
        self.assertFalse(second["key-created"])
        self.assertEqual(second["identity"].publicKey().fingerprint(),
                         first["identity"].publicKey().fingerprint())
        self.assertEqual(Path("server.key").read_bytes(), written)

    def test_anExistingKeyIsLoaded(self):
        key = IdentityKey.generate()
        Path("mine.key").write_bytes(identityToPem(key))
        config = parse("--key-file", "mine.key")
        self.assertFalse(config["key-created"])
        self.assertEqual(config["identity"].publicKey(), key.publicKey())
        server = makeService(config).getServiceNamed("proudserver")
        self.assertEqual(server.identity.publicKey(), key.publicKey())

    def test_userDirectoryIsExpanded(self):
        with mock.patch.dict(os.environ, {"HOME": str(self.directory)}):
            config = parse("--key-file", "~/home.key")
        self.assertEqual(config["key-file"], self.directory / "home.key")
        self.assertTrue((self.directory / "home.key").exists())

    def assertKeyFileError(self, *fragments, args=("--key-file", "server.key")):
        with self.assertRaises(usage.UsageError) as caught:
            parse(*args)
        message = str(caught.exception)
        self.assertTrue(message.startswith("--key-file: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_corruptKeyFileIsAUsageError(self):
        for content in [b"garbage", b"", identityToPem(IdentityKey.generate())[:60]]:
            Path("server.key").write_bytes(content)
            self.assertKeyFileError(str(self.directory / "server.key"),
                                    "no usable server identity key", "move the file away")
            # The file is left as it was, for its owner to look at.
            self.assertEqual(Path("server.key").read_bytes(), content)

    def test_directoryIsAUsageError(self):
        os.mkdir("server.key")
        self.assertKeyFileError("is a directory")

    def test_missingDirectoryIsAUsageError(self):
        self.assertKeyFileError("does not exist",
                                args=("--key-file", "no/such/dir/server.key"))
        self.assertFalse(Path("no").exists())

    def test_keyFileErrorsAreUsageErrors(self):
        """Every L{KeyFileError} reaches the command line as it is, after the
        option's name."""
        failure = KeyFileError("cannot read /srv/server.key: Permission denied")
        with mock.patch.object(tap, "loadOrCreateIdentity", side_effect=failure):
            message = self.assertKeyFileError()
        self.assertEqual(message, "--key-file: cannot read /srv/server.key: "
                                  "Permission denied")

    def test_noEncryptionNeedsNoKeyFile(self):
        config = parse("--no-encryption")
        self.assertIsNone(config["identity"])
        self.assertIsNone(config["key-file"])
        self.assertEqual(os.listdir(self.directory), [])

    def test_noEncryptionWithAKeyFileIsAUsageError(self):
        self.assertKeyFileError("--no-encryption",
                                args=("--no-encryption", "--key-file", "server.key"))
        self.assertEqual(os.listdir(self.directory), [])


class MakeServiceTests(InTemporaryDirectory, SynchronousTestCase):
    def test_multiServiceHoldingTheConfiguredServer(self):
        config = parse("--tcp", "0", "--udp", "0", "--interface", "127.0.0.1",
                       "--protocol-version", VERSION,
                       "--max-message-length", "1000", "--client-timeout", "3")
        top = makeService(config)
        self.assertIs(type(top), MultiService)
        self.assertEqual([part.name for part in top], ["identity", "proudserver", "gc-freeze"])
        server = top.getServiceNamed("proudserver")
        self.assertIsInstance(server, NetServer)
        self.assertIsInstance(top.getServiceNamed("identity"), tap.IdentityLog)
        self.assertIsInstance(top.getServiceNamed("gc-freeze"), tap.GcFreeze)
        engine = server._engine
        self.assertEqual((engine.tcpPort, engine.udpPort, engine.interface), (0, 0, "127.0.0.1"))
        self.assertEqual(server._engine.protocolVersion, uuid.UUID(VERSION).bytes)
        self.assertEqual(server._engine.maxMessageLength, 1000)
        self.assertEqual(server._engine.clientTimeout, 3.0)
        self.assertIs(server.identity, config["identity"])
        self.assertFalse(server.running)

    def test_limitsArePassedToTheServer(self):
        server = makeService(parse(
            "--handshake-timeout", "2.5", "--max-unauthenticated", "7",
            "--relay-rate", "100", "--relay-bytes", "65536",
            "--udp-buffer", "262144", "--login-timeout", "1.5",
            "--max-client-output", "200000", "--backlog", "123", "--recovery-window", "0",
            "--max-offline-clients", "5")).getServiceNamed("proudserver")
        self.assertEqual(server._engine.recoveryWindow, 0)
        self.assertEqual(server._engine.maxOfflineClients, 5)
        self.assertEqual(server._engine.loginTimeout, 1.5)
        self.assertEqual(server._engine.maxClientOutput, 200000)
        self.assertEqual(server._engine.backlog, 123)
        self.assertEqual(server._engine.handshakeTimeout, 2.5)
        self.assertEqual(server._engine.maxUnauthenticated, 7)
        self.assertEqual(server._engine.relayFramesPerSecond, 100)
        self.assertEqual(server._engine.relayBytesPerSecond, 65536)
        self.assertEqual(server._engine.udpBufferSize, 262144)

    def test_defaultLimitsAreTheServerDefaults(self):
        server = makeService(parse()).getServiceNamed("proudserver")
        self.assertEqual(server._engine.handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT)
        self.assertEqual(server._engine.maxUnauthenticated, DEFAULT_MAX_UNAUTHENTICATED)
        self.assertEqual(server._engine.relayFramesPerSecond, DEFAULT_RELAY_FRAMES_PER_SECOND)
        self.assertEqual(server._engine.relayBytesPerSecond, DEFAULT_RELAY_BYTES_PER_SECOND)
        self.assertEqual(server._engine.udpBufferSize, DEFAULT_SERVER_UDP_BUFFER)

    def test_noGcFreezeLeavesTheFreezeOut(self):
        top = makeService(parse("--no-gc-freeze"))
        self.assertEqual([part.name for part in top], ["identity", "proudserver"])

    def test_noEncryptionGivesAServerWithoutIdentity(self):
        server = makeService(parse("--no-encryption")).getServiceNamed("proudserver")
        self.assertIsNone(server.identity)

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


class IdentityLogTests(InTemporaryDirectory, SynchronousTestCase):
    def logged(self, *args):
        identityLog = makeService(parse(*args)).getServiceNamed("identity")
        events = []
        identityLog.log = Logger(observer=events.append)
        identityLog.logIdentity()
        return identityLog, [(event["log_level"], formatEvent(event)) for event in events]

    def test_fingerprintAndPublicKeyForPinning(self):
        identityLog, lines = self.logged()
        public = identityLog.identity.publicKey()
        level, text = lines[0]
        self.assertEqual(level, LogLevel.info)
        self.assertIn(f"created in {self.directory / 'proudserver.key'}", text)
        self.assertIn(public.fingerprint(), text)
        self.assertIn(f'PublicIdentity.fromHex("{public.toHex()}")', text)
        _, lines = self.logged()
        self.assertIn("loaded from", lines[0][1])
        self.assertIn(public.toHex(), lines[0][1])
        self.assertEqual([level for level, _ in lines], [LogLevel.info])

    def test_keyFileReadableByOthersIsWarnedAbout(self):
        if not POSIX:
            raise self.skipTest("file modes are POSIX")
        parse()
        os.chmod("proudserver.key", 0o644)
        _, lines = self.logged()
        self.assertEqual(lines[-1][0], LogLevel.warn)
        self.assertIn("chmod 600", lines[-1][1])

    def test_noEncryptionIsWarnedLoudly(self):
        _, lines = self.logged("--no-encryption")
        ((level, text),) = lines
        self.assertEqual(level, LogLevel.warn)
        self.assertIn("ENCRYPTION IS OFF", text)


class StartTests(InTemporaryDirectory, SynchronousTestCase):
    def test_freezeStartupObjectsTakesWhatLivesOutOfCollection(self):
        self.addCleanup(gc.unfreeze)
        alive = [[]]
        frozen = tap.freezeStartupObjects()
        self.assertEqual(frozen, gc.get_freeze_count())
        self.assertGreater(frozen, 1000)
        self.assertFalse(any(o is alive for o in gc.get_objects()))
        later = [[]]
        self.assertTrue(any(o is later for o in gc.get_objects()))

    def started(self, *args):
        """Start the service with the server stubbed out: what happened, in
        order (C{"server"} for its start, C{"freeze"}, and the lines logged)."""
        top = makeService(parse("--no-encryption", *args))
        calls = []
        top.getServiceNamed("proudserver").startService = lambda: calls.append("server")
        for part in top:
            part.log = Logger(observer=lambda event: calls.append(formatEvent(event)))
        with mock.patch.object(tap, "freezeStartupObjects",
                               lambda: calls.append("freeze") or 40000):
            top.startService()
        return calls

    def test_identityThenServerThenFreeze(self):
        warning, *rest = self.started()
        self.assertIn("ENCRYPTION IS OFF", warning)
        server, freeze, frozen = rest
        self.assertEqual((server, freeze), ("server", "freeze"))
        self.assertIn("40000 objects from startup frozen out of garbage collection", frozen)

    def test_noGcFreeze(self):
        warning, *rest = self.started("--no-gc-freeze")
        self.assertIn("ENCRYPTION IS OFF", warning)
        self.assertEqual(rest, ["server"])


class TwistdTests(InTemporaryDirectory, SynchronousTestCase):
    """C{twistd -n proudserver} as a user runs it, in a fresh directory."""

    LISTENING = r"listening on TCP \('127\.0\.0\.1', (\d+)\).*identity (\w+)"

    def twistd(self, *options):
        server = LineReader([*TWISTD, "-n", "--pidfile=", "proudserver", "--tcp", "0",
                             "--udp", "0", "--interface", "127.0.0.1", *options],
                            self.directory)
        self.addCleanup(stop, server)
        return server

    def test_createsTheKeyThenReusesItAndPinnedClientsJoin(self):
        first = self.twistd()
        created = first.expect(r"server identity created in (\S+): fingerprint (\w+), "
                               r"public key (\w+)")
        port, fingerprint = first.expect(self.LISTENING).groups()
        self.assertEqual(created.group(1), str(self.directory / "proudserver.key"))
        self.assertEqual(created.group(2), fingerprint)
        if POSIX:
            self.assertEqual(mode(self.directory / "proudserver.key"), 0o600)
        self.assertEqual(self.joinPinned(port, created.group(3)), "joined")
        stop(first)

        second = self.twistd()
        loaded = second.expect(r"server identity loaded from \S+: fingerprint (\w+)")
        self.assertEqual(loaded.group(1), fingerprint)
        port, again = second.expect(self.LISTENING).groups()
        self.assertEqual(again, fingerprint)
        self.assertEqual(self.joinPinned(port, created.group(3)), "joined")
        self.assertEqual(self.joinPinned(port, IdentityKey.generate().publicKey().toHex()),
                         "HandshakeFailed")

    def joinPinned(self, port, publicKeyHex) -> str:
        """Join the server with a client pinned to C{publicKeyHex}: C{"joined"}
        or the name of the error."""
        code = (
            "import sys\n"
            "from twisted.internet import defer, task\n"
            "from proud_twisted import NetClient, PublicIdentity\n"
            "from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION\n"
            "async def main(reactor):\n"
            "    client = NetClient(serverKey=PublicIdentity.fromHex(sys.argv[2]))\n"
            "    try:\n"
            "        await client.connect('127.0.0.1', int(sys.argv[1]),\n"
            "                             ROOMS_PROTOCOL_VERSION, timeout=20)\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__)\n"
            "        return\n"
            "    print('joined')\n"
            "    await client.disconnect()\n"
            "task.react(lambda reactor: defer.ensureDeferred(main(reactor)))\n")
        done = subprocess.run([sys.executable, "-c", code, port, publicKeyHex],
                              cwd=self.directory, env=environment(), capture_output=True,
                              text=True, check=False, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done.stdout.strip().splitlines()[-1]

    def test_corruptKeyFileStopsTwistdWithTheReason(self):
        (self.directory / "proudserver.key").write_bytes(b"not a key")
        done = subprocess.run([*TWISTD, "-n", "--pidfile=", "proudserver"],
                              cwd=self.directory, env=environment(), capture_output=True,
                              text=True, check=False, timeout=60)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("--key-file: ", done.stdout)
        self.assertIn("no usable server identity key", done.stdout)
        self.assertEqual((self.directory / "proudserver.key").read_bytes(), b"not a key")

    def test_noEncryptionWarnsInTheLog(self):
        server = self.twistd("--no-encryption")
        server.expect(r"\[proud_twisted\.tap\.IdentityLog#warn\] ENCRYPTION IS OFF")
        server.expect(self.LISTENING.replace(r".*identity (\w+)", r".*encryption OFF"))
        # Started in full before the cleanup's SIGINT: until the reactor runs,
        # Python's own handler raises it inside startup code (the garbage
        # collection of the gc-freeze), where a weakref callback may swallow it.
        server.expect(r"frozen out of garbage collection")
        self.assertFalse((self.directory / "proudserver.key").exists())


class PluginTests(InTemporaryDirectory, SynchronousTestCase):
    def test_proudserverIsAServiceMaker(self):
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("proudserver", makers)
        maker = makers["proudserver"]
        self.assertIs(maker.options, Options)
        self.assertIs(maker.makeService, makeService)

    def importedAfter(self, module, *steps):
        """Run C{steps} (statements) in a fresh Python: whether C{module} is
        imported after each."""
        check = f"print({module!r} in sys.modules)\n"
        code = "import sys\n" + "".join(step + "\n" + check for step in steps)
        out = subprocess.run([sys.executable, "-c", code], cwd=self.directory,
                             env=environment(), capture_output=True, text=True, check=False,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [line == "True" for line in out.stdout.split()]

    def test_pluginAndOptionsDoNotImportTheReactor(self):
        self.assertEqual(self.importedAfter(
            "twisted.internet.reactor",
            "import twisted.plugins.proudserver_plugin as plugin",
            "plugin.proudServer.options().parseOptions([])"), [False, False])

    def test_importingTapImportsNoApp(self):
        """The rooms app is named, not imported, until the options are parsed."""
        self.assertEqual(self.importedAfter(
            "proud_twisted.apps.rooms", "import proud_twisted.tap as tap",
            "tap.Options().parseOptions(['--no-encryption'])"), [False, True])
