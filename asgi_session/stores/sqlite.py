"""SQLiteStore: the default session store, one SQLite file reached through aiosqlite.

Concurrency model. The store holds one aiosqlite connection in autocommit mode (``isolation_level=None``). aiosqlite
runs every call on the connection's own worker thread, one at a time, in the order they were queued. Every operation
of the store is exactly one SQL statement per chunk of handles (a read, a conditional ``UPDATE`` checked by its row
count, or a ``... RETURNING`` statement), which SQLite makes atomic on its own.

The operations of the request path (``create``, ``rotate``, ``get``, ``touch`` and the two ``update_*``) go through
a group commit (``_sqlite_batch``): the statements queued while one batch runs on aiosqlite's thread form the next
batch, run there in one call. Its reads run first, then its writes in one ``BEGIN IMMEDIATE ... COMMIT``; a caller
is answered only after the commit that holds its write returned, and a statement that fails (or a ``COMMIT`` that
fails) fails only the callers it concerns. A lone statement runs at once, in autocommit, as before; under load, 64
concurrent creates cost one thread round trip and one commit instead of 64 (``docs/decisions.md``). The rarer
operations (deletes, listings, keys, leases, the log) run one statement per round trip, as before. A batch always
ends its transaction before its call returns, so no transaction ever interleaves with another statement on the
connection and tasks sharing the store need no lock. The schema set-up in :meth:`SQLiteStore.open` is the one other
explicit transaction; it finishes before the store accepts any operation.

Several processes (or several ``SQLiteStore`` objects) may share one file: WAL lets readers run beside a writer, and
a writer waits up to ``busy_timeout`` for the write lock before failing with :class:`~asgi_session.StoreError`. A
single write statement in autocommit mode, like a batch's ``BEGIN IMMEDIATE``, asks for the write lock as it starts,
so the wait never ends in the "busy snapshot" error that a read-then-write transaction can hit.

Cancellation. Cancelling a task that awaits an operation does not stop the statement: it was already queued for
aiosqlite's thread (alone or in a batch) and completes there with its batch (its result is dropped; the other
callers of the batch are unaffected). A cancelled ``create`` may therefore have inserted its row, as if the response
had been lost after the commit. ``close`` lets every queued statement and batch finish first.

File permissions: the file holds the signing keys, so it is created ``0600`` (see ``_sqlite_files``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio

from ..exceptions import ConfigurationError, StoreError
from . import _sqlite_revocations as revocation_log
from ._json import dump_object
from ._sqlite_batch import GroupCommit, Outcome, supported
from ._sqlite_files import prepare_file
from ._sqlite_sql import (
    ACQUIRE_LEASE,
    ADD_KEY,
    CHUNK,
    GET,
    GET_KEYS,
    INSERT,
    KEY_FIELDS,
    LIST_USER,
    LIST_USER_TENANT,
    MIGRATIONS,
    ROTATE,
    ROTATE_SLIDING,
    ROTATE_SLIDING_SUPPORTED,
    SCHEMA_VERSION,
    to_record,
    to_row,
)
from .base import (
    KeyRecord,
    LeaseStore,
    Revocation,
    RevocationLog,
    RevocationProbe,
    Rotation,
    SessionRecord,
    SessionStore,
    SlidingRotation,
    StoreLifecycle,
)

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
_MIN_SQLITE = (3, 35)  # RETURNING

# What the driver may raise: sqlite3 errors, aiosqlite's ValueError on a closed connection, UnicodeEncodeError (a
# ValueError) for an unencodable string, OverflowError for an out-of-range integer, OSError from the file system.
_DRIVER_ERRORS = (sqlite3.Error, ValueError, OverflowError, OSError)

_NOT_OPEN = "store is not open; use `async with store:` or `await store.open()`"


def _store_error(operation: str, exc: BaseException) -> StoreError:
    """Wrap a driver error, naming the operation.

    SQLite's messages never quote bound values (hashes, data); a UnicodeError's would, so only its type is kept.
    """
    detail = type(exc).__name__ if isinstance(exc, UnicodeError) else f"{type(exc).__name__}: {exc}"
    return StoreError(f"SQLite store: {operation} failed ({detail})")


def _result(operation: str, outcome: Outcome) -> Any:
    """A batched statement's result, or its error raised as the caller's own ``StoreError``."""
    if outcome[0]:
        return outcome[1]
    exc = outcome[1]
    if isinstance(exc, _DRIVER_ERRORS):
        raise _store_error(operation, exc) from exc
    raise exc


def _chunks(items: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(items))
    return [unique[start : start + CHUNK] for start in range(0, len(unique), CHUNK)]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SQLiteStore(StoreLifecycle, SessionStore, RevocationLog, RevocationProbe, LeaseStore):
    """Sessions and keys in one SQLite file, shared safely by every process that opens it.

    Each operation is one SQL statement on one autocommit connection; concurrent writes of the request path commit
    together, each caller answered once its write committed (see the module docstring). The file uses WAL;
    ``":memory:"`` gives a private database that is lost on close. The file holds the signing keys:
    a new one is created readable by its owner only (``0600``, as are the ``-wal`` and ``-shm`` files SQLite adds),
    and an existing one that other users may read is warned about.

    Args:
        path: the database file (created if missing), or ``":memory:"``.
        busy_timeout: seconds a statement waits for another connection's lock before raising
            :class:`~asgi_session.StoreError`.
        synchronous: SQLite's durability mode. ``"NORMAL"`` (the default) never corrupts the file in WAL mode but
            may lose the last commits on power loss; ``"FULL"`` syncs every commit to disk.

    Raises:
        ConfigurationError: a setting is invalid, or the SQLite library is older than 3.35.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise ConfigurationError(
                "SQLiteStore needs SQLite 3.35 or newer (for RETURNING); this Python uses SQLite "
                f"{sqlite3.sqlite_version}. Upgrade Python or its SQLite library, or use another store."
            )
        number = isinstance(busy_timeout, (int, float)) and not isinstance(busy_timeout, bool)
        if not number or not 0 <= busy_timeout < math.inf:  # also refuses NaN
            raise ConfigurationError("busy_timeout must be a finite number of seconds >= 0, e.g. 5.0")
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigurationError('synchronous must be "NORMAL" or "FULL"')
        self._path = os.fspath(path)
        self._busy_ms = min(round(busy_timeout * 1000), 2**31 - 1)  # SQLite takes a 32-bit count of milliseconds
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._batch: GroupCommit | None = None
        self._probe: revocation_log.SyncProbe | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    async def _open(self) -> None:
        """Connect, set the PRAGMAs, and create or migrate the schema.

        Raises:
            StoreError: the file cannot be opened or configured, or its schema is newer than this code knows.
        """
        if self._path not in ("", ":memory:"):  # "" is a private temporary database too
            # A few system calls on a local file (WAL needs a local disk), once per open: inline, not worth a
            # worker thread that would outlive the store.
            prepare_file(self._path)
        try:
            # Shielded: a cancellation here would strand the connection's worker thread.
            with anyio.CancelScope(shield=True):
                db = await aiosqlite.connect(self._path, isolation_level=None, timeout=self._busy_ms / 1000)
        except _DRIVER_ERRORS as exc:
            raise _store_error(f"opening {self._path!r}", exc) from exc
        try:
            await self._configure(db)
            await self._migrate(db)
        except BaseException:
            with anyio.CancelScope(shield=True):
                # The original error is the one worth reporting.
                with contextlib.suppress(*_DRIVER_ERRORS):
                    await db.close()
            raise
        self._db = db
        self._batch = GroupCommit(db) if supported(db) else None
        if self._path not in ("", ":memory:"):  # a private database has no second connection to probe with
            try:
                self._probe = revocation_log.SyncProbe(self._path)
            except sqlite3.Error:
                self._probe = None  # verification then reads the store, as without a log

    async def _configure(self, db: aiosqlite.Connection) -> None:
        operation = f"configuring {self._path!r}"
        try:
            # execute_fetchall: this PRAGMA returns a row, and a statement left unread would stay active.
            await db.execute_fetchall(f"PRAGMA busy_timeout = {self._busy_ms}")
            if self._path != ":memory:":
                rows = await db.execute_fetchall("PRAGMA journal_mode = WAL")
                mode = next(iter(rows))[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"could not put {self._path!r} in WAL mode (got {mode!r})")
            await db.execute(f"PRAGMA synchronous = {self._synchronous}")
            await db.execute("PRAGMA foreign_keys = ON")
        except _DRIVER_ERRORS as exc:
            raise _store_error(operation, exc) from exc

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        operation = f"creating the schema of {self._path!r}"
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                rows = await db.execute_fetchall("PRAGMA user_version")
                version = int(next(iter(rows))[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self._path!r} has schema version {version}, newer than this asgi-session supports "
                        f"({SCHEMA_VERSION}); upgrade asgi-session"
                    )
                for step in MIGRATIONS[version:]:
                    for statement in step:
                        await db.execute(statement)
                if version != SCHEMA_VERSION:
                    await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                await db.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    # Fails only if BEGIN itself failed or the connection is gone: nothing to undo.
                    with contextlib.suppress(*_DRIVER_ERRORS):
                        await db.execute("ROLLBACK")
                raise
        except _DRIVER_ERRORS as exc:
            raise _store_error(operation, exc) from exc

    async def _close(self) -> None:
        """Close the connection and stop its worker thread.

        Operations already queued complete first; later ones raise ``StoreError``.
        """
        db, self._db = self._db, None
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.close()  # what it queued runs before the close queued below; later statements are refused
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()
        if db is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await db.close()
            except _DRIVER_ERRORS as exc:
                raise _store_error("closing", exc) from exc

    async def _call(self, operation: str, run: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        db = self._db
        if db is None:
            raise StoreError(_NOT_OPEN)
        try:
            return await run(db)
        except _DRIVER_ERRORS as exc:
            raise _store_error(operation, exc) from exc

    async def _fetch(
        self, operation: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[sqlite3.Row]:
        """Run one ``SELECT`` or ``... RETURNING`` statement: one round trip."""
        rows = await self._call(operation, lambda db: db.execute_fetchall(sql, params))
        return list(rows)

    async def _change(self, operation: str, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement and return how many rows it changed: one round trip."""

        async def run(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql, params)
            return cursor.rowcount

        return await self._call(operation, run)

    async def _batched_change(self, operation: str, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement with the next batch (``_sqlite_batch``); its row count, once it committed."""
        batch = self._batch
        if batch is None:  # closed, or an aiosqlite without what the batch needs: one statement per trip
            return await self._change(operation, sql, params)
        count: int = _result(operation, await batch.write(lambda conn: conn.execute(sql, params).rowcount))
        return count

    async def _batched_fetch(self, operation: str, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """Run one read statement with the next batch, ahead of its writes."""
        batch = self._batch
        if batch is None:
            return await self._fetch(operation, sql, params)
        outcome = await batch.read(lambda conn: conn.execute(sql, params).fetchall())
        rows: list[sqlite3.Row] = _result(operation, outcome)
        return rows

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session (committed with concurrent writes, before this returns).

        Raises:
            StoreError: the handle exists, the data is not a JSON object, or the database failed.
        """
        if await self._batched_change("create", INSERT, to_row(record)) == 0:
            raise StoreError("a session with this handle already exists")

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session (expired or not) or ``None``."""
        rows = await self._batched_fetch("get", GET, (handle,))
        return to_record(rows[0]) if rows else None

    async def rotate(self, rotation: Rotation) -> bool:
        """Compare-and-swap the refresh hash: a conditional ``UPDATE`` checked by its row count."""
        params = (
            rotation.new_refresh_hash,
            rotation.expected_refresh_hash,
            rotation.rotated_at,
            rotation.last_seen,
            rotation.expires_at,
            rotation.handle,
            rotation.expected_refresh_hash,
        )
        return await self._batched_change("rotate", ROTATE, params) > 0

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        """A refresh's read and compare-and-swap as one ``UPDATE ... RETURNING`` (committed with concurrent writes).

        ``None`` when the session is missing, expired or holds another hash, and on SQLite before 3.35 (no
        ``RETURNING``): the manager then reads and swaps in two steps.
        """
        if not ROTATE_SLIDING_SUPPORTED:
            return None
        params = {
            "new": rotation.new_refresh_hash,
            "old": rotation.expected_refresh_hash,
            "now": rotation.now,
            "idle": rotation.default_idle_timeout,
            "handle": rotation.handle,
        }
        batch = self._batch
        if batch is None:
            rows: list[Any] = await self._fetch("rotate_sliding", ROTATE_SLIDING, params)
        else:
            outcome = await batch.write(lambda conn: conn.execute(ROTATE_SLIDING, params).fetchall())
            rows = _result("rotate_sliding", outcome)
        return to_record(rows[0]) if rows else None

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        """Replace the session data; return whether the session exists."""
        sql = "UPDATE sessions SET session_data = ? WHERE handle = ?"
        params = (dump_object(data, "session data"), handle)
        return await self._batched_change("update_session_data", sql, params) > 0

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        """Replace the stored custom claims; return whether the session exists."""
        sql = "UPDATE sessions SET access_token_payload = ? WHERE handle = ?"
        params = (dump_object(payload, "access-token payload"), handle)
        return await self._batched_change("update_access_token_payload", sql, params) > 0

    async def touch(self, handle: str, last_seen: float) -> bool:
        """Set the last-seen time; return whether the session exists."""
        sql = "UPDATE sessions SET last_seen = ? WHERE handle = ?"
        return await self._batched_change("touch", sql, (last_seen, handle)) > 0

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete sessions; return those that existed, in the order given.

        One ``DELETE ... RETURNING`` per 500 distinct handles; each chunk is atomic on its own.
        """
        deleted: set[str] = set()
        for chunk in _chunks(handles):
            sql = revocation_log.revoke_handles_sql(len(chunk))  # logs and deletes in one statement
            deleted.update(row[0] for row in await self._fetch("delete", sql, chunk))
        return [handle for handle in dict.fromkeys(handles) if handle in deleted]

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions in one tenant or all, by ``created_at`` then ``handle``."""
        if tenant_id is None:
            rows = await self._fetch("list_for_user", LIST_USER, (user_id,))
        else:
            rows = await self._fetch("list_for_user", LIST_USER_TENANT, (user_id, tenant_id))
        return [to_record(row) for row in rows]

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions in one tenant or all; return their handles, oldest first."""
        if tenant_id is None:
            rows = await self._fetch("delete_for_user", revocation_log.revoke_user_sql(False), (user_id,))
        else:
            sql = revocation_log.revoke_user_sql(True)
            rows = await self._fetch("delete_for_user", sql, (user_id, tenant_id))
        # RETURNING gives no order; sort as list_for_user does.
        return [handle for _, handle in sorted((row[1], row[0]) for row in rows)]

    async def delete_expired(self, now: float) -> int:
        """Delete sessions with ``expires_at <= now``; return how many."""
        sql = "DELETE FROM sessions WHERE expires_at <= ?"
        return await self._change("delete_expired", sql, (now,))

    async def acquire_lease(self, name: str, holder: str, now: float, duration: float) -> bool:
        """Take the named lease unless another holder's grant lasts past ``now`` (one upsert)."""
        rows = await self._fetch("acquire_lease", ACQUIRE_LEASE, (name, holder, now + duration, now))
        return bool(rows)

    async def revocations_since(self, after: int, limit: int = 10_000) -> list[Revocation]:
        """Return up to ``limit`` revocation-log entries numbered above ``after``, ascending."""
        rows = await self._fetch("revocations_since", revocation_log.SINCE, (after, limit))
        return [(int(seq), str(handle)) for seq, handle in rows]

    async def trim_revocations(self, through: int) -> int:
        """Delete the log entries numbered ``through`` or lower."""
        return await self._change("trim_revocations", revocation_log.TRIM, (through,))

    def probe_revocations(self, after: int) -> list[Revocation] | None:
        """Every log entry above ``after`` committed by any process, read without awaiting; ``None`` if unknown."""
        probe = self._probe
        return None if probe is None else probe.since(after)

    async def get_keys(self) -> list[KeyRecord]:
        """Return every key, ordered by ``signs_from`` then ``kid``."""
        rows = await self._fetch("get_keys", GET_KEYS)
        return [KeyRecord(**dict(zip(KEY_FIELDS, row, strict=True))) for row in rows]

    async def add_key(self, key: KeyRecord) -> bool:
        """Insert a key unless its kid exists; return whether it was inserted."""
        params = [getattr(key, name) for name in KEY_FIELDS]
        return await self._change("add_key", ADD_KEY, params) > 0

    async def delete_keys(self, kids: Sequence[str]) -> int:
        """Delete keys; return how many existed (one statement per 500 distinct kids)."""
        count = 0
        for chunk in _chunks(kids):
            sql = f"DELETE FROM keys WHERE kid IN ({_marks(len(chunk))})"  # noqa: S608
            count += await self._change("delete_keys", sql, chunk)
        return count
