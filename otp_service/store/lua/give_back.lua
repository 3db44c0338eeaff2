-- KEYS: the limit keys, then (if ARGV[2] is '1') the code key.
-- ARGV: the admission's token, has code, the code's digest.
-- Removes the admission's hit (its token) from each window, and the code only while it is still
-- the one this admission stored: a later send may have replaced it, and that one stays.
local has_code = ARGV[2] == '1'
local windows = #KEYS
if has_code then windows = windows - 1 end
for i = 1, windows do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
if has_code and redis.call('HGET', KEYS[#KEYS], 'd') == ARGV[3] then
  redis.call('DEL', KEYS[#KEYS])
end
return 0
