"""The PostgreSQL store's schema: its migration steps and its SQL statement templates.

Every template names its tables through ``{s}``, the quoted and validated schema name, and takes every value as a
bound parameter, so no statement is ever built from data. ``statements`` fills in the schema name once, when a
store is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ..exceptions import StoreError
from .base import KeyRecord, SessionRecord

__all__ = [
    "FIELDS",
    "JSON_FIELDS",
    "KEY_FIELDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "revocation_channel",
    "row_count",
    "statements",
    "to_record",
]

# Schema steps: MIGRATIONS[n] takes a schema from version n to n + 1; "{s}" is the quoted schema name. A later
# version appends a step; ``open`` applies every step past the stored version in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE {s}.schema_version (version integer NOT NULL)",
        "INSERT INTO {s}.schema_version (version) VALUES (0)",
        """CREATE TABLE {s}.sessions (
            handle text COLLATE "C" PRIMARY KEY, user_id text NOT NULL, tenant_id text NOT NULL,
            refresh_hash text NOT NULL, previous_refresh_hash text, rotated_at double precision,
            session_data jsonb NOT NULL, access_token_payload jsonb NOT NULL, created_at double precision NOT NULL,
            last_seen double precision NOT NULL, expires_at double precision NOT NULL,
            absolute_expires_at double precision, user_agent text, ip text
        )""",
        "CREATE INDEX sessions_user_tenant ON {s}.sessions (user_id, tenant_id)",
        "CREATE INDEX sessions_tenant ON {s}.sessions (tenant_id)",
        "CREATE INDEX sessions_expires_at ON {s}.sessions (expires_at)",
        """CREATE TABLE {s}.keys (
            kid text COLLATE "C" PRIMARY KEY, algorithm text NOT NULL, private_key text NOT NULL,
            created_at double precision NOT NULL, signs_from double precision NOT NULL, expires_at double precision
        )""",
    ),
    (
        # The revocation log. Its numbers come from the one-row counter, never from a sequence: see the
        # ordering notes in postgres.py.
        """CREATE TABLE {s}.revocation_counter (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), last_seq bigint NOT NULL
        )""",
        "INSERT INTO {s}.revocation_counter (last_seq) VALUES (0)",
        'CREATE TABLE {s}.revocations (seq bigint PRIMARY KEY, handle text COLLATE "C" NOT NULL)',
    ),
    (
        # Named leases (the scheduled cleanup's "one process per interval").
        'CREATE TABLE {s}.leases (name text COLLATE "C" PRIMARY KEY, holder text NOT NULL, '
        "until double precision NOT NULL)",
    ),
    (
        # "Remember me" (browser-session cookies) and a per-session idle timeout.
        "ALTER TABLE {s}.sessions ADD COLUMN remember boolean NOT NULL DEFAULT true, "
        "ADD COLUMN idle_timeout double precision",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

FIELDS = tuple(field.name for field in dataclasses.fields(SessionRecord))
KEY_FIELDS = tuple(field.name for field in dataclasses.fields(KeyRecord))

# Statement templates: "{s}" is the quoted, validated schema name; every value is a bound parameter.
_PARTS = {
    "columns": ", ".join(FIELDS),
    "places": ", ".join(f"${i + 1}" for i in range(len(FIELDS))),
    "key_columns": ", ".join(KEY_FIELDS),
}
_BY_USER = "FROM {s}.sessions WHERE user_id = $1"


# A DELETE of the sessions matching {where} that logs and announces them in the same statement. ``d`` deletes
# (taking the rows' locks); ``c`` then takes the counter row's lock, only if ``d`` deleted something, and reserves
# one number per deleted row; ``l`` logs each deleted handle under its number (oldest session first); ``t`` sends
# one NOTIFY on the channel bound as {channel}, delivered at commit. The counter's lock is taken after every session
# row lock and held to commit, so revocations commit in the order of their numbers. "{{s}}" survives the first
# format() for statements() to fill in.
_REVOKING = (
    "WITH d AS (DELETE FROM {{s}}.sessions WHERE {where} RETURNING handle, created_at), "
    "c AS (UPDATE {{s}}.revocation_counter SET last_seq = last_seq + (SELECT count(*) FROM d) "
    "WHERE EXISTS (SELECT FROM d) RETURNING last_seq - (SELECT count(*) FROM d) AS base), "
    "l AS (INSERT INTO {{s}}.revocations (seq, handle) "
    "SELECT c.base + row_number() OVER (ORDER BY d.created_at, d.handle), d.handle FROM d, c RETURNING seq), "
    "t AS MATERIALIZED (SELECT max(seq) AS last_seq, pg_notify({channel}, max(seq)::text) FROM l "
    "HAVING count(*) > 0) "
    "SELECT d.handle, d.created_at, t.last_seq FROM d LEFT JOIN t ON true"
)

_STATEMENTS = {
    "create": "INSERT INTO {s}.sessions ({columns}) VALUES ({places}) ON CONFLICT (handle) DO NOTHING",
    "get": "SELECT {columns} FROM {s}.sessions WHERE handle = $1",
    "rotate": "UPDATE {s}.sessions SET refresh_hash = $3, previous_refresh_hash = $2, rotated_at = $4, "
    "last_seen = $5, expires_at = $6 WHERE handle = $1 AND refresh_hash = $2 RETURNING handle",
    # A refresh's read and swap in one statement (SlidingRotation): the expiry slides as the manager slides it,
    # min(now + idle, absolute_expires_at); no row comes back unless the session was live and the hash current.
    "rotate_sliding": "UPDATE {s}.sessions SET refresh_hash = $3, previous_refresh_hash = $2, rotated_at = $4, "
    "last_seen = $4, expires_at = CASE WHEN absolute_expires_at < $4 + COALESCE(idle_timeout, $5) "
    "THEN absolute_expires_at ELSE $4 + COALESCE(idle_timeout, $5) END "
    "WHERE handle = $1 AND refresh_hash = $2 AND expires_at > $4 RETURNING {columns}",
    "update_session_data": "UPDATE {s}.sessions SET session_data = $2 WHERE handle = $1",
    "update_access_token_payload": "UPDATE {s}.sessions SET access_token_payload = $2 WHERE handle = $1",
    "touch": "UPDATE {s}.sessions SET last_seen = $2 WHERE handle = $1",
    "delete": _REVOKING.format(where="handle = ANY($1::text[])", channel="$2"),
    "list_for_user": "SELECT {columns} " + _BY_USER + " ORDER BY created_at, handle",
    "list_for_user_tenant": "SELECT {columns} " + _BY_USER + " AND tenant_id = $2 ORDER BY created_at, handle",
    "delete_for_user": _REVOKING.format(where="user_id = $1", channel="$2"),
    "delete_for_user_tenant": _REVOKING.format(where="user_id = $1 AND tenant_id = $2", channel="$3"),
    "delete_expired": "DELETE FROM {s}.sessions WHERE expires_at <= $1",  # not logged: not a revocation
    "revocations_since": "SELECT seq, handle FROM {s}.revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
    # One snapshot: the entries above $1 (in order, by the primary key's index), then the counter in a row of its
    # own. The entries keep the shape of a plain ordered range read: the counter LEFT JOINed to the log, with an
    # outer ORDER BY, took the propagation benchmark's p50 from 1.9 to 6 ms (not profiled; the generic plan of
    # the prepared statement is the likely cause).
    "revocations_feed": (
        "(SELECT seq, handle, NULL::bigint FROM {s}.revocations WHERE seq > $1 ORDER BY seq) "
        "UNION ALL (SELECT NULL, NULL, last_seq FROM {s}.revocation_counter)"
    ),
    "trim_revocations": "DELETE FROM {s}.revocations WHERE seq <= $1",
    "get_keys": "SELECT {key_columns} FROM {s}.keys ORDER BY signs_from, kid",
    "add_key": "INSERT INTO {s}.keys ({key_columns}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kid) DO NOTHING",
    "delete_keys": "DELETE FROM {s}.keys WHERE kid = ANY($1::text[])",
    # Inserts the lease, or takes it over when its grant ended or this holder has it; a row comes back if granted.
    "acquire_lease": "INSERT INTO {s}.leases (name, holder, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE "
    "SET holder = excluded.holder, until = excluded.until "
    "WHERE {s}.leases.until <= $4 OR {s}.leases.holder = excluded.holder RETURNING name",
    "version": "SELECT max(version) FROM {s}.schema_version",
    "set_version": "UPDATE {s}.schema_version SET version = $1",
}


def statements(quoted_schema: str) -> dict[str, str]:
    """The statement templates by operation name, with ``{s}`` replaced by ``quoted_schema``."""
    return {name: sql.format(s=quoted_schema, **_PARTS) for name, sql in _STATEMENTS.items()}


def revocation_channel(schema: str) -> str:
    """The ``NOTIFY`` channel of a schema's revocations: ``asgi_session:<schema>``, or a digest of a long name.

    Channel names are identifiers (at most 63 bytes); a schema name too long for the prefix is hashed instead,
    so schemas sharing a database never share a channel.
    """
    channel = f"asgi_session:{schema}"
    if len(channel) <= 63:
        return channel
    return "asgi_session:" + hashlib.sha256(schema.encode()).hexdigest()[:40]


JSON_FIELDS = {"session_data": "session data", "access_token_payload": "access-token payload"}
"""The ``jsonb`` columns, and what an error calls each."""


def to_record(row: Any) -> SessionRecord:
    """A ``sessions`` row as a record; a JSON column that is not an object raises ``StoreError``."""
    values = {name: row[name] for name in FIELDS}
    for name, what in JSON_FIELDS.items():
        values[name] = json.loads(values[name])  # jsonb always reads back as valid JSON text
        if not isinstance(values[name], dict):
            raise StoreError(f"the stored {what} is not a JSON object")
    return SessionRecord(**values)


def row_count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 1`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])
