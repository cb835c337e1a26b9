#!lua flags=allow-oom
-- heartbeat: publish (or withdraw) one worker process's entry in the worker registry,
-- and prune the entries of workers gone without withdrawing (SIGKILL, a lost host).
--
-- KEYS[1]  the registry's heartbeat times (ZSET: worker id -> last heartbeat, server ms)
-- KEYS[2]  the registry's entries (HASH: worker id -> JSON: host, pid, queues, slots, ...)
-- ARGV[1]  worker id
-- ARGV[2]  its entry (JSON), or '' to withdraw it (the worker stops cleanly)
-- ARGV[3]  prune bound (ms): entries without a heartbeat for longer are removed, and
--          the registry itself expires after twice that without any heartbeat
--
-- One call per worker per interval (never per run). Returns the server time (ms).
--!include lib_time.lua
local seen, info = KEYS[1], KEYS[2]
local wid, entry, prune = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = server_ms()
if entry == '' then
  redis.call('ZREM', seen, wid)
  redis.call('HDEL', info, wid)
else
  redis.call('ZADD', seen, now, wid)
  redis.call('HSET', info, wid, entry)
end
local stale = redis.call('ZRANGEBYSCORE', seen, '-inf', now - prune, 'LIMIT', 0, 100)
if #stale > 0 then
  redis.call('ZREM', seen, unpack(stale))
  redis.call('HDEL', info, unpack(stale))
end
if entry ~= '' then
  redis.call('PEXPIRE', seen, 2 * prune)
  redis.call('PEXPIRE', info, 2 * prune)
end
return now
