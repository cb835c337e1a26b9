#!lua flags=allow-oom
-- fetch: new deliveries for a consumer, highest priority first, without blocking.
--
-- KEYS[i]   the task streams to read, in the order they are served (priority 9 of
--           every queue first, then 8, ... then 0)
-- ARGV[1]   consumer group name
-- ARGV[2]   consumer name
-- ARGV[3]   most deliveries to take (the caller's free slots)
--
-- One XREADGROUP ... > per stream, in order, each for what is still missing, so a
-- lower stream is read only when the higher ones had less than asked for. A
-- stream whose group does not exist yet is skipped (no worker created it), and so is
-- an empty one (XLEN 0) without a read.
-- Returns {i, entry id, fields, i, entry id, fields, ...}; i indexes KEYS.
local group, consumer = ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS do
  if want <= 0 then break end
  -- An empty stream (most priority levels, most of the time) has nothing to read: XLEN
  -- is far cheaper than an XREADGROUP that finds nothing. A stream with entries may
  -- hold only delivered ones; the read then finds nothing new, as before.
  local ok, reply = true, nil
  if redis.call('XLEN', KEYS[i]) > 0 then
    ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
      'STREAMS', KEYS[i], '>')
  end
  if not ok then
    if not string.find(reply.err or tostring(reply), 'NOGROUP', 1, true) then
      return redis.error_reply(reply.err or tostring(reply))
    end
  elseif reply then
    for _, entry in ipairs(reply[1][2]) do
      out[#out + 1] = i
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2]
      want = want - 1
    end
  end
end
return out
