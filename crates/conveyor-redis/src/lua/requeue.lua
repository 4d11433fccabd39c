-- requeue: ARGV = prefix, now, then ids.
-- Dead tasks go back to available with a fresh attempt count. Returns how many
-- moved.
local now = ARGV[2]
local n = 0
local wake = {}
for i = 3, #ARGV do
  local r = load(ARGV[i], {'s', 'q', 'pr', 'ok', 'uk'})
  if r ~= nil and TR.Requeue.from[r.s] then
    r.ra = now
    move(r, 'Requeue', now, {'a', 0, 'ra', now}, {'fa'})
    wake[r.q] = true
    n = n + 1
  end
end
flush()
publish(wake)
return n
