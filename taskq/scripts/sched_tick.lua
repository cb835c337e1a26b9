#!lua flags=allow-oom
-- sched_tick: record that a schedule's tick fired (taskq.schedules), never moving back.
--
-- KEYS[1]   the queue's schedule record (hash: task name -> last tick fired, Unix ms)
-- ARGV[1]   task name
-- ARGV[2]   the tick (Unix ms)
--
-- Returns 1 when the record moved forward, else 0 (it was at or past the tick).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
