-- lib_fence: fencing by attempt, shared by the scripts that write an attempt's outcome
-- (inserted where they say --!include). An attempt holds its run while the record is
-- in a HELD state with that attempt number; otherwise another attempt took over
-- (a reclaim, a hand-back) or the run ended, and a stale worker's late write must
-- change nothing: neither regress the state nor ack someone else's delivery.
--!include lib_states.lua

-- holds: true when record fields `cur` ({s, a, ...} as HMGET gave them) belong to a
-- run that `attempt` (a string, as ARGV carries it) still holds.
local function holds(cur, attempt)
  return HELD[cur[1]] ~= nil and cur[2] == attempt
end

-- fence: the record's fields s, a and then the named ones if `attempt` holds `run`;
-- otherwise nil, after counting the fenced-off write in the record's 'fenced' field.
local function fence(run, attempt, ...)
  local cur = redis.call('HMGET', run, 's', 'a', ...)
  if not holds(cur, attempt) then
    redis.call('HINCRBY', run, 'fenced', 1)
    return nil
  end
  return cur
end
