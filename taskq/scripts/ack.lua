#!lua flags=allow-oom
-- ack: ack and delete deliveries in one step (idempotent).
--
-- KEYS[1]   the task stream they came from
-- ARGV[1]   consumer group name
-- ARGV[2..] stream entry ids
--
-- One script, so no entry is ever left acked but not deleted (or the reverse) when
-- the connection drops between the two commands. allow-oom: acking frees memory and
-- must work on a full Redis (the drain path).
-- One id per command, so no count of ids can exceed Lua's unpack limit.
-- Returns how many entries were deleted.
local n = 0
for i = 2, #ARGV do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  n = n + redis.call('XDEL', KEYS[1], ARGV[i])
end
return n
