#!lua flags=allow-oom
-- progress: a running attempt reports how far it got (taskq.context().progress).
--
-- KEYS[1]   the run record
-- KEYS[2]   the queue's events stream
-- ARGV[1]   events stream cap (approximate MAXLEN)
-- ARGV[2]   run id
-- ARGV[3]   attempt reporting (the fence: a stale attempt's report changes nothing)
-- ARGV[4]   fraction done, 0 to 1 (text)
-- ARGV[5]   message ('' for none)
--
-- The record keeps the latest report ('pg', 'pm'); the events stream gets one entry
-- 'Progress' (not a state: the run stays Running) with 'pg' and 'pm'.
-- Returns 1 when recorded, 0 when fenced off.
--!include lib_fence.lua
local run, events = KEYS[1], KEYS[2]
local cap, rid, attempt, fraction, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not fence(run, attempt) then return 0 end
redis.call('HSET', run, 'pg', fraction, 'pm', message)
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Progress', 'a', attempt,
  'pg', fraction, 'pm', message)
return 1
