#!lua flags=allow-oom
-- conc_renew: extend the leases of concurrency slots a worker holds (taskq.concurrency).
--
-- KEYS[i]   a key's slots (sorted set: run id -> end of its lease, server ms)
-- ARGV[1]   lease length in milliseconds
-- ARGV[1+i] the run id holding a slot of KEYS[i]
--
-- Only slots still held are renewed (ZADD XX): one dropped after its lease ended stays
-- dropped (its run's attempt is being taken over). Returns how many were renewed.
--!include lib_time.lua
local lease = tonumber(ARGV[1])
local now = server_ms()
local renewed = 0
for i = 1, #KEYS do
  renewed = renewed + redis.call('ZADD', KEYS[i], 'XX', 'CH', now + lease, ARGV[1 + i])
  redis.call('PEXPIRE', KEYS[i], lease * 2)
end
return renewed
