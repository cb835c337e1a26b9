#!lua flags=allow-oom
-- rate: the start slots of a rate-limit bucket for a batch of deliveries (taskq.ratelimits).
--
-- KEYS[1]   the bucket (string: the theoretical arrival time of its next start, ms)
-- ARGV[1]   milliseconds between two starts (period / count)
-- ARGV[2]   how late a reserved slot may be honoured, in milliseconds
-- ARGV[2+i] the slot the i-th delivery was given before (server ms), or 0 for none
--
-- A delivery back at a slot it was given (not later than ARGV[2] past it) starts now,
-- taking nothing more: its slot was counted when it was given. Every other one is given
-- the next free slot in turn (GCRA with no burst): the later of now and the bucket's next
-- slot, each after it one interval later.
-- Returns {now, then per delivery how many milliseconds from now its slot is} (0: now).
--!include lib_time.lua
local interval, late = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = server_ms()
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local out = {now}
local took = false
for i = 3, #ARGV do
  local held = tonumber(ARGV[i])
  if held > 0 and held <= now + 1 and now - held <= late then
    out[#out + 1] = 0
  else
    out[#out + 1] = tat - now
    tat = tat + interval
    took = true
  end
end
if took then redis.call('SET', KEYS[1], tat, 'PX', tat - now + interval) end
return out
