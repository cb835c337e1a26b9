#!lua flags=allow-oom
-- finish: record a run's final outcome and ack its delivery, fenced by attempt.
--
-- KEYS[1]   the task stream the delivery came from (its priority level's)
-- KEYS[2]   the queue's events stream
-- KEYS[3]   the run record
-- KEYS[4]   the run's result list (one element: the outcome payload)
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3]   stream entry id of the delivery
-- ARGV[4]   run id
-- ARGV[5]   attempt that produced the outcome (the fence)
-- ARGV[6]   final state name: Completed, Failed or Cancelled
-- ARGV[7]   outcome payload (msgpack)
-- ARGV[8]   time to keep the record and result, in milliseconds
-- ARGV[9]   error type for the event ('' when none)
-- ARGV[10]  error message for the event ('' when none)
-- ARGV[11]  '1' to leave the delivery pending (a flow child: it is acked only after
--           its flow was notified, so a crash in between is repaired by redelivery)
-- KEYS[5]   (optional) the cache entry to store a Completed outcome under
-- KEYS[6]   (optional) the cache entry's lock, released if this run holds it
-- ARGV[12]  '' without cache keys; with them, cache expiration in milliseconds (-1: none)
-- ARGV[13]  'flow' when the run is a child of a flow on this same queue (hash tag):
--           the last six KEYS are then the flow's task stream (of the flow's priority
--           level; a resumed flow is added to it), run record, results hash, order
--           list, wait set and ping list, and the flow is notified in this script
--           (before the ack), so one call ends the child; ARGV[14] is the flow's id
--
-- Returns 1 when recorded. Returns 0, changing nothing, when the attempt no
-- longer holds the run (another attempt took over, or the run already ended):
-- a stale worker must neither regress the state nor ack someone else's delivery.
--!include lib_fence.lua
--!include lib_notify.lua
--!include lib_finish.lua
local stream, events, run, result = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, cap, eid, rid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local attempt, state, payload, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local etype, emsg = ARGV[9], ARGV[10]
if not fence(run, attempt) then return 0 end
-- The child's own event comes before its flow's: a Resuming it causes follows its end.
record_outcome(run, result, events, cap, rid, attempt, state, payload, ttl, etype, emsg)
if ARGV[12] ~= '' then
  if state == 'Completed' then
    redis.call('SET', KEYS[5], payload)
    if tonumber(ARGV[12]) > 0 then redis.call('PEXPIRE', KEYS[5], ARGV[12]) end
  end
  if redis.call('GET', KEYS[6]) == rid then redis.call('DEL', KEYS[6]) end
end
if ARGV[13] == 'flow' then
  local n = #KEYS
  notify_flow(KEYS[n - 5], events, KEYS[n - 4], KEYS[n - 3], KEYS[n - 2], KEYS[n - 1], KEYS[n],
    cap, ARGV[14], rid, payload, ttl)
end
if ARGV[11] ~= '1' then
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
end
return 1
