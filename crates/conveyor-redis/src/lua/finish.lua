-- finish: ARGV = prefix, now, then 5 per report: id, token, kind, number, text.
-- kind C = complete (number 1: text is the result), R = retry (number: the
-- next run-at; text: the error), D = dead-letter (text: error), X = discard
-- (text: reason), L = release.
-- Returns per report 1 (applied) or 0 (stale lease: not running, or another
-- token).
local now = ARGV[2]
local out = {}
local wake = {}
for i = 3, #ARGV, 5 do
  local id, token, kind, number, text = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local r = load(id, {'s', 'q', 'pr', 'ok', 'uk', 'tk', 'a', 'ma', 'h'})
  if r == nil or r.s ~= RUNNING or r.tk ~= token then
    out[#out + 1] = 0
  else
    if kind == 'C' then
      local sets = {}
      if number == '1' then sets = {'r', text} end
      move(r, 'Complete', now, sets)
    elseif kind == 'R' then
      if num(r, 'a') >= num(r, 'ma') then
        move(r, 'DeadLetter', now, {'e', text})
      else
        r.ra = number
        move(r, 'Retry', now, {'e', text, 'ra', number})
      end
    elseif kind == 'D' then
      move(r, 'DeadLetter', now, {'e', text})
    elseif kind == 'X' then
      move(r, 'Discard', now, {'e', text})
    elseif kind == 'L' then
      local a = num(r, 'a') - 1
      if a < 0 then a = 0 end
      move(r, 'Release', now, {'a', a})
      wake[r.q] = true
    else
      fail('unknown report kind ' .. tostring(kind))
    end
    out[#out + 1] = 1
  end
end
flush()
publish(wake)
return out
