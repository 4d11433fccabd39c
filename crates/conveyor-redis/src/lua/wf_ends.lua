-- wf_ends: ARGV = prefix, then task ids.
-- For each task, in order, its state code, result and error: three items
-- ('' for the state of a task that does not exist, false for a result or
-- an error it has not), for settling the workflow nodes those tasks ended.
-- Far lighter than reading each task's whole record (`get`).
local out = {}
for i = 2, #ARGV do
  local r = peek(ARGV[i], true)
  local n = #out
  if r == nil then
    out[n + 1], out[n + 2], out[n + 3] = '', false, false
  else
    out[n + 1], out[n + 2], out[n + 3] = r.s or '', r.r or false, r.e or false
  end
end
return out
