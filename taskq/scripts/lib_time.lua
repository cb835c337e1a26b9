-- lib_time: the server clock, shared by the scripts (inserted where they say --!include).
-- Every due time, start time and grace is measured on Redis's own clock, so workers
-- and movers agree whatever their hosts' clocks say.
-- server_ms returns TIME in whole milliseconds.
local function server_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
