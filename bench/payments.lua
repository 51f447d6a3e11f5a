-- wrk script for `paytool serve`: POST /v1/payments, created and captured.
--
-- Environment (read by every wrk thread):
--   BENCH_KEYS  comma-separated merchant secret keys (sk_test_...); requests are
--               spread over them round-robin, offset per thread
--   BENCH_RUN   a tag unique to this run, so Idempotency-Keys never repeat across
--               runs against the same data dir (a repeat would be a replay, not a write)
--   BENCH_SHOW_ERRORS=1  also read every answer in Lua, to show the first three refused
--               ones on stderr (costs wrk CPU that the server would otherwise get)
--
-- Every request carries a fresh Idempotency-Key: <run>-<thread>-<counter>. wrk shares
-- the cores with the API, so each request costs it as little as it can: the request
-- around the key is formatted once per merchant, in init(), and a request is one
-- concatenation. Answers are not read in Lua (wrk reads the status line itself and counts
-- the ones of 400 and above), unless BENCH_SHOW_ERRORS=1.
-- At the end it prints one machine-readable line:
--   BENCH requests=N non200=N errors_connect=N ... p50_us=N p90_us=N p99_us=N ...

-- The answers are read in Lua only when asked (wrk_common.lua defines response() then).
lean_answers = os.getenv("BENCH_SHOW_ERRORS") ~= "1"
-- setup(), response() and done() (the BENCH line) come from wrk_common.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

local counter = 0
-- Per merchant: the request line, then the rest of the request after the key's header.
local heads, tails = {}, {}
local key_prefix = ""
local body = '{"amount":2500,"currency":"usd","card":{"number":"4242424242424242",' ..
             '"exp_month":12,"exp_year":2034},"capture":true}'

function init(args)
  tid = tonumber(tid) or 0
  local run = os.getenv("BENCH_RUN") or tostring(os.time())
  for k in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
    local whole = wrk.format("POST", "/v1/payments", {
      ["Authorization"] = "Bearer " .. k,
      ["Content-Type"] = "application/json",
    }, body)
    local line_end = string.find(whole, "\r\n", 1, true)
    table.insert(heads, string.sub(whole, 1, line_end + 1))
    table.insert(tails, string.sub(whole, line_end + 2))
  end
  if #heads == 0 then
    error("BENCH_KEYS is empty: pass the merchants' secret keys, comma-separated")
  end
  key_prefix = "Idempotency-Key: " .. run .. "-" .. tid .. "-"
  counter = 0
  non200 = 0
end

function request()
  counter = counter + 1
  local i = ((counter + tid) % #heads) + 1
  return heads[i] .. key_prefix .. counter .. "\r\n" .. tails[i]
end
