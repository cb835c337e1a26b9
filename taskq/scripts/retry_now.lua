#!lua flags=allow-oom
-- retry_now: a failed attempt whose retry has no delay goes straight on as the next
-- attempt, Retrying, on the worker that holds it (as Prefect's engine retries at once).
--
-- KEYS[1]   the run record
-- KEYS[2]   the queue's events stream
-- ARGV[1]   events stream cap (approximate MAXLEN)
-- ARGV[2]   run id
-- ARGV[3]   attempt that failed (the fence)
-- ARGV[4]   error type
-- ARGV[5]   error message
-- ARGV[6]   retry deadline in ms after the first start, or -1 for none
--
-- The delivery stays pending to this worker (its lease goes on being renewed): no
-- ack, no delay-queue entry, no redelivery. The record takes the failed attempt's
-- error (x<attempt>) and the new attempt's number and start (t<attempt+1>, server
-- ms); the event is one Retrying of the new attempt, carrying the error of the one
-- before. A worker lost during the new attempt is handled as for any running attempt:
-- the run is Crashed and taken over when its lease expires.
--
-- Returns 1 when the next attempt started; 0, changing nothing, when the attempt no
-- longer holds the run (fenced); 2, changing nothing, when starting now would pass
-- the retry deadline (the caller then records the run Failed).
--!include lib_fence.lua
--!include lib_time.lua
local run, events = KEYS[1], KEYS[2]
local cap, rid, attempt = ARGV[1], ARGV[2], ARGV[3]
local etype, emsg, deadline = ARGV[4], ARGV[5], tonumber(ARGV[6])
local cur = fence(run, attempt, 't1')
if not cur then return 0 end
local now_ms = server_ms()
if deadline >= 0 and cur[3] and now_ms > tonumber(cur[3]) + deadline then
  return 2
end
local next_attempt = tonumber(attempt) + 1
redis.call('HSET', run, 's', 'Retrying', 'a', next_attempt, 'x' .. attempt, etype .. ': ' .. emsg,
  't' .. next_attempt, tostring(now_ms))
redis.call('XADD', events, 'MAXLEN', '~', cap, '*', 'r', rid, 's', 'Retrying', 'a', next_attempt,
  'et', etype, 'em', emsg)
return 1
