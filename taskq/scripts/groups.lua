#!lua flags=allow-oom
-- groups: create the consumer group (and its stream) of each of a queue's priority levels.
--
-- KEYS[i]   the task streams, one per priority level
-- ARGV[1]   consumer group name
--
-- Created at id 0, so runs enqueued before any worker existed are delivered; a group
-- that exists already (BUSYGROUP) is left as it is. XGROUP CREATE is refused on a
-- full Redis (maxmemory reached) when sent alone, so a worker could not start to
-- drain the backlog: this script may run under OOM, and its overshoot is bounded
-- (at most one empty stream and group per priority level). Returns how many it created.
local created = 0
for i = 1, #KEYS do
  local reply = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'BUSYGROUP', 1, true) then
      return redis.error_reply(reply.err)
    end
  else
    created = created + 1
  end
end
return created
