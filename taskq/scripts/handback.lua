#!lua flags=allow-oom
-- handback: a stopping worker returns deliveries it will not finish, for immediate redelivery.
--
-- KEYS[1]        the task stream of the deliveries (one priority level's)
-- KEYS[2]        the queue's events stream
-- KEYS[2+i]      the run record of the i-th delivery (i = 1..n)
-- ARGV[1]        consumer group name
-- ARGV[2]        events stream cap (approximate MAXLEN)
-- ARGV[3]        this worker's consumer name
-- ARGV[4]        reason (recorded as the interrupted attempt's error)
-- ARGV[1+4i]     stream entry id of the i-th delivery
-- ARGV[2+4i]     its run id
-- ARGV[3+4i]     the attempt this worker holds ('0' for a delivery not started)
-- ARGV[4+4i]     its payload
--
-- Only deliveries this consumer still owns are touched (one reclaimed by another
-- worker has the same entry id, and acking it would drop that worker's claim).
-- Each is acked and deleted, and its payload added again at the end of the
-- stream; a run this attempt holds goes back to Pending, which fences the
-- attempt's late writes off. A delivery whose run already ended is left pending,
-- untouched: it is a flow child on another queue between its outcome and its
-- flow's notification, and the lease's redelivery (a duplicate) notifies the flow
-- and acks it; acking it here would leave the flow waiting for ever.
-- Returns how many were handed back.
--!include lib_fence.lua
local stream, events = KEYS[1], KEYS[2]
local group, cap, me, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = 0
for i = 1, #KEYS - 2 do
  local run = KEYS[2 + i]
  local eid, rid, attempt, payload = ARGV[1 + 4 * i], ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i]
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  local cur = redis.call('HMGET', run, 's', 'a')
  if p[1] and p[1][2] == me and not (cur[1] and FINAL[cur[1]]) then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    if holds(cur, attempt) then
      redis.call('HSET', run, 's', 'Pending', 'x' .. attempt, 'Interrupted: ' .. reason)
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Pending', 'a', attempt,
        'et', 'Interrupted', 'em', reason)
    end
    redis.call('XADD', stream, '*', 'm', payload, 'r', rid)
    n = n + 1
  end
end
return n
