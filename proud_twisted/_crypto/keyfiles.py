"""The server's identity key file: loaded, or created once and never replaced.

Knows nothing of twistd: a file that cannot be used raises L{KeyFileError},
whose message the caller shows as it sees fit (C{twistd proudserver} prefixes
it with C{--key-file: }).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from proud_twisted._crypto.identity import IdentityKey, identityFromPem, identityToPem
from proud_twisted.errors import ProtocolError

KEY_FILE_MODE = 0o600
"""Mode of a new key file: readable and writable by its owner only."""


class KeyFileError(ValueError):
    """A key file that cannot be read or created, or holds no usable key."""


def loadOrCreateIdentity(path: Path) -> tuple[IdentityKey, bool]:
    """The identity in C{path}, made and saved first if there is none yet.

    @return: C{(key, created)}.
    @raise KeyFileError: the file cannot be read or created, or holds no
        usable key (the file is then left as it was).
    """
    for _ in range(2):
        try:
            return readIdentity(path), False
        except FileNotFoundError:
            pass
        key = IdentityKey.generate()
        try:
            writeNewKeyFile(path, identityToPem(key))
        except FileExistsError:
            continue    # another server created it meanwhile: use that one
        except OSError as e:
            raise KeyFileError(f"cannot create {path}: {e.strerror or e}") from None
        return key, True
    raise KeyFileError(
        f"{path} can be neither read nor created (a dangling symbolic link?)")


def readIdentity(path: Path) -> IdentityKey:
    """The identity in C{path}.

    @raise FileNotFoundError: C{path} is missing but could be created.
    @raise KeyFileError: anything else that keeps the key from being read.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise KeyFileError(
                f"cannot create {path}: directory {path.parent} does not exist") from None
        raise
    except IsADirectoryError:
        raise KeyFileError(f"{path} is a directory, not a key file") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return identityFromPem(data)
    except ProtocolError as e:
        raise KeyFileError(
            f"{path} holds no usable server identity key ({e}). It must "
            "be the unencrypted PKCS#8 PEM Ed25519 private key that twistd "
            "proudserver writes. To start over with a new identity, move the file "
            "away: clients pinned to the old public key will then refuse this "
            "server until they are given the new one.") from None


def writeNewKeyFile(path: Path, pem: bytes) -> None:
    """Write C{pem} to C{path}, readable by its owner only, all at once.

    The bytes go to a temporary file in the same directory (mode 0600, synced
    to disk), which then appears under C{path} in one step: as a hard link,
    which never replaces a file that another process created meanwhile
    (C{FileExistsError}), or, where the file system has no hard links, by
    rename. Either way no reader ever sees a partial key file.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                     dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), KEY_FILE_MODE)
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:
            if path.exists():
                raise FileExistsError(f"{path} exists") from None
            os.replace(temporary, path)
        _syncDirectory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def fileMode(path: Path) -> int | None:
    """The permission bits of C{path}; C{None} off POSIX or if it cannot be read."""
    if os.name != "posix":
        return None
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def _syncDirectory(directory: Path) -> None:
    """Make a new directory entry durable where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
