-- The shared code's sixth part (after kept.lua): workflows.
--
-- Workflow W is one hash, wf.key(W): 'spec' (its stored declaration), 't'
-- its tally ('BODY_LEFT LEFT FAILED OUTCOME': FAILED 0 or 1, OUTCOME -1
-- before the body ends, else its code), 'v' its version (every change adds
-- one), 'c' its created-at, 'x' its ended-at once it ended, 'k' 1 once
-- cancelled, 'N' how many nodes it has, and per node i (from 0): 'n:i' its row ('STATE WAITING_ON'),
-- 't:i' its task once enqueued, 'r:i' its result or 'e:i' its error once
-- it settled. The decisions over those rows are conveyor_core's ledger,
-- which the client runs over rows it read at one version; wf_apply writes
-- them back only if the workflow is still at that version, so two
-- settlers of one workflow never both write (the later reads again).
--
-- A node's task reaching a final state (finish, cancel, lease recovery) is
-- recorded in wf.ENDED in that same step (wf.note_ends): the client
-- settles it right after, and maintenance settles what a crash left.

-- Workflow w's hash.
function wf.key(w) return P .. 'wf:' .. w end

-- Records which of `ids`, tasks that reached a final state in this call,
-- are tasks of workflow nodes not settled yet; returns how many. A
-- namespace with no such task pays one EXISTS per call.
function wf.note_ends(ids)
  if #ids == 0 or redis.call('EXISTS', wf.TASKS) == 0 then return 0 end
  local marks = hmget(wf.TASKS, ids)
  local ended, n = {}, 0
  for i = 1, #ids do
    if marks[i] then
      n = n + 1
      ended[n] = ids[i]
    end
  end
  bulk('SADD', wf.ENDED, ended)
  return n
end

-- Enqueues the k nodes of workflow w named by ARGV[at .. at + k - 1],
-- whose tasks follow as a task list (k, span, forms: see enqueue_tasks),
-- and records each node's task; marks in `wake` the queues that got
-- tasks. Returns the id before the first task (they take the next k).
function wf.enqueue(now, w, at, k, wake)
  local b = at + k
  local m, span = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
  if m ~= k then fail('workflow ' .. w .. ': ' .. k .. ' nodes, ' .. tostring(m) .. ' tasks') end
  if k == 0 then return 0 end
  local seq = take_ids(m)
  enqueue_tasks(now, b + 2, m, span, nil, wake, seq)
  local sets, marks = {}, {}
  for j = 1, k do
    local node, id = ARGV[at + j - 1], string.format('%d', seq + j)
    sets[2 * j - 1], sets[2 * j] = 't:' .. node, id
    marks[2 * j - 1], marks[2 * j] = id, w .. ' ' .. node
  end
  bulk('HSET', wf.key(w), sets)
  bulk('HSET', wf.TASKS, marks)
  return seq
end

-- Marks workflow w ended at now when `class` says it ended: 'ok' (its body
-- succeeded) or 'bad' (failed or cancelled), for pruning by the finished
-- or the dead tasks' retention; '' while it runs.
function wf.close(w, now, class)
  if class == '' then return end
  redis.call('HSET', wf.key(w), 'x', now)
  if class == 'ok' then
    redis.call('ZADD', wf.DONE_OK, now, w)
  else
    redis.call('ZADD', wf.DONE_BAD, now, w)
  end
end
