#!lua flags=allow-oom
-- promote: move due members of the delay queue to the task stream, at most N per call.
--
-- KEYS[1]    the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[2+L]  the queue's task stream of priority level L (L = 0..9)
-- KEYS[12]   the queue's events stream
-- KEYS[12+j] the run record of the j-th candidate whose run id is known
-- ARGV[1]    events stream cap (approximate MAXLEN)
-- ARGV[2i]   the i-th candidate member (i = 1..N, lowest scores first)
-- ARGV[2i+1] its run id ('' when the caller could not read one)
--
-- A member is a payload, or "\xC1P<L>" + payload for priority L > 0 (0xC1 is
-- never the first byte of a msgpack value, so the two cannot be confused).
--
-- The caller reads the candidates first (it cannot name a run record before it
-- knows the run id); this script moves each one that is still there and due by
-- the server's clock, so a member never moves before its due time whatever the
-- callers' clocks say, and any number of movers may call it at once: each member
-- is moved exactly once. A moved entry carries its run id in 'r' beside 'm'; a
-- run that was Scheduled (delay=, scheduled_at) becomes Pending, with its event.
-- A retry stays AwaitingRetry until it starts (start.lua tells a retried run by it).
--
-- Returns {moved, next_due_ms or -1, now_ms}: the caller sleeps next_due - now.
--!include lib_time.lua
local delayed, events, cap = KEYS[1], KEYS[12], ARGV[1]
local now_ms = server_ms()
local moved, j = 0, 0
for i = 1, (#ARGV - 1) / 2 do
  local m, rid = ARGV[2 * i], ARGV[2 * i + 1]
  local run = nil
  if rid ~= '' then
    j = j + 1
    run = KEYS[12 + j]
  end
  local score = redis.call('ZSCORE', delayed, m)
  if score and tonumber(score) <= now_ms then
    local stream, payload = KEYS[2], m
    if string.sub(m, 1, 2) == '\193P' then
      stream, payload = KEYS[2 + tonumber(string.sub(m, 3, 3))], string.sub(m, 4)
    end
    if run then
      redis.call('XADD', stream, '*', 'm', payload, 'r', rid)
    else
      redis.call('XADD', stream, '*', 'm', payload)
    end
    redis.call('ZREM', delayed, m)
    moved = moved + 1
    if run and redis.call('HGET', run, 's') == 'Scheduled' then
      redis.call('HSET', run, 's', 'Pending')
      redis.call('HDEL', run, 'due')
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Pending')
    end
  end
end
local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
return {moved, next_due, now_ms}
