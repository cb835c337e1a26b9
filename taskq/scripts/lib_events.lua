-- lib_events: one transition of several runs on the queue's events stream (inserted where
-- a script says --!include), for the scripts that move runs in batches (enqueue, start,
-- finish_batch). The runs go in entries of at most EVENT_BATCH runs: `r` their ids and
-- `a` their attempts (when given), space-separated. The stream is capped at about `cap`
-- entries, as with one entry per run: it keeps at least as long a history as before
-- (a reader that lags behind loses nothing it did not lose then), and its memory stays
-- bounded by cap entries of at most EVENT_BATCH runs each. `task` (enqueue's runs, which
-- have no attempt yet: all of one task) goes in `k`.
local EVENT_BATCH = 16

local function add_runs_event(events, cap, state, rids, attempts, task)
  local n = #rids
  local i = 1
  while i <= n do
    local j = math.min(i + EVENT_BATCH - 1, n)
    local ids = table.concat(rids, ' ', i, j)
    if attempts then
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', ids, 's', state,
        'a', table.concat(attempts, ' ', i, j))
    elseif task then
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', ids, 's', state, 'k', task)
    else
      redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', ids, 's', state)
    end
    i = j + 1
  end
end
