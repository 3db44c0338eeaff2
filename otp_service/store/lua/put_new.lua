-- KEYS[1]; ARGV: now_ms, encoded value, ttl_ms. Set unless a live value exists; return it if so.
local now = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if live(current, now) then
  return current
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
