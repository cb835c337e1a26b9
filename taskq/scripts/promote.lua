-- promote: move due members of the delay queue to the task stream, at most N per call.
--
-- KEYS[1]   the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[2]   the queue's task stream
-- ARGV[1]   most members to move in this call (N)
--
-- "Now" is the server's clock, so a member never moves before its due time
-- whatever the callers' clocks say. The script is atomic: any number of movers
-- may call it at once and each member is moved exactly once.
--
-- Returns {moved, next_due_ms or -1, now_ms}: the caller sleeps next_due - now.
local delayed, stream = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms, 'LIMIT', 0, limit)
for i = 1, #due do
  redis.call('XADD', stream, '*', 'm', due[i])
  redis.call('ZREM', delayed, due[i])
end
local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
return {#due, next_due, now_ms}
