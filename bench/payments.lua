-- wrk script for `paytool serve`: POST /v1/payments, created and captured.
--
-- Environment (read by every wrk thread):
--   BENCH_KEYS  comma-separated merchant secret keys (sk_test_...); requests are
--               spread over them round-robin, offset per thread
--   BENCH_RUN   a tag unique to this run, so Idempotency-Keys never repeat across
--               runs against the same data dir (a repeat would be a replay, not a write)
--
-- Every request carries a fresh Idempotency-Key: <run>-<thread>-<counter>.
-- At the end it prints one machine-readable line:
--   BENCH requests=N non200=N errors_connect=N ... p50_us=N p90_us=N p99_us=N ...

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local keys = {}
local run = os.getenv("BENCH_RUN") or tostring(os.time())
-- Globals, not locals: wrk's thread:set()/thread:get() reach only globals.
tid = nil     -- set by setup() in each thread's Lua state
non200 = 0    -- read by done() from every thread
local body = '{"amount":2500,"currency":"usd","card":{"number":"4242424242424242",' ..
             '"exp_month":12,"exp_year":2034},"capture":true}'

function init(args)
  tid = tonumber(tid) or 0
  for k in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
    table.insert(keys, k)
  end
  if #keys == 0 then
    error("BENCH_KEYS is empty: pass the merchants' secret keys, comma-separated")
  end
  counter = 0
  non200 = 0
end

function request()
  counter = counter + 1
  local key = keys[((counter + tid) % #keys) + 1]
  return wrk.format("POST", "/v1/payments", {
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    -- Keep the first few for the report.
    if non200 <= 3 then
      io.stderr:write(string.format("non-200 status %d: %s\n", status,
        string.sub(body or "", 1, 200)))
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("non200")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non200=%d errors_connect=%d errors_read=%d " ..
    "errors_write=%d errors_status=%d errors_timeout=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d p999_us=%d max_us=%d mean_us=%.0f\n",
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
