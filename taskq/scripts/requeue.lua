-- requeue: move dead-letter entries back onto their task streams, each in one atomic step.
--
-- KEYS[1]      the queue's dead-letter stream
-- KEYS[2]      the queue's events stream
-- KEYS[3i]     the task stream the i-th entry came from (of its priority level)
-- KEYS[3i+1]   the i-th entry's run record (any key of the queue when it names no run)
-- KEYS[3i+2]   the i-th entry's result list (likewise)
-- ARGV[1]      events stream cap (approximate MAXLEN)
-- ARGV[3i-1]   the i-th dead-letter entry id
-- ARGV[3i]     its run id ('' when it names none)
-- ARGV[3i+1]   its task name ('' when unknown), for the run's Pending event
--
-- The entry's original fields (those after the dead-letter fields dead.lua puts
-- first) are added back to the stream as a new entry, and the dead-letter entry is
-- deleted, in the same script: an interrupted bulk requeue loses nothing. A run that
-- the dead letter ended (Failed, with 'dead') is reopened as a new attempt of the same
-- run: Pending again, 'dead' removed, no TTL, no result, one Pending event marked
-- 'rq'. This is the one way a final state goes back, and only by an operator's
-- requeue; fencing holds, since the next start increments the attempt. A run whose
-- record ended otherwise (a duplicate delivery completed it), or is live, is left
-- alone: its entry is only removed.
-- Per entry, two values {code, state}; code is
--   0  gone: the entry is no longer in the dead-letter stream (nothing changed)
--   1  reopened: back on its stream, its run Pending again
--   2  added: back on its stream; it names no run, or one with no record (expired),
--      which is recorded Pending (a result left of it is deleted)
--   3  ended: not requeued, the entry removed; state is the run's
local dead, events, cap = KEYS[1], KEYS[2], ARGV[1]
-- The fields dead.lua writes before the entry's own (reason, id, run, priority).
local DEAD_FIELDS = {reason = true, id = true, run = true, priority = true}
local out = {}
for i = 1, (#KEYS - 2) / 3 do
  local stream, run, result = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  local eid, rid, task = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local code, state = 0, ''
  local found = redis.call('XRANGE', dead, eid, eid)[1]
  if found then
    local s = rid ~= '' and redis.call('HGET', run, 's') or false
    if s and not (s == 'Failed' and redis.call('HEXISTS', run, 'dead') == 1) then
      code, state = 3, s
    else
      local f, j = found[2], 1
      while j <= 7 and DEAD_FIELDS[f[j]] do j = j + 2 end
      local add = {'XADD', stream, '*'}
      for n = j, #f do add[#add + 1] = f[n] end
      redis.call(unpack(add))
      code = 2
      if rid ~= '' then
        if s then
          code = 1
          redis.call('HDEL', run, 'dead')
          redis.call('PERSIST', run)
        end
        redis.call('DEL', result)
        redis.call('HSET', run, 's', 'Pending')
        local event = {'XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Pending'}
        if task ~= '' then event[#event + 1], event[#event + 2] = 'k', task end
        event[#event + 1], event[#event + 2] = 'rq', '1'
        redis.call(unpack(event))
      end
    end
    redis.call('XDEL', dead, eid)
  end
  out[#out + 1] = code
  out[#out + 1] = state
end
return out
