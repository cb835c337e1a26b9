#!lua flags=allow-oom
-- defer: a delivery that may not start yet (its rate-limit slot is later, or its
-- concurrency key is full) goes back to
-- the delay queue, due at its slot, without starting: no attempt, no slot held.
--
-- KEYS[1]   the task stream of the delivery (its priority level's)
-- KEYS[2]   the queue's events stream
-- KEYS[3]   the queue's delay queue
-- KEYS[4]   the run record
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3]   stream entry id of the delivery
-- ARGV[4]   run id
-- ARGV[5]   delay in milliseconds (server clock)
-- ARGV[6]   the delay-queue member: the payload (carrying its slot), after the level's mark
-- ARGV[7]   wake-up channel of the queue's movers
-- ARGV[8]   why it waits ('rate limit', 'concurrency limit'), for the event
--
-- A Pending run becomes Scheduled (with its due time and an event saying why); a retry
-- stays AwaitingRetry (start.lua tells a retried run by it); either way the mover brings
-- it back when due. A run that ended is only acked (its stale entry); one that is running
-- (a redelivery of a held run) is left alone.
-- Returns 1 when deferred, 0 when only acked (it had ended), 2 when left alone.
--!include lib_states.lua
--!include lib_time.lua
local stream, events, delayed, run = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, cap, eid, rid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay, member, channel, why = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local s = redis.call('HGET', run, 's')
if s and HELD[s] then return 2 end
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
if not s or FINAL[s] then return 0 end
local due = server_ms() + delay
redis.call('ZADD', delayed, due, member)
redis.call('HSET', run, 'due', due)
if s == 'Pending' then
  redis.call('HSET', run, 's', 'Scheduled')
  redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Scheduled', 'due', due,
    'why', why)
end
local first = redis.call('ZRANGE', delayed, 0, 0)
if first[1] == member then redis.call('PUBLISH', channel, due) end
return 1
