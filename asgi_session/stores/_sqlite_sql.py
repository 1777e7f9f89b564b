"""The SQLite store's schema steps and statements: the tables, the SQL every operation runs, and a record's row."""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

from . import _sqlite_revocations as revocation_log
from ._json import dump_object, load_object
from .base import KeyRecord, SessionRecord

__all__ = [
    "ACQUIRE_LEASE",
    "ADD_KEY",
    "CHUNK",
    "CLUSTER_BY_USER",
    "COLUMNS",
    "FIELDS",
    "GET",
    "GET_KEYS",
    "INSERT",
    "JSON_FIELDS",
    "KEY_COLUMNS",
    "KEY_FIELDS",
    "LIST_USER",
    "LIST_USER_TENANT",
    "MIGRATIONS",
    "PLACES",
    "ROTATE",
    "SCHEMA_VERSION",
    "to_record",
    "to_row",
]

# Version 5 rebuilds ``sessions`` as a ``WITHOUT ROWID`` table keyed by ``(user_id, handle)``: a user's rows sit
# side by side in the table's b-tree, so revoking all of them rewrites one or two leaves instead of one per session
# (``docs/decisions.md``, "SQLite sessions clustered by user"). ``sessions_handle`` (unique) serves every lookup by
# handle and the ``ON CONFLICT(handle)`` of ``INSERT``; the old ``(user_id, tenant_id)`` index is the key's prefix now,
# and ``sessions_tenant``, which no statement read, is gone. The rows are copied in key order, then the indexes are
# built. The trigger reads ``sessions``, so it is dropped before the old table and made again after. Column names and
# every statement stay as they were: a process of version 4 still running on the file keeps working (SQLite prepares
# its statements again after the schema change); one started later refuses the file (its version is newer).
_SESSION_COLUMNS = """
            handle TEXT NOT NULL,
            user_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            refresh_hash TEXT NOT NULL,
            previous_refresh_hash TEXT,
            rotated_at REAL,
            session_data TEXT NOT NULL,
            access_token_payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            expires_at REAL NOT NULL,
            absolute_expires_at REAL,
            user_agent TEXT,
            ip TEXT,
            remember INTEGER NOT NULL DEFAULT 1,
            idle_timeout REAL,
            PRIMARY KEY (user_id, handle)"""
_COPIED = (
    "handle, user_id, tenant_id, refresh_hash, previous_refresh_hash, rotated_at, session_data, "
    "access_token_payload, created_at, last_seen, expires_at, absolute_expires_at, user_agent, ip, remember, "
    "idle_timeout"
)
CLUSTER_BY_USER: tuple[str, ...] = (
    f"CREATE TABLE sessions_by_user ({_SESSION_COLUMNS}\n        ) WITHOUT ROWID",
    f"INSERT INTO sessions_by_user ({_COPIED}) SELECT {_COPIED} FROM sessions ORDER BY user_id, handle",  # noqa: S608
    "DROP TRIGGER revocations_end_session",
    "DROP TABLE sessions",  # and its indexes
    "ALTER TABLE sessions_by_user RENAME TO sessions",
    "CREATE UNIQUE INDEX sessions_handle ON sessions (handle)",
    "CREATE INDEX sessions_expires_at ON sessions (expires_at)",
    revocation_log.END_SESSION_TRIGGER,
)

# Schema steps: MIGRATIONS[n] takes a database from version n to n + 1 (kept in ``PRAGMA user_version``). A later
# version appends a step; ``open`` applies every step past the file's version in one ``BEGIN IMMEDIATE`` transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sessions (
            handle TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            refresh_hash TEXT NOT NULL,
            previous_refresh_hash TEXT,
            rotated_at REAL,
            session_data TEXT NOT NULL,
            access_token_payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            expires_at REAL NOT NULL,
            absolute_expires_at REAL,
            user_agent TEXT,
            ip TEXT
        )""",
        "CREATE INDEX sessions_user_tenant ON sessions (user_id, tenant_id)",
        "CREATE INDEX sessions_tenant ON sessions (tenant_id)",
        "CREATE INDEX sessions_expires_at ON sessions (expires_at)",
        """CREATE TABLE keys (
            kid TEXT PRIMARY KEY NOT NULL,
            algorithm TEXT NOT NULL,
            private_key TEXT NOT NULL,
            created_at REAL NOT NULL,
            signs_from REAL NOT NULL,
            expires_at REAL
        )""",
    ),
    revocation_log.MIGRATION,
    # Version 3: named leases (the scheduled cleanup's "one process per interval").
    ("CREATE TABLE leases (name TEXT PRIMARY KEY NOT NULL, holder TEXT NOT NULL, until REAL NOT NULL)",),
    # Version 4: "remember me" (browser-session cookies) and a per-session idle timeout.
    (
        "ALTER TABLE sessions ADD COLUMN remember INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE sessions ADD COLUMN idle_timeout REAL",
    ),
    # Version 5: a user's sessions stored together (``CLUSTER_BY_USER``).
    CLUSTER_BY_USER,
)
SCHEMA_VERSION = len(MIGRATIONS)

CHUNK = 500  # handles per ``IN (...)``: far below SQLite's bound-parameter limit

# The columns are named after the record fields; a field added to a record needs a migration step adding its column.
FIELDS = tuple(field.name for field in dataclasses.fields(SessionRecord))
JSON_FIELDS = {"session_data": "session data", "access_token_payload": "access-token payload"}
KEY_FIELDS = tuple(field.name for field in dataclasses.fields(KeyRecord))
COLUMNS = ", ".join(FIELDS)
KEY_COLUMNS = ", ".join(KEY_FIELDS)

# Only constant column lists are formatted into these statements (hence the S608 waivers); every value is bound.
PLACES = ", ".join("?" * len(FIELDS))
INSERT = f"INSERT INTO sessions ({COLUMNS}) VALUES ({PLACES}) ON CONFLICT(handle) DO NOTHING"  # noqa: S608
GET = f"SELECT {COLUMNS} FROM sessions WHERE handle = ?"  # noqa: S608
ROTATE = (
    "UPDATE sessions SET refresh_hash = ?, previous_refresh_hash = ?, rotated_at = ?, last_seen = ?, expires_at = ? "
    "WHERE handle = ? AND refresh_hash = ?"
)
# A refresh's read and swap in one statement (``SlidingRotation``): the expiry slides as the manager slides it,
# ``min(now + idle, absolute_expires_at)``; no row comes back unless the session was live and the hash current.
# RETURNING needs SQLite 3.35 (``ROTATE_SLIDING_SUPPORTED``).
_SLID = "(:now + COALESCE(idle_timeout, :idle))"
ROTATE_SLIDING = (
    "UPDATE sessions SET refresh_hash = :new, previous_refresh_hash = :old, rotated_at = :now, last_seen = :now, "  # noqa: S608
    f"expires_at = CASE WHEN absolute_expires_at < {_SLID} THEN absolute_expires_at ELSE {_SLID} END "
    f"WHERE handle = :handle AND refresh_hash = :old AND expires_at > :now RETURNING {COLUMNS}"
)
ROTATE_SLIDING_SUPPORTED = sqlite3.sqlite_version_info >= (3, 35, 0)
LIST_USER = f"SELECT {COLUMNS} FROM sessions WHERE user_id = ? ORDER BY created_at, handle"  # noqa: S608
LIST_USER_TENANT = f"SELECT {COLUMNS} FROM sessions WHERE user_id = ? AND tenant_id = ? ORDER BY created_at, handle"  # noqa: S608
GET_KEYS = f"SELECT {KEY_COLUMNS} FROM keys ORDER BY signs_from, kid"  # noqa: S608
ADD_KEY = f"INSERT INTO keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kid) DO NOTHING"  # noqa: S608
# Inserts the lease, or takes it over when its grant ended or this holder has it; a row comes back when granted.
ACQUIRE_LEASE = (
    "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
    "holder = excluded.holder, until = excluded.until WHERE leases.until <= ? OR leases.holder = excluded.holder "
    "RETURNING name"
)


_FIELD_VALUES = operator.attrgetter(*FIELDS)  # a record's values in column order, in one C call
_JSON_COLUMNS = tuple((FIELDS.index(name), what) for name, what in JSON_FIELDS.items())
_REMEMBER_COLUMN = FIELDS.index("remember")


def to_row(record: SessionRecord) -> list[Any]:
    """The values of ``record`` in column order, its JSON fields as text."""
    row = list(_FIELD_VALUES(record))
    for index, what in _JSON_COLUMNS:
        row[index] = dump_object(row[index], what)
    return row


def to_record(row: Sequence[Any]) -> SessionRecord:
    """The record a row of ``GET`` or a listing holds (``FIELDS`` order)."""
    values = list(row)
    for index, what in _JSON_COLUMNS:
        values[index] = load_object(values[index], what)
    values[_REMEMBER_COLUMN] = bool(values[_REMEMBER_COLUMN])  # SQLite keeps a bool as 0 or 1
    return SessionRecord(**dict(zip(FIELDS, values, strict=True)))
