#!lua flags=allow-oom
-- suspend: a flow waiting for unfinished children gives its slot back.
--
-- KEYS[1]   the flow's task stream (of the flow's priority level)
-- KEYS[2]   the flow queue's events stream
-- KEYS[3]   the flow's run record
-- KEYS[4]   the flow's results hash (child id -> outcome)
-- KEYS[5]   the flow's wait set
-- ARGV[1]   consumer group name
-- ARGV[2]   events stream cap (approximate MAXLEN)
-- ARGV[3]   stream entry id of the flow's delivery
-- ARGV[4]   flow run id
-- ARGV[5]   attempt holding the flow (the fence)
-- ARGV[6]   the flow's payload, re-enqueued on resume
-- ARGV[7]   'all' (resume when every child below ended) or 'any' (when one did)
-- ARGV[8]   time to keep the fan-in keys, in milliseconds
-- ARGV[9]   highest child sequence number spawned so far
-- ARGV[10]  the queues the children run on, comma-separated (for listing the tree)
-- ARGV[11]  the flow delivery's priority level (recorded as 'l': a cancelled child's
--           notice resumes it on that level's stream)
-- ARGV[12..] child run ids waited for
--
-- Children that ended before this call are found in the results hash, so no
-- completion is missed: both this script and the children's notify script run
-- on the flow's hash tag, atomically.
-- Returns 1 suspended (acked; state AwaitingChildren), 2 not suspended because
-- the wait is already satisfied (the caller replays at once), 0 fenced off.
--!include lib_fence.lua
local stream, events, run, results, waitset = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, cap, eid, fid, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local payload, mode, ttl = ARGV[6], ARGV[7], ARGV[8]
if not fence(run, attempt) then return 0 end
local missing = {}
local ended = 0
for i = 12, #ARGV do
  if redis.call('HEXISTS', results, ARGV[i]) == 1 then
    ended = ended + 1
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if #missing == 0 or (mode == 'any' and ended > 0) then
  return 2
end
redis.call('DEL', waitset)
for i = 1, #missing, 1000 do
  redis.call('SADD', waitset, unpack(missing, i, math.min(i + 999, #missing)))
end
redis.call('PEXPIRE', waitset, ttl)
local wn = redis.call('HINCRBY', run, 'wn', 1)
redis.call('HSET', run, 's', 'AwaitingChildren', 'wm', mode, 'p', payload, 'seq', ARGV[9],
  'cq', ARGV[10], 'l', ARGV[11])
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', fid, 's', 'AwaitingChildren', 'a', attempt,
  'waiting', #missing)
return 1
