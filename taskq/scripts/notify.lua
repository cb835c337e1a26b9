#!lua flags=allow-oom
-- notify: a child tells its flow that it ended; the last one waited for resumes it.
-- (A child on its flow's own queue does this inside finish.lua instead.)
--
-- KEYS[1]   the flow's task stream (of the flow's priority level)
-- KEYS[2]   the flow queue's events stream
-- KEYS[3]   the flow's run record
-- KEYS[4]   the flow's results hash (child id -> outcome)
-- KEYS[5]   the flow's completion-order list
-- KEYS[6]   the flow's wait set
-- KEYS[7]   the flow's ping list (wakes a flow blocking inline)
-- ARGV[1]   events stream cap (approximate MAXLEN)
-- ARGV[2]   flow run id
-- ARGV[3]   child run id
-- ARGV[4]   the child's outcome payload
-- ARGV[5]   time to keep the fan-in keys, in milliseconds
--
-- Idempotent: a duplicate notification finds the child already in the results
-- hash and changes nothing. Fan-in is set membership (SREM from the wait set),
-- never a counter, and the resume happens exactly once per wait: the record's
-- 'rn' field is set to the wait number when it does.
-- Resuming (a PENDING state) re-enqueues the flow's payload behind the work
-- already queued. Returns 1 when this call resumed the flow, else 0.
--!include lib_notify.lua
local stream, events, run, results, order = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local waitset, ping = KEYS[6], KEYS[7]
local cap, fid, child, outcome, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
return notify_flow(stream, events, run, results, order, waitset, ping, cap, fid, child, outcome, ttl)
