#!lua flags=allow-oom
-- park: hand back a delivery whose task this worker does not know, for a worker that
-- knows it (a rolling deploy), through the delay queue, for a bounded time.
--
-- KEYS[1]   the task stream of the delivery (one priority level's)
-- KEYS[2]   the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[3]   the run record
-- ARGV[1]   consumer group name
-- ARGV[2]   this worker's consumer name
-- ARGV[3]   stream entry id of the delivery
-- ARGV[4]   delay-queue member: priority mark + payload (see promote.lua)
-- ARGV[5]   grace: how long a run may wait for a worker that knows its task (ms)
-- ARGV[6]   first delay (ms); each hand-back doubles it, up to ARGV[7]
-- ARGV[7]   longest delay (ms)
-- ARGV[8]   wake-up channel of the queue's movers
--
-- The record counts the hand-backs in `u` and keeps the first one's time in `u0`
-- (server ms). Returns {code, waited_ms}:
--   1  handed back: acked, deleted, and in the delay queue, due after the delay
--   0  not handed back: the grace is spent (waited_ms since `u0`), or the run has no
--      record (waited_ms -1); the caller dead-letters it
--   2  the run already ended: the duplicate was acked and deleted
--   3  this worker no longer holds the delivery; nothing changed
--!include lib_states.lua
--!include lib_time.lua
local stream, delayed, run = KEYS[1], KEYS[2], KEYS[3]
local group, me, eid, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local grace, first, longest = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if not (p[1] and p[1][2] == me) then return {3, 0} end
local cur = redis.call('HMGET', run, 's', 'u0')
if not cur[1] then return {0, -1} end
if FINAL[cur[1]] then
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
  return {2, 0}
end
local now_ms = server_ms()
local u0 = tonumber(cur[2] or now_ms)
if now_ms - u0 >= grace then return {0, now_ms - u0} end
local u = redis.call('HINCRBY', run, 'u', 1)
redis.call('HSETNX', run, 'u0', now_ms)
local delay = math.min(first * 2 ^ (u - 1), longest)
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
redis.call('ZADD', delayed, now_ms + delay, member)
local head = redis.call('ZRANGE', delayed, 0, 0)
if head[1] == member then redis.call('PUBLISH', ARGV[8], now_ms + delay) end
return {1, now_ms - u0}
