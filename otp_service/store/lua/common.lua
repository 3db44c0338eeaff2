-- Helpers shared by every script (prepended to each): moving-window limits and live values.
-- A limit is a sorted set of hit timestamps (ms); a hit's member is the request token, so
-- concurrent requests with the same timestamp stay distinct. Semantics match limits'
-- MovingWindowRateLimiter: at most `amount` hits in any `window` ms.
-- Limit i uses KEYS[first + i - 1] and the i-th "amount window_ms shadow" triple of a spec
-- string: one argument for every limit, because the client pays for each argument it packs.

local function parse_limits(spec)
  local limits = {}
  for amount, window, shadow in string.gmatch(spec, '(%d+) (%d+) (%d)') do
    limits[#limits + 1] = {tonumber(amount), tonumber(window), shadow == '1'}
  end
  return limits
end

-- Returns the refusing key index (0: none), its wait, the shadowed key indexes, and each
-- limit's count of live hits before this request.
local function check_limits(first, limits, now)
  local refused, retry = 0, 0
  local shadowed = {}
  local counts = {}
  for i, limit in ipairs(limits) do
    local key = KEYS[first + i - 1]
    local amount, window, shadow = limit[1], limit[2], limit[3]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local used = redis.call('ZCARD', key)
    counts[i] = used
    if used >= amount then
      local freeing = redis.call('ZRANGE', key, used - amount, used - amount, 'WITHSCORES')
      local wait = tonumber(freeing[2]) + window - now
      if shadow then
        shadowed[#shadowed + 1] = first + i - 1
      elseif refused == 0 or wait > retry then
        refused, retry = first + i - 1, wait
      end
    end
  end
  return refused, retry, shadowed, counts
end

local function hit_limits(first, limits, now, token)
  for i, limit in ipairs(limits) do
    local key = KEYS[first + i - 1]
    redis.call('ZADD', key, now, token)
    redis.call('PEXPIRE', key, limit[2])
  end
end

-- Values written by put/put_new are "<expires_at_ms>|<payload>".
local function live(value, now)
  if not value then return false end
  local expires = tonumber(string.match(value, '^(%d+)|'))
  return expires ~= nil and expires > now
end
