-- Helpers shared by every script (prepended to each): moving-window limits and live values.
-- A limit is a sorted set of hit timestamps (ms); a hit's member is the request token, so
-- concurrent requests with the same timestamp stay distinct. Semantics match limits'
-- MovingWindowRateLimiter: at most `amount` hits in any `window` ms.
-- Limit i uses KEYS[first + i - 1] and ARGV[offset + 3i - 2 .. offset + 3i] = amount, window, shadow.

-- Returns the refusing key index (0: none), its wait, the shadowed key indexes, and each
-- limit's count of live hits before this request.
local function check_limits(first, offset, count, now)
  local refused, retry = 0, 0
  local shadowed = {}
  local counts = {}
  for i = 1, count do
    local key = KEYS[first + i - 1]
    local amount = tonumber(ARGV[offset + 3 * i - 2])
    local window = tonumber(ARGV[offset + 3 * i - 1])
    local shadow = ARGV[offset + 3 * i] == '1'
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

local function hit_limits(first, offset, count, now, token)
  for i = 1, count do
    local key = KEYS[first + i - 1]
    local window = tonumber(ARGV[offset + 3 * i - 1])
    redis.call('ZADD', key, now, token)
    redis.call('PEXPIRE', key, window)
  end
end

-- Values written by put/put_new are "<expires_at_ms>|<payload>".
local function live(value, now)
  if not value then return false end
  local expires = tonumber(string.match(value, '^(%d+)|'))
  return expires ~= nil and expires > now
end
