#!lua flags=allow-oom
-- flow_forget: drop ended children from a flow's fan-in keys (a retried flow re-runs them).
--
-- KEYS[1]   the flow's results hash (child run id -> outcome)
-- KEYS[2]   the flow's order list (child run ids, in the order they ended)
-- ARGV[1..] the children's run ids
--
-- One script, so a reader of the fan-in keys never sees a child in one and not the
-- other. allow-oom: it only deletes, and a retried flow must make progress on a full
-- Redis (the drain path).
-- One child per command, so no count of children can exceed Lua's unpack limit.
-- Returns how many children were dropped from the results hash.
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('LREM', KEYS[2], 0, ARGV[i])
end
return n
