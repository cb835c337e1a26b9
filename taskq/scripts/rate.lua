#!lua flags=allow-oom
-- rate: the next free start slots of a rate-limit bucket (taskq.ratelimits).
--
-- KEYS[1]   the bucket (string: the theoretical arrival time of its next start, ms)
-- ARGV[1]   milliseconds between two starts (period / count)
-- ARGV[2]   how many deliveries ask
--
-- Each asking delivery is given the next slot in turn (GCRA with no burst): the first
-- the later of now and the bucket's next slot, each one after it one interval later.
-- Returns, per delivery, how many milliseconds from now its slot is (0: start now).
--!include lib_time.lua
local interval, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = server_ms()
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local out = {}
for i = 1, n do
  out[i] = tat - now
  tat = tat + interval
end
redis.call('SET', KEYS[1], tat, 'PX', tat - now + interval)
return out
