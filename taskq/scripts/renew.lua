#!lua flags=allow-oom
-- renew: extend this worker's leases on its in-flight deliveries.
--
-- KEYS[1]   the task stream of the deliveries (one priority level's)
-- ARGV[1]   consumer group name
-- ARGV[2]   this worker's consumer name
-- ARGV[3..] stream entry ids this worker is running
--
-- The lease of a delivery is its idle time in the group's pending list. For each
-- id still owned by this consumer, XCLAIM ... JUSTID with min-idle 0 resets the
-- idle time without counting a delivery. An id now owned by another consumer (it
-- was reclaimed after this worker stalled) is left alone: renewing it would steal
-- it back.
--
-- An id no longer pending at all was acked meanwhile (its run just finished): it
-- is neither renewed nor reported. Returns the ids another consumer now holds.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if p[1] and p[1][2] == me then
    redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
  elseif p[1] then
    lost[#lost + 1] = id
  end
end
return lost
