-- kept_expire: ARGV = prefix, now, batch.
-- Drops up to `batch` kept records (see keep.lua) past their expiry, out of
-- the kept index too. Returns how many; the caller runs it again while a
-- full batch went.
return kept.drop_expired(ARGV[2], tonumber(ARGV[3]))
