-- KEYS: the denial keys, then the limit keys, then (if ARGV[4] is '1') the code key.
-- ARGV: now_ms, denial count, token, has code, the limits' spec (see common.lua), then (if a
-- code) digest, ttl_ms, max attempts, expires_at_ms: stored only when admitted.
-- Refused: {refusing key index, retry_ms}.
-- Admitted: {0, shadowed count, shadowed key indexes..., then per limit (used, reset_ms, retry_ms)}
-- counted after this request's hit, for RateLimit-* headers without a second round trip.
local now = tonumber(ARGV[1])
local denials = tonumber(ARGV[2])
local token = ARGV[3]
local has_code = ARGV[4] == '1'
local limits = parse_limits(ARGV[5])
for i = 1, denials do
  if live(redis.call('GET', KEYS[i]), now) then
    return {i, 0}
  end
end
local refused, retry, shadowed, counts = check_limits(denials + 1, limits, now)
if refused > 0 then
  return {refused, retry}
end
hit_limits(denials + 1, limits, now, token)
if has_code then
  local code = KEYS[#KEYS]
  redis.call('DEL', code)
  redis.call('HSET', code, 'd', ARGV[6], 'a', 0, 'm', ARGV[8], 'e', ARGV[9])
  redis.call('PEXPIRE', code, ARGV[7])
end
local out = {0, #shadowed}
for _, index in ipairs(shadowed) do out[#out + 1] = index end

-- Usage from the counts check_limits took: an empty window needs no read (this hit is the
-- oldest), and a just-filled window frees when its oldest hit leaves.
local function score_at(key, index)
  return tonumber(redis.call('ZRANGE', key, index, index, 'WITHSCORES')[2])
end
for i, limit in ipairs(limits) do
  local key = KEYS[denials + i]
  local amount, window = limit[1], limit[2]
  local used = counts[i] + 1
  local oldest = now
  if used > 1 then oldest = score_at(key, 0) end
  local wait = 0
  if used >= amount then
    local index = used - amount
    wait = (index == 0 and oldest or score_at(key, index)) + window - now
  end
  out[#out + 1] = used
  out[#out + 1] = oldest + window - now
  out[#out + 1] = wait
end
return out
