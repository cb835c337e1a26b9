#!lua flags=allow-oom
-- flow_expire: a flow still waiting for its children when its attempt's time limit
-- ran out is resumed now, so its worker can record the timeout (and cancel its
-- unfinished children); run by the flow's deadline run (taskq.flows.deadline).
--
-- KEYS[1]   the flow's task stream (of its priority level)
-- KEYS[2]   the flow queue's events stream
-- KEYS[3]   the flow's run record
-- KEYS[4]   the flow's wait set
-- ARGV[1]   events stream cap (approximate MAXLEN)
-- ARGV[2]   flow run id
-- ARGV[3]   the attempt whose time limit ran out
--
-- Only a flow AwaitingChildren in that attempt, whose current wait did not resume it
-- yet, is resumed (as notify.lua resumes one: 'rn' takes the wait number, so a child
-- ending after this resumes nothing more). Returns 1 when resumed, else 0 (it had
-- resumed or ended meanwhile, or is in another attempt: nothing changes).
local stream, events, run, waitset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cap, fid, attempt = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HMGET', run, 's', 'a', 'wn', 'rn', 'p')
if cur[1] ~= 'AwaitingChildren' or cur[2] ~= attempt or cur[3] == cur[4] or not cur[5] then
  return 0
end
redis.call('HSET', run, 'rn', cur[3], 's', 'Resuming')
redis.call('DEL', waitset)
redis.call('XADD', stream, '*', 'm', cur[5], 'r', fid)
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', fid, 's', 'Resuming', 'a', attempt)
return 1
