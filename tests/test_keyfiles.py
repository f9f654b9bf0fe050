"""The server's identity key file: L{proud_twisted._crypto.keyfiles}."""

import os
import shutil
import stat
import tempfile
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._crypto import keyfiles
from proud_twisted._crypto.keyfiles import (
    KEY_FILE_MODE,
    KeyFileError,
    fileMode,
    loadOrCreateIdentity,
    writeNewKeyFile,
)
from proud_twisted.crypto import IdentityKey, identityFromPem, identityToPem

POSIX = os.name == "posix"
ROOT_USER = POSIX and os.geteuid() == 0


class KeyFileTestCase(SynchronousTestCase):
    """Each test has a fresh directory, C{self.directory}, for its files."""

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp(prefix="proud-keyfiles-")).resolve()
        self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        self.path = self.directory / "server.key"

    def assertOnly(self, *names):
        """The directory holds C{names} and nothing else."""
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(names))


class LoadOrCreateTests(KeyFileTestCase):
    def test_createdWhenMissing(self):
        key, created = loadOrCreateIdentity(self.path)
        self.assertTrue(created)
        self.assertEqual(identityFromPem(self.path.read_bytes()).publicKey(),
                         key.publicKey())
        # Nothing else is left behind: the temporary file became the key file.
        self.assertOnly("server.key")

    def test_createdWithMode0600WhateverTheUmask(self):
        if not POSIX:
            raise self.skipTest("file modes are POSIX")
        self.addCleanup(os.umask, os.umask(0))
        loadOrCreateIdentity(self.path)
        self.assertEqual(KEY_FILE_MODE, 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_loadedOnceItExists(self):
        first, _ = loadOrCreateIdentity(self.path)
        written = self.path.read_bytes()
        second, created = loadOrCreateIdentity(self.path)
        self.assertFalse(created)
        self.assertEqual(second.publicKey(), first.publicKey())
        self.assertEqual(self.path.read_bytes(), written)

    def test_keyCreatedMeanwhileByAnotherServerIsUsed(self):
        """Two servers starting at once on one key file end up with the same key."""
        theirs = IdentityKey.generate()

        def otherServerWinsTheRace(path, pem):
            writeNewKeyFile(path, identityToPem(theirs))
            writeNewKeyFile(path, pem)

        with mock.patch.object(keyfiles, "writeNewKeyFile", otherServerWinsTheRace):
            key, created = loadOrCreateIdentity(self.path)
        self.assertFalse(created)
        self.assertEqual(key.publicKey(), theirs.publicKey())
        self.assertEqual(identityFromPem(self.path.read_bytes()).publicKey(),
                         theirs.publicKey())


class KeyFileErrorTests(KeyFileTestCase):
    """What keeps a key file from being used is a L{KeyFileError} naming the
    path and the cause; the file is never replaced."""

    def assertKeyFileError(self, *fragments, path=None):
        path = path or self.path
        with self.assertRaises(KeyFileError) as caught:
            loadOrCreateIdentity(path)
        message = str(caught.exception)
        self.assertIn(str(path), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_aValueError(self):
        self.assertTrue(issubclass(KeyFileError, ValueError))

    def test_corruptKeyFile(self):
        for content in [b"garbage", b"", identityToPem(IdentityKey.generate())[:60]]:
            self.path.write_bytes(content)
            self.assertKeyFileError("no usable server identity key", "move the file away")
            # The file is left as it was, for its owner to look at.
            self.assertEqual(self.path.read_bytes(), content)

    def test_keyOfAnotherKind(self):
        other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        self.path.write_bytes(other)
        self.assertKeyFileError("no usable server identity key", "not Ed25519")

    def test_passwordProtectedKey(self):
        self.path.write_bytes(identityToPem(IdentityKey.generate(), b"secret"))
        self.assertKeyFileError("no usable server identity key", "unencrypted")

    def test_directory(self):
        self.path.mkdir()
        self.assertKeyFileError("is a directory")

    def test_missingDirectory(self):
        self.assertKeyFileError("cannot create", "does not exist",
                                path=self.directory / "no" / "such" / "server.key")
        self.assertOnly()

    def test_danglingSymbolicLink(self):
        if not POSIX:
            raise self.skipTest("needs symbolic links")
        self.path.symlink_to(self.directory / "gone.key")
        self.assertKeyFileError("neither read nor created", "symbolic link")
        self.assertOnly("server.key")

    def test_unreadableKeyFile(self):
        if not POSIX or ROOT_USER:
            raise self.skipTest("needs POSIX permissions that bind this user")
        self.path.write_bytes(identityToPem(IdentityKey.generate()))
        os.chmod(self.path, 0)
        self.assertKeyFileError("cannot read", "Permission denied")

    def test_unwritableDirectory(self):
        if not POSIX or ROOT_USER:
            raise self.skipTest("needs POSIX permissions that bind this user")
        locked = self.directory / "locked"
        locked.mkdir(0o500)
        self.addCleanup(os.chmod, locked, 0o700)
        self.assertKeyFileError("cannot create", path=locked / "server.key")

    def test_readError(self):
        """Whoever runs the tests (root reads everything), a read error is clear."""
        self.path.write_bytes(identityToPem(IdentityKey.generate()))
        denied = PermissionError(13, "Permission denied")
        with mock.patch.object(Path, "read_bytes", side_effect=denied):
            self.assertKeyFileError("cannot read", "Permission denied")

    def test_createError(self):
        denied = PermissionError(13, "Permission denied")
        with mock.patch.object(keyfiles.tempfile, "mkstemp", side_effect=denied):
            self.assertKeyFileError("cannot create", "Permission denied")
        self.assertOnly()


class WriteNewKeyFileTests(KeyFileTestCase):
    def test_neverReplacesAFile(self):
        self.path.write_bytes(b"first")
        with self.assertRaises(FileExistsError):
            writeNewKeyFile(self.path, b"second")
        self.assertEqual(self.path.read_bytes(), b"first")
        self.assertOnly("server.key")

    def test_withoutHardLinksRenames(self):
        with mock.patch.object(os, "link", side_effect=PermissionError("no links here")):
            writeNewKeyFile(self.path, b"pem")
        self.assertEqual(self.path.read_bytes(), b"pem")
        self.assertOnly("server.key")

    def test_withoutHardLinksNeverReplacesAFile(self):
        self.path.write_bytes(b"first")
        noLinks = PermissionError("no links here")
        with mock.patch.object(os, "link", side_effect=noLinks), \
                self.assertRaises(FileExistsError):
            writeNewKeyFile(self.path, b"second")
        self.assertEqual(self.path.read_bytes(), b"first")
        self.assertOnly("server.key")


class FileModeTests(KeyFileTestCase):
    def test_permissionBits(self):
        if not POSIX:
            raise self.skipTest("file modes are POSIX")
        self.path.write_bytes(b"")
        os.chmod(self.path, 0o640)
        self.assertEqual(fileMode(self.path), 0o640)

    def test_missingFile(self):
        self.assertIsNone(fileMode(self.path))
