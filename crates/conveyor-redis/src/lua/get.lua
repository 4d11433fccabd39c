-- get: ARGV = prefix, id.
-- Returns the task's fields as a flat field, value, ... array (the fields
-- of a task hash: see "Task records" in common/records.lua), or nil when there is no
-- such task.
return fields_of(ARGV[2]) or false
