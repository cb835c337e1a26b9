#!lua flags=allow-oom
-- release: give back deliveries a worker read but has no slot for, untouched.
--
-- KEYS[1]   the task stream they came from
-- ARGV[1]   consumer group name
-- ARGV[2]   this worker's consumer name
-- ARGV[3..] stream entry ids
--
-- A blocking read over several priority streams can return more entries than the
-- worker asked for (Redis >= 7.2 serves every stream that has data). Each entry this
-- consumer still owns is added again, same fields, at the end of its stream, then
-- acked and deleted. Nothing was started, so no run record changes.
-- Returns how many were released.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == me then
    local e = redis.call('XRANGE', stream, ARGV[i], ARGV[i])
    if e[1] then redis.call('XADD', stream, '*', unpack(e[1][2])) end
    redis.call('XACK', stream, group, ARGV[i])
    redis.call('XDEL', stream, ARGV[i])
    n = n + 1
  end
end
return n
