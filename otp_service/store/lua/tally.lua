-- KEYS: the counters to add to, then the counters to read.
-- ARGV: ttl_ms, then one amount per counter added to.
-- Returns the read counters' values (0 when missing) as one comma-separated string: a single
-- reply for the client to parse, where a pipeline answers once per command.
local adds = #ARGV - 1
for i = 1, adds do
  redis.call('INCRBY', KEYS[i], ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
local out = {}
for i = adds + 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i]) or '0'
end
return table.concat(out, ',')
