"""PostgresStore: the session store in PostgreSQL, reached through an asyncpg connection pool.

Concurrency. Every operation is one SQL statement on a pooled autocommit connection: one round trip, atomic on its
own. Rotation is one ``UPDATE ... WHERE handle = $1 AND refresh_hash = $2 RETURNING handle``; its row lock queues
concurrent rotations of a session and each re-checks the ``WHERE`` clause against the winner's row, so exactly one
matches. No state is left on a connection (see ``_postgres_pool``).

Failures. ``_postgres_pool`` retries rollbacks and lost reads, and raises every driver error as
:class:`~asgi_session.StoreError`; see its notes. A write whose connection died (or whose statement timed out) in
flight has an unknown outcome and the store never guesses: ``rotate`` re-reads the row and reports success only if
it holds the new hash; otherwise ``StoreError``, and the caller retries (the manager's compare-and-swap makes that
safe).

Revocation log. ``delete`` and ``delete_for_user`` are each one statement that deletes the sessions, logs their
handles in ``revocations`` and, if it deleted any, sends ``NOTIFY`` on :attr:`PostgresStore.revocation_channel`
(delivered at commit): all or nothing. ``delete_expired`` logs nothing. The feed is in ``_postgres_feed``.

Log order. A reader asks for the entries above the last number it saw, so no entry may commit after a higher-numbered
one. Sequence numbers (``bigserial``) are drawn at ``nextval`` and commit in any order, so the numbers come from the
one-row ``revocation_counter``: the statement increments it after its deletions (only if it deleted something) and
holds that row lock until commit. Revocations thus draw their numbers and commit one at a time, in number order (a
waiting ``UPDATE`` re-reads the row once the holder commits, and a commit is visible before its locks are released):
a snapshot that sees entry ``n`` sees every entry below it. The numbers are dense and never reused (a trim leaves the
counter alone). The price: revocations, and only they, are serialised per schema for about one commit (a WAL flush).

Schema. Tables live in one schema, created or migrated by :meth:`open` in one transaction under an advisory lock,
so processes opening a fresh database at once do not race; ``schema_version`` holds the version. Times are
``double precision`` seconds (exact for Python floats). Data and payloads are ``jsonb``: it cannot hold NUL
characters (``StoreError``) and keeps numbers as decimals, so a float of 1e16 or more reads back as an int.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..exceptions import ConfigurationError, StoreError
from ._json import dump_object
from ._postgres_sql import (
    FIELDS,
    JSON_FIELDS,
    KEY_FIELDS,
    MIGRATIONS,
    revocation_channel,
    row_count,
    statements,
    to_record,
)
from ._postgres_sql import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: importable from here, as before
from .base import (
    KeyRecord,
    LeaseStore,
    Revocation,
    RevocationFeed,
    RevocationLog,
    Rotation,
    SessionRecord,
    SessionStore,
    SlidingRotation,
    StoreLifecycle,
)

try:
    # Here, not only in _postgres_pool: this runs on every import of this module, so a missing asyncpg always
    # gets the pip hint.
    import asyncpg  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:  # pragma: no cover - tested by hiding the module
    raise ConfigurationError("PostgresStore needs asyncpg: pip install 'asgi-session[postgres]'") from exc

# After the guard above: _postgres_pool and _postgres_feed import asyncpg too.
from ._postgres_feed import follow, valid_heartbeat
from ._postgres_pool import OutcomeUnknown, PostgresPool

__all__ = ["PostgresStore"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("schema", "application_name"), str),
    **dict.fromkeys(("min_size", "max_size", "serialization_retries"), int),
    **dict.fromkeys(("acquire_timeout", "command_timeout", "connect_timeout"), float),
}


class PostgresStore(StoreLifecycle, SessionStore, RevocationLog, RevocationFeed, LeaseStore):
    """Sessions and keys in PostgreSQL, shared by every process and host that uses the same database and schema.

    Args:
        dsn: a libpq connection URI, e.g. ``postgresql://user:password@host:5432/db``.
        schema: the schema holding the tables (created if missing); letters, digits and ``_``, at most 63.
        min_size: connections opened at start and kept open.
        max_size: the most connections the pool opens.
        acquire_timeout: seconds an operation waits for a free connection before ``StoreError`` ("pool exhausted").
        command_timeout: seconds a statement may run before ``StoreError``.
        serialization_retries: how many times a statement rolled back by a serialization failure or a deadlock
            is retried.
        connect_timeout: seconds to establish one connection.
        application_name: shown in ``pg_stat_activity``; by default ``asgi-session:<schema>:<random>``.

    Raises:
        ConfigurationError: a setting is invalid.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "asgi_session",
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        command_timeout: float = 5.0,
        serialization_retries: int = 3,
        connect_timeout: float = 10.0,
        application_name: str | None = None,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ConfigurationError("dsn must be a PostgreSQL URI, e.g. postgresql://user@host:5432/db")
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError("schema must be 1-63 letters, digits or underscores, not starting with a digit")
        for name, value, least in (
            ("min_size", min_size, 0),
            ("max_size", max_size, 1),
            ("serialization_retries", serialization_retries, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigurationError(f"{name} must be an integer >= {least}")
        if min_size > max_size:
            raise ConfigurationError("min_size must not exceed max_size")
        for name, seconds in (("acquire", acquire_timeout), ("command", command_timeout), ("connect", connect_timeout)):
            number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            if not number or not 0 < seconds < math.inf:
                raise ConfigurationError(f"{name}_timeout must be a finite number of seconds > 0, e.g. 5.0")
        self._schema = schema
        self._application_name = (application_name or f"asgi-session:{schema}:{secrets.token_hex(4)}")[:63]
        self._pool = PostgresPool(
            dsn,
            sizes=(min_size, max_size),
            acquire_timeout=float(acquire_timeout),
            command_timeout=float(command_timeout),
            connect_timeout=float(connect_timeout),
            retries=serialization_retries,
            application_name=self._application_name,
        )
        super().__init__()
        s = '"' + schema + '"'  # the name is validated above, so quoting needs no escaping
        self._quoted_schema = s
        self._lock_key = int.from_bytes(hashlib.sha256(f"asgi-session:{schema}".encode()).digest()[:8], "big") >> 1
        self._sql = statements(s)
        self._channel = revocation_channel(schema)
        self._feed_connections: set[Any] = set()

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Build a store from a URL; the store's own query parameters are removed before asyncpg sees the DSN.

        Args:
            url: ``postgresql://user:password@host:5432/db?schema=sessions&max_size=20``. The parameters
                ``schema``, ``application_name``, ``min_size``, ``max_size``, ``serialization_retries``,
                ``acquire_timeout``, ``command_timeout`` and ``connect_timeout`` go to the constructor; the rest
                (``sslmode``, ...) stay in the DSN.

        Returns:
            The store, not yet opened.

        Raises:
            ConfigurationError: a parameter is repeated or not a valid value.
        """
        parts = urlsplit(url)
        options: dict[str, Any] = {}
        kept: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in _URL_OPTIONS:
                kept.append((name, value))
                continue
            if name in options:
                raise ConfigurationError(f"the PostgreSQL URL gives {name} more than once")
            try:
                options[name] = _URL_OPTIONS[name](value)
            except ValueError as exc:
                raise ConfigurationError(f"the PostgreSQL URL's {name} is not a valid value") from exc
        dsn = urlunsplit(parts._replace(query=urlencode(kept)))
        return cls(dsn, **options)

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self._schema!r})"  # never the DSN: it may carry a password

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._schema

    @property
    def application_name(self) -> str:
        """The ``application_name`` of the store's connections, as ``pg_stat_activity`` shows it."""
        return self._application_name

    @property
    def revocation_channel(self) -> str:
        """The ``NOTIFY`` channel announcing new revocations: ``asgi_session:<schema>`` (hashed if too long)."""
        return self._channel

    @property
    def feed_application_name(self) -> str:
        """The ``application_name`` of the connection :meth:`follow_revocations` opens: ``<application_name>:feed``."""
        return f"{self._application_name[:58]}:feed"

    async def _open(self) -> None:
        """Create the pool, then create or migrate the schema.

        Raises:
            StoreError: the server cannot be reached, or the schema is newer than this code knows.
        """
        await self._pool.open("creating the schema", self._migrate)

    async def _migrate(self, con: Any) -> None:
        s = self._quoted_schema
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)
            if await con.fetchval("SELECT to_regclass($1)", f"{s}.schema_version") is None:
                version = 0
                if await con.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self._schema) is None:
                    await con.execute(f"CREATE SCHEMA {s}")
            else:
                version = await con.fetchval(self._sql["version"])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL schema {self._schema!r} has version {version}, newer than this asgi-session "
                    f"supports ({SCHEMA_VERSION}); upgrade asgi-session"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    await con.execute(statement.format(s=s))
            if version != SCHEMA_VERSION:
                await con.execute(self._sql["set_version"], SCHEMA_VERSION)

    async def _close(self) -> None:
        """Close every connection, waiting up to ``command_timeout`` for running operations.

        A revocation feed still running loses its connection and raises ``StoreError``.
        """
        for connection in list(self._feed_connections):
            connection.terminate()
        await self._pool.close()

    async def _execute(self, operation: str, *args: Any) -> int:
        """Run the write statement named ``operation`` (one round trip) and return its row count."""
        sql = self._sql[operation]
        return row_count(await self._pool.run(operation, lambda con: con.execute(sql, *args)))

    async def _fetch(self, operation: str, *args: Any) -> list[Any]:
        """Run the ``SELECT`` or ``... RETURNING`` statement named ``operation`` (one round trip)."""
        sql = self._sql[operation]
        return list(await self._pool.run(operation, lambda con: con.fetch(sql, *args)))

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session.

        Raises:
            StoreError: the handle exists, the data is not a JSON object, or the database failed.
        """
        values = [
            dump_object(value, JSON_FIELDS[name]) if name in JSON_FIELDS else value
            for name, value in ((name, getattr(record, name)) for name in FIELDS)
        ]
        if await self._execute("create", *values) == 0:
            raise StoreError("a session with this handle already exists")

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session (expired or not) or ``None``."""
        rows = await self._fetch("get", handle)
        return to_record(rows[0]) if rows else None

    async def rotate(self, rotation: Rotation) -> bool:
        """Compare-and-swap the refresh hash with one conditional ``UPDATE ... RETURNING``.

        If the connection is lost mid-statement, the session is re-read: the rotation is reported only if the row
        holds its new hash; otherwise ``StoreError`` is raised, since the server may yet commit it.
        """
        names = ("handle", "expected_refresh_hash", "new_refresh_hash", "rotated_at", "last_seen", "expires_at")
        try:
            return len(await self._fetch("rotate", *(getattr(rotation, name) for name in names))) == 1
        except OutcomeUnknown as unknown:
            await self._settle(unknown, rotation.handle, rotation.new_refresh_hash)
            return True

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        """A refresh's read and compare-and-swap as one ``UPDATE ... RETURNING`` (one round trip, not two).

        ``None`` when the session is missing, expired or holds another hash. A connection lost mid-statement is
        settled as in :meth:`rotate`: the session is re-read, and returned only if it holds the new hash.
        """
        args = (
            rotation.handle,
            rotation.expected_refresh_hash,
            rotation.new_refresh_hash,
            rotation.now,
            rotation.default_idle_timeout,
        )
        try:
            rows = await self._fetch("rotate_sliding", *args)
        except OutcomeUnknown as unknown:
            return await self._settle(unknown, rotation.handle, rotation.new_refresh_hash)
        return to_record(rows[0]) if rows else None

    async def _settle(self, unknown: OutcomeUnknown, handle: str, new_refresh_hash: str) -> SessionRecord:
        """After a rotation lost its connection: the session if it holds the new hash, else ``unknown`` raised.

        The new hash is fresh randomness: finding it means this very rotation committed. Not finding it leaves the
        outcome unknown (the server may yet commit it), and so does a failing re-read.
        """
        try:
            record = await self.get(handle)
        except StoreError as exc:
            raise unknown from exc
        if record is not None and record.refresh_hash == new_refresh_hash:
            return record
        raise unknown

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        """Replace the session data; return whether the session exists."""
        return await self._execute("update_session_data", handle, dump_object(data, "session data")) > 0

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        """Replace the stored custom claims; return whether the session exists."""
        return (
            await self._execute("update_access_token_payload", handle, dump_object(payload, "access-token payload")) > 0
        )

    async def touch(self, handle: str, last_seen: float) -> bool:
        """Set the last-seen time; return whether the session exists."""
        return await self._execute("touch", handle, last_seen) > 0

    # Deletes are writes: a lost connection raises OutcomeUnknown, never retried here. A caller's retry cannot log
    # twice: if the first attempt committed, the sessions are gone and the retry deletes and logs nothing. A
    # deadlock rolled back the deletion with its log entries, so the pool's retry of that is safe.

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete sessions and log them, in one statement; return those that existed, in the order given."""
        unique = list(dict.fromkeys(handles))
        if not unique:
            return []
        deleted = {row["handle"] for row in await self._fetch("delete", unique, self._channel)}
        return [handle for handle in unique if handle in deleted]

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions in one tenant or all, by ``created_at`` then ``handle``."""
        if tenant_id is None:
            return [to_record(row) for row in await self._fetch("list_for_user", user_id)]
        return [to_record(row) for row in await self._fetch("list_for_user_tenant", user_id, tenant_id)]

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions in one tenant or all and log them, in one statement; return them, oldest first."""
        if tenant_id is None:
            rows = await self._fetch("delete_for_user", user_id, self._channel)
        else:
            rows = await self._fetch("delete_for_user_tenant", user_id, tenant_id, self._channel)
        # RETURNING gives no order; sort as list_for_user does.
        return [handle for _, handle in sorted((row["created_at"], row["handle"]) for row in rows)]

    async def delete_expired(self, now: float) -> int:
        """Delete sessions with ``expires_at <= now``; return how many."""
        return await self._execute("delete_expired", now)

    async def acquire_lease(self, name: str, holder: str, now: float, duration: float) -> bool:
        """Take the named lease unless another holder's grant lasts past ``now`` (one upsert)."""
        return bool(await self._fetch("acquire_lease", name, holder, now + duration, now))

    async def revocations_since(self, after: int, limit: int = 10_000) -> list[Revocation]:
        """Return up to ``limit`` log entries numbered above ``after``, in ascending order."""
        return [(row["seq"], row["handle"]) for row in await self._fetch("revocations_since", after, limit)]

    async def trim_revocations(self, through: int) -> int:
        """Delete the log entries numbered ``through`` or lower; return how many. The numbering goes on."""
        return await self._execute("trim_revocations", through)

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        """Deliver every log entry above ``after``, in order, until cancelled, from a connection of its own.

        The connection (:attr:`feed_application_name`) ``LISTEN``s on :attr:`revocation_channel`. Each delivery
        follows a read of the log: first the catch-up, then one per wake-up by a notification or by ``heartbeat``
        seconds of quiet. Cancelling closes the connection.

        Raises:
            StoreError: the store is not open or was closed, the connection was lost, or a read failed or took
                over ``command_timeout``: at most about ``heartbeat + command_timeout`` seconds after the server
                stopped answering. Restart from the last position delivered.
            ConfigurationError: ``heartbeat`` is not a finite number of seconds above zero.
        """
        seconds = valid_heartbeat(heartbeat)
        connection = await self._pool.connect(self.feed_application_name)
        self._feed_connections.add(connection)
        if not self.opened:  # closed while it connected, unseen by _close: the first read fails
            connection.terminate()
        try:
            await follow(
                connection,
                channel=self._channel,
                read=self._sql["revocations_feed"],
                after=after,
                deliver=deliver,
                now=now,
                heartbeat=seconds,
                close_timeout=self._pool.command_timeout,
            )
        finally:
            self._feed_connections.discard(connection)

    async def get_keys(self) -> list[KeyRecord]:
        """Return every key, ordered by ``signs_from`` then ``kid``."""
        return [KeyRecord(**{name: row[name] for name in KEY_FIELDS}) for row in await self._fetch("get_keys")]

    async def add_key(self, key: KeyRecord) -> bool:
        """Insert a key unless its kid exists (``ON CONFLICT DO NOTHING``); return whether it was inserted."""
        return await self._execute("add_key", *(getattr(key, name) for name in KEY_FIELDS)) > 0

    async def delete_keys(self, kids: Sequence[str]) -> int:
        """Delete keys; return how many existed."""
        unique = list(dict.fromkeys(kids))
        return await self._execute("delete_keys", unique) if unique else 0
