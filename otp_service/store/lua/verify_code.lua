-- KEYS[1]: the code hash (d = digest, a = attempts, m = max attempts, e = expires_at_ms);
-- KEYS[2..]: limit keys, then the counters to add to on approval.
-- ARGV: now_ms, token, counter count, counter ttl_ms, the limits' spec (see common.lua),
-- candidate count, candidates..., then one amount per counter.
-- Returns {status, attempts_left | refusing key index, retry_ms, shadowed key indexes...}.
local now = tonumber(ARGV[1])
local token = ARGV[2]
local counters = tonumber(ARGV[3])
local counter_ttl = ARGV[4]
local limits = parse_limits(ARGV[5])
local ncand = tonumber(ARGV[6])
local count = #limits
local refused, retry, shadowed = check_limits(2, limits, now)
if refused > 0 then
  return {'limited', refused, retry}
end
hit_limits(2, limits, now, token)

local function result(status, value)
  local out = {status, value, 0}
  for _, index in ipairs(shadowed) do out[#out + 1] = index end
  return out
end

-- Constant-time equality: every byte is compared whatever the earlier ones were.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return diff == 0
end

local rec = redis.call('HMGET', KEYS[1], 'd', 'a', 'm', 'e')
if not rec[1] or tonumber(rec[4]) <= now then
  if rec[1] then redis.call('DEL', KEYS[1]) end
  return result('expired', 0)
end
local attempts, max = tonumber(rec[2]), tonumber(rec[3])
if attempts >= max then
  return result('locked', 0)
end
local matched = false
for i = 1, ncand do
  if same(rec[1], ARGV[6 + i]) then matched = true end
end
if matched then
  redis.call('DEL', KEYS[1])
  for j = 1, counters do
    local key = KEYS[1 + count + j]
    redis.call('INCRBY', key, ARGV[6 + ncand + j])
    redis.call('PEXPIRE', key, counter_ttl)
  end
  return result('approved', 0)
end
attempts = redis.call('HINCRBY', KEYS[1], 'a', 1)
return result('invalid', max - attempts)
