#!lua flags=allow-oom
-- reset: forget a child that ended badly, so a retried flow runs it again.
--
-- KEYS[1]   the child's run record
-- KEYS[2]   the child's result list
-- ARGV      none
--
-- Only a Failed or Cancelled child is forgotten; a Completed one is kept.
-- Returns 1 when the child was reset, else 0.
--!include lib_states.lua
local s = redis.call('HGET', KEYS[1], 's')
if RESETTABLE[s] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
