-- lib_finish: an attempt's final outcome written down (inserted where a script says
-- --!include), for finish.lua and finish_batch.lua; the caller has fenced the attempt.
-- The record takes the final state (and the error, if any) and the result list the
-- outcome, both kept `ttl` ms; the final-state event goes on the queue's events stream
-- (record_outcome), or, for a batch of runs without an error, in shared entries
-- (record_result, then lib_events.lua's add_runs_event).
local function record_result(run, result, attempt, state, payload, ttl, etype, emsg)
  if etype ~= '' then
    redis.call('HSET', run, 's', state, 'x' .. attempt, etype .. ': ' .. emsg)
  else
    redis.call('HSET', run, 's', state)
  end
  redis.call('PEXPIRE', run, ttl)
  -- The result list is empty here: a run ends once (a reset child's list was deleted).
  redis.call('RPUSH', result, payload)
  redis.call('PEXPIRE', result, ttl)
end

local function record_outcome(run, result, events, cap, rid, attempt, state, payload, ttl,
                              etype, emsg)
  record_result(run, result, attempt, state, payload, ttl, etype, emsg)
  if etype ~= '' then
    redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', state, 'a', attempt,
      'et', etype, 'em', emsg)
  else
    redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', state, 'a', attempt)
  end
end

