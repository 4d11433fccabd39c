-- cancel: ARGV = prefix, now, id.
-- Cancels a waiting or running task (see admin.cancel in common/steps.lua).
-- Returns {-1} when there is no such task, else {the state code
-- afterwards, 1 when it is a workflow node's task whose end waits to be
-- settled (else 0)}.
local id = ARGV[3]
local s = admin.cancel(ARGV[2], id)
if s ~= CANCELLED then return {s} end
return {s, wf.note_ends({id})}
