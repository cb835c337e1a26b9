-- lib_notify: shared by notify.lua and finish.lua (inserted where they say --!include).
-- notify_flow records that child `child` of flow `fid` ended with `outcome`, and resumes
-- the flow when that child was the last one its wait needed. All keys are the flow's
-- (its queue's stream and events, its run record, results, order, wait set and ping
-- list), passed in by the including script from its KEYS. Returns 1 if it resumed.
--!include lib_states.lua
local function notify_flow(stream, events, run, results, order, waitset, ping, cap, fid,
                           child, outcome, ttl)
  if redis.call('HSETNX', results, child, outcome) == 0 then
    return 0
  end
  redis.call('RPUSH', order, child)
  local cur = redis.call('HMGET', run, 's', 'wm', 'wn', 'rn', 'p', 'a')
  if HELD[cur[1]] then
    -- the flow may be blocking inline for its children: wake it
    redis.call('LPUSH', ping, child)
    redis.call('LTRIM', ping, 0, 15)
    redis.call('PEXPIRE', ping, ttl)
  end
  redis.call('PEXPIRE', results, ttl)
  redis.call('PEXPIRE', order, ttl)
  if cur[1] ~= 'AwaitingChildren' or redis.call('SREM', waitset, child) == 0 then
    return 0
  end
  if cur[2] ~= 'any' and redis.call('SCARD', waitset) > 0 then
    return 0
  end
  if cur[4] == cur[3] then
    return 0
  end
  redis.call('HSET', run, 'rn', cur[3], 's', 'Resuming')
  redis.call('DEL', waitset)
  redis.call('XADD', stream, '*', 'm', cur[5], 'r', fid)
  redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', fid, 's', 'Resuming', 'a', cur[6])
  return 1
end
