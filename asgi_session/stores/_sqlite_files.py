"""The SQLite store's files on disk: created owner-only, and a warning when an existing one is not.

The file holds the signing keys, so :func:`prepare_file` creates a missing file ``0600`` itself before SQLite opens
it. SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it creates later the database file's own permission
bits (whatever the umask), so they are ``0600`` too. An existing file keeps its mode: if group or others may read or
write it (or its companions), a warning names the file and the ``chmod`` that fixes it, once per file. The process
umask is never touched (it is process-wide, and changing it is not thread-safe).
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import threading

__all__ = ["prepare_file"]

logger = logging.getLogger("asgi_session")

_OWNER_ONLY = 0o600
_COMPANIONS = ("", "-wal", "-shm", "-journal")  # SQLite names them after the database file
_warned_paths: set[str] = set()  # files already warned about in this process
_warned_lock = threading.Lock()  # stores on several threads (one event loop each) may open at once


def _warn_if_shared(path: str) -> None:
    try:
        status = os.stat(path)
    except OSError:  # absent (the usual case for the companions), or not ours to inspect
        return
    mode = stat.S_IMODE(status.st_mode)
    if not stat.S_ISREG(status.st_mode) or not mode & 0o077:
        return
    with _warned_lock:
        if path in _warned_paths:
            return
        _warned_paths.add(path)
    logger.warning(
        "asgi_session: %s has mode %s: users other than its owner may read or write it, and it holds the signing "
        "keys and the sessions. Restrict it to the server's user: chmod 600 %s",
        path,
        oct(mode),
        shlex.quote(path),
    )


def prepare_file(path: str) -> None:
    """Create the database file ``0600`` if it is missing; warn about group or other access to an existing one."""
    if os.name != "posix":  # mode bits mean little on Windows; access there is governed by ACLs
        return
    # SQLite follows symbolic links and creates the file (and its -wal, -shm) beside the target: so do we.
    real = os.path.realpath(path)
    try:
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _OWNER_ONLY)
    except FileExistsError:
        pass
    except OSError:
        return  # a missing directory, no permission: SQLite will fail the same way and report it
    else:
        try:
            os.fchmod(fd, _OWNER_ONLY)  # exactly 0600, whatever the umask removed or left
        except OSError:
            pass  # a file system without modes; nothing more to do
        finally:
            os.close(fd)
    for suffix in _COMPANIONS:
        _warn_if_shared(real + suffix)
