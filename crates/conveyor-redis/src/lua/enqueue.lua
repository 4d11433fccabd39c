-- enqueue: ARGV = prefix, now, n, then 12 per task: queue, handler, payload,
-- priority, run_at, max_attempts, timeout_ms ('' = none), has_unique ('0'|'1'),
-- unique_key, has_ordering ('0'|'1'), ordering_key, trace context ('' = none;
-- kept in the task's hash as field tc).
-- Returns id, duplicate (0|1) per task. All or nothing: every task was
-- validated before the call, and a script runs to its end without
-- interleaving.
local out, wake = {}, {}
enqueue_tasks(ARGV[2], 3, tonumber(ARGV[3]), out, wake)
flush()
publish(wake)
return out
