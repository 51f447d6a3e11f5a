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

-- setup(), response() and done() (the BENCH line) come from wrk_common.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

local counter = 0

local keys = {}
local run = os.getenv("BENCH_RUN") or tostring(os.time())
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
