#!lua flags=allow-oom
-- start: move delivered runs to Running (a new attempt, or a resumed flow).
--
-- KEYS[1]        the task stream of the deliveries (one priority level's)
-- KEYS[2]        the queue's events stream
-- KEYS[2+i]      the run record of the i-th delivery (i = 1..n)
-- ARGV[1]        consumer group name
-- ARGV[2]        events stream cap (approximate MAXLEN)
-- ARGV[3]        worker id (recorded on the run)
-- ARGV[5i-1]     stream entry id of the i-th delivery
-- ARGV[5i]       run id of the i-th delivery
-- ARGV[5i+1]     most deliveries allowed for it (max_deliveries), or 0 for a fresh
--                read (XREADGROUP >: its first delivery, so the count is not looked up)
-- ARGV[5i+2]     the run's display name (task_run_name), or '' for none
-- ARGV[5i+3]     the run's task name, recorded as 'k' with each new attempt ('' none)
--
-- Per delivery, three numbers {kind, attempt, deliveries}; kind is
--   1  started: a new attempt (start time recorded as t<attempt>, server ms), named
--      Running: the first, or one after a hand-back (Pending) or a crash (reclaimed)
--   2  resumed: a flow that waited for its children runs again, same attempt
--   0  duplicate: the run already ended, or is running from another entry (this
--      one is a stale copy); nothing changed (the caller acks it, after re-sending
--      a flow child's notification)
--   3  poison: delivered more than max_deliveries times; nothing changed (the
--      caller dead-letters it)
--   4  started: a new attempt of a run that was AwaitingRetry, named Retrying (a
--      retried flow re-runs its failed children)
--   5  lost: this worker no longer holds the delivery (it stalled past its lease
--      and another worker took it, or it was acked meanwhile); nothing changed.
--      Checked for every run past its first start (a run still Pending or
--      Scheduled has had no attempt that another worker could have taken).
--   6  started after a crash: as 1, and the attempt before (Running or Retrying,
--      its worker lost) was recorded Crashed first
-- After the triples: the server time the attempts started (ms), then, for each kind 4
-- in order, the due time its retry waited for (the record's 'due', ms; -1 if none),
-- from which a worker with metrics on measures start latency and retry lateness.
-- A run found Running/Retrying lost its worker: that attempt is recorded Crashed
-- before the new one starts, which fences the old attempt's late writes off.
--!include lib_states.lua
--!include lib_time.lua
--!include lib_events.lua
local stream, events = KEYS[1], KEYS[2]
local group, cap, worker = ARGV[1], ARGV[2], ARGV[3]
local now_ms = tostring(server_ms())
local out = {}
-- The runs that move to Running (or Retrying) share events-stream entries per state
-- (lib_events.lua), added after the loop (a Crashed event of the attempt before comes
-- first).
local running, running_a, retrying, retrying_a = {}, {}, {}, {}
local dues = {}
for i = 1, #KEYS - 2 do
  local run = KEYS[2 + i]
  local eid, rid, maxdel = ARGV[5 * i - 1], ARGV[5 * i], tonumber(ARGV[5 * i + 1])
  local display, task = ARGV[5 * i + 2], ARGV[5 * i + 3]
  local deliveries = 1
  if maxdel > 0 then
    local pend = redis.call('XPENDING', stream, group, eid, eid, 1)
    if pend[1] then deliveries = pend[1][4] end
  else
    maxdel = 1
  end
  local cur = redis.call('HMGET', run, 's', 'a', 'e', 'due')
  local s, a = cur[1], tonumber(cur[2] or '0')
  local kind = 1
  local owned = true
  if s and not NOT_STARTED[s] and not FINAL[s] then
    local p = redis.call('XPENDING', stream, group, eid, eid, 1)
    owned = p[1] ~= nil and p[1][2] == worker
  end
  if not owned then
    kind = 5
  elseif s and FINAL[s] then
    kind = 0
  elseif HELD[s] and cur[3] and cur[3] ~= eid then
    -- Running from another entry of this run: this one is a stale copy (an entry left
    -- behind when the run was reset and enqueued again, or one cancelled while
    -- queued), not a lost worker's delivery, which keeps its entry id when reclaimed.
    kind = 0
  elseif deliveries > maxdel then
    kind = 3
  elseif SUSPENDED[s] then
    kind = 2
    redis.call('HSET', run, 's', 'Running', 'w', worker, 'e', eid)
    redis.call('HINCRBY', run, 'resumes', 1)
    running[#running + 1], running_a[#running_a + 1] = rid, a
  else
    local name = 'Running'
    if s == 'AwaitingRetry' then
      -- Only a retry after a failure is Retrying; a new attempt after a hand-back
      -- (Pending) or a crash (reclaimed, below) is Running again, attempt n.
      kind = 4
      name = 'Retrying'
      dues[#dues + 1] = tonumber(cur[4] or '-1')
    end
    if HELD[s] then
      kind = 6
      redis.call('HSET', run, 'x' .. a, 'Crashed: worker lost (lease expired)')
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Crashed', 'a', a,
        'et', 'Crashed', 'em', 'worker lost (lease expired)')
    end
    -- The attempt counter read above, advanced in the same HSET (one write, not two).
    a = a + 1
    redis.call('HSET', run, 's', name, 'a', a, 'w', worker, 'e', eid, 't' .. a, now_ms, 'k', task)
    if display ~= '' then redis.call('HSET', run, 'n', display) end
    if kind == 4 then
      retrying[#retrying + 1], retrying_a[#retrying_a + 1] = rid, a
    else
      running[#running + 1], running_a[#running_a + 1] = rid, a
    end
  end
  out[#out + 1] = kind
  out[#out + 1] = a
  out[#out + 1] = deliveries
end
add_runs_event(events, cap, 'Running', running, running_a)
add_runs_event(events, cap, 'Retrying', retrying, retrying_a)
out[#out + 1] = tonumber(now_ms)
for i = 1, #dues do out[#out + 1] = dues[i] end
return out
