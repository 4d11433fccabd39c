-- wf_ends: ARGV = prefix, then task ids.
-- For each task, in order, four items: its workflow mark ('<workflow>
-- <node>' from wf:tasks, false when it is no node task any more), then,
-- for a marked task, its state code, result and error ('' for the state of
-- a task that does not exist, false for a result or an error it has not;
-- '', false, false for an unmarked one). One call for what settling the
-- nodes those tasks ended needs of them. Reads only those: the state
-- record's state, the result and the error (not the data record, nor the
-- attempt history, as `peek` with its sides would).
local marks = wf.TASKS
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local mark = redis.call('HGET', marks, id)
  local s, r, e = '', false, false
  if mark then
    local sv = redis.call('HGET', TSTATE, id)
    local layout = sv or redis.call('HEXISTS', TDATA, id) == 1
    if layout then
      s = sv and string.match(sv, STATE_PATTERN) or STATE_STR[AVAILABLE]
      if not s then fail('task ' .. id .. ' has a state record that does not decode') end
      r = redis.call('HGET', TRESULT, id)
      e = redis.call('HGET', TERROR, id)
    else
      local flat = peek(id, false)
      if flat ~= nil then
        s, r, e = flat.s or '', flat.r or false, flat.e or false
      end
    end
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = mark, s, r, e
end
return out
