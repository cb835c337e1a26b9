-- run_log: append an attempt's log lines to the run's log (see taskq/runlogs.py).
--
-- KEYS[1]   the run's log (list of lines, oldest first)
-- KEYS[2]   a flow's replay mark, '<attempt>:<lines>' (only for a flow)
-- ARGV[1]   lines kept (the list is trimmed to its newest ARGV[1])
-- ARGV[2]   time to keep the log (and the mark), in milliseconds
-- ARGV[3]   the attempt the lines belong to
-- ARGV[4]   a flow: index, within this execution of its body, of the first body line
--           below (-1 for a task: every line is appended)
-- ARGV[5]   how many of the lines below are body lines (the rest are the engine's)
-- ARGV[6..] the lines
--
-- A flow's body runs again from the top on every resume, logging again what earlier
-- executions of the same attempt logged: the mark counts the body lines of the attempt
-- already written, and those of this execution with a lower index are dropped (bodies
-- are deterministic, so they are the same lines). No shebang: like enqueue, it is
-- refused by a full Redis (a run's log is dropped then, never its outcome).
-- Returns the number of lines appended.
local log, cap, ttl, attempt = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
local first, body = tonumber(ARGV[4]), tonumber(ARGV[5])
local skip = 0
if first >= 0 then
  local seen = 0
  local mark = redis.call('GET', KEYS[2])
  if mark then
    local a, n = string.match(mark, '^(%d+):(%d+)$')
    if a == attempt then seen = tonumber(n) end
  end
  skip = math.min(body, math.max(0, seen - first))
  if first + body > seen then
    redis.call('SET', KEYS[2], attempt .. ':' .. (first + body), 'PX', ttl)
  end
end
local lines = {}
for i = 6 + skip, #ARGV do lines[#lines + 1] = ARGV[i] end
if #lines == 0 then return 0 end
redis.call('RPUSH', log, unpack(lines))
redis.call('LTRIM', log, -cap, -1)
redis.call('PEXPIRE', log, ttl)
return #lines
