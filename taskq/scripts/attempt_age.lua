#!lua flags=no-writes
-- attempt_age: how long ago (ms, the clock of the server holding the record) attempt
-- ARGV[1] of the run whose record is KEYS[1] started; -1 when the record has no start
-- for it. Read-only. For a flow's time limit, which covers its whole attempt.
--!include lib_time.lua
local start = redis.call('HGET', KEYS[1], 't' .. ARGV[1])
if not start then return -1 end
return server_ms() - tonumber(start)
