#!lua flags=allow-oom
-- cache_store: store a run's Completed outcome under its cache key and release the
-- key's lock, for a run whose cache key lives on another partition than the run (the
-- key's home partition: crc32(key) % N); on one hash tag finish.lua does this itself.
--
-- KEYS[1]   the cache entry
-- KEYS[2]   the cache entry's lock
-- ARGV[1]   run id (the lock is released only if this run holds it)
-- ARGV[2]   final state name (only Completed is stored)
-- ARGV[3]   outcome payload (msgpack)
-- ARGV[4]   cache expiration in milliseconds (-1: none)
--
-- Sent before the run's finish: a SERIALIZABLE run waiting for this one wakes on its
-- result, and must then find the entry. Idempotent: a repeat stores the same outcome
-- and finds the lock released. allow-oom: it frees the lock on a full Redis too.
-- Returns 1 when the outcome was stored, else 0.
local stored = 0
if ARGV[2] == 'Completed' then
  redis.call('SET', KEYS[1], ARGV[3])
  if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
  stored = 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return stored
