-- enqueue: add runs to a queue, each at most once, and record them Pending (or Scheduled).
--
-- KEYS[1]        the queue's task stream of the runs' priority level
-- KEYS[2]        the queue's events stream
-- KEYS[3]        the queue's delay queue (ZSET scored by due time, ms)
-- KEYS[3+i]      the run record of the i-th run (i = 1..n)
-- ARGV[1]        events stream cap (approximate MAXLEN)
-- ARGV[2]        wake-up channel of the queue's movers
-- ARGV[3]        delay-queue member prefix: '' for priority 0, else "\xC1P<level>"
--                (promote.lua routes a member to its level's stream by it)
-- ARGV[4]        the runs' task name ('' for none): every run of a call is of one task;
--                their Pending / Scheduled events carry it in field 'k' (nothing else
--                stores it: a queued run costs no more bytes)
-- ARGV[3i+2]     run id of the i-th run
-- ARGV[3i+3]     payload of the i-th run (msgpack, stored once: stream entry or ZSET member)
-- ARGV[3i+4]     when it is due: '' now; 'd<ms>' after a delay (server clock);
--                'a<ms>' at an absolute Unix time in milliseconds
--
-- A stream entry carries the run id in field 'r' beside the payload 'm', so a worker
-- that cannot decode the payload still knows which run to fail.
-- The runs queued now share Pending events (their ids space-separated, at most 16 per
-- entry: lib_events.lua); each Scheduled run gets its own (it names its due time). The
-- events stream is trimmed once per call (by the Pending XADDs, or an XTRIM when all
-- were Scheduled) rather than on every XADD (cheaper for a bulk enqueue).
-- Returns an array with, per run, 1 if it was enqueued or 0 if the run id was
-- already known (idempotent enqueue: a retried call never adds a second entry).
--
-- With an idempotency key (one run only): one more KEYS, last, the key's entry
-- (<queue tag>:idem:<key>), and one more ARGV, last, how long it holds (ms). When the
-- key is held by another run, nothing is enqueued and the reply is {that run's id};
-- otherwise the key is taken for this run (SET PX) as it is enqueued.
--!include lib_time.lua
--!include lib_events.lua
local stream, events, delayed = KEYS[1], KEYS[2], KEYS[3]
local cap, channel, mark = ARGV[1], ARGV[2], ARGV[3]
local task = ARGV[4] ~= '' and ARGV[4] or nil
local out = {}
local added = 0
local now_ms = nil
local pending = {}
local runs = #KEYS - 3
if #ARGV == 3 * (runs - 1) + 5 then  -- an idempotency key (see above): one run
  runs = runs - 1
  local idem, holder = KEYS[#KEYS], redis.call('GET', KEYS[#KEYS])
  if holder and holder ~= ARGV[5] then return {holder} end
  redis.call('SET', idem, ARGV[5], 'PX', ARGV[#ARGV])
end
for i = 1, runs do
  local run = KEYS[3 + i]
  local rid, payload, due = ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4]
  -- HSETNX both tests and creates the record: a known run id is refused.
  if redis.call('HSETNX', run, 's', due == '' and 'Pending' or 'Scheduled') == 0 then
    out[i] = 0
  else
    if due == '' then
      redis.call('XADD', stream, '*', 'm', payload, 'r', rid)
      pending[#pending + 1] = rid
    else
      if not now_ms then now_ms = server_ms() end
      local at = tonumber(string.sub(due, 2))
      if string.sub(due, 1, 1) == 'd' then at = now_ms + at end
      local member = mark .. payload
      redis.call('ZADD', delayed, at, member)
      redis.call('HSET', run, 'due', at)
      local event = {'XADD', events, '*', 'r', rid, 's', 'Scheduled', 'due', at}
      if task then event[#event + 1], event[#event + 2] = 'k', task end
      redis.call(unpack(event))
      local first = redis.call('ZRANGE', delayed, 0, 0)
      if first[1] == member then redis.call('PUBLISH', channel, at) end
    end
    out[i] = 1
    added = added + 1
  end
end
if #pending > 0 then
  -- The events stream is trimmed by these XADDs (no XTRIM of its own).
  add_runs_event(events, cap, 'Pending', pending, nil, task)
elseif added > 0 then
  redis.call('XTRIM', events, 'MAXLEN', '~', cap)
end
return out
