"""RedisStore: the session store in one Redis server, reached through ``redis.asyncio`` (extra ``[redis]``).

Key layout (``P`` the prefix; ``U``, ``T``, ``H`` the user id, tenant id and handle with ``%``, ``{``, ``}`` and ``:``
percent-escaped, so any id is safe in a key name and never ends a hash tag early)::

    P:{u:U}:s:H           hash    one session: the record's fields (None ones absent; data and payload as JSON)
    P:{u:U}:idx           zset    the user's sessions in every tenant: member ``T:handle``, score ``created_at``
    P:{h:H}               string  the handle index, ``U:T``: how a session is found by its handle alone
    P:{expiry}            zset    every session: member ``U:T:handle``, score ``expires_at``
    P:{keys}              hash    the key ring: kid -> the key record as JSON
    P:{revocations}       stream  the revocation log: entry id ``<seq>-0``, field ``handle``
    P:{revocations}:seq   string  the log's last sequence number
    P:{lease}:N           string  the lease named N (``"<end> <holder>"``), expiring after its grant ends

A user's keys share the hash tag ``{u:U}``, hence one Redis Cluster slot. Listing or revoking a user's sessions, in
one tenant or all, reads that user's index: O(their sessions), never a scan of the keyspace. ``get`` and the other
per-handle calls read the handle index, then the user's keys (two round trips); a session's user and tenant never
change, so the index cannot go stale while the session lives.

Atomicity. Every write is one Lua script: ``create`` (refused if the handle is taken) writes the session, its handle
index and both index entries; ``rotate`` is the compare-and-swap of ``refresh_hash`` that also sets
``previous_refresh_hash``, the three times, the TTLs and the expiry entry; the deletes remove sessions with their
index entries, and ``delete`` / ``delete_for_user`` append each deleted handle to the revocation log in the same
script, before deleting (``delete_expired`` logs nothing). Scripts touch only the keys passed to them; where the
client read an index to name those keys, the script re-checks (``delete_expired`` deletes only a session still
expired). The scripts join the user's slot with the global indexes and the log, so the store needs Redis 5 or newer
and one primary (standalone, or Sentinel-managed through a ``redis.asyncio.Redis`` you pass in); Redis Cluster is not
supported yet.

Expiry. A session's keys expire at ``expires_at + ttl_leeway`` (default 60 s) on the Redis server's clock, and never
sooner than ``ttl_leeway`` from the write, so a usable session is never dropped; the leeway must exceed the clock
skew between the app's hosts and Redis. ``delete_expired(now)`` deletes every session with ``expires_at <= now``
that TTL has not removed yet, and clears the entries of those it has: the expiry index holds an entry for every
session until then, so it stays bounded only while something runs ``delete_expired`` (the middleware's scheduled
cleanup, ``SessionConfig.cleanup_interval``, on by default). Signing keys never expire: the manager deletes them.

Server settings. ``maxmemory-policy noeviction`` is required: an evicted session logs its user out, an evicted index
entry hides a session from ``revoke_all_sessions_for_user``, an evicted key breaks every token it signed; with
``noeviction`` a full server refuses writes (``StoreError``, a 503) instead. ``open`` logs a warning when it can read
another policy. Durability is Redis' own: with ``appendonly yes``, ``appendfsync always`` loses no acknowledged write
(each waits for fsync), ``everysec`` (the default) may lose the last second on a crash or power loss, ``no`` leaves
flushing to the OS (tens of seconds); without persistence a restart loses every session. A lost revocation brings a
session back; a lost rotation makes the client's new refresh token look stolen, logging the user out. Replication
is asynchronous: a failover can lose acknowledged writes the same way.

Revocation log and feed. The log's numbers come from its counter, never reused: a trim (``XRANGE`` + ``XDEL``)
leaves the counter, and a lost counter is rebuilt from the stream's last id. Nothing expires the log: managers trim
it. ``follow_revocations`` reads it with blocking reads and confirms it with timed reads of its last id, on two
connections of its own, both named ``<prefix>:feed`` (``_redis_feed``).

Connections (the pool, its timeouts and retries, a client passed in) are ``_redis_pool``'s job; see its notes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..exceptions import ConfigurationError, StoreError
from .base import (
    KeyRecord,
    LeaseStore,
    Revocation,
    RevocationFeed,
    RevocationLog,
    Rotation,
    SessionRecord,
    SessionStore,
    StoreLifecycle,
)

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ConfigurationError("RedisStore needs the redis package: pip install 'asgi-session[redis]'") from exc

# After the guard above: _redis_pool and _redis_scripts import redis too, and a missing package must still get the
# pip hint.
from ._json import dump_object, load_object
from ._redis_feed import follow
from ._redis_keys import as_text, escape, seconds, to_fields, to_record, to_revocation
from ._redis_pool import RedisPool
from ._redis_scripts import CHUNK, CREATE, DELETE, LEASE, ROTATE, SET_FIELD, TRIM

__all__ = ["RedisStore"]

logger = logging.getLogger("asgi_session")


class RedisStore(StoreLifecycle, SessionStore, RevocationLog, RevocationFeed, LeaseStore):
    """Sessions and keys in one Redis server (standalone or Sentinel-managed), shared by every process using it.

    Args:
        client_or_url: a ``redis://`` / ``rediss://`` / ``unix://`` URL (the store then owns its connection pool),
            or a ``redis.asyncio.Redis`` client to use as it is configured.
        prefix: the start of every key name; stores with different prefixes share nothing. No ``{`` or ``}``.
        ttl_leeway: seconds a session's keys outlive its ``expires_at`` (at least 1); must exceed clock skew.
        socket_timeout: seconds to wait for a reply, or for a free pooled connection (URL only); the revocation
            feed waits that long past its heartbeat, whichever way it was built.
        connect_timeout: seconds to wait for a new connection (URL only).
        max_connections: the pool's size (URL only).
        retries: how often a command whose connection broke is re-sent on a fresh one (URL only).

    Raises:
        ConfigurationError: a setting or the URL is invalid.
    """

    def __init__(
        self,
        client_or_url: aioredis.Redis | str,
        *,
        prefix: str = "asgi_session",
        ttl_leeway: float = 60.0,
        socket_timeout: float = 3.0,
        connect_timeout: float = 2.0,
        max_connections: int = 50,
        retries: int = 1,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError("prefix must be a non-empty string without '{' or '}', e.g. 'asgi_session'")
        timings = (("ttl_leeway", ttl_leeway, 1), ("socket_timeout", socket_timeout, 0.001))
        for name, value, least in (*timings, ("connect_timeout", connect_timeout, 0.001)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not least <= value < math.inf:
                raise ConfigurationError(f"{name} must be a finite number of seconds >= {least}")
        if not (type(max_connections) is int and max_connections >= 1 and type(retries) is int and retries >= 0):
            raise ConfigurationError("max_connections must be an integer >= 1 and retries an integer >= 0")
        self._pool = RedisPool(
            client_or_url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            retries=retries,
        )
        self._prefix, self._expiry, self._keys = prefix, f"{prefix}:{{expiry}}", f"{prefix}:{{keys}}"
        self._log, self._log_seq = f"{prefix}:{{revocations}}", f"{prefix}:{{revocations}}:seq"
        # Redis refuses spaces and non-ASCII in a connection name.
        self._feed_name = "".join(c if "!" <= c <= "~" else "_" for c in f"{prefix}:feed")
        self._socket_timeout = float(socket_timeout)
        self._leeway_ms = str(math.ceil(ttl_leeway * 1000))
        super().__init__()

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """Build a store from a URL; the optional query parameter ``prefix=`` sets the key prefix.

        Other query parameters are redis-py's (``socket_timeout``, ``max_connections``, ``client_name``, ...).

        Raises:
            ConfigurationError: the URL or its prefix is invalid.
        """
        base, _, query = url.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        prefixes = [value for name, value in pairs if name == "prefix"]
        if len(prefixes) > 1:
            raise ConfigurationError("a Redis store URL takes at most one prefix= parameter")
        rest = urlencode([(name, value) for name, value in pairs if name != "prefix"])
        return cls(f"{base}?{rest}" if rest else base, prefix=prefixes[0] if prefixes else "asgi_session")

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._prefix!r})"  # never the URL: it may hold a password

    @property
    def prefix(self) -> str:
        """The start of every key name this store uses."""
        return self._prefix

    async def _open(self) -> None:
        """Connect and check the server answers.

        Raises:
            StoreError: the server cannot be reached or refused the connection.
        """
        await self._pool.open(self._check_eviction)

    async def _check_eviction(self, client: aioredis.Redis) -> None:
        try:
            config = await client.config_get("maxmemory-policy")
        except ResponseError:  # CONFIG is often disabled on managed servers
            return
        policy = next((as_text(value) for value in config.values()), "noeviction")
        if policy != "noeviction":
            logger.warning(
                "asgi_session: Redis maxmemory-policy is %s; set it to noeviction, or Redis may evict sessions, "
                "index entries and signing keys",
                policy,
            )

    async def _close(self) -> None:
        """Close the pool the store owns (a client passed in stays open)."""
        await self._pool.close()

    def _lookup(self, handle: str) -> str:
        return f"{self._prefix}:{{h:{escape(handle)}}}"

    def _user(self, user_tag: str, suffix: str) -> str:
        return f"{self._prefix}:{{u:{user_tag}}}:{suffix}"

    async def _locate(self, client: aioredis.Redis, handle: str) -> tuple[str, str, str] | None:
        """Read the handle index: the session's key, its user's index key and its ``U:T`` locator, or None."""
        locator = await client.get(self._lookup(handle))
        if locator is None:
            return None
        locator = as_text(locator)
        user_tag = locator.partition(":")[0]
        return self._user(user_tag, f"s:{escape(handle)}"), self._user(user_tag, "idx"), locator

    async def _delete(self, client: aioredis.Redis, entries: Sequence[tuple[str, str]], now: str = "") -> list[str]:
        """Run the delete script over ``(handle, U:T)`` pairs, chunked; return the handles that existed."""
        deleted: list[str] = []
        for start in range(0, len(entries), CHUNK):
            keys, args = [self._expiry, self._log, self._log_seq], [now]
            for handle, locator in entries[start : start + CHUNK]:
                user_tag, _, tenant_tag = locator.partition(":")
                keys += [self._lookup(handle), self._user(user_tag, f"s:{escape(handle)}"), self._user(user_tag, "idx")]
                args += [handle, locator, f"{tenant_tag}:{handle}", f"{locator}:{handle}"]
            deleted += [as_text(handle) for handle in await DELETE(client, keys, args)]
        return deleted

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session with its index entries, atomically.

        Raises:
            StoreError: the handle exists, the data is not a JSON object, a time is not finite, or Redis failed.
        """
        user_tag, tenant_tag, handle = escape(record.user_id), escape(record.tenant_id), record.handle
        locator = f"{user_tag}:{tenant_tag}"
        keys = [self._lookup(handle), self._user(user_tag, f"s:{escape(handle)}"), self._user(user_tag, "idx")]
        times = [seconds(record.created_at, "created_at"), seconds(record.expires_at, "expires_at"), self._leeway_ms]
        args = [locator, f"{tenant_tag}:{handle}", f"{locator}:{handle}", *times, *to_fields(record)]
        async with self._pool.using("create") as client:
            created = await CREATE(client, [*keys, self._expiry], args)
        if created != 1:
            raise StoreError("a session with this handle already exists")

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session (expired or not) or ``None``."""
        async with self._pool.using("get") as client:
            found = await self._locate(client, handle)
            raw = await client.hgetall(found[0]) if found else None
            return to_record(raw) if raw else None

    async def rotate(self, rotation: Rotation) -> bool:
        """Compare-and-swap the refresh hash in one Lua script, which also extends the TTLs."""
        times = [seconds(getattr(rotation, name), name) for name in ("rotated_at", "last_seen", "expires_at")]
        args = [rotation.expected_refresh_hash, rotation.new_refresh_hash, *times, self._leeway_ms]
        async with self._pool.using("rotate") as client:
            found = await self._locate(client, rotation.handle)
            if found is None:
                return False
            session, user_index, locator = found
            keys = [session, self._lookup(rotation.handle), user_index, self._expiry]
            return bool(await ROTATE(client, keys, [*args, f"{locator}:{rotation.handle}"]))

    async def _set_field(self, operation: str, handle: str, field: str, value: str) -> bool:
        async with self._pool.using(operation) as client:
            found = await self._locate(client, handle)
            return found is not None and bool(await SET_FIELD(client, [found[0]], [field, value]))

    async def update_session_data(self, handle: str, data: Mapping[str, Any]) -> bool:
        """Replace the session data; return whether the session exists."""
        text = dump_object(data, "session data")
        return await self._set_field("update_session_data", handle, "session_data", text)

    async def update_access_token_payload(self, handle: str, payload: Mapping[str, Any]) -> bool:
        """Replace the stored custom claims; return whether the session exists."""
        text = dump_object(payload, "access-token payload")
        return await self._set_field("update_access_token_payload", handle, "access_token_payload", text)

    async def touch(self, handle: str, last_seen: float) -> bool:
        """Set the last-seen time; return whether the session exists."""
        return await self._set_field("touch", handle, "last_seen", seconds(last_seen, "last_seen"))

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete sessions with their index entries; return those that existed, in the order given."""
        unique = list(dict.fromkeys(handles))
        if not unique:
            return []
        async with self._pool.using("delete") as client:
            locators = await client.mget([self._lookup(handle) for handle in unique])
            found = [(handle, as_text(loc)) for handle, loc in zip(unique, locators, strict=True) if loc is not None]
            deleted = set(await self._delete(client, found))
        return [handle for handle in unique if handle in deleted]

    async def _of_user(self, client: aioredis.Redis, user_id: str, tenant_id: str | None) -> list[tuple[str, str]]:
        """The user's ``(handle, U:T)`` pairs from their index, in one tenant or all, by created_at then handle."""
        user_tag, wanted = escape(user_id), None if tenant_id is None else escape(tenant_id)
        found, rows = [], await client.zrange(self._user(user_tag, "idx"), 0, -1, withscores=True)
        for member, created_at in list[Any](rows):  # (member, score) pairs: tuples in RESP2, lists in RESP3
            tenant_tag, _, handle = as_text(member).partition(":")
            if wanted in (None, tenant_tag):
                found.append((float(created_at), handle, f"{user_tag}:{tenant_tag}"))
        return [(handle, locator) for _, handle, locator in sorted(found)]

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions in one tenant or all, by ``created_at`` then ``handle``."""
        async with self._pool.using("list_for_user") as client:
            pairs = await self._of_user(client, user_id, tenant_id)
            if not pairs:
                return []
            async with client.pipeline(transaction=True) as pipe:  # one snapshot of every session
                for handle, _ in pairs:
                    pipe.hgetall(self._user(escape(user_id), f"s:{escape(handle)}"))
                rows = await pipe.execute()
            return [to_record(row) for row in rows if row]  # a session TTL removed leaves an empty row

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions in one tenant or all, with their index entries; return their handles."""
        async with self._pool.using("delete_for_user") as client:
            return await self._delete(client, await self._of_user(client, user_id, tenant_id))

    async def delete_expired(self, now: float) -> int:
        """Delete sessions with ``expires_at <= now`` (those TTL has not removed yet); return how many."""
        bound, total, fetched = seconds(now, "now"), 0, CHUNK
        while fetched == CHUNK:
            async with self._pool.using("delete_expired") as client:
                members = await client.zrangebyscore(self._expiry, "-inf", bound, start=0, num=CHUNK)
                fetched, entries = len(members), []
                for parts in (as_text(member).split(":", 2) for member in members):
                    if len(parts) == 3:
                        entries.append((parts[2], f"{parts[0]}:{parts[1]}"))
                    else:  # not written by this store: drop it, or this loop would never end
                        await client.zrem(self._expiry, ":".join(parts))
                total += len(await self._delete(client, entries, bound))
        return total

    async def acquire_lease(self, name: str, holder: str, now: float, duration: float) -> bool:
        """Take the named lease unless another holder's grant lasts past ``now`` (one script)."""
        end = seconds(now + duration, "now + duration")
        ttl_ms = str(math.ceil(max(duration, 0.0) * 1000) + int(self._leeway_ms))
        async with self._pool.using("acquire_lease") as client:
            granted = await LEASE(
                client, [f"{self._prefix}:{{lease}}:{escape(name)}"], [holder, seconds(now, "now"), end, ttl_ms]
            )
        return bool(granted)

    async def get_keys(self) -> list[KeyRecord]:
        """Return every key, ordered by ``signs_from`` then ``kid``."""
        async with self._pool.using("get_keys") as client:
            raw = await client.hgetall(self._keys)
        try:
            keys = [KeyRecord(**load_object(as_text(text), "key")) for text in raw.values()]
        except TypeError as exc:
            raise StoreError("a stored key is malformed") from exc
        return sorted(keys, key=lambda key: (key.signs_from, key.kid))

    async def add_key(self, key: KeyRecord) -> bool:
        """Insert a key unless its kid exists (``HSETNX``); return whether it was inserted."""
        text = json.dumps(dataclasses.asdict(key), separators=(",", ":"))
        async with self._pool.using("add_key") as client:
            return bool(await client.hsetnx(self._keys, key.kid, text))

    async def delete_keys(self, kids: Sequence[str]) -> int:
        """Delete keys; return how many existed."""
        unique = list(dict.fromkeys(kids))
        if not unique:
            return 0
        async with self._pool.using("delete_keys") as client:
            return int(await client.hdel(self._keys, *unique))

    async def revocations_since(self, after: int, limit: int = 10_000) -> list[Revocation]:
        """Return up to ``limit`` revocation-log entries numbered above ``after``, in ascending order."""
        if limit < 1:
            return []
        async with self._pool.using("revocations_since") as client:
            rows = await client.xrange(self._log, min=str(max(after, 0) + 1), count=limit)
        return [to_revocation(entry_id, fields) for entry_id, fields in rows or ()]

    async def trim_revocations(self, through: int) -> int:
        """Delete the revocation-log entries numbered ``through`` or lower, in batches; return how many."""
        total, deleted = 0, CHUNK
        while through >= 1 and deleted == CHUNK:
            async with self._pool.using("trim_revocations") as client:
                deleted = int(await TRIM(client, [self._log], [str(through), str(CHUNK)]))
            total += deleted
        return total

    async def follow_revocations(
        self,
        after: int,
        deliver: Callable[[list[Revocation], float], None],
        *,
        now: Callable[[], float],
        heartbeat: float,
    ) -> None:
        """Deliver every revocation-log entry above ``after``, in order, until cancelled.

        Runs on two connections of its own named ``<prefix>:feed`` (not pooled ones), closed when the feed ends. See
        :meth:`RevocationFeed.follow_revocations <asgi_session.stores.base.RevocationFeed.follow_revocations>`.

        Raises:
            StoreError: the store is not open, the connection failed, or no reply came within ``heartbeat`` plus
                ``socket_timeout`` seconds.
            ConfigurationError: ``heartbeat`` is not a positive, finite number of seconds.
        """
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0 < heartbeat < math.inf:
            raise ConfigurationError("heartbeat must be a positive, finite number of seconds")
        await follow(
            self._pool,
            name=self._feed_name,
            key=self._log,
            after=after,
            deliver=deliver,
            now=now,
            heartbeat=heartbeat,
            socket_timeout=self._socket_timeout,
        )
