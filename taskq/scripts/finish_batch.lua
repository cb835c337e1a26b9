#!lua flags=allow-oom
-- finish_batch: finish.lua for several plain runs of one task stream in one call: each
-- run's final outcome recorded and its delivery acked, each fenced by its own attempt.
-- "Plain": no cache entry to store, no flow to notify, acked at once (finish.lua does
-- those). One call instead of one per run saves the per-call cost on both sides.
--
-- KEYS[1]   the task stream the deliveries came from (one priority level's)
-- KEYS[2]   the queue's events stream
-- KEYS[1+2i], KEYS[2+2i]  (i = 1..n) run i's record and result list
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3+8(i-1)] .. ARGV[10+8(i-1)]  run i: stream entry id, run id, attempt (the
--           fence), final state, outcome payload, time to keep record and result (ms),
--           error type ('' when none), error message
--
-- Runs recorded without an error share events-stream entries per final state (their ids
-- and attempts space-separated, see lib_events.lua); a run with an error has its own,
-- as in finish.lua.
--
-- Returns a list of n integers: 1 when run i was recorded, 0 when its attempt no longer
-- held it (nothing changed for that run, as finish.lua).
--!include lib_fence.lua
--!include lib_finish.lua
--!include lib_events.lua
local stream, events = KEYS[1], KEYS[2]
local group, cap = ARGV[1], ARGV[2]
local out = {}
local acked = {}
-- Runs that end without an error share one event per final state (in the order seen).
local plain, order = {}, {}
for i = 1, (#KEYS - 2) / 2 do
  local run, result = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local a = 2 + 8 * (i - 1)
  local eid, rid, attempt, state = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local payload, ttl, etype, emsg = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  if not fence(run, attempt) then
    out[i] = 0
  else
    if etype ~= '' then
      record_outcome(run, result, events, cap, rid, attempt, state, payload, ttl, etype, emsg)
    else
      record_result(run, result, attempt, state, payload, ttl, etype, emsg)
      local b = plain[state]
      if not b then
        b = {{}, {}}
        plain[state] = b
        order[#order + 1] = state
      end
      b[1][#b[1] + 1] = rid
      b[2][#b[2] + 1] = attempt
    end
    acked[#acked + 1] = eid
    out[i] = 1
  end
end
for _, state in ipairs(order) do
  add_runs_event(events, cap, state, plain[state][1], plain[state][2])
end
-- The recorded runs' deliveries acked and deleted with one XACK and one XDEL.
-- (In slices: unpack takes a few thousand values at most.)
for i = 1, #acked, 1000 do
  local j = math.min(i + 999, #acked)
  redis.call('XACK', stream, group, unpack(acked, i, j))
  redis.call('XDEL', stream, unpack(acked, i, j))
end
return out
