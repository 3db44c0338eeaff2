-- Request generator of bench/load.py: BENCH_TARGET picks the route and body; numbers and client
-- addresses vary per request so per-number and per-IP limits are exercised without tripping,
-- except in the refused_* targets, which are built to be refused (see TARGETS in load.py).
-- done() prints one JSON line (marker BENCH_JSON) that the harness parses.

local target = os.getenv("BENCH_TARGET") or "hello"
local base = tonumber(os.getenv("BENCH_BASE") or "0")
local count = tonumber(os.getenv("BENCH_COUNT") or "1")
local right_code = os.getenv("BENCH_CODE") or "246810"
local token = os.getenv("BENCH_TOKEN") or ""
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local headers = {["Content-Type"] = "application/json"}
local sequence = 0

function setup(thread)
  thread:set("thread_id", #__bench_threads)
  table.insert(__bench_threads, thread)
end
__bench_threads = {}

function init(args)
  math.randomseed(os.time() * 97 + (thread_id or 0))
  sequence = thread_id or 0
end

local function random_ip()
  return string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
end

local function random_mobile()
  return string.format("+86138%08d", math.random(0, 99999999))
end

-- The seeded numbers are +86139 followed by base + i (8 digits), one per request, never reused.
local function seeded_mobile()
  local n = base + (sequence % count)
  sequence = sequence + threads
  return string.format("+86139%08d", n)
end

function request()
  headers["X-Forwarded-For"] = random_ip()
  if target == "hello" then
    return wrk.format("POST", "/hello", headers, '{"phone": "+8613800000000"}')
  elseif target == "send" then
    return wrk.format("POST", "/send-code", headers, '{"phone": "' .. random_mobile() .. '"}')
  elseif target == "verify_wrong" then
    return wrk.format("POST", "/verify", headers,
      '{"phone": "' .. seeded_mobile() .. '", "code": "000000"}')
  elseif target == "verify_right" then
    return wrk.format("POST", "/verify", headers,
      '{"phone": "' .. seeded_mobile() .. '", "code": "' .. right_code .. '"}')
  elseif target == "token" then
    return wrk.format("POST", "/tokens/check", headers, '{"token": "' .. token .. '"}')
  elseif target == "captcha" then
    return wrk.format("POST", "/captcha", headers, "{}")
  elseif target == "healthz" then
    return wrk.format("GET", "/healthz", headers)
  elseif target == "refused_malformed" then
    return wrk.format("POST", "/send-code", headers, '{"phone": "+86138')
  elseif target == "refused_invalid" then
    return wrk.format("POST", "/send-code", headers, '{"phone": "+86123"}')
  elseif target == "refused_captcha" then
    return wrk.format("POST", "/send-code", headers, '{"phone": "' .. random_mobile() .. '"}')
  elseif target == "refused_number" then
    -- One number from many addresses: its resend interval refuses all but the first.
    return wrk.format("POST", "/send-code", headers, '{"phone": "+8613700000001"}')
  elseif target == "refused_ip" then
    -- One address, new numbers: the limited server's per-address limit refuses from the 11th.
    headers["X-Forwarded-For"] = "10.200.0.1"
    return wrk.format("POST", "/send-code", headers, '{"phone": "' .. random_mobile() .. '"}')
  elseif target == "verify_random" then
    return wrk.format("POST", "/verify", headers,
      '{"phone": "' .. random_mobile() .. '", "code": "000000"}')
  end
  error("unknown BENCH_TARGET " .. target)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
