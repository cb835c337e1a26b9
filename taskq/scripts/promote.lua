#!lua flags=allow-oom
-- promote: move due members of the delay queue to the task stream, at most N per call.
--
-- KEYS[1]   the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[2+L] the queue's task stream of priority level L (L = 0..9)
-- ARGV[1]   most members to move in this call (N)
--
-- A member is a payload, or "\xC1P<L>" + payload for priority L > 0 (0xC1 is
-- never the first byte of a msgpack value, so the two cannot be confused).
--
-- "Now" is the server's clock, so a member never moves before its due time
-- whatever the callers' clocks say. The script is atomic: any number of movers
-- may call it at once and each member is moved exactly once.
--
-- Returns {moved, next_due_ms or -1, now_ms}: the caller sleeps next_due - now.
local delayed = KEYS[1]
local limit = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms, 'LIMIT', 0, limit)
for i = 1, #due do
  local m = due[i]
  if string.sub(m, 1, 2) == '\193P' then
    redis.call('XADD', KEYS[2 + tonumber(string.sub(m, 3, 3))], '*', 'm', string.sub(m, 4))
  else
    redis.call('XADD', KEYS[2], '*', 'm', m)
  end
  redis.call('ZREM', delayed, due[i])
end
local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
return {#due, next_due, now_ms}
