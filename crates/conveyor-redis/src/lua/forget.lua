-- forget: ARGV = prefix, then ids.
-- Removes the records kept for another backend (see keep.lua) of the ids;
-- an id with no kept record, one of this store's own tasks among them, is
-- skipped. Returns how many it removed.
local gone = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEPT, ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
kept.drop(gone)
return #gone
