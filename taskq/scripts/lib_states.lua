-- lib_states: named sets of run states, shared by the scripts (inserted where they say
-- --!include). They are taskq.protocol's sets of the same names;
-- tests/unit/test_protocol.py keeps the two equal. Look a state up as SET[s] (nil
-- when s is not in the set, or the record has no state: HMGET gives false).
-- States that never change again.
local FINAL = {Completed = true, Cached = true, Failed = true, Cancelled = true}
-- States of an attempt that holds its run (the fence: lib_fence.lua).
local HELD = {Running = true, Retrying = true}
-- States of a run that had no attempt yet, which no other worker can have taken.
local NOT_STARTED = {Pending = true, Scheduled = true}
-- States of a flow waiting for, or just woken by, its children.
local SUSPENDED = {AwaitingChildren = true, Resuming = true}
-- Final states of a child that a retried flow runs again.
local RESETTABLE = {Failed = true, Cancelled = true}
