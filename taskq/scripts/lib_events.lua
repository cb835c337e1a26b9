-- lib_events: one transition of several runs on the queue's events stream (inserted where
-- a script says --!include), for the scripts that move runs in batches (enqueue, start,
-- finish_batch). The runs go in entries of at most EVENT_BATCH runs: `r` their ids and
-- `a` their attempts (when given), space-separated. The stream keeps about `cap`
-- transitions, not entries: an entry of n runs trims the stream to cap / n entries, so
-- batching neither grows the stream's memory nor shortens the history it keeps.
local EVENT_BATCH = 16

local function add_runs_event(events, cap, state, rids, attempts)
  local n = #rids
  local i = 1
  while i <= n do
    local j = math.min(i + EVENT_BATCH - 1, n)
    local ids = table.concat(rids, ' ', i, j)
    local keep = math.max(1, math.floor(tonumber(cap) / (j - i + 1)))
    if attempts then
      redis.call('XADD', events, 'MAXLEN', '~', keep, '*', 'r', ids, 's', state,
        'a', table.concat(attempts, ' ', i, j))
    else
      redis.call('XADD', events, 'MAXLEN', '~', keep, '*', 'r', ids, 's', state)
    end
    i = j + 1
  end
end
