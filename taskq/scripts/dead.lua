#!lua flags=allow-oom
-- dead: move a delivery that cannot run to the dead-letter stream, with a reason.
--
-- KEYS[1]   the task stream of the deliveries (one priority level's)
-- KEYS[2]   the queue's dead-letter stream
-- KEYS[3]   the queue's events stream
-- KEYS[4]   (optional) the run record, when the payload named a run id
-- KEYS[5]   (optional) the run's result list
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3]   stream entry id of the delivery
-- ARGV[4]   reason (free text)
-- ARGV[5]   run id ('' when unknown)
-- ARGV[6]   time to keep the record and result, in milliseconds
-- ARGV[7]   the priority level of KEYS[1] (recorded, so a requeue puts the entry back there)
-- ARGV[8..] the entry's original fields and values, copied as they were
--
-- The original entry is copied before it is deleted, so nothing is lost. A known
-- run that has not ended is marked Failed so its waiters wake up; its outcome
-- (msgpack, as taskq.message.encode_outcome writes it) reports the attempts the
-- record counts, so TaskFailedError.attempts agrees with the record.
--!include lib_states.lua
local stream, dead, events = KEYS[1], KEYS[2], KEYS[3]
local group, cap, eid, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rid, ttl, level = ARGV[5], ARGV[6], ARGV[7]
local entry = {'XADD', dead, '*', 'reason', reason, 'id', eid, 'run', rid, 'priority', level}
for i = 8, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call(unpack(entry))
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
if #KEYS >= 5 then
  local run, result = KEYS[4], KEYS[5]
  local cur = redis.call('HMGET', run, 's', 'a')
  local s, a = cur[1], tonumber(cur[2] or '0') or 0
  if not (s and FINAL[s]) then
    local outcome = cmsgpack.pack({s = 'Failed', a = a, e = {'DeadLettered', reason, ''}})
    redis.call('HSET', run, 's', 'Failed', 'dead', reason)
    redis.call('PEXPIRE', run, ttl)
    redis.call('DEL', result)
    redis.call('RPUSH', result, outcome)
    redis.call('PEXPIRE', result, ttl)
    redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Failed', 'a', a,
      'et', 'DeadLettered', 'em', reason)
  end
end
return 1
