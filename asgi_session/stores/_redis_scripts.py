"""The Lua scripts RedisStore runs on the server, each one atomic write over the keys it is passed.

Each script is sent once and then run by its SHA1; the key and argument order of each is noted above its source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["CHUNK", "CREATE", "DELETE", "LEASE", "ROTATE", "SET_FIELD", "TRIM", "Script"]

CHUNK = 500  # sessions per delete script: keeps each script short, so it never blocks the server for long

# TTLs in ms from the server's clock: expires_at + leeway, at least the leeway, at most ~31,000 years.
_PRELUDE = """
local function ttl_ms(expires_at, leeway_ms)
  local time = redis.call('TIME')
  local left = math.ceil((tonumber(expires_at) - tonumber(time[1]) - tonumber(time[2]) / 1000000) * 1000)
  if left < 0 then left = 0 end
  return string.format('%.0f', math.min(left + tonumber(leeway_ms), 1e15))
end
local function extend(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
"""
# KEYS: handle index, session, user index, expiry index. ARGV: U:T, T:handle, U:T:handle, created_at, expires_at,
# leeway ms, then the session's field/value pairs.
_CREATE_SOURCE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
local ms = ttl_ms(ARGV[5], ARGV[6])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[2], ms)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
extend(KEYS[3], ms)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
return 1
"""
# KEYS: session, handle index, user index, expiry index.
# ARGV: expected hash, new hash, rotated_at, last_seen, expires_at, leeway ms, U:T:handle.
_ROTATE_SOURCE = """
if redis.call('HGET', KEYS[1], 'refresh_hash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'previous_refresh_hash', ARGV[1],
  'rotated_at', ARGV[3], 'last_seen', ARGV[4], 'expires_at', ARGV[5])
local ms = ttl_ms(ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('PEXPIRE', KEYS[2], ms)
extend(KEYS[3], ms)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
return 1
"""
# KEYS: session. ARGV: field, value.
_SET_FIELD_SOURCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: expiry index, revocation log, log counter, then (handle index, session, user index) per session. ARGV: now
# ('' deletes unconditionally and logs what it deletes), then (handle, U:T, T:handle, U:T:handle) per session.
# Returns the handles of the sessions that existed. The log keys share their own hash tag: like the expiry index, they
# sit in another slot than the sessions (Redis Cluster is not supported yet).
_DELETE_SOURCE = """
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
local now = tonumber(ARGV[1])
local count = (#KEYS - 3) / 3
if not now then
  -- Log first: a log that cannot be written fails the script before anything is deleted.
  local doomed, seen = {}, {}
  for i = 0, count - 1 do
    local handle = ARGV[2 + 4 * i]
    if not seen[handle] and redis.call('EXISTS', KEYS[5 + 3 * i]) == 1 then
      seen[handle] = true
      doomed[#doomed + 1] = handle
    end
  end
  if #doomed > 0 then
    local last = last_seq(KEYS[2], KEYS[3])
    for j, handle in ipairs(doomed) do
      redis.call('XADD', KEYS[2], string.format('%.0f-0', last + j), 'handle', handle)
    end
    redis.call('SET', KEYS[3], string.format('%.0f', last + #doomed))
  end
end
local deleted = {}
for i = 0, count - 1 do
  local lookup, session, index = KEYS[4 + 3 * i], KEYS[5 + 3 * i], KEYS[6 + 3 * i]
  local handle, locator, member, expiry = ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i], ARGV[5 + 4 * i]
  local stored = now and redis.call('HGET', session, 'expires_at')
  if stored and tonumber(stored) and tonumber(stored) > now then
    redis.call('ZADD', KEYS[1], stored, expiry)
  else
    if redis.call('DEL', session) == 1 then deleted[#deleted + 1] = handle end
    if redis.call('GET', lookup) == locator then redis.call('DEL', lookup) end
    redis.call('ZREM', index, member)
    redis.call('ZREM', KEYS[1], expiry)
  end
end
return deleted
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

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


CREATE, ROTATE = Script(_CREATE_SOURCE), Script(_ROTATE_SOURCE)
SET_FIELD, DELETE = Script(_SET_FIELD_SOURCE), Script(_DELETE_SOURCE)
TRIM, LEASE = Script(_TRIM_SOURCE), Script(_LEASE_SOURCE)
