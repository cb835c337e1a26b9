#!lua flags=allow-oom
-- retry: a failed attempt waits in the delay queue; ack, record and schedule in one step.
--
-- KEYS[1]   the task stream the delivery came from (its priority level's)
-- KEYS[2]   the queue's events stream
-- KEYS[3]   the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[4]   the run record
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3]   stream entry id of the delivery
-- ARGV[4]   run id
-- ARGV[5]   attempt that failed (the fence)
-- ARGV[6]   delay before the next attempt, in milliseconds (server clock)
-- ARGV[7]   the delay-queue member: the run's payload, after a "\xC1P<level>" prefix
--           when its priority is not 0 (the mover re-enqueues it when due)
-- ARGV[8]   error type
-- ARGV[9]   error message
-- ARGV[10]  retry deadline in ms after the first start, or -1 for none
-- ARGV[11]  wake-up channel of the queue's movers
--
-- Returns 1 when scheduled; 0, changing nothing, when the attempt no longer holds
-- the run (fenced); 2, changing nothing, when the retry would come due after the
-- deadline (the caller then records the run Failed).
--!include lib_fence.lua
--!include lib_time.lua
local stream, events, delayed, run = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, cap, eid, rid, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay, payload, etype, emsg = tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
local deadline, channel = tonumber(ARGV[10]), ARGV[11]
local cur = fence(run, attempt, 't1')
if not cur then return 0 end
local now_ms = server_ms()
local due = now_ms + delay
if deadline >= 0 and cur[3] and due > tonumber(cur[3]) + deadline then
  return 2
end
redis.call('HSET', run, 's', 'AwaitingRetry', 'due', due, 'x' .. attempt, etype .. ': ' .. emsg)
redis.call('HDEL', run, 'e')
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
redis.call('ZADD', delayed, due, payload)
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'AwaitingRetry', 'a', attempt,
  'et', etype, 'em', emsg, 'due', due)
local first = redis.call('ZRANGE', delayed, 0, 0)
if first[1] == payload then redis.call('PUBLISH', channel, due) end
return 1
