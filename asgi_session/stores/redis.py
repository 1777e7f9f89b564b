"""RedisStore: the session store in Redis (one server, Sentinel-managed, or a Redis Cluster), through ``redis.asyncio``.

Key layout (``P`` the prefix; ``U``, ``T``, ``H`` the user id, tenant id and handle with ``%``, ``{``, ``}`` and ``:``
percent-escaped, so any id is safe in a key name and never ends a hash tag early; ``B`` the user's bucket, 0 to
1023, from a CRC-32 of ``U``)::

    P:{s:H}               hash    one session: the record's fields (None ones absent; data and payload as JSON)
    P:{b:B}:u:U           zset    the user's sessions in every tenant: member ``T:handle``, score ``created_at``
    P:{b:B}:expiry        zset    the sessions of the bucket's users: member ``U:T:handle``, score ``expires_at``
    P:{keys}              hash    the key ring: kid -> the key record as JSON
    P:{revocations}       stream  the revocation log: entry id ``<seq>-0``, field ``handle``
    P:{revocations}:seq   string  the log's last sequence number
    P:{lease}:N           string  the lease named N (``"<end> <holder>"``), expiring after its grant ends

Every key one command or script touches shares one hash tag, hence one Redis Cluster slot: a session is one key, so
``get``, ``rotate``, ``touch`` and the updates are one command or script on it (one round trip, no index read); a
user's index and their bucket's expiry shard share the bucket's tag. The same layout and code serve one server and a
cluster. Listing or revoking a user's sessions, in one tenant or all, reads that user's index: O(their sessions),
never a scan of the keyspace; ``delete_expired`` reads the 1,024 expiry shards (pipelined, by node on a cluster),
never the keyspace.

Operations that span slots run one atomic script (or command) per slot, in an order that keeps every state between
two steps safe; the sessions' own fields (``user_id``, ``tenant_id``) are checked wherever an index entry is followed:

- ``create``: first the user-index member and the expiry entry (one script on the bucket), then the session (a script
  that refuses a taken handle; the index entries it added are then removed again). A crash in between leaves index
  entries without a session: listed as nothing, and removed by ``delete_expired`` once their ``expires_at`` passes.
  A session never exists without its index entries, so ``revoke_all_sessions_for_user`` always finds it.
- ``rotate``: the compare-and-swap of ``refresh_hash`` on the session key, which also sets ``previous_refresh_hash``,
  the three times and the TTL. The expiry entry keeps the earlier ``expires_at``: ``delete_expired`` re-checks each
  session before deleting it, and raises an entry whose session lives on.
- ``delete`` / ``delete_for_user``: read which sessions exist (and whose they are), append their handles to the
  revocation log (one script on the log's slot), delete the sessions (``DEL``, which says which this call
  deleted), then remove their index entries (one script per bucket). A crash after the log leaves revoked handles
  whose sessions still exist (the caller got an error and may retry); a crash after the deletes leaves index entries
  that ``delete_expired`` removes. Index entries whose session is missing are left alone here: a ``create`` may be
  between its two steps.
- ``delete_expired(now)``: per shard, the entries with ``expires_at <= now``; per session a script that deletes it
  only if it is still expired (or returns its later ``expires_at``); then one script on the bucket that raises the
  entries of the living and removes the entries of the rest.

Single-node behaviour is the cluster's: one server also runs each step as its own script (no step of one operation
is atomic with another). The layout replaced the 0.x one (``P:{u:U}:s:H``, ``P:{h:H}``, ``P:{expiry}``); sessions
stored under it are not read (see the changelog).

Expiry. A session's key expires at ``expires_at + ttl_leeway`` (default 60 s) on the Redis server's clock, and never
sooner than ``ttl_leeway`` from the write, so a usable session is never dropped; the leeway must exceed the clock
skew between the app's hosts and Redis. ``delete_expired(now)`` deletes every session with ``expires_at <= now``
that TTL has not removed yet, and clears the index entries of those it has: the indexes hold entries for every
session until then, so they stay bounded only while something runs ``delete_expired`` (the middleware's scheduled
cleanup, ``SessionConfig.cleanup_interval``, on by default). Signing keys never expire: the manager deletes them.

Server settings. ``maxmemory-policy noeviction`` is required: an evicted session logs its user out, an evicted index
entry hides a session from ``revoke_all_sessions_for_user``, an evicted key breaks every token it signed; with
``noeviction`` a full server refuses writes (``StoreError``, a 503) instead. ``open`` logs a warning when it can read
another policy (on a cluster, from every primary). Durability is Redis' own: with ``appendonly yes``, ``appendfsync
always`` loses no acknowledged write (each waits for fsync), ``everysec`` (the default) may lose the last second on a
crash or power loss, ``no`` leaves flushing to the OS (tens of seconds); without persistence a restart loses every
session. A lost revocation brings a session back; a lost rotation makes the client's new refresh token look stolen,
logging the user out. Replication is asynchronous: a failover (other than a manual ``CLUSTER FAILOVER``, which waits
for the replica to catch up) can lose acknowledged writes the same way.

Revocation log and feed. The log's numbers come from its counter, never reused: a trim (``XRANGE`` + ``XDEL``)
leaves the counter, and a lost counter is rebuilt from the stream's last id. Nothing expires the log: managers trim
it. ``follow_revocations`` reads it with blocking reads and confirms it with timed reads of its last id, on two
connections of its own to the server that holds it, both named ``<prefix>:feed`` (``_redis_feed``).

Connections (the pool, its timeouts and retries, a client passed in, a cluster URL) are ``_redis_pool``'s job; see its
notes. Redis 5 or newer.
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
    SlidingRotation,
    StoreLifecycle,
)

try:
    import redis.asyncio as aioredis  # first: a missing package fails here even if submodules are cached
    from redis.exceptions import ResponseError
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ConfigurationError("RedisStore needs the redis package: pip install 'asgi-session[redis]'") from exc

# After the guard above: _redis_pool and _redis_scripts import redis too, and a missing package must still get the
# pip hint.
from ._json import dump_object, load_object
from ._redis_feed import follow
from ._redis_keys import BUCKETS, as_text, bucket, escape, seconds, to_fields, to_record, to_revocation
from ._redis_pool import RedisPool
from ._redis_scripts import (
    CHUNK,
    CREATE,
    EXPIRE,
    INDEX,
    LEASE,
    LOG,
    ROTATE,
    ROTATE_SLIDING,
    SET_FIELD,
    TRIM,
    UNINDEX,
    Client,
)

__all__ = ["RedisStore"]

logger = logging.getLogger("asgi_session")

# A session to delete or re-check: its handle, and its user's and tenant's escaped ids.
_Located = tuple[str, str, str]


class RedisStore(StoreLifecycle, SessionStore, RevocationLog, RevocationFeed, LeaseStore):
    """Sessions and keys in Redis (one server, Sentinel-managed, or a Redis Cluster), shared by every process using it.

    Args:
        client_or_url: a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a ``redis+cluster://`` /
            ``rediss+cluster://`` URL naming one node of a Redis Cluster (the store then owns its connection pool),
            or a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client to use as configured.
        prefix: the start of every key name; stores with different prefixes share nothing. No ``{`` or ``}``.
        ttl_leeway: seconds a session's keys outlive its ``expires_at`` (at least 1); must exceed clock skew.
        socket_timeout: seconds to wait for a reply, or for a free pooled connection (URL only); the revocation
            feed waits that long past its heartbeat, whichever way it was built.
        connect_timeout: seconds to wait for a new connection (URL only).
        max_connections: the pool's size (URL only; on a cluster, per node, and in all).
        retries: how often a command whose connection broke is re-sent on a fresh one (URL only; a cluster's
            client re-sends ``retries + 2`` times, re-reading the cluster's layout in between).

    Raises:
        ConfigurationError: a setting or the URL is invalid.
    """

    def __init__(
        self,
        client_or_url: Client | str,
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
        self._prefix, self._keys = prefix, f"{prefix}:{{keys}}"
        self._log, self._log_seq = f"{prefix}:{{revocations}}", f"{prefix}:{{revocations}}:seq"
        # Redis refuses spaces and non-ASCII in a connection name.
        self._feed_name = "".join(c if "!" <= c <= "~" else "_" for c in f"{prefix}:feed")
        self._socket_timeout = float(socket_timeout)
        self._leeway_ms = str(math.ceil(ttl_leeway * 1000))
        super().__init__()

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """Build a store from a URL; the optional query parameter ``prefix=`` sets the key prefix.

        ``redis+cluster://host:port/`` (or ``rediss+cluster://``) reaches a Redis Cluster through that node. Other
        query parameters are redis-py's (``socket_timeout``, ``max_connections``, ``client_name``, ...).

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

    async def _check_eviction(self, client: Client) -> None:
        try:
            if isinstance(client, aioredis.RedisCluster):
                replies = [
                    await client.config_get("maxmemory-policy", target_nodes=node) for node in client.get_primaries()
                ]
            else:
                replies = [await client.config_get("maxmemory-policy")]
        except ResponseError:  # CONFIG is often disabled on managed servers
            return
        policies = {as_text(value) for config in replies for value in config.values()} - {"noeviction"}
        if policies:
            logger.warning(
                "asgi_session: Redis maxmemory-policy is %s; set it to noeviction, or Redis may evict sessions, "
                "index entries and signing keys",
                ", ".join(sorted(policies)),
            )

    async def _close(self) -> None:
        """Close the pool the store owns (a client passed in stays open)."""
        await self._pool.close()

    # --- key names ---------------------------------------------------------------------------------------------

    def _session(self, handle: str) -> str:
        return f"{self._prefix}:{{s:{escape(handle)}}}"

    def _bucket(self, user_tag: str) -> str:
        return f"{self._prefix}:{{b:{bucket(user_tag)}}}"

    def _index(self, user_tag: str) -> str:
        return f"{self._bucket(user_tag)}:u:{user_tag}"

    def _shard(self, user_tag: str) -> str:
        return f"{self._bucket(user_tag)}:expiry"

    # --- sessions ----------------------------------------------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        """Insert a new session after its index entries (see the module notes).

        Raises:
            StoreError: the handle exists, the data is not a JSON object, a time is not finite, or Redis failed.
        """
        user_tag, tenant_tag, handle = escape(record.user_id), escape(record.tenant_id), record.handle
        created_at, expires_at = seconds(record.created_at, "created_at"), seconds(record.expires_at, "expires_at")
        fields = to_fields(record)
        member, entry = f"{tenant_tag}:{handle}", f"{user_tag}:{tenant_tag}:{handle}"
        index_keys = [self._index(user_tag), self._shard(user_tag)]
        async with self._pool.using("create") as client:
            added = int(await INDEX(client, index_keys, [member, created_at, entry, expires_at]))
            created = await CREATE(client, [self._session(handle)], [expires_at, self._leeway_ms, *fields])
            if created != 1 and added:  # the handle is taken: take back only what this call added
                undo = [member if added & 1 else "", entry if added & 2 else "", ""]
                await UNINDEX(client, [index_keys[1], index_keys[0]], ["", *undo])
        if created != 1:
            raise StoreError("a session with this handle already exists")

    async def get(self, handle: str) -> SessionRecord | None:
        """Return the session (expired or not) or ``None``."""
        async with self._pool.using("get") as client:
            raw = await client.hgetall(self._session(handle))
        return to_record(raw) if raw else None

    async def rotate(self, rotation: Rotation) -> bool:
        """Compare-and-swap the refresh hash in one Lua script on the session, which also extends its TTL."""
        times = [seconds(getattr(rotation, name), name) for name in ("rotated_at", "last_seen", "expires_at")]
        args = [rotation.expected_refresh_hash, rotation.new_refresh_hash, *times, self._leeway_ms]
        async with self._pool.using("rotate") as client:
            return bool(await ROTATE(client, [self._session(rotation.handle)], args))

    async def rotate_sliding(self, rotation: SlidingRotation) -> SessionRecord | None:
        """A refresh's read and compare-and-swap in one Lua script on the session (one round trip, not two).

        ``None`` when the session is missing, expired or holds another hash; the TTL is extended as by ``rotate``.
        """
        now = seconds(rotation.now, "now")
        idle = seconds(rotation.default_idle_timeout, "default_idle_timeout")
        args = [rotation.expected_refresh_hash, rotation.new_refresh_hash, now, idle, self._leeway_ms]
        async with self._pool.using("rotate_sliding") as client:
            reply = await ROTATE_SLIDING(client, [self._session(rotation.handle)], args)
        if not reply:
            return None
        if isinstance(reply, Mapping):
            return to_record(reply)
        return to_record(dict(zip(reply[::2], reply[1::2], strict=True)))

    async def _set_field(self, operation: str, handle: str, field: str, value: str) -> bool:
        async with self._pool.using(operation) as client:
            return bool(await SET_FIELD(client, [self._session(handle)], [field, value]))

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

    # --- deleting ----------------------------------------------------------------------------------------------

    async def _owners(self, client: Client, handles: Sequence[str]) -> list[tuple[str, str] | None]:
        """Each session's escaped ``(user, tenant)``, or None where it does not exist (pipelined)."""
        pipe = client.pipeline(transaction=False)
        for handle in handles:
            pipe.hmget(self._session(handle), ["user_id", "tenant_id"])
        found: list[tuple[str, str] | None] = []
        for user_id, tenant_id in await pipe.execute():
            found.append(
                None if user_id is None or tenant_id is None else (escape(as_text(user_id)), escape(as_text(tenant_id)))
            )
        return found

    async def _remove(self, client: Client, sessions: Sequence[_Located]) -> list[str]:
        """Log, delete, then unindex these existing sessions, in chunks; return the handles this call deleted."""
        deleted: list[str] = []
        for start in range(0, len(sessions), CHUNK):
            chunk = sessions[start : start + CHUNK]
            await LOG(client, [self._log, self._log_seq], [handle for handle, _, _ in chunk])
            pipe = client.pipeline(transaction=False)
            for handle, _, _ in chunk:
                pipe.delete(self._session(handle))
            gone = [located for located, count in zip(chunk, await pipe.execute(), strict=True) if int(count) == 1]
            await self._unindex(client, [(located, "") for located in gone], "")
            deleted += [handle for handle, _, _ in gone]
        return deleted

    async def _unindex(self, client: Client, sessions: Sequence[tuple[_Located, str]], now: str) -> None:
        """Run the unindex script once per bucket over ``(session, stored expires_at or '')`` pairs."""
        by_bucket: dict[str, tuple[list[str], list[str]]] = {}
        for (handle, user_tag, tenant_tag), stored in sessions:
            keys, args = by_bucket.setdefault(self._shard(user_tag), ([self._shard(user_tag)], [now]))
            keys.append(self._index(user_tag))
            args += [f"{tenant_tag}:{handle}", f"{user_tag}:{tenant_tag}:{handle}", stored]
        await UNINDEX.each(client, list(by_bucket.values()))

    async def delete(self, handles: Sequence[str]) -> list[str]:
        """Delete sessions with their index entries; return those that existed, in the order given."""
        unique = list(dict.fromkeys(handles))
        if not unique:
            return []
        async with self._pool.using("delete") as client:
            owners = await self._owners(client, unique)
            found = [(handle, *owner) for handle, owner in zip(unique, owners, strict=True) if owner is not None]
            deleted = set(await self._remove(client, found))
        return [handle for handle in unique if handle in deleted]

    async def _of_user(self, client: Client, user_id: str, tenant_id: str | None) -> list[tuple[str, str]]:
        """The user's ``(handle, T)`` pairs from their index, in one tenant or all, by created_at then handle."""
        wanted = None if tenant_id is None else escape(tenant_id)
        found, rows = [], await client.zrange(self._index(escape(user_id)), 0, -1, withscores=True)
        for member, created_at in list[Any](rows):  # (member, score) pairs: tuples in RESP2, lists in RESP3
            tenant_tag, _, handle = as_text(member).partition(":")
            if wanted in (None, tenant_tag):
                found.append((float(created_at), handle, tenant_tag))
        return [(handle, tenant_tag) for _, handle, tenant_tag in sorted(found)]

    async def list_for_user(self, user_id: str, tenant_id: str | None = None) -> list[SessionRecord]:
        """Return the user's sessions in one tenant or all, by ``created_at`` then ``handle``."""
        async with self._pool.using("list_for_user") as client:
            pairs = await self._of_user(client, user_id, tenant_id)
            if not pairs:
                return []
            pipe = client.pipeline(transaction=False)
            for handle, _ in pairs:
                pipe.hgetall(self._session(handle))
            rows = await pipe.execute()
        # A session TTL removed (or a create half done) leaves an empty row; the fields say whose a session is.
        records = [to_record(row) for row in rows if row]
        return [r for r in records if r.user_id == user_id and tenant_id in (None, r.tenant_id)]

    async def delete_for_user(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Delete the user's sessions in one tenant or all, with their index entries; return their handles."""
        user_tag = escape(user_id)
        async with self._pool.using("delete_for_user") as client:
            pairs = await self._of_user(client, user_id, tenant_id)
            if not pairs:
                return []
            owners = await self._owners(client, [handle for handle, _ in pairs])
            found = [(h, user_tag, t) for (h, t), owner in zip(pairs, owners, strict=True) if owner == (user_tag, t)]
            return await self._remove(client, found)

    async def delete_expired(self, now: float) -> int:
        """Delete sessions with ``expires_at <= now`` (those TTL has not removed yet); return how many."""
        bound, total = seconds(now, "now"), 0
        shards = [f"{self._prefix}:{{b:{n}}}:expiry" for n in range(BUCKETS)]
        while shards:
            async with self._pool.using("delete_expired") as client:
                pipe = client.pipeline(transaction=False)
                for shard in shards:
                    pipe.zrangebyscore(shard, "-inf", bound, start=0, num=CHUNK)
                pages = await pipe.execute()
                full, due, strays = [], [], []
                for shard, members in zip(shards, pages, strict=True):
                    if len(members) == CHUNK:
                        full.append(shard)
                    for text in (as_text(member) for member in members):
                        parts = text.split(":", 2)
                        if len(parts) == 3 and self._shard(parts[0]) == shard:
                            due.append((parts[2], parts[0], parts[1]))
                        else:  # not written by this store: drop it, or this loop would never end
                            strays.append((shard, text))
                for shard, text in strays:
                    await client.zrem(shard, text)
                replies = await EXPIRE.each(client, [([self._session(handle)], [bound]) for handle, _, _ in due])
                total += sum(1 for reply in replies if isinstance(reply, int) and reply == 1)
                stored = ["" if isinstance(reply, int) else as_text(reply) for reply in replies]
                await self._unindex(client, list(zip(due, stored, strict=True)), bound)
            shards = full
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
