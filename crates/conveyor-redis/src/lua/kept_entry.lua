-- kept_entry: ARGV = prefix, mode, then the mode's arguments.
-- The versioned entries kept for another backend (RabbitMQ's workflows;
-- see RecordKeeper::write_entry): each a hash P..'ke:'..KEY with its value
-- (b) and revision (v), indexed by key in the sorted set P..'ke' (all
-- scores 0, so a key prefix is a lexical range). Counters are P..'kc:'..NAME.
--   get KEY                -> {value, rev} or false
--   create KEY VALUE       -> rev (1) or false when it exists
--   swap KEY VALUE REV     -> the new rev, or false when not at REV
--   put KEY VALUE          -> the new rev
--   remove KEY             -> 1
--   scan PREFIX            -> {key, value, rev, key, value, rev, ...}
--   count NAME N           -> the counter's new value
local mode, key = ARGV[2], ARGV[3]
local INDEX = P .. 'ke'
local function entry(k) return P .. 'ke:' .. k end
if mode == 'get' then
  local got = redis.call('HMGET', entry(key), 'b', 'v')
  if not got[1] then return false end
  return { got[1], tonumber(got[2]) }
elseif mode == 'create' then
  if redis.call('EXISTS', entry(key)) == 1 then return false end
  redis.call('HSET', entry(key), 'b', ARGV[4], 'v', 1)
  redis.call('ZADD', INDEX, 0, key)
  return 1
elseif mode == 'swap' then
  local rev = redis.call('HGET', entry(key), 'v')
  if rev ~= ARGV[5] then return false end
  local rev2 = tonumber(rev) + 1
  redis.call('HSET', entry(key), 'b', ARGV[4], 'v', rev2)
  return rev2
elseif mode == 'put' then
  local rev2 = redis.call('HINCRBY', entry(key), 'v', 1)
  redis.call('HSET', entry(key), 'b', ARGV[4])
  redis.call('ZADD', INDEX, 0, key)
  return rev2
elseif mode == 'remove' then
  redis.call('DEL', entry(key))
  redis.call('ZREM', INDEX, key)
  return 1
elseif mode == 'scan' then
  -- Every key starting with the prefix: from it, up to it followed by the
  -- highest byte.
  local keys = redis.call('ZRANGEBYLEX', INDEX, '[' .. key, '[' .. key .. '\255')
  local out = {}
  for _, k in ipairs(keys) do
    local got = redis.call('HMGET', entry(k), 'b', 'v')
    if got[1] then
      out[#out + 1] = k
      out[#out + 1] = got[1]
      out[#out + 1] = tonumber(got[2])
    end
  end
  return out
elseif mode == 'count' then
  return redis.call('INCRBY', P .. 'kc:' .. key, ARGV[4])
end
return redis.error_reply('kept_entry: unknown mode ' .. tostring(mode))
