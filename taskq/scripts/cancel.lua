#!lua flags=allow-oom
-- cancel: end a run that has not started, or ask a running one to stop.
--
-- KEYS[1]   the run record
-- KEYS[2]   the run's result list (one element: the outcome payload)
-- KEYS[3]   the queue's events stream
-- ARGV[1]   events stream cap (approximate MAXLEN)
-- ARGV[2]   run id
-- ARGV[3]   the Cancelled outcome payload (msgpack), stored for a run ended here
-- ARGV[4]   time to keep the record and result, in milliseconds
-- ARGV[5]   the reason
-- ARGV[6]   the queue's cancel channel (told of a running run's request)
--
-- By the record's state, atomically, so a cancel racing the run's own end leaves one
-- final state:
--   final (Completed, Failed, Cancelled, Cached): nothing changes.
--   Running or Retrying: the request is recorded (field 'cx', the reason) and published
--     on the cancel channel; the worker running it tells the run, and records it
--     Cancelled when it stops (or after its grace), unless it ends first.
--   anything else (Pending, Scheduled, AwaitingRetry, AwaitingChildren, Resuming): the
--     run ends Cancelled here, with its outcome and event. Its stream entry or delay-queue
--     member stays where it is and is dropped when a worker reads it (start.lua: a
--     final run), which also re-sends a flow child's notification.
-- Returns 0 for an unknown run, 1 ended already, 2 running (requested), 3 cancelled.
--!include lib_states.lua
local run, result, events = KEYS[1], KEYS[2], KEYS[3]
local cap, rid, payload, ttl, reason, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cur = redis.call('HMGET', run, 's', 'a')
local s = cur[1]
if not s then return 0 end
if FINAL[s] then return 1 end
if HELD[s] then
  redis.call('HSET', run, 'cx', reason)
  redis.call('PUBLISH', channel, rid)
  return 2
end
-- The attempt errors already recorded (x<n>) are kept: the reason is in 'cx'.
redis.call('HDEL', run, 'due')
redis.call('HSET', run, 's', 'Cancelled', 'cx', reason)
redis.call('PEXPIRE', run, ttl)
redis.call('DEL', result)
redis.call('RPUSH', result, payload)
redis.call('PEXPIRE', result, ttl)
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Cancelled', 'a', cur[2] or '0',
  'et', 'Cancelled', 'em', reason)
return 3
