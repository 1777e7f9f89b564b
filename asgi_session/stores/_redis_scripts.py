"""The Lua scripts RedisStore runs on the server, each one atomic write over the keys it is passed (one slot).

Each script is sent once and then run by its SHA1; the key and argument order of each is noted above its source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

__all__ = [
    "CHUNK",
    "CREATE",
    "EXPIRE",
    "INDEX",
    "LEASE",
    "LOG",
    "ROTATE",
    "ROTATE_SLIDING",
    "SET_FIELD",
    "TRIM",
    "UNINDEX",
    "Client",
    "Script",
]

Client: TypeAlias = aioredis.Redis | RedisCluster  # one server (standalone or Sentinel-managed), or a Redis Cluster

CHUNK = 500  # sessions per delete script: keeps each script short, so it never blocks the server for long

# TTLs in ms from the server's clock: expires_at + leeway, at least the leeway, at most ~31,000 years.
_PRELUDE = """
local function ttl_ms(expires_at, leeway_ms)
  local time = redis.call('TIME')
  local left = math.ceil((tonumber(expires_at) - tonumber(time[1]) - tonumber(time[2]) / 1000000) * 1000)
  if left < 0 then left = 0 end
  return string.format('%.0f', math.min(left + tonumber(leeway_ms), 1e15))
end
"""
# Every script touches the keys of one hash tag only (one Redis Cluster slot): a session's key, a user bucket's index
# keys, or the revocation log's two keys. An operation that spans slots runs one script per slot, in the order the
# RedisStore notes give (indexes before the session on create, the log before the sessions and the sessions before
# their index entries on delete), so what a crash between two of them leaves is always safe.

# KEYS: user index, expiry shard (one bucket). ARGV: T:handle, created_at, U:T:handle, expires_at.
# Returns 1 if the user-index member was added, plus 2 if the expiry entry was (an undo removes only what was added).
_INDEX_SOURCE = """
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
local current = redis.call('ZSCORE', KEYS[2], ARGV[3])
if not current then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  added = added + 2
elseif tonumber(current) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return added
"""
# KEYS: session. ARGV: expires_at, leeway ms, then the session's field/value pairs. Returns 0 if the handle is taken.
_CREATE_SOURCE = """
if redis.call('EXISTS', KEYS[1]) > 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ttl_ms(ARGV[1], ARGV[2]))
return 1
"""
# KEYS: session. ARGV: expected hash, new hash, rotated_at, last_seen, expires_at, leeway ms.
# The expiry entry is left as it is: lower than the new expires_at, it is raised by delete_expired's re-check.
_ROTATE_SOURCE = """
if redis.call('HGET', KEYS[1], 'refresh_hash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'previous_refresh_hash', ARGV[1],
  'rotated_at', ARGV[3], 'last_seen', ARGV[4], 'expires_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl_ms(ARGV[5], ARGV[6]))
return 1
"""
# KEYS: session. ARGV: expected hash, new hash, now, default idle timeout, leeway ms. A refresh's read and swap in one
# script (SlidingRotation): swaps only a live session holding the expected hash, slides expires_at to
# min(now + idle, absolute_expires_at) with the same double additions as Python (written with 17 significant digits,
# so it reads back as exactly that float), and returns the session's fields; nil otherwise, changing nothing.
_ROTATE_SLIDING_SOURCE = """
local f = redis.call('HMGET', KEYS[1], 'refresh_hash', 'expires_at', 'idle_timeout', 'absolute_expires_at')
if f[1] ~= ARGV[1] then return false end
local now = tonumber(ARGV[3])
local expires = tonumber(f[2])
if not expires or not (expires > now) then return false end
local slid = now + (tonumber(f[3]) or tonumber(ARGV[4]))
local absolute = tonumber(f[4])
if absolute and absolute < slid then slid = absolute end
local text = string.format('%.17g', slid)
redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'previous_refresh_hash', ARGV[1],
  'rotated_at', ARGV[3], 'last_seen', ARGV[3], 'expires_at', text)
redis.call('PEXPIRE', KEYS[1], ttl_ms(text, ARGV[5]))
return redis.call('HGETALL', KEYS[1])
"""
# KEYS: session. ARGV: field, value.
_SET_FIELD_SOURCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: session. ARGV: now. Deletes the session unless its expires_at is later than now: returns 1 (deleted), 0 (it
# was gone already), or the stored expires_at (a string: it lives on).
_EXPIRE_SOURCE = """
local stored = redis.call('HGET', KEYS[1], 'expires_at')
if stored and tonumber(stored) and tonumber(stored) > tonumber(ARGV[1]) then return stored end
return redis.call('DEL', KEYS[1])
"""
# KEYS: expiry shard, then the user index of each session (one bucket). ARGV: now ('' removes unconditionally), then
# (user-index member, expiry member, stored expires_at or '') per session. An entry whose session lives on
# ('stored' given) is raised to it; the others lose both entries, unless (with now) the entry was raised past now
# meanwhile. The user-index member goes first: an expiry entry always outlives its member.
_UNINDEX_SOURCE = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS - 1 do
  local member, entry, stored = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local current = now and redis.call('ZSCORE', KEYS[1], entry)
  if now and stored ~= '' then
    if current and tonumber(current) <= now then redis.call('ZADD', KEYS[1], stored, entry) end
  elseif not now or not current or tonumber(current) <= now then
    if member ~= '' then redis.call('ZREM', KEYS[1 + i], member) end
    if entry ~= '' then redis.call('ZREM', KEYS[1], entry) end
  end
end
return 1
"""
# KEYS: revocation log, log counter. ARGV: the handles to append. Returns the last sequence number.
_LOG_SOURCE = """
local function last_seq(log, counter)
  local last = redis.call('GET', counter)
  if last then return tonumber(last) end
  if redis.call('EXISTS', log) == 0 then return 0 end
  -- The counter is gone but the log is not: go on from the log's last id, so numbers never go backwards.
  local info = redis.call('XINFO', 'STREAM', log)
  for k = 1, #info, 2 do
    if info[k] == 'last-generated-id' then return tonumber((string.match(info[k + 1], '^%d+'))) end
  end
  return 0
end
local last = last_seq(KEYS[1], KEYS[2])
for j = 1, #ARGV do
  redis.call('XADD', KEYS[1], string.format('%.0f-0', last + j), 'handle', ARGV[j])
end
redis.call('SET', KEYS[2], string.format('%.0f', last + #ARGV))
return last + #ARGV
"""
# KEYS: revocation log. ARGV: the highest sequence number to delete, how many entries at most. Returns how many it
# deleted. XRANGE and XDEL rather than XTRIM MINID, which needs Redis 6.2.
_TRIM_SOURCE = """
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', ARGV[2])
if #entries == 0 then return 0 end
local ids = {}
for i, entry in ipairs(entries) do ids[i] = entry[1] end
return redis.call('XDEL', KEYS[1], unpack(ids))
"""

# KEYS: the lease. ARGV: holder, now, end, TTL ms. The value is "<end> <holder>"; returns 1 if granted. The TTL only
# frees the key some time after the grant ends: the grant itself is judged on the caller's times.
_LEASE_SOURCE = """
local current = redis.call('GET', KEYS[1])
if current then
  local space = string.find(current, ' ', 1, true)
  local ends, holder = tonumber(string.sub(current, 1, space - 1)), string.sub(current, space + 1)
  if holder ~= ARGV[1] and ends > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[4])
return 1
"""


class Script:
    """A Lua script run by its SHA1, loaded into the server on first use (or after a restart or SCRIPT FLUSH)."""

    def __init__(self, body: str) -> None:
        self.source = _PRELUDE + body
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Client, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # EVAL caches it on the node that owns the keys (SCRIPT LOAD could go elsewhere)
            return await client.eval(self.source, len(keys), *keys, *args)

    async def each(self, client: Client, calls: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[Any]:
        """Run the script once per ``(keys, args)``, pipelined (by node, on a cluster); return the replies in order.

        Raises:
            RedisError: a call failed (the first failure is raised; the other calls may have run).
        """
        if not calls:
            return []
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            # execute_command: redis-py refuses pipe.evalsha on a cluster, though it routes EVALSHA by its keys.
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        replies = list(await pipe.execute(raise_on_error=False))
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[i] = await self(client, *calls[i])
            elif isinstance(reply, Exception):
                raise reply
        return replies


INDEX, CREATE, ROTATE = Script(_INDEX_SOURCE), Script(_CREATE_SOURCE), Script(_ROTATE_SOURCE)
ROTATE_SLIDING = Script(_ROTATE_SLIDING_SOURCE)
SET_FIELD, EXPIRE, UNINDEX = Script(_SET_FIELD_SOURCE), Script(_EXPIRE_SOURCE), Script(_UNINDEX_SOURCE)
LOG, TRIM, LEASE = Script(_LOG_SOURCE), Script(_TRIM_SOURCE), Script(_LEASE_SOURCE)
