#!lua flags=allow-oom
-- conc: take concurrency slots of a key for deliveries about to start (taskq.concurrency).
--
-- KEYS[1]   the key's slots (sorted set: run id -> end of its lease, server ms)
-- ARGV[1]   most slots (the limit)
-- ARGV[2]   lease length in milliseconds
-- ARGV[2+i] run id of the i-th delivery
--
-- Slots whose lease ended (their worker died) are dropped first. A run that holds a slot
-- already (its delivery came back after a crash, or a stale copy) keeps it, renewed;
-- another takes one while fewer than the limit are taken.
-- Returns, per delivery, 1 (it has a slot) or 0 (the key is full).
--!include lib_time.lua
local slots, limit, lease = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local now = server_ms()
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local out = {}
for i = 3, #ARGV do
  local rid = ARGV[i]
  if redis.call('ZSCORE', slots, rid) then
    redis.call('ZADD', slots, now + lease, rid)
    out[#out + 1] = 1
  elseif redis.call('ZCARD', slots) < limit then
    redis.call('ZADD', slots, now + lease, rid)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('PEXPIRE', slots, lease * 2)
return out
