-- The key guard, in debug builds only (scripts.rs puts it before the shared
-- code when debug assertions are on, as in every test run): every call the
-- code makes goes through a check that refuses a key outside the namespace,
-- i.e. one that does not start with the prefix (ARGV[1]). On Redis Cluster a
-- namespace is one hash slot, and Redis itself refuses a script's key of
-- another slot only when another node serves it; this guard refuses it
-- wherever the tests run, on one server too. Release builds call Redis
-- directly.
local redis = (function()
  -- Inside this function `redis` is still the global: the API of the moment
  -- (the load-time one while a library loads, the full one in calls).
  local NO_KEY = {TIME = true}
  local ALL_KEYS = {DEL = true, EXISTS = true}
  local function check(cmd, ...)
    local c = string.upper(cmd)
    if NO_KEY[c] then return end
    local p = ARGV[1]
    local n = 1
    if ALL_KEYS[c] then n = select('#', ...) end
    for i = 1, n do
      local k = select(i, ...)
      if type(k) ~= 'string' or string.sub(k, 1, #p) ~= p then
        error('conveyor: ' .. c .. ' on a key outside the namespace ' .. p .. ': ' .. tostring(k))
      end
    end
  end
  -- A plain table (a library cannot reach setmetatable while it loads)
  -- with what the code uses of the API, each looked up when called.
  return {
    call = function(cmd, ...)
      check(cmd, ...)
      return redis.call(cmd, ...)
    end,
    pcall = function(cmd, ...)
      check(cmd, ...)
      return redis.pcall(cmd, ...)
    end,
    error_reply = function(...) return redis.error_reply(...) end,
    register_function = function(...) return redis.register_function(...) end,
  }
end)()
